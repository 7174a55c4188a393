//! The running agent's state: which joiners are WireGuard peers, the hub's own peer for
//! public URLs, and what `status` reports.
//!
//! The sharer decides: a joiner is added only if the share code (kept on this machine)
//! vouches for its key, only with an address inside the share's block, and only with the
//! routes this machine snapshotted when it made the share. Nothing the hub sends widens it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use connect_api::{
    Decision, HubPeer, JoinedPeer, PeerReport, PendingJoiner, ReportedPeer, ShareState, StreamEvent,
};
use connect_netstack::io::{Netstack, PeerSet};
use connect_netstack::{
    Ipv4Net, PeerConfig, Policy, Protocol, PublicKey, RelayTransport, Route, Target, relay,
};
use serde_json::json;

use super::policy::policy_of;
use super::shares::ShareBook;
use crate::code::{Role, ShareCode};
use crate::config::{LocalShare, Verdict};
use crate::error::Fail;
use crate::hub::Hub;
use crate::output;

/// WireGuard keepalive towards joiners: keeps the relay's and NATs' mappings warm.
const KEEPALIVE_SECS: u16 = 25;

/// A joiner as this agent knows it.
struct Joiner {
    lookup: String,
    agent: String,
}

pub(super) struct Agent<'a> {
    net: &'a Netstack,
    /// Print what happens (not under `--json`).
    chatty: bool,
    shares: ShareBook,
    /// Joiners the share codes vouch for, as WireGuard peers.
    joiners: PeerSet,
    /// Who each joiner is: for `status`, and to cut off a share's joiners when it ends.
    joined: HashMap<PublicKey, Joiner>,
    pub(super) hub_connected: bool,
    /// The hub's own peer, which fetches this machine's public HTTP shares.
    hub_peer: Option<HubPeer>,
    /// That peer while a public share is live; empty otherwise.
    hub: PeerSet,
    /// The last peer report to the hub had something in it.
    reported: bool,
    /// Joiners of `--approve` shares waiting for the sharer's word.
    pending: HashMap<PublicKey, JoinedPeer>,
    /// The hub's API, to pass refusals on to the joiners.
    hub_api: Hub,
}

impl<'a> Agent<'a> {
    pub(super) fn new(
        net: &'a Netstack,
        shares: ShareBook,
        hub_peer: Option<HubPeer>,
        hub_api: Hub,
        chatty: bool,
    ) -> Self {
        Self {
            net,
            chatty,
            shares,
            joiners: PeerSet::new(),
            joined: HashMap::new(),
            hub_connected: false,
            hub_peer,
            hub: PeerSet::new(),
            reported: false,
            pending: HashMap::new(),
            hub_api,
        }
    }

    pub(super) fn shares(&self) -> &[LocalShare] {
        self.shares.all()
    }

