//! What a share's owner does to it after creating it, from the CLI or the dashboard alike:
//! revoke it, or move its deadline. Both go through [`share_views::owned`], so nobody
//! acts on a share they may not see.

use connect_api::{Share, ShareState, StreamEvent};

use super::end_share;
use crate::error::ApiError;
use crate::share_views::{self, Scope};
use crate::state::AppState;

/// Ends an active share on its owner's (or the admin's) word: `share --revoke` and the
/// dashboard's button.
///
/// # Errors
/// Not the caller's share, already ended, a failing database.
pub async fn revoke(state: &AppState, scope: Scope<'_>, lookup: &str) -> Result<Share, ApiError> {
    let row = share_views::owned(state, scope, lookup).await?;
    if row.state_at(state.now_ms()) != ShareState::Active {
        return Err(ApiError::ShareEnded);
    }
    end_share(state, lookup, ShareState::Revoked).await?;
    let row = share_views::owned(state, scope, lookup).await?;
    let joined = state.store.joins_of(lookup).await?.len();
    Ok(share_views::to_share(state, &row, joined))
}

/// The longest a share may live from now, as `share --expires` allows.
const MAX_EXTENSION_MS: i64 = 365 * 86_400_000;

/// Moves an active share's deadline `by_ms` later. The sharing agent keeps its own
/// deadline and ends the share then whatever the hub says, so it hears of the new one.
///
/// # Errors
/// Not the caller's share, already ended, a failing database.
pub async fn extend(
    state: &AppState,
    scope: Scope<'_>,
    lookup: &str,
    by_ms: i64,
) -> Result<i64, ApiError> {
    let row = share_views::owned(state, scope, lookup).await?;
    let now = state.now_ms();
    if row.state_at(now) != ShareState::Active {
        return Err(ApiError::ShareEnded);
    }
    let expires_at = row
        .expires_at
        .saturating_add(by_ms)
        .min(now.saturating_add(MAX_EXTENSION_MS));
    if !state.store.extend_share(lookup, expires_at).await? {
        return Err(ApiError::ShareEnded);
    }
    let event = StreamEvent::ShareExtended {
        lookup: lookup.to_owned(),
        expires_at: crate::clock::time_of(expires_at),
    };
    state.events.publish(&row.agent_id, &event).await;
    state.public.changed();
    tracing::info!(share = %row.public_name, "share extended");
    Ok(expires_at)
}
