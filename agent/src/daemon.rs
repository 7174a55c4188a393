//! The running agent (`connect up`): holds the hub's event stream (reconnecting with
//! backoff), turns joins into WireGuard peers limited to the share's own snapshot of
//! routes, drops them when a share ends, and answers `status` and `down` on the control
//! socket. It stops on Ctrl-C, SIGTERM or `connect down`.
//!
//! The sharer decides: a joiner is added only if the share code (kept on this machine)
//! vouches for its key, only with an address inside the share's block, and only with the
//! routes this machine snapshotted when it made the share. Nothing the hub sends widens it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use connect_api::{JoinedPeer, Protocol as WireProtocol, StreamEvent};
use connect_netstack::RelayConfig;
use connect_netstack::io::Netstack;
use connect_netstack::{
    Ipv4Net, NodeConfig, PeerConfig, Policy, Protocol, PublicKey, Route, Target, relay,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UdpSocket, UnixListener};
use tokio::sync::mpsc;

use crate::code::{Role, ShareCode};
use crate::commands::Context;
use crate::commands::expose::parse_target;
use crate::commands::up::load_key;
use crate::config::LocalShare;
use crate::hub::Hub;
use crate::output;

/// WireGuard keepalive towards joiners: keeps the relay's and NATs' mappings warm.
const KEEPALIVE_SECS: u16 = 25;
/// Kept short: a hub back from a restart should see its agents within seconds.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A joiner as this agent knows it.
struct Joiner {
    lookup: String,
    agent: String,
}

enum Input {
    Event(StreamEvent),
    Connected(bool),
}

pub async fn run(ctx: Context) -> anyhow::Result<ExitCode> {
    let hub = ctx.agent_hub()?;
    let token = ctx.paths.token_value().unwrap_or_default();
    let keys = load_key(&ctx.paths)?;
    let me = hub.me().await?;
    let socket = UdpSocket::bind("0.0.0.0:0")
        .await
        .context("cannot open a UDP socket")?;
    let mut config = NodeConfig::new(keys.secret.clone());
    config.addresses = live_addresses(&ctx.paths.local_shares()?);
    let net = Netstack::spawn(config, socket).context("cannot start the tunnel")?;
    let relay = RelayConfig {
        addr: resolve(&me.relay).await?,
        slot: me.relay_id,
        key: relay::relay_key(&token),
        direct: crate::config::direct_paths(),
    };
    net.set_relay(relay.clone()).await?;

    let socket_path = ctx.paths.socket();
    if crate::commands::control::ask(&socket_path, "status")
        .await
        .is_ok()
    {
        return Err(crate::error::Fail::Usage(
            "An agent is already running with this config".into(),
        )
        .into());
    }
    let _ = std::fs::remove_file(&socket_path);
    let control = UnixListener::bind(&socket_path)
        .with_context(|| format!("cannot create the control socket {}", socket_path.display()))?;

    let (inputs, mut events) = mpsc::channel(256);
    let stream_task = tokio::spawn(hold_stream(hub.clone(), inputs));
    if ctx.json {
        output::json(&json!({"agent": me.name, "hub": hub.url(), "up": true}));
    } else {
        println!("==> connect: Agent {} is up (hub {}).", me.name, hub.url());
        println!("==> connect: Press Ctrl-C to stop.");
    }

    let mut agent = Agent {
        ctx: &ctx,
        net: &net,
        joiners: HashMap::new(),
        hub_connected: false,
        hub_peer: me.hub_peer,
        hub_nets: Vec::new(),
    };
    agent.sync_hub().await;
    sync_ssh_keys(&ctx.paths.local_shares().unwrap_or_default(), true);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            input = events.recv() => match input {
                Some(Input::Event(event)) => agent.apply(event).await,
                Some(Input::Connected(up)) => {
                    agent.hub_connected = up;
                    // A restarted hub forgot our relay binding: bind again now rather
                    // than at the next 15 s refresh.
                    if up {
                        let _ = net.set_relay(relay.clone()).await;
                    }
                }
                None => break,
            },
            accepted = control.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (reader, mut writer) = stream.into_split();
                let mut line = String::new();
                let read = tokio::time::timeout(Duration::from_secs(2), BufReader::new(reader).read_line(&mut line)).await;
                if !matches!(read, Ok(Ok(_))) {
                    continue;
                }
                let answer = match line.trim() {
                    "status" => agent.status(&me.name, hub.url(), relay.addr).await,
                    // `connect share` wrote a new share: serve its address and URL now.
                    "reload" => {
                        agent.reload_shares().await;
                        json!({"reloaded": true})
                    }
                    "down" => json!({"up": false}),
                    other => json!({"error": format!("unknown request {other:?}")}),
                };
                let _ = writer.write_all(format!("{answer}\n").as_bytes()).await;
                if line.trim() == "down" {
                    break;
                }
            }
        }
    }
    stream_task.abort();
    // Nobody can SSH in through a stopped agent; the keys go until it runs again.
    sync_ssh_keys(&ctx.paths.local_shares().unwrap_or_default(), false);
    let _ = std::fs::remove_file(&socket_path);
    net.shutdown().await;
    if !ctx.json {
        println!("==> connect: Agent stopped.");
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves `HOST:PORT` the way the hub advertised its relay.
pub async fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| format!("cannot resolve the hub relay {addr}"))
}

