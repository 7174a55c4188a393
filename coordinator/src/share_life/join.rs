//! Joining a share: the hub hands the joiner the sharer's key (with the sharer's MAC
//! under the code, which the joiner checks) and tells the sharer about the joiner (with
//! the joiner's MAC, which the sharer checks), then opens their relay pair. The hub
//! cannot forge either MAC.

use std::net::SocketAddr;

use connect_api::{JoinRequest, JoinResponse, JoinedPeer, ShareState, StreamEvent, WireKey};

use crate::addresses::{joiner_ip, machine_ip};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::relay::RelayUpdate;
use crate::state::AppState;
use crate::store::{AgentRow, JoinError, StoreError};
use crate::validate::is_hex_64;

/// # Errors
/// An unknown or ended share, a full share, a corrupt sharer row.
pub async fn join(
    state: &AppState,
    agent: &AgentRow,
    req: &JoinRequest,
    from: String,
) -> Result<JoinResponse, ApiError> {
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
    if let Some(max) = share.max_joins {
        // The sharing agent enforces the limit; refusing here too tells the joiner why.
        let joins = state.store.joins_of(&share.lookup).await?;
        let seen = joins.iter().any(|j| j.agent_id == agent.id);
        if !seen && joins.len() >= usize::try_from(max).unwrap_or(usize::MAX) {
            return Err(ApiError::Gone(
                "this share code has been used by as many joiners as its sharer allowed (--max-joins)",
            ));
        }
    }
    let sharer = state
        .store
        .agent(&share.agent_id)
        .await?
        .ok_or(ApiError::ShareNotFound)?;
    let sharer_key = stored_key(&sharer.public_key, "sharer key")?;
    let joiner_key = stored_key(&agent.public_key, "joiner key")?;
    let (joined, first) = match state
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
    let peer = JoinedPeer {
        lookup: share.lookup.clone(),
        public_key: joiner_key,
        key_mac: req.key_mac.clone(),
        allowed_ip: joiner_address,
        relay_id: agent.relay_id,
        agent: agent.name.clone(),
        candidates: candidates(&req.candidates),
        userspace: req.userspace,
    };
    announce(state, &share.agent_id, sharer.relay_id, peer, first).await;
    tracing::info!(share = %share.public_name, agent = %agent.id, %from, "joined");
    Ok(JoinResponse {
        name: share.name,
        machine_ip: machine_ip(share.block),
        joiner_ip: joiner_address,
        sharer_public_key: sharer_key,
        sharer_key_mac: share.key_mac.clone(),
        sharer_relay_id: sharer.relay_id,
        relay: sharer
            .home_relay
            .clone()
            .unwrap_or_else(|| state.settings.relay.clone()),
        routes: share.routes,
        all_ports: share.all_ports,
        ssh_user: share.ssh_user,
        expires_at: crate::clock::time_of(share.expires_at),
        approve: share.approve,
    })
}

/// What a join tells the rest of the hub: the sharer's stream hears of the joiner (whose
/// MAC it checks), and the relay opens the pair on the agent's first join of the share
/// only: ending the share closes it once per join row, so a repeated join must not leave
/// the pair counted twice.
async fn announce(
    state: &AppState,
    sharer_agent: &str,
    sharer_slot: u64,
    peer: JoinedPeer,
    first: bool,
) {
    let joiner_slot = peer.relay_id;
    state
        .events
        .publish(sharer_agent, &StreamEvent::PeerJoined { peer })
        .await;
    if first {
        state
            .events
            .relay(RelayUpdate::Allow(sharer_slot, joiner_slot))
            .await;
    }
    Metrics::add(&state.metrics.joins, 1);
}

/// A WireGuard key as the database keeps it; one that does not decode is corrupt, never
/// a placeholder.
fn stored_key(base64: &str, what: &str) -> Result<WireKey, ApiError> {
    WireKey::from_base64(base64).ok_or_else(|| ApiError::Internal(StoreError::Corrupt(what.into())))
}

/// A joiner's candidates as passed on to its sharer: at most 8, and only addresses a
/// peer could be at (no loopback, unspecified, multicast or port 0).
fn candidates(offered: &[SocketAddr]) -> Vec<SocketAddr> {
    offered
        .iter()
        .filter(|addr| {
            let ip = addr.ip();
            addr.port() != 0 && !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast()
        })
        .take(8)
        .copied()
        .collect()
}
