//! Where events go: to the streams this hub holds and, with PostgreSQL, to every other
//! hub on the same database through LISTEN/NOTIFY, so a join, revoke or expiry handled by
//! one hub reaches agents whose stream another hub holds, and every hub's relay learns
//! which agents may talk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use connect_api::StreamEvent;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::public_shares::PublicShares;
use crate::relay::RelayUpdate;
use crate::store::Store;

const CHANNEL: &str = "connect_events";

/// Delivers stream events to the agents they concern, on this hub.
#[derive(Default)]
pub struct Subscribers {
    by_agent: Mutex<HashMap<String, Vec<mpsc::Sender<StreamEvent>>>>,
}

/// Events queued for one slow stream before it is dropped (it reconnects and resyncs).
const STREAM_QUEUE: usize = 256;

impl Subscribers {
    pub fn subscribe(&self, agent_id: &str) -> mpsc::Receiver<StreamEvent> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        if let Ok(mut map) = self.by_agent.lock() {
            map.entry(agent_id.to_owned()).or_default().push(tx);
        }
        rx
    }

    pub fn publish(&self, agent_id: &str, event: &StreamEvent) {
        let Ok(mut map) = self.by_agent.lock() else {
            return;
        };
        if let Some(senders) = map.get_mut(agent_id) {
            senders.retain(|tx| tx.try_send(event.clone()).is_ok());
            if senders.is_empty() {
                map.remove(agent_id);
            }
        }
    }

    pub fn is_connected(&self, agent_id: &str) -> bool {
        self.by_agent
            .lock()
            .map(|map| {
                map.get(agent_id)
                    .is_some_and(|s| s.iter().any(|tx| !tx.is_closed()))
            })
            .unwrap_or(false)
    }
}

/// What one hub tells the others; `origin` lets a hub skip its own.
#[derive(Debug, Serialize, Deserialize)]
struct HubMessage {
    origin: String,
    #[serde(flatten)]
    body: HubBody,
}

/// The JSON shapes are `{"agent", "event"}` and `{"relay": {"allow", "a", "b"}}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum HubBody {
    Event { agent: String, event: StreamEvent },
    Relay { relay: RelayPair },
}

#[derive(Debug, Serialize, Deserialize)]
struct RelayPair {
    allow: bool,
    a: u64,
    b: u64,
}

impl From<RelayUpdate> for RelayPair {
    fn from(update: RelayUpdate) -> Self {
        match update {
            RelayUpdate::Allow(a, b) => Self { allow: true, a, b },
            RelayUpdate::Disallow(a, b) => Self { allow: false, a, b },
        }
    }
}

impl From<RelayPair> for RelayUpdate {
    fn from(pair: RelayPair) -> Self {
        if pair.allow {
            Self::Allow(pair.a, pair.b)
        } else {
            Self::Disallow(pair.a, pair.b)
        }
    }
}

pub struct Events {
    subscribers: Subscribers,
    relay: mpsc::Sender<RelayUpdate>,
    store: Store,
    /// Reloaded when another hub starts or ends a share.
    public: Arc<PublicShares>,
    /// This hub process, so it ignores its own notifications.
    origin: String,
}

impl Events {
    pub fn new(store: Store, relay: mpsc::Sender<RelayUpdate>, public: Arc<PublicShares>) -> Self {
        Self {
            subscribers: Subscribers::default(),
            relay,
            store,
            public,
            origin: format!("{:016x}", rand::random::<u64>()),
        }
    }

    pub fn subscribe(&self, agent_id: &str) -> mpsc::Receiver<StreamEvent> {
        self.subscribers.subscribe(agent_id)
    }

    pub fn is_connected(&self, agent_id: &str) -> bool {
        self.subscribers.is_connected(agent_id)
    }

    /// Delivers `event` to `agent_id`'s streams, here and on every other hub.
    pub async fn publish(&self, agent_id: &str, event: &StreamEvent) {
        self.subscribers.publish(agent_id, event);
        self.notify(HubBody::Event {
            agent: agent_id.to_owned(),
            event: event.clone(),
        })
        .await;
    }

    /// Applies a relay change here and on every other hub.
    pub async fn relay(&self, update: RelayUpdate) {
        let _ = self.relay.send(update).await;
        self.notify(HubBody::Relay {
            relay: update.into(),
        })
        .await;
    }

    async fn notify(&self, body: HubBody) {
        if !self.store.is_postgres() {
            return;
        }
        let message = HubMessage {
            origin: self.origin.clone(),
            body,
        };
        let Ok(payload) = serde_json::to_string(&message) else {
            return;
        };
        if let Err(err) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(self.store.pool())
            .await
        {
            tracing::warn!(%err, "cannot tell the other hubs");
        }
    }

    /// Delivers other hubs' events here until cancelled (PostgreSQL only), reconnecting
    /// when the listening connection drops.
    pub async fn listen(self: Arc<Self>, cancel: CancellationToken) {
        let Some(url) = self.store.postgres_url() else {
            return;
        };
        loop {
            let listener = async {
                let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
                listener.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = tokio::select! {
                () = cancel.cancelled() => return,
                listener = listener => match listener {
                    Ok(listener) => listener,
                    Err(err) => {
                        tracing::warn!(%err, "cannot listen for other hubs; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            loop {
                let notification = tokio::select! {
                    () = cancel.cancelled() => return,
                    n = listener.recv() => n,
                };
                match notification {
                    Ok(n) => self.deliver(n.payload()).await,
                    Err(err) => {
                        tracing::warn!(%err, "lost the other hubs' events; reconnecting");
                        break;
                    }
                }
            }
        }
    }

    async fn deliver(&self, payload: &str) {
        let message = match serde_json::from_str::<HubMessage>(payload) {
            Ok(message) => message,
            Err(err) => {
                tracing::debug!(%err, "ignoring another hub's message");
                return;
            }
        };
        if message.origin == self.origin {
            return;
        }
        match message.body {
            HubBody::Event { agent, event } => {
                if matches!(
                    event,
                    StreamEvent::ShareCreated { .. }
                        | StreamEvent::ShareEnded { .. }
                        | StreamEvent::ShareExtended { .. }
                ) {
                    self.public.changed();
                }
                self.subscribers.publish(&agent, &event);
            }
            HubBody::Relay { relay } => {
                let _ = self.relay.send(relay.into()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_messages_keep_their_json_shapes() {
        let relay = HubMessage {
            origin: "o".into(),
            body: HubBody::Relay {
                relay: RelayUpdate::Disallow(3, 4).into(),
            },
        };
        let text = serde_json::to_string(&relay).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"origin":"o","relay":{"allow":false,"a":3,"b":4}}"#
        );
        let event =
            r#"{"origin":"p","agent":"agt_1","event":{"type":"share_created","lookup":"ab"}}"#;
        let parsed = serde_json::from_str::<HubMessage>(event);
        assert!(
            matches!(
                parsed,
                Ok(HubMessage { body: HubBody::Event { ref agent, .. }, .. }) if agent == "agt_1"
            ),
            "{parsed:?}"
        );
    }
}
