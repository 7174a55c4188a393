//! `connect dashboard`: a one-time login link for the calling agent; and the running
//! agent's reports of its joiners, which the dashboard shows.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use connect_api::{DashboardLink, PeerReport};

use super::{Agent, Body};
use crate::dashboard::links;
use crate::error::ApiError;
use crate::state::AppState;

/// Reports hold at most this many peers and pending joiners each.
const MAX_REPORTED: usize = 1024;

pub async fn link(
    State(state): State<AppState>,
    Agent(agent): Agent,
) -> Result<Json<DashboardLink>, ApiError> {
    let url = links::create(
        &state.store,
        state.ids.as_ref(),
        &state.settings.public_url,
        Some(&agent.id),
        state.now_ms(),
    )
    .await?;
    Ok(Json(DashboardLink { url }))
}

pub async fn report(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Body(report): Body<PeerReport>,
) -> Result<StatusCode, ApiError> {
    if report.peers.len() > MAX_REPORTED || report.pending.len() > MAX_REPORTED {
        return Err(ApiError::Invalid(format!(
            "at most {MAX_REPORTED} peers per report"
        )));
    }
    state.live_peers.put(&agent.id, report, state.now_ms());
    Ok(StatusCode::NO_CONTENT)
}
