//! Once an hour (and at start): the store forgets old access-log rows and idle guests,
//! and the rate limiters forget callers whose buckets are full again.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::AppState;

const EVERY: Duration = Duration::from_secs(3600);

pub async fn run(state: AppState, cancel: CancellationToken) {
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match state.store.prune(state.now_ms()).await {
            Ok(pruned) if pruned != crate::store::Pruned::default() => {
                tracing::info!(log_rows = pruned.log_rows, guests = pruned.guests, "pruned");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "cannot prune the store"),
        }
        state.limits.prune();
    }
}
