//! The hub as a WireGuard peer of sharing agents, so its reverse proxy can fetch public
//! HTTP shares. It is an agent of the hub's own relay (a slot and a key like any agent,
//! kept in the data directory), owns `.1` of every block with a public URL, and has one
//! peer per sharer with such shares. Sharers let it reach only their HTTP ports.
//!
//! Its frames reach the relay as a stream client's do, through the relay's channels in
//! this process ([`LocalDialer`]): no socket, no system call between the two.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use connect_api::WireKey;
use connect_netstack::RelayConfig;
use connect_netstack::io::FlowStream;
use connect_netstack::io::{Netstack, PeerSet};
use connect_netstack::{Ipv4Net, NodeConfig, PeerConfig, Policy, PublicKey, StaticSecret, relay};
use tokio::sync::Mutex;

use crate::addresses::{hub_ip, machine_ip};
use crate::ids::Ids;
use crate::relay_stream::{LocalDialer, Streams};
use crate::secrets::{hash_secret, relay_key_hex};
use crate::store::{AgentRow, HttpShare, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum HubPeerError {
    #[error("cannot keep the hub's key in {path}: {source}")]
    Key {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the hub's tunnel: {0}")]
    Io(#[from] std::io::Error),
}

pub struct HubPeer {
    net: Netstack,
    public_key: PublicKey,
    slot: u64,
    /// One peer per sharer, reaching the machine addresses of its public shares.
    peers: Mutex<PeerSet>,
}

/// Reads a 32-byte secret kept base64 in `path`, making it first if needed.
fn secret_file(path: &Path) -> Result<[u8; 32], HubPeerError> {
    let err = |source| HubPeerError::Key {
        path: path.display().to_string(),
        source,
    };
    if let Ok(text) = std::fs::read_to_string(path)
        && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text.trim())
        && let Ok(bytes) = <[u8; 32]>::try_from(bytes)
    {
        return Ok(bytes);
    }
    let bytes: [u8; 32] = rand::random();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?
    };
    std::io::Write::write_all(
        &mut file,
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .as_bytes(),
    )
    .map_err(err)?;
    Ok(bytes)
}

/// Runs the hub's tunnel on the packet thread, beside the relay it talks through (see
/// `own_thread`), without polling between inputs (`Netstack::spawn_on_server`). Its dial
/// streams talk to it through channels, so any runtime can drive them. Its UDP
/// socket (the tunnel needs one) stays unused: frames go through the relay's channels.
async fn spawn_on_packet_thread(
    packets: &tokio::runtime::Handle,
    config: NodeConfig,
    socket: std::net::UdpSocket,
) -> std::io::Result<Netstack> {
    packets
        .spawn(async move {
            tokio::net::UdpSocket::from_std(socket)
                .and_then(|socket| Netstack::spawn_on_server(config, socket))
        })
        .await
        .map_err(|_| std::io::Error::other("hub tunnel thread ended"))?
}

impl HubPeer {
    /// Loads or makes the hub's key and relay slot and starts its tunnel, a client of
    /// the relay through `streams`.
    ///
    /// # Errors
    /// When the key files or the database cannot be used.
    pub async fn start(
        packets: &tokio::runtime::Handle,
        store: &Store,
        data_dir: &Path,
        streams: Arc<Streams>,
        ids: &dyn Ids,
    ) -> Result<Self, HubPeerError> {
        let secret = StaticSecret::from(secret_file(&data_dir.join("hub.key"))?);
        let public_key = PublicKey::from(&secret);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(secret_file(&data_dir.join("hub.token"))?);
        let agent = match store.agent_by_token_hash(&hash_secret(&token)).await? {
            Some(agent) => agent,
            None => {
                let agent = AgentRow {
                    id: ids.id("hub_"),
                    name: "hub".into(),
                    public_key: WireKey(public_key.to_bytes()).to_base64(),
                    relay_key: relay_key_hex(&token),
                    relay_id: ids.relay_slot(),
                    guest: true,
                    home_relay: None,
                };
                let now = crate::clock::unix_ms(time::OffsetDateTime::now_utc());
                store
                    .insert_agent(&agent, &hash_secret(&token), now)
                    .await?;
                agent
            }
        };
        let socket = std::net::UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        socket.set_nonblocking(true)?;
        let net = spawn_on_packet_thread(packets, NodeConfig::new(secret), socket).await?;
        let stopped = |_| std::io::Error::other("hub tunnel stopped");
        net.set_relay_dialer(Arc::new(LocalDialer(streams)))
            .await
            .map_err(stopped)?;
        net.set_relay(RelayConfig {
            // Unused: every frame goes through the dialer's channels.
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            slot: agent.relay_id,
            key: relay::relay_key(&token),
            // The relay is in this process: there is no more direct path.
            direct: false,
            stream_only: true,
        })
        .await
        .map_err(stopped)?;
        Ok(Self {
            net,
            public_key,
            slot: agent.relay_id,
            peers: Mutex::new(PeerSet::new()),
        })
    }

    pub fn wire(&self) -> connect_api::HubPeer {
        connect_api::HubPeer {
            public_key: WireKey(self.public_key.to_bytes()),
            relay_id: self.slot,
        }
    }

    pub fn slot(&self) -> u64 {
        self.slot
    }

    /// Brings peers and addresses in line with the live public shares.
    pub async fn sync(&self, shares: &[HttpShare]) {
        let mut wanted: HashMap<[u8; 32], (u64, Vec<Ipv4Net>)> = HashMap::new();
        let mut addresses = Vec::new();
        for share in shares {
            let Some(key) = WireKey::from_base64(&share.sharer_key) else {
                continue;
            };
            let entry = wanted
                .entry(key.0)
                .or_insert((share.sharer_slot, Vec::new()));
            if let Ok(net) = Ipv4Net::new(machine_ip(share.block), 32) {
                entry.1.push(net);
            }
            addresses.push(hub_ip(share.block));
        }
        let _ = self.net.set_addresses(addresses).await;
        let wanted = wanted.into_iter().map(|(key, (slot, nets))| PeerConfig {
            public_key: PublicKey::from(key),
            allowed_ips: nets,
            endpoint: Some(relay::synthetic_endpoint(slot)),
            persistent_keepalive: Some(25),
            policy: Policy::default(),
            // A sharer's packets end in its userspace stack, never in a kernel.
            needs_checksums: false,
        });
        // A stopped tunnel shows at the next connection; the shares are unaffected.
        let _ = self.peers.lock().await.set(&self.net, wanted).await;
    }

    /// A TCP connection to a shared machine's port through its sharer's tunnel. While it
    /// waits, a missing WireGuard session is started at once and every second after,
    /// rather than after boringtun's 5 s retry (a sharer may have just re-bound its relay
    /// slot after a hub restart).
    ///
    /// # Errors
    /// When the sharer does not answer or refuses.
    pub async fn connect(
        &self,
        machine: Ipv4Addr,
        port: u16,
    ) -> Result<FlowStream, connect_netstack::io::DriverError> {
        let key = self.peers.lock().await.configs().find_map(|peer| {
            peer.allowed_ips
                .iter()
                .any(|net| net.addr() == machine)
                .then_some(peer.public_key)
        });
        let nudge = async {
            if let Some(key) = key {
                let _ = self.net.handshake(key, Duration::from_secs(1)).await;
            }
        };
        let connect = self.net.connect_tcp(SocketAddrV4::new(machine, port));
        tokio::pin!(connect);
        tokio::select! {
            connected = &mut connect => connected,
            // A session is up (or there is no known sharer): just wait to connect.
            () = nudge => connect.await,
        }
    }
}

/// The hub's peer as the state shares it.
pub type Shared = std::sync::Arc<HubPeer>;