    pub(super) async fn apply(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Snapshot { peers } => {
                let mut who = HashMap::new();
                let mut wanted: Vec<PeerConfig> = Vec::new();
                for peer in peers {
                    if let Some(config) = self.vouched(&peer)
                        && self.admitted(&peer)
                    {
                        who.insert(config.public_key, peer);
                        wanted.push(config);
                    }
                }
                let _ = self.net.set_addresses(self.shares.live_addresses()).await;
                let Ok(changes) = self.joiners.set(self.net, wanted).await else {
                    return;
                };
                for key in changes.removed {
                    self.joined.remove(&key);
                }
                for key in changes.added {
                    if let Some(peer) = who.remove(&key) {
                        self.welcome(key, peer).await;
                    }
                }
            }
            StreamEvent::PeerJoined { peer } => {
                self.remove(PublicKey::from(peer.public_key.0)).await;
                self.add_joiner(peer).await;
            }
            StreamEvent::ShareCreated { .. } => self.reload_shares().await,
            StreamEvent::ShareExtended { lookup, expires_at } => {
                if self.shares.extend(&lookup, expires_at) {
                    tracing::info!(until = %output::rfc3339(expires_at), "share extended from the dashboard");
                    if self.chatty {
                        let name = self
                            .shares
                            .find_live(&lookup)
                            .map_or("A share", |s| s.name.as_str());
                        println!(
                            "==> connect: {name} extended from the dashboard; {}",
                            output::expires_line(expires_at, time::OffsetDateTime::now_utc())
                        );
                    }
                }
            }
            StreamEvent::JoinDecided {
                lookup,
                public_key,
                approved,
            } => {
                self.decide(&lookup, &public_key, approved).await;
            }
            // Sent to joiners, not to sharers.
            StreamEvent::JoinDenied { .. } => {}
            StreamEvent::ShareEnded { lookup, state } => {
                if let Some(ended) = self.shares.end(&lookup, state, true) {
                    crate::ssh::uninstall(&ended);
                    tracing::info!(%state, "share ended; its joiners are cut off");
                }
                self.cut_off_ended().await;
            }
        }
    }

    /// Serves the addresses and public URLs of the shares in this machine's share file,
    /// read again: `connect share` wrote a new one, or revoked one.
    pub(super) async fn reload_shares(&mut self) {
        self.shares.reload();
        self.expire_due().await;
    }

    /// Ends the shares whose deadline (this machine's, not the hub's) has come, whether
    /// or not the hub is there to say so.
    pub(super) async fn expire_due(&mut self) {
        let now = time::OffsetDateTime::now_utc();
        for lookup in self.shares.due(now) {
            // The hub expires its copy at the same deadline by itself.
            if let Some(ended) = self.shares.end(&lookup, ShareState::Expired, true) {
                crate::ssh::uninstall(&ended);
                tracing::info!(share = %ended.name, "share expired; its joiners are cut off");
            }
        }
        self.cut_off_ended().await;
    }

    /// When the next live share reaches its deadline.
    pub(super) fn next_deadline(&self) -> Option<time::OffsetDateTime> {
        self.shares.next_deadline()
    }

    /// Tells the hub of shares revoked here while it could not be reached.
    pub(super) async fn tell_hub(&mut self, hub: &Hub) {
        for lookup in self.shares.untold() {
            match hub.revoke(&lookup).await {
                Ok(_) => self.shares.told(&lookup),
                Err(err) => match err.downcast_ref::<Fail>() {
                    // Ended there already: nothing left to tell.
                    Some(Fail::ShareNotFound) => self.shares.told(&lookup),
                    _ => tracing::debug!("{err:#}; the hub hears of the revoke later"),
                },
            }
        }
    }

    /// Removes the joiners of shares that are no longer live, and serves the addresses
    /// and public URLs of those that are.
    async fn cut_off_ended(&mut self) {
        let gone: Vec<PublicKey> = self
            .joined
            .iter()
            .filter(|(_, j)| self.shares.find_live(&j.lookup).is_none())
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            self.remove(key).await;
        }
        let shares = &self.shares;
        self.pending
            .retain(|_, p| shares.find_live(&p.lookup).is_some());
        let _ = self.net.set_addresses(self.shares.live_addresses()).await;
        self.sync_hub().await;
    }

    /// Lets the hub reach exactly the HTTP ports of this machine's live public shares, from
    /// its `.1` address in each share's block; no public share, no hub peer.
    async fn sync_hub(&mut self) {
        let Some(hub) = self.hub_peer else {
            return;
        };
        let shares: Vec<&LocalShare> = self
            .shares
            .live()
            .filter(|s| s.http_port.is_some())
            .collect();
        let nets: Vec<Ipv4Net> = shares
            .iter()
            .filter_map(|s| {
                let [a, b, c, _] = s.machine_ip.octets();
                Ipv4Net::new(Ipv4Addr::new(a, b, c, 1), 32).ok()
            })
            .collect();
        let wanted = (!nets.is_empty()).then(|| PeerConfig {
            public_key: PublicKey::from(hub.public_key.0),
            allowed_ips: nets,
            endpoint: Some(relay::synthetic_endpoint(hub.relay_id)),
            persistent_keepalive: Some(KEEPALIVE_SECS),
            policy: hub_policy(&shares),
            // The hub's peer is this userspace stack too.
            needs_checksums: false,
        });
        if let Err(err) = self.hub.set(self.net, wanted).await {
            tracing::warn!(%err, "cannot configure the hub's peer for public URLs");
        }
    }

    /// A joiner the share code vouches for and the share's rules let in, as a peer.
    async fn add_joiner(&mut self, peer: JoinedPeer) {
        let key = PublicKey::from(peer.public_key.0);
        let Some(config) = self.vouched(&peer) else {
            return;
        };
        if !self.admitted(&peer) {
            return;
        }
        let _ = self.net.set_addresses(self.shares.live_addresses()).await;
        let candidates = peer.candidates.clone();
        match self.joiners.put(self.net, config).await {
            Ok(()) => self.welcome(key, peer).await,
            Err(err) => return tracing::warn!(%err, "cannot add joiner"),
        }
        if !candidates.is_empty() {
            let _ = self.net.set_candidates(key, candidates).await;
        }
    }

    /// Whether the share's rules (`--max-joins`, `--approve`, kept on this machine) let a
    /// vouched-for joiner in; one waiting for approval is kept aside until the sharer says.
    fn admitted(&mut self, peer: &JoinedPeer) -> bool {
        let key = peer.public_key.to_base64();
        let verdict = self.shares.judge(&peer.lookup, &key);
        let share = self.shares.find_live(&peer.lookup);
        let name = share.map_or("a share", |s| s.name.as_str());
        match verdict {
            Some(Verdict::Admit) => return true,
            Some(Verdict::Wait) => {
                let code = share.map(|s| s.code.clone()).unwrap_or_default();
                let first = !self
                    .pending
                    .values()
                    .any(|p| p.public_key == peer.public_key);
                if first && self.chatty {
                    println!(
                        "==> connect: {} asks to join {name}. Approve it here or from the dashboard:",
                        peer.agent
                    );
                    println!(
                        "      connect share --approve-join {code} '{}'   (or --deny-join)",
                        peer.agent
                    );
                }
                tracing::info!(agent = %peer.agent, "a joiner waits for approval");
                self.pending
                    .insert(PublicKey::from(peer.public_key.0), peer.clone());
            }
            Some(Verdict::Denied) => {
                tracing::info!(agent = %peer.agent, "a denied joiner came back; refused");
            }
            Some(Verdict::Full) => {
                tracing::warn!(agent = %peer.agent, "share full (--max-joins); refused");
                eprintln!(
                    "[!] Refused {}: {name} already has the joiners --max-joins allows.",
                    peer.agent
                );
            }
            None => {}
        }
        false
    }

    /// The sharer's word on waiting joiners of a share: `joiner` is an agent name as shown,
    /// a joiner's key, or at least 8 characters of one. Returns the names decided.
    pub(super) async fn decide(
        &mut self,
        lookup: &str,
        joiner: &str,
        approved: bool,
    ) -> Vec<String> {
        let matching: Vec<PublicKey> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                let key = p.public_key.to_base64();
                p.lookup == lookup
                    && (p.agent == joiner
                        || key == joiner
                        || (joiner.len() >= 8 && key.starts_with(joiner)))
            })
            .map(|(k, _)| *k)
            .collect();
        let mut decided = Vec::new();
        for key in matching {
            let Some(peer) = self.pending.remove(&key) else {
                continue;
            };
            let wire_key = peer.public_key.to_base64();
            self.shares.decide(lookup, &wire_key, approved);
            decided.push(peer.agent.clone());
            if approved {
                self.add_joiner(peer).await;
            } else {
                let (hub, lookup) = (self.hub_api.clone(), lookup.to_owned());
                let decision = Decision {
                    public_key: wire_key,
                    approved: false,
                };
                // The joiner hears of it through the hub; the refusal stands either way.
                tokio::spawn(async move {
                    if let Err(err) = hub.decide(&lookup, &decision).await {
                        tracing::debug!("{err:#}; the denied joiner is not told");
                    }
                });
            }
        }
        decided
    }

    async fn remove(&mut self, key: PublicKey) {
        let _ = self.joiners.remove(self.net, key).await;
        self.joined.remove(&key);
    }

    /// The joiner as a peer, if the share code kept on this machine vouches for its key
    /// and its address is inside the share's block; what it may reach is what this
    /// machine snapshotted when it made the share.
    fn vouched(&self, peer: &JoinedPeer) -> Option<PeerConfig> {
        let Some(share) = self.shares.find_live(&peer.lookup) else {
            tracing::warn!(agent = %peer.agent, "a join for no live share of this machine; ignored");
            return None;
        };
        let code = ShareCode::parse(&share.code)?;
        if !code.verify(Role::Joiner, &peer.public_key.0, &peer.key_mac) {
            tracing::warn!(agent = %peer.agent, "refusing a joiner the share code does not vouch for");
            eprintln!(
                "[!] Refused a joiner ({}) whose key the share code does not vouch for.",
                peer.agent
            );
            return None;
        }
        let block = Ipv4Net::new(share.machine_ip, 24).map(|n| n.trunc()).ok();
        if peer.allowed_ip == share.machine_ip
            || !block.is_some_and(|b| b.contains(&peer.allowed_ip))
        {
            tracing::warn!(ip = %peer.allowed_ip, "refusing a joiner address outside the share");
            return None;
        }
        Some(PeerConfig {
            public_key: PublicKey::from(peer.public_key.0),
            allowed_ips: Ipv4Net::new(peer.allowed_ip, 32).into_iter().collect(),
            endpoint: Some(relay::synthetic_endpoint(peer.relay_id)),
            persistent_keepalive: Some(KEEPALIVE_SECS),
            policy: policy_of(share),
            // A joiner with a TUN device hands our segments to its kernel. The hub's
            // snapshots do not keep what the joiner said; what it said before stands (a
            // changed config would end the peer's flows).
            needs_checksums: !peer.userspace
                && self
                    .joiners
                    .get(&PublicKey::from(peer.public_key.0))
                    .is_none_or(|known| known.needs_checksums),
        })
    }

    /// A joiner just added: says so and starts the handshake from this side too (the
    /// joiner's first initiation may have arrived before this peer existed, and its own
    /// retry would come only after WireGuard's 5 s rekey timeout).
    async fn welcome(&mut self, key: PublicKey, peer: JoinedPeer) {
        let _ = self.net.connect_peer(key).await;
        if self.chatty {
            let name = self
                .shares
                .find_live(&peer.lookup)
                .map_or("a share", |share| share.name.as_str());
            println!(
                "==> connect: {} joined {name} ({})",
                peer.agent, peer.allowed_ip
            );
        }
        self.joined.insert(
            key,
            Joiner {
                lookup: peer.lookup,
                agent: peer.agent,
            },
        );
    }

    /// What this agent sees of its joiners, for the hub's dashboard: `None` when there is
    /// nothing to say and nothing was said last time.
    pub(super) async fn peer_report(&mut self, relay: SocketAddr) -> Option<PeerReport> {
        let snapshot = self.net.stats().await.ok()?;
        let over_stream = snapshot.relay_transport == Some(RelayTransport::Stream);
        let peers: Vec<ReportedPeer> = snapshot
            .peers
            .iter()
            .filter_map(|peer| {
                let joiner = self.joined.get(&peer.public_key)?;
                let (path, endpoint) = path_of(peer.endpoint, over_stream, "hub", relay);
                Some(ReportedPeer {
                    lookup: joiner.lookup.clone(),
                    agent: joiner.agent.clone(),
                    path: path.to_owned(),
                    endpoint,
                    rx_bytes: peer.rx_bytes,
                    tx_bytes: peer.tx_bytes,
                    handshake_secs_ago: peer.last_handshake.map(|ago| ago.as_secs()),
                })
            })
            .collect();
        let pending = self
            .pending
            .values()
            .map(|p| PendingJoiner {
                lookup: p.lookup.clone(),
                agent: p.agent.clone(),
                public_key: p.public_key.to_base64(),
            })
            .collect();
        let report = PeerReport { peers, pending };
        let empty = report.peers.is_empty() && report.pending.is_empty();
        if empty && !self.reported {
            return None;
        }
        self.reported = !empty;
        Some(report)
    }

    /// The contract's `status` shape; a relayed peer's endpoint is the relay it goes via.
    pub(super) async fn status(
        &self,
        name: &str,
        hub: &Hub,
        relay: SocketAddr,
    ) -> serde_json::Value {
        let hub_endpoint = hub.endpoint();
        let snapshot = self.net.stats().await.ok();
        let over_stream = snapshot
            .as_ref()
            .is_some_and(|s| s.relay_transport == Some(RelayTransport::Stream));
        let now = time::OffsetDateTime::now_utc();
        let peers: Vec<_> = snapshot
            .as_ref()
            .map(|s| s.peers.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|peer| {
                let is_hub = self
                    .hub_peer
                    .is_some_and(|h| h.public_key.0 == peer.public_key.to_bytes());
                let agent = self.joined.get(&peer.public_key).map_or(
                    if is_hub {
                        "hub (public URLs)"
                    } else {
                        "unknown"
                    },
                    |j| j.agent.as_str(),
                );
                let (path, endpoint) = path_of(peer.endpoint, over_stream, &hub_endpoint, relay);
                json!({
                    "agent": agent,
                    "path": path,
                    "endpoint": endpoint,
                    "rx_bytes": peer.rx_bytes,
                    "tx_bytes": peer.tx_bytes,
                    "last_handshake": peer.last_handshake.map(|ago| output::rfc3339(now - ago)),
                })
            })
            .collect();
        json!({
            "agent": name,
            "hub": hub.url(),
            "up": true,
            "hub_connected": self.hub_connected,
            "shares": self.shares.live().map(|s| json!({"name": s.name, "machine_ip": s.machine_ip})).collect::<Vec<_>>(),
            "peers": peers,
        })
    }
}

