//! Shares over HTTP: create, list, info and revoke; what creating and ending do is
//! `share_life`'s.
//! Shares are addressed by the lookup value the agent derives from the code; the hub
//! never sees or stores the code itself.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use connect_api::{CreateShareRequest, Share, ShareInfo, ShareList};

use super::{Agent, Body};
use crate::error::ApiError;
use crate::share_life;
use crate::share_views::{self, Scope, to_share};
use crate::state::AppState;

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
    let shares = share_views::list(&state, Scope::Agent(&agent.id)).await?;
    Ok(Json(ShareList {
        shares: shares.into_iter().map(|(share, _)| share).collect(),
    }))
}

pub async fn info(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(lookup): Path<String>,
) -> Result<Json<ShareInfo>, ApiError> {
    Ok(Json(
        share_views::info(&state, Scope::Agent(&agent.id), &lookup).await?,
    ))
}

/// The one path that ends a share on someone's word, the CLI's and the dashboard's.
pub async fn revoke(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(lookup): Path<String>,
) -> Result<Json<Share>, ApiError> {
    Ok(Json(
        share_life::revoke(&state, Scope::Agent(&agent.id), &lookup).await?,
    ))
}
