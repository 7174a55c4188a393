//! Registration: enrollment keys, open registration and guests.

use axum::Json;
use axum::extract::State;
use connect_api::{AgentInfo, RegisterRequest, RegisterResponse, Token};

use super::{Agent, Body};
use crate::client::ClientAddr;
use crate::error::ApiError;
use crate::secrets::{hash_secret, relay_key_hex};
use crate::state::AppState;
use crate::store::AgentRow;

const MAX_NAME: usize = 64;

pub async fn register(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Body(req): Body<RegisterRequest>,
) -> Result<Json<RegisterResponse>, ApiError> {
    if let Some(addr) = client {
        state.limits.register(addr.ip())?;
    }
    let name = req.name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid(format!(
            "agent name must be 1 to {MAX_NAME} printable characters"
        )));
    }
    let now = state.now_ms();
    // Guests may only join shares, so they need no key; anyone else does unless the hub
    // runs with --open-registration.
    if !req.guest && !state.settings.open_registration {
        let key = req.auth_key.as_deref().ok_or(ApiError::Forbidden(
            "this hub needs an enrollment key: connect up --auth-key KEY",
        ))?;
        if !state.store.use_key(&hash_secret(key.trim()), now).await? {
            return Err(ApiError::Forbidden(
                "enrollment key is unknown, used, expired or revoked",
            ));
        }
    }
    let token = state.ids.secret("ct_");
    let agent = AgentRow {
        id: state.ids.id("ag_"),
        name: name.to_owned(),
        public_key: req.public_key.to_base64(),
        relay_key: relay_key_hex(&token),
        relay_id: state.ids.relay_slot(),
        guest: req.guest,
        home_relay: None,
    };
    state
        .store
        .insert_agent(&agent, &hash_secret(&token), now)
        .await?;
    tracing::info!(agent = %agent.id, name = %agent.name, guest = agent.guest, "agent registered");
    Ok(Json(RegisterResponse {
        agent_id: agent.id,
        token: Token(token),
        relay_id: agent.relay_id,
        relay: state.settings.relay.to_string(),
    }))
}

pub async fn me(State(state): State<AppState>, Agent(agent): Agent) -> Json<AgentInfo> {
    Json(AgentInfo {
        agent_id: agent.id,
        name: agent.name,
        relay_id: agent.relay_id,
        relay: state.settings.relay.to_string(),
        guest: agent.guest,
        hub_peer: state.hub_peer.as_ref().map(|hub| hub.wire()),
    })
}