/// The contract's path of a peer and the endpoint it goes to: the peer's own address
/// when direct, the relay's when relayed over UDP, the hub's (`HOST:PORT`) over a stream.
fn path_of(
    endpoint: Option<SocketAddr>,
    over_stream: bool,
    hub: &str,
    relay: SocketAddr,
) -> (&'static str, Option<String>) {
    match endpoint {
        Some(endpoint) if relay::slot_of(endpoint).is_none() => {
            ("direct", Some(endpoint.to_string()))
        }
        None => ("direct", None),
        Some(_) if over_stream => ("relayed-tcp", Some(hub.to_owned())),
        Some(_) => ("relayed", Some(relay.to_string())),
    }
}

/// The hub's peer may reach each live public share's HTTP port and nothing else.
fn hub_policy(shares: &[&LocalShare]) -> Policy {
    let mut policy = Policy::default();
    for share in shares {
        let Some(port) = share.http_port else {
            continue;
        };
        let full = policy_of(share);
        if let Some(route) = full
            .routes
            .into_iter()
            .find(|r| r.protocol == Protocol::Tcp && r.port == port)
        {
            policy.routes.push(route);
        } else if let Some(host) = full.all_ports {
            policy.routes.push(Route {
                protocol: Protocol::Tcp,
                port,
                target: Target::new(host, port),
            });
        }
    }
    policy
}
