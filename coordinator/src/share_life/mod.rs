//! One owner for a share's life: create, join and end (revoke or expiry). Each step's
//! side effects happen here and nowhere else: the database row, what the sharer's and
//! joiners' streams hear, which relay pairs open or close, and the proxy's view of public
//! names. The API handlers only translate HTTP.

mod create;
mod end;
mod join;

pub use create::create;
pub use end::{end_share, run_expiry};
pub use join::join;

/// Brings the hub's own tunnel peers in line with the live public shares, in the
/// background (the proxy reaches each sharer through them).
fn resync_hub_peer(state: &crate::state::AppState) {
    if let Some(hub) = state.hub_peer.clone() {
        let store = state.store.clone();
        tokio::spawn(async move {
            if let Err(err) = hub.sync(&store).await {
                tracing::error!(%err, "cannot update the hub's tunnel peers");
            }
        });
    }
}
