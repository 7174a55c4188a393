//! `connect dashboard`: a one-time login link for the calling agent; the running agent's
//! reports of its joiners, which the dashboard shows; and its refusals of joiners, which
//! the hub passes on to them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use connect_api::{DashboardLink, Decision, PeerReport, StreamEvent};

use super::{Agent, Body};
use crate::dashboard::links;
use crate::error::ApiError;
use crate::share_views::{self, Scope};
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

/// The sharing agent refused a joiner of its share: the joiner hears it and stops waiting.
pub async fn decision(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(lookup): Path<String>,
    Body(decision): Body<Decision>,
) -> Result<StatusCode, ApiError> {
    let share = share_views::owned(&state, Scope::Agent(&agent.id), &lookup).await?;
    if !decision.approved
        && let Some(join) = state
            .store
            .joins_of(&share.lookup)
            .await?
            .into_iter()
            .find(|j| j.public_key == decision.public_key)
    {
        let event = StreamEvent::JoinDenied {
            lookup: share.lookup.clone(),
        };
        state.events.publish(&join.agent_id, &event).await;
    }
    Ok(StatusCode::NO_CONTENT)
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
