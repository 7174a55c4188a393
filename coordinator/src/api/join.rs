//! `POST /v1/join`: HTTP only; what a join does is `share_life::join`.

use axum::Json;
use axum::extract::State;
use connect_api::{JoinRequest, JoinResponse};

use super::{Agent, Body};
use crate::client::ClientAddr;
use crate::error::ApiError;
use crate::share_life;
use crate::state::AppState;

pub async fn join(
    State(state): State<AppState>,
    Agent(agent): Agent,
    ClientAddr(client): ClientAddr,
    Body(req): Body<JoinRequest>,
) -> Result<Json<JoinResponse>, ApiError> {
    if let Some(addr) = client {
        state.limits.join(addr.ip(), &agent.id)?;
    }
    let from = client.map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string());
    share_life::join(&state, &agent, &req, from).await.map(Json)
}
