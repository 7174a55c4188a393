//! Shares over HTTP: create, list, info and revoke; what creating and ending do is
//! `share_life`'s.
//! Shares are addressed by the lookup value the agent derives from the code; the hub
//! never sees or stores the code itself.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use connect_api::{CreateShareRequest, JoinRecord, Share, ShareInfo, ShareList, ShareState};

use super::{Agent, Body};
use crate::addresses::machine_ip;
use crate::clock::time_of;
use crate::error::ApiError;
use crate::share_life;
use crate::state::AppState;
use crate::store::ShareRow;

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

pub async fn create(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Body(req): Body<CreateShareRequest>,
) -> Result<(StatusCode, Json<Share>), ApiError> {
    let row = share_life::create(&state, &agent, req).await?;
    Ok((StatusCode::CREATED, Json(to_share(&state, &row, 0))))
}

pub async fn list(
    State(state): State<AppState>,
    Agent(agent): Agent,
) -> Result<Json<ShareList>, ApiError> {
    let mut shares = Vec::new();
    for row in state.store.shares_of(&agent.id).await? {
        let joined = state.store.joins_of(&row.lookup).await?.len();
        shares.push(to_share(&state, &row, joined));
    }
    Ok(Json(ShareList { shares }))
}

/// A share of the calling agent, or 404 (never 403: others' shares are not revealed).
async fn own_share(state: &AppState, agent_id: &str, lookup: &str) -> Result<ShareRow, ApiError> {
    match state.store.share(lookup).await? {
        Some(row) if row.agent_id == agent_id => Ok(row),
        _ => Err(ApiError::ShareNotFound),
    }
}

pub async fn info(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(lookup): Path<String>,
) -> Result<Json<ShareInfo>, ApiError> {
    let row = own_share(&state, &agent.id, &lookup).await?;
    let joins = state.store.joins_of(&lookup).await?;
    Ok(Json(ShareInfo {
        share: to_share(&state, &row, joins.len()),
        joins: joins
            .into_iter()
            .map(|j| JoinRecord {
                agent: j.agent_name,
                at: time_of(j.at),
                from: j.from_addr,
            })
            .collect(),
        http_log: state.store.http_log(&lookup).await?,
    }))
}

pub async fn revoke(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(lookup): Path<String>,
) -> Result<Json<Share>, ApiError> {
    let row = own_share(&state, &agent.id, &lookup).await?;
    if row.state_at(state.now_ms()) != ShareState::Active {
        return Err(ApiError::ShareEnded);
    }
    share_life::end_share(&state, &lookup, ShareState::Revoked).await?;
    let row = own_share(&state, &agent.id, &lookup).await?;
    let joined = state.store.joins_of(&lookup).await?.len();
    Ok(Json(to_share(&state, &row, joined)))
}
