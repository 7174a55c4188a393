//! Where events go: to the streams this hub holds and, with PostgreSQL, to every other
//! hub on the same database through LISTEN/NOTIFY, so a join, revoke or expiry handled by
//! one hub reaches agents whose stream another hub holds, and every hub's relay learns
//! which agents may talk.

use std::sync::Arc;

use connect_api::StreamEvent;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::relay::RelayUpdate;
use crate::state::Subscribers;
use crate::store::Store;

const CHANNEL: &str = "connect_events";

pub struct Events {
    subscribers: Subscribers,
    relay: mpsc::Sender<RelayUpdate>,
    store: Store,
    /// This hub process, so it ignores its own notifications.
    origin: String,
}

impl Events {
    pub fn new(store: Store, relay: mpsc::Sender<RelayUpdate>) -> Self {
        Self {
            subscribers: Subscribers::default(),
            relay,
            store,
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
        self.notify(json!({ "agent": agent_id, "event": event }))
            .await;
    }

    /// Applies a relay change here and on every other hub.
    pub async fn relay(&self, update: RelayUpdate) {
        let _ = self.relay.send(update).await;
        let (allow, a, b) = match update {
            RelayUpdate::Allow(a, b) => (true, a, b),
            RelayUpdate::Disallow(a, b) => (false, a, b),
        };
        self.notify(json!({ "relay": { "allow": allow, "a": a, "b": b } }))
            .await;
    }

    async fn notify(&self, mut payload: Value) {
        if !self.store.is_postgres() {
            return;
        }
        payload["origin"] = Value::String(self.origin.clone());
        if let Err(err) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload.to_string())
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
        let Ok(value) = serde_json::from_str::<Value>(payload) else {
            return;
        };
        if value["origin"].as_str() == Some(self.origin.as_str()) {
            return;
        }
        if let (Some(agent), Ok(event)) = (
            value["agent"].as_str(),
            serde_json::from_value::<StreamEvent>(value["event"].clone()),
        ) {
            self.subscribers.publish(agent, &event);
        } else if let (Some(allow), Some(a), Some(b)) = (
            value["relay"]["allow"].as_bool(),
            value["relay"]["a"].as_u64(),
            value["relay"]["b"].as_u64(),
        ) {
            let update = if allow {
                RelayUpdate::Allow(a, b)
            } else {
                RelayUpdate::Disallow(a, b)
            };
            let _ = self.relay.send(update).await;
        }
    }
}
