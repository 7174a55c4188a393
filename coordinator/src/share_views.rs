//! The one query layer for shares as people see them: the API (`share --list`,
//! `share --info`) and the dashboard both read through here, so they cannot disagree
//! about what a share's state, URL or join count is, nor about whose shares one may see.

use connect_api::{HttpLogEntry, JoinRecord, Share, ShareInfo};

use crate::addresses::machine_ip;
use crate::clock::time_of;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{JoinRow, LogPage, ShareRow, StoreError};

/// Whose shares a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// An agent: its own shares only.
    Agent(&'a str),
    /// The hub's admin: every share.
    Admin,
}

impl Scope<'_> {
    fn may_see(&self, row: &ShareRow) -> bool {
        match self {
            Scope::Agent(id) => row.agent_id == *id,
            Scope::Admin => true,
        }
    }
}

pub fn to_share(state: &AppState, row: &ShareRow, joined: usize) -> Share {
    Share {
        lookup: row.lookup.clone(),
        name: row.name.clone(),
        public_name: row.public_name.clone(),
        url: row.http_port.map(|_| {
            state
                .settings
                .public_url
                .share_url(&row.public_name, &state.settings.domain)
        }),
        machine_ip: machine_ip(row.block),
        created_at: time_of(row.created_at),
        expires_at: time_of(row.expires_at),
        state: row.state_at(state.now_ms()),
        routes: row.routes.clone(),
        all_ports: row.all_ports.clone(),
        joined: u32::try_from(joined).unwrap_or(u32::MAX),
        ssh_user: row.ssh_user.clone(),
    }
}

/// The shares a caller may see, newest first, each with its row (owner, limits).
pub async fn list(
    state: &AppState,
    scope: Scope<'_>,
) -> Result<Vec<(Share, ShareRow)>, StoreError> {
    let (rows, counts) = match scope {
        Scope::Agent(id) => (
            state.store.shares_of(id).await?,
            state.store.join_counts(Some(id)).await?,
        ),
        Scope::Admin => (
            state.store.all_shares().await?,
            state.store.join_counts(None).await?,
        ),
    };
    Ok(rows
        .into_iter()
        .map(|row| {
            let joined = counts.get(&row.lookup).copied().unwrap_or(0);
            (to_share(state, &row, joined), row)
        })
        .collect())
}

/// A share the caller may see, or 404 (never 403: others' shares are not revealed).
///
/// # Errors
/// [`ApiError::ShareNotFound`] for a share that does not exist or is someone else's.
pub async fn owned(state: &AppState, scope: Scope<'_>, lookup: &str) -> Result<ShareRow, ApiError> {
    match state.store.share(lookup).await? {
        Some(row) if scope.may_see(&row) => Ok(row),
        _ => Err(ApiError::ShareNotFound),
    }
}

/// A share the caller may see, as people see it, with its joins.
pub struct Details {
    pub row: ShareRow,
    pub share: Share,
    pub joins: Vec<JoinRecord>,
}

/// # Errors
/// As [`owned`], or a failing database.
pub async fn details(
    state: &AppState,
    scope: Scope<'_>,
    lookup: &str,
) -> Result<Details, ApiError> {
    let row = owned(state, scope, lookup).await?;
    let joins = state.store.joins_of(lookup).await?;
    Ok(Details {
        share: to_share(state, &row, joins.len()),
        joins: joins.iter().map(join_record).collect(),
        row,
    })
}

/// A share with its joins and the newest entries of its access log (`share --info`).
///
/// # Errors
/// As [`owned`], or a failing database.
pub async fn info(state: &AppState, scope: Scope<'_>, lookup: &str) -> Result<ShareInfo, ApiError> {
    let details = details(state, scope, lookup).await?;
    Ok(ShareInfo {
        share: details.share,
        joins: details.joins,
        http_log: state.store.http_log(lookup).await?,
    })
}

fn join_record(join: &JoinRow) -> JoinRecord {
    JoinRecord {
        agent: join.agent_name.clone(),
        at: time_of(join.at),
        from: join.from_addr.clone(),
    }
}

/// One page of a share's access log, newest first (the dashboard's view).
///
/// # Errors
/// A failing database.
pub async fn log_page(
    state: &AppState,
    row: &ShareRow,
    page: &LogPage,
) -> Result<Vec<HttpLogEntry>, StoreError> {
    state.store.http_log_page(&row.lookup, page).await
}
