//! Joining a share: the hub hands the joiner the sharer's key (with the sharer's MAC
//! under the code, which the joiner checks) and tells the sharer about the joiner (with
//! the joiner's MAC, which the sharer checks). The hub cannot forge either MAC.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::Extensions;
use connect_api::{JoinRequest, JoinResponse, JoinedPeer, ShareState, StreamEvent, WireKey};

use super::shares::is_hex_64;
use super::{Agent, Body};
use crate::addresses::{joiner_ip, machine_ip};
use crate::error::ApiError;
use crate::relay::RelayUpdate;
use crate::state::{AppState, Metrics};
use crate::store::JoinError;

/// The peer address of the request's connection, when the server recorded one.
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_addr(&parts.extensions)))
    }
}

pub fn client_addr(extensions: &Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

pub async fn join(
    State(state): State<AppState>,
    Agent(agent): Agent,
    ClientAddr(client): ClientAddr,
    Body(req): Body<JoinRequest>,
) -> Result<Json<JoinResponse>, ApiError> {
    if !is_hex_64(&req.key_mac) {
        return Err(ApiError::Invalid("key_mac must be 64 hex digits".into()));
    }
    let now = state.now_ms();
    let share = match state.store.share(&req.lookup).await? {
        Some(share) if share.state_at(now) == ShareState::Active => share,
        _ => {
            return Err(ApiError::ShareNotFound);
        }
    };
    let sharer = state
        .store
        .agent(&share.agent_id)
        .await?
        .ok_or(ApiError::ShareNotFound)?;
    let sharer_key = WireKey::from_base64(&sharer.public_key).ok_or_else(|| {
        ApiError::Internal(crate::store::StoreError::Corrupt("sharer key".into()))
    })?;
    let from = client.map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string());
    let joined = match state
        .store
        .record_join(
            &share.lookup,
            &agent.id,
            &agent.public_key,
            &req.key_mac,
            &from,
            now,
        )
        .await
    {
        Ok(joined) => joined,
        Err(JoinError::Full) => {
            return Err(ApiError::Conflict("this share has no free address left"));
        }
        Err(JoinError::Store(err)) => return Err(err.into()),
    };
    let joiner_address = joiner_ip(share.block, joined.joiner_host);
    state
        .events
        .publish(
            &share.agent_id,
            &StreamEvent::PeerJoined {
                peer: JoinedPeer {
                    lookup: share.lookup.clone(),
                    public_key: WireKey::from_base64(&agent.public_key).unwrap_or(WireKey([0; 32])),
                    key_mac: req.key_mac.clone(),
                    allowed_ip: joiner_address,
                    relay_id: agent.relay_id,
                    agent: agent.name.clone(),
                },
            },
        )
        .await;
    state
        .events
        .relay(RelayUpdate::Allow(sharer.relay_id, agent.relay_id))
        .await;
    Metrics::add(&state.metrics.joins, 1);
    tracing::info!(share = %share.public_name, agent = %agent.id, %from, "joined");
    Ok(Json(JoinResponse {
        name: share.name,
        machine_ip: machine_ip(share.block),
        joiner_ip: joiner_address,
        sharer_public_key: sharer_key,
        sharer_key_mac: share.key_mac,
        sharer_relay_id: sharer.relay_id,
        relay: sharer
            .home_relay
            .clone()
            .unwrap_or_else(|| state.settings.relay.clone()),
        routes: share.routes,
        all_ports: share.all_ports,
        ssh_user: share.ssh_user,
        expires_at: time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(share.expires_at) * 1_000_000,
        )
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    }))
}