/// Keeps the event stream open: reconnects with exponential backoff when the hub goes
/// away, and says whether it is connected.
async fn hold_stream(hub: Hub, inputs: mpsc::Sender<Input>) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(500);
    loop {
        match hub.stream().await {
            Ok(stream) => {
                backoff = Duration::from_millis(500);
                let _ = inputs.send(Input::Connected(true)).await;
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    if inputs.send(Input::Event(event)).await.is_err() {
                        return;
                    }
                }
                let _ = inputs.send(Input::Connected(false)).await;
                tracing::warn!("lost the hub's event stream; reconnecting");
            }
            Err(err) => tracing::warn!("{err:#}; retrying in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Keys of live `--ssh` shares in `authorized_keys` while the agent runs (`running`),
/// none otherwise. A `--ssh-once` key is never put back: it may have been used.
fn sync_ssh_keys(shares: &[LocalShare], running: bool) {
    let now = time::OffsetDateTime::now_utc();
    for share in shares {
        let Some(ssh) = &share.ssh else { continue };
        if running && share.expires_at > now {
            if !ssh.once
                && let Err(err) = crate::ssh::install(share)
            {
                tracing::warn!(%err, share = %share.name, "cannot put the share's SSH key back");
            }
        } else {
            crate::ssh::uninstall(share);
        }
    }
}

fn live_addresses(shares: &[LocalShare]) -> Vec<Ipv4Addr> {
    let now = time::OffsetDateTime::now_utc();
    shares
        .iter()
        .filter(|s| s.expires_at > now)
        .map(|s| s.machine_ip)
        .collect()
}

/// The share's snapshot of routes as the data plane's policy. Port 22 is reachable only
/// on a share made with `--ssh`, whatever else was exposed.
pub fn policy_of(share: &LocalShare) -> Policy {
    let ssh = share.ssh.is_some();
    let routes = share
        .routes
        .iter()
        .filter(|route| {
            ssh || route.protocol != WireProtocol::Tcp || route.port != crate::ssh::PORT
        })
        .filter_map(|route| {
            let (host, port) = parse_target(&route.target).ok()?;
            Some(Route {
                protocol: match route.protocol {
                    WireProtocol::Tcp => Protocol::Tcp,
                    WireProtocol::Udp => Protocol::Udp,
                },
                port: route.port,
                target: Target::new(host, port),
            })
        })
        .collect();
    Policy {
        routes,
        all_ports: share.all_ports.as_deref().map(Into::into),
        closed_tcp: if ssh {
            Vec::new()
        } else {
            vec![crate::ssh::PORT]
        },
    }
}

struct Agent<'a> {
    ctx: &'a Context,
    net: &'a Netstack,
    joiners: HashMap<[u8; 32], Joiner>,
    hub_connected: bool,
    /// The hub's own peer, which fetches this machine's public HTTP shares.
    hub_peer: Option<connect_api::HubPeer>,
    /// The hub addresses it is configured with, one per public share.
    hub_nets: Vec<Ipv4Net>,
}

impl Agent<'_> {
    async fn apply(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Snapshot { peers } => {
                let keep: Vec<[u8; 32]> = peers.iter().map(|p| p.public_key.0).collect();
                let stale: Vec<[u8; 32]> = self
                    .joiners
                    .keys()
                    .filter(|key| !keep.contains(key))
                    .copied()
                    .collect();
                for key in stale {
                    self.remove(key).await;
                }
                for peer in peers {
                    if !self.joiners.contains_key(&peer.public_key.0) {
                        self.add(peer).await;
                    }
                }
            }
            StreamEvent::PeerJoined { peer } => {
                self.remove(peer.public_key.0).await;
                self.add(peer).await;
            }
            StreamEvent::ShareCreated { .. } => self.reload_shares().await,
            StreamEvent::ShareEnded { lookup, state } => {
                let gone: Vec<[u8; 32]> = self
                    .joiners
                    .iter()
                    .filter(|(_, j)| j.lookup == lookup)
                    .map(|(k, _)| *k)
                    .collect();
                for key in gone {
                    self.remove(key).await;
                }
                if let Ok(mut shares) = self.ctx.paths.local_shares()
                    && shares.iter().any(|s| s.lookup == lookup)
                {
                    shares
                        .iter()
                        .filter(|s| s.lookup == lookup)
                        .for_each(crate::ssh::uninstall);
                    shares.retain(|s| s.lookup != lookup);
                    let _ = self.ctx.paths.save_local_shares(&shares);
                    let _ = self.net.set_addresses(live_addresses(&shares)).await;
                    tracing::info!(%state, "share ended; its joiners are cut off");
                }
                self.sync_hub().await;
            }
        }
    }

    /// Serves the addresses and public URLs of the shares in this machine's share file.
    async fn reload_shares(&mut self) {
        let shares = self.ctx.paths.local_shares().unwrap_or_default();
        let _ = self.net.set_addresses(live_addresses(&shares)).await;
        self.sync_hub().await;
    }

    /// Lets the hub reach exactly the HTTP ports of this machine's live public shares, from
    /// its `.1` address in each share's block; no public share, no hub peer.
    async fn sync_hub(&mut self) {
        let Some(hub) = self.hub_peer else {
            return;
        };
        let now = time::OffsetDateTime::now_utc();
        let shares: Vec<LocalShare> = self
            .ctx
            .paths
            .local_shares()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.expires_at > now && s.http_port.is_some())
            .collect();
        let nets: Vec<Ipv4Net> = shares
            .iter()
            .filter_map(|s| {
                let [a, b, c, _] = s.machine_ip.octets();
                Ipv4Net::new(Ipv4Addr::new(a, b, c, 1), 32).ok()
            })
            .collect();
        if nets == self.hub_nets {
            return;
        }
        let key = PublicKey::from(hub.public_key.0);
        let _ = self.net.remove_peer(key).await;
        self.hub_nets = nets.clone();
        if nets.is_empty() {
            return;
        }
        let mut policy = Policy::default();
        for share in &shares {
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
        let config = PeerConfig {
            public_key: key,
            allowed_ips: nets,
            endpoint: Some(relay::synthetic_endpoint(hub.relay_id)),
            persistent_keepalive: Some(KEEPALIVE_SECS),
            policy,
        };
        if let Err(err) = self.net.add_peer(config).await {
            tracing::warn!(%err, "cannot add the hub's peer for public URLs");
        }
    }

    async fn remove(&mut self, key: [u8; 32]) {
        if self.joiners.remove(&key).is_some() {
            let _ = self.net.remove_peer(PublicKey::from(key)).await;
        }
    }

    async fn add(&mut self, peer: JoinedPeer) {
        let shares = self.ctx.paths.local_shares().unwrap_or_default();
        let Some(share) = shares.iter().find(|s| s.lookup == peer.lookup) else {
            tracing::warn!(agent = %peer.agent, "a join for a share this machine did not make; ignored");
            return;
        };
        let Some(code) = ShareCode::parse(&share.code) else {
            return;
        };
        if !code.verify(Role::Joiner, &peer.public_key.0, &peer.key_mac) {
            tracing::warn!(agent = %peer.agent, "refusing a joiner the share code does not vouch for");
            eprintln!(
                "[!] Refused a joiner ({}) whose key the share code does not vouch for.",
                peer.agent
            );
            return;
        }
        let block = Ipv4Net::new(share.machine_ip, 24).map(|n| n.trunc()).ok();
        if peer.allowed_ip == share.machine_ip
            || !block.is_some_and(|b| b.contains(&peer.allowed_ip))
        {
            tracing::warn!(ip = %peer.allowed_ip, "refusing a joiner address outside the share");
            return;
        }
        let _ = self.net.set_addresses(live_addresses(&shares)).await;
        let config = PeerConfig {
            public_key: PublicKey::from(peer.public_key.0),
            allowed_ips: Ipv4Net::new(peer.allowed_ip, 32).into_iter().collect(),
            endpoint: Some(relay::synthetic_endpoint(peer.relay_id)),
            persistent_keepalive: Some(KEEPALIVE_SECS),
            policy: policy_of(share),
        };
        let key = config.public_key;
        match self.net.add_peer(config).await {
            Ok(()) => {
                // Start the handshake from this side too: the joiner's first initiation
                // may have arrived before this peer existed, and its own retry would
                // come only after WireGuard's 5 s rekey timeout.
                let _ = self.net.connect_peer(key).await;
                if !self.ctx.json {
                    println!(
                        "==> connect: {} joined {} ({})",
                        peer.agent, share.name, peer.allowed_ip
                    );
                }
                self.joiners.insert(
                    peer.public_key.0,
                    Joiner {
                        lookup: peer.lookup,
                        agent: peer.agent,
                    },
                );
            }
            Err(err) => tracing::warn!(%err, "cannot add joiner"),
        }
    }

    /// The contract's `status` shape; a relayed peer's endpoint is the relay it goes via.
    async fn status(&self, name: &str, hub: &str, relay: SocketAddr) -> serde_json::Value {
        let snapshot = self.net.stats().await.ok();
        let now = time::OffsetDateTime::now_utc();
        let peers: Vec<_> = snapshot
            .as_ref()
            .map(|s| s.peers.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|peer| {
                let is_hub = self.hub_peer.is_some_and(|h| h.public_key.0 == peer.public_key.to_bytes());
                let agent = self
                    .joiners
                    .get(&peer.public_key.to_bytes())
                    .map_or(if is_hub { "hub (public URLs)" } else { "unknown" }, |j| j.agent.as_str());
                let relayed = peer.endpoint.and_then(relay::slot_of).is_some();
                json!({
                    "agent": agent,
                    "path": if relayed { "relayed" } else { "direct" },
                    "endpoint": if relayed { Some(relay.to_string()) } else { peer.endpoint.map(|e| e.to_string()) },
                    "rx_bytes": peer.rx_bytes,
                    "tx_bytes": peer.tx_bytes,
                    "last_handshake": peer.last_handshake.map(|ago| output::rfc3339(now - ago)),
                })
            })
            .collect();
        let shares = self.ctx.paths.local_shares().unwrap_or_default();
        json!({
            "agent": name,
            "hub": hub,
            "up": true,
            "hub_connected": self.hub_connected,
            "shares": shares.iter().filter(|s| s.expires_at > now).map(|s| json!({"name": s.name, "machine_ip": s.machine_ip})).collect::<Vec<_>>(),
            "peers": peers,
        })
    }
}
