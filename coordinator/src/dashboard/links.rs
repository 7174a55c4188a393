//! One-time login links: `connect dashboard` (for the calling agent, through the API) and
//! `connect-coordinator admin-link` (for the admin, straight on the database). Only the
//! link's hash is stored; it works once, for [`LINK_TTL_MS`].

use crate::ids::Ids;
use crate::public_url::PublicUrl;
use crate::secrets::hash_secret;
use crate::store::{Store, StoreError};

/// How long a login link may wait for its click.
pub const LINK_TTL_MS: i64 = 5 * 60_000;

/// Where a login link's token is taken (its path, then the token).
pub const LOGIN_PATH: &str = "/login/";

/// A new login link under `base` for `agent_id` (`None`: the admin).
///
/// # Errors
/// A failing database.
pub async fn create(
    store: &Store,
    ids: &dyn Ids,
    base: &PublicUrl,
    agent_id: Option<&str>,
    now_ms: i64,
) -> Result<String, StoreError> {
    let token = ids.secret("cl_");
    store
        .insert_login_link(&hash_secret(&token), agent_id, now_ms + LINK_TTL_MS)
        .await?;
    Ok(format!(
        "{}{LOGIN_PATH}{token}",
        base.to_string().trim_end_matches('/')
    ))
}
