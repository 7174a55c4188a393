//! A share's SSH key: validated when the share is made, handed only to agents that
//! joined the share. The hub stores it encrypted and never learns the password.

use axum::Json;
use axum::extract::{Path, State};
use connect_api::{ShareState, SshKey};

use super::Agent;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /v1/shares/{lookup}/ssh-key`, for an agent that joined the live share.
pub async fn key(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(lookup): Path<String>,
) -> Result<Json<SshKey>, ApiError> {
    state.limits.ssh_key(&agent.id)?;
    let share = match state.store.share(&lookup).await? {
        Some(share) if share.state_at(state.now_ms()) == ShareState::Active => share,
        _ => return Err(ApiError::ShareNotFound),
    };
    let joined = state
        .store
        .joins_of(&lookup)
        .await?
        .iter()
        .any(|j| j.agent_id == agent.id);
    if !joined {
        return Err(ApiError::Forbidden(
            "join the share before asking for its SSH key",
        ));
    }
    let Some(user) = share.ssh_user else {
        return Err(ApiError::NoSsh);
    };
    match state.store.take_ssh_key(&lookup).await? {
        Some(encrypted_key) => {
            tracing::info!(share = %share.public_name, agent = %agent.id, "ssh key downloaded");
            Ok(Json(SshKey {
                user,
                encrypted_key,
            }))
        }
        None => Err(ApiError::Gone(
            "this share's one-time SSH key was already used (--ssh-once)",
        )),
    }
}
