//! Ending a share: revoke by the sharer, or expiry by a timer that sleeps until the
//! earliest deadline (woken early when a share with an earlier one appears). Ending a
//! share tells the sharer and every joiner, and closes their relay pairs.

use connect_api::{ShareState, StreamEvent};
use tokio_util::sync::CancellationToken;

use crate::relay::RelayUpdate;
use crate::state::AppState;
use crate::store::StoreError;

/// How long an ended share's relay pairs stay open for the goodbye resets.
const RELAY_GOODBYE: std::time::Duration = std::time::Duration::from_secs(2);

/// Ends an active share. Returns false when it had already ended.
///
/// # Errors
/// When the database fails.
pub async fn end_share(state: &AppState, lookup: &str, to: ShareState) -> Result<bool, StoreError> {
    if !state.store.end_share(lookup, to, state.now_ms()).await? {
        return Ok(false);
    }
    let Some(share) = state.store.share(lookup).await? else {
        return Ok(true);
    };
    let event = StreamEvent::ShareEnded {
        lookup: lookup.to_owned(),
        state: to,
    };
    state.public.remove(&share.public_name);
    state.events.publish(&share.agent_id, &event).await;
    let sharer_slot = state
        .store
        .agent(&share.agent_id)
        .await?
        .map(|a| a.relay_id);
    let mut pairs = Vec::new();
    if share.http_port.is_some()
        && let (Some(hub), Some(sharer_slot)) = (&state.hub_peer, sharer_slot)
    {
        pairs.push(RelayUpdate::Disallow(sharer_slot, hub.slot()));
    }
    for join in state.store.joins_of(lookup).await? {
        state.events.publish(&join.agent_id, &event).await;
        if let Some(sharer_slot) = sharer_slot {
            pairs.push(RelayUpdate::Disallow(sharer_slot, join.relay_id));
        }
    }
    // The relay closes the pairs a moment later, so the resets the sharer sends its
    // joiners on hearing of the end still get through and their connections fail at
    // once instead of hanging.
    let events = state.events.clone();
    tokio::spawn(async move {
        tokio::time::sleep(RELAY_GOODBYE).await;
        for update in pairs {
            events.relay(update).await;
        }
    });
    tracing::info!(share = %share.public_name, state = %to, "share ended");
    Ok(true)
}

/// Expires shares at their deadlines until cancelled.
pub async fn run_expiry(state: AppState, cancel: CancellationToken) {
    loop {
        let next = match state.store.next_expiry().await {
            Ok(next) => next,
            Err(err) => {
                tracing::error!(%err, "cannot read share deadlines; retrying in 1 s");
                Some(state.now_ms() + 1000)
            }
        };
        let sleep = async {
            match next {
                Some(at) => {
                    let wait = u64::try_from(at - state.now_ms()).unwrap_or(0);
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = state.expiry.notified() => {}
            () = sleep => {
                let due = match state.store.due_shares(state.now_ms()).await {
                    Ok(due) => due,
                    Err(err) => {
                        tracing::error!(%err, "cannot read due shares");
                        Vec::new()
                    }
                };
                for lookup in due {
                    if let Err(err) = end_share(&state, &lookup, ShareState::Expired).await {
                        tracing::error!(%err, "cannot expire share");
                    }
                }
            }
        }
    }
}
