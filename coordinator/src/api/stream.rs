//! The long-lived event stream each agent holds (server-sent events): a snapshot of its
//! shares' joiners first, then joins and share ends as they happen.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use connect_api::{JoinedPeer, StreamEvent, WireKey};
use futures_util::Stream;
use futures_util::stream;

use super::Agent;
use crate::addresses::joiner_ip;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn stream(
    State(state): State<AppState>,
    Agent(agent): Agent,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before reading the snapshot, so nothing between the two is lost.
    let receiver = state.events.subscribe(&agent.id);
    // Joins of this agent's shares relay through the hub that holds its stream.
    state
        .store
        .set_home_relay(&agent.id, &state.settings.relay)
        .await?;
    let mut blocks = HashMap::new();
    let mut peers = Vec::new();
    for join in state.store.live_joins_for_sharer(&agent.id).await? {
        let block = match blocks.get(&join.share_lookup) {
            Some(block) => *block,
            None => {
                let Some(share) = state.store.share(&join.share_lookup).await? else {
                    continue;
                };
                blocks.insert(join.share_lookup.clone(), share.block);
                share.block
            }
        };
        let Some(public_key) = WireKey::from_base64(&join.public_key) else {
            continue;
        };
        peers.push(JoinedPeer {
            lookup: join.share_lookup,
            public_key,
            key_mac: join.key_mac,
            allowed_ip: joiner_ip(block, join.joiner_host),
            relay_id: join.relay_id,
            agent: join.agent_name,
            candidates: Vec::new(),
            userspace: false,
        });
    }
    let snapshot = StreamEvent::Snapshot { peers };
    let events = stream::once(async move { snapshot })
        .chain(stream::unfold(receiver, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        }));
    let events = futures_util::StreamExt::map(events, |event| {
        Ok(Event::default()
            .json_data(&event)
            .unwrap_or_else(|_| Event::default().comment("encode error")))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

use futures_util::StreamExt as _;
