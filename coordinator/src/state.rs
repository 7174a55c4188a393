//! What every handler shares: the store, the injected clock and id source, the per-agent
//! event subscribers, the relay's update channel and the metrics.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::ids::Ids;
use crate::metrics::Metrics;
use crate::store::Store;

/// Static settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Public share URLs are `SCHEME://NAME.DOMAIN[:PORT]`.
    pub domain: String,
    /// How agents reach this hub; its scheme and port also shape share URLs.
    pub public_url: crate::public_url::PublicUrl,
    /// The relay address agents should send to, `HOST:PORT`.
    pub relay: String,
    /// The second UDP port that answers netcheck probes, `HOST:PORT`, when bound.
    pub probe: Option<String>,
    pub open_registration: bool,
    /// `/metrics` answers requests bearing this token; without one, loopback only.
    pub metrics_token: Option<String>,
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
    pub hub_peer: Option<crate::hub_peer::Shared>,
    /// Relay streams (the relay over TCP/TLS) meet the relay thread here.
    pub relay_streams: Arc<crate::relay_stream::Streams>,
    /// Pooled HTTP connections over `hub_peer` to sharing machines.
    pub upstream: Option<Arc<crate::upstream::Upstream>>,
    /// Rate limits per source address and per agent.
    pub limits: Arc<crate::limits::Limits>,
    /// The live public shares by name, for the proxy.
    pub public: Arc<crate::public_shares::PublicShares>,
    /// Where finished public requests leave their access-log rows.
    pub access_log: crate::access_log::AccessLog,
    /// Public-URL credentials already checked against their slow hash.
    pub passwords: Arc<crate::basic_auth::Checked>,
    /// What sharing agents last reported of their joiners, for the dashboard.
    pub live_peers: Arc<crate::live_peers::LivePeers>,
}

impl AppState {
    pub fn now_ms(&self) -> i64 {
        crate::clock::unix_ms(self.clock.now())
    }
}
