//! What every handler shares: the store, the injected clock and id source, the per-agent
//! event subscribers, the relay's update channel and the metrics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use connect_api::StreamEvent;
use tokio::sync::{Notify, mpsc};

use crate::clock::Clock;
use crate::store::Store;

/// Tokens, relay slots and public names, from one place, so tests can control them.
pub trait Ids: Send + Sync {
    /// A secret of at least 128 bits, URL-safe.
    fn secret(&self, prefix: &str) -> String;
    fn id(&self, prefix: &str) -> String;
    fn relay_slot(&self) -> u64;
    /// adjective-animal-NNNN
    fn public_name(&self) -> String;
}

pub struct RandomIds;

impl Ids for RandomIds {
    fn secret(&self, prefix: &str) -> String {
        use base64::Engine;
        let bytes: [u8; 24] = rand::random();
        format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}{}", hex::encode(rand::random::<[u8; 8]>()))
    }

    fn relay_slot(&self) -> u64 {
        // Positive in an i64 column on both databases.
        rand::random::<u64>() >> 2
    }

    fn public_name(&self) -> String {
        let name = petname::petname(2, "-").unwrap_or_else(|| "quiet-otter".to_owned());
        format!("{name}-{:04}", rand::random::<u16>() % 10_000)
    }
}

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

#[derive(Default)]
pub struct Metrics {
    pub shares_created: AtomicU64,
    pub joins: AtomicU64,
    pub relay_packets: AtomicU64,
    pub relay_bytes: AtomicU64,
    pub relay_dropped: AtomicU64,
    pub proxy_requests: AtomicU64,
    pub errors: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Static settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Public share URLs are `SCHEME://NAME.DOMAIN[:PORT]`.
    pub domain: String,
    /// How agents reach this hub; its scheme and port also shape share URLs.
    pub public_url: String,
    /// The relay address agents should send to, `HOST:PORT`.
    pub relay: String,
    pub open_registration: bool,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
    pub settings: Arc<Settings>,
    /// Stream events and relay changes, to this hub and the others.
    pub events: Arc<crate::events::Events>,
    pub metrics: Arc<Metrics>,
    /// Wakes the expiry timer when a share with an earlier deadline appears.
    pub expiry: Arc<Notify>,
    /// The hub's own WireGuard peer for public HTTP shares, when running as a server.
    pub hub_peer: Option<crate::proxy::Shared>,
    /// Pooled HTTP connections over `hub_peer` to sharing machines.
    pub upstream: Option<Arc<crate::upstream::Upstream>>,
}

impl AppState {
    pub fn now_ms(&self) -> i64 {
        crate::clock::unix_ms(self.clock.now())
    }
}
