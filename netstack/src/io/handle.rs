//! [`Netstack`]: the handle a program holds to a running node, and its calls.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::batch::BatchSocket;
use super::command::{Chunk, Command};
use super::flow_stream::FlowStream;
use super::node_task::NodeTask;
use super::relay_stream::RelayDialer;
use super::spin::SPIN;
use super::tun::TunIo;
use crate::flow::FlowId;
use crate::node::{Node, NodeConfig};
use crate::relay_client::{RelayConfig, RelayTransport};
use crate::stats::Stats;
use crate::wg::{PeerConfig, PeerStats};
use crate::{Error, PublicKey};

/// Commands queued from all flows and callers to the node task.
const COMMAND_QUEUE: usize = 1024;

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("the tunnel has stopped")]
    Stopped,
    #[error(transparent)]
    Node(#[from] Error),
    #[error("connection through the tunnel was refused or reset")]
    Refused,
}

/// A datagram conversation through the tunnel, from [`Netstack::open_udp`].
pub struct TunnelDatagram {
    flow: FlowId,
    commands: mpsc::Sender<Command>,
    incoming: mpsc::Receiver<Chunk>,
}

impl TunnelDatagram {
    /// # Errors
    /// [`DriverError::Stopped`] when the tunnel is gone.
    pub async fn send(&self, datagram: &[u8]) -> Result<(), DriverError> {
        self.commands
            .send(Command::Data(self.flow, Bytes::copy_from_slice(datagram)))
            .await
            .map_err(|_| DriverError::Stopped)
    }

    /// The next datagram; `None` once the flow has ended.
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            match self.incoming.recv().await? {
                Chunk::Data(bytes) => return Some(bytes),
                Chunk::Fin => {}
            }
        }
    }
}

impl Drop for TunnelDatagram {
    fn drop(&mut self) {
        let _ = self.commands.try_send(Command::Eof(self.flow));
    }
}

/// Handle to a running node. Dropping it stops the node and all its flows.
pub struct Netstack {
    commands: mpsc::Sender<Command>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    local_addr: SocketAddr,
}

impl Netstack {
    /// Starts a node on `socket`, serving and dialling.
    ///
    /// # Errors
    /// When the socket's address cannot be read.
    pub fn spawn(config: NodeConfig, socket: UdpSocket) -> io::Result<Self> {
        Self::start(config, socket, None, SPIN)
    }

    /// As [`Netstack::spawn`], for a node on a busy server (the hub's own peer): it
    /// sleeps as soon as it has nothing to do, instead of polling for a moment (see
    /// `spin`).
    ///
    /// # Errors
    /// When the socket's address cannot be read.
    pub fn spawn_on_server(config: NodeConfig, socket: UdpSocket) -> io::Result<Self> {
        Self::start(config, socket, None, Duration::ZERO)
    }

    /// Starts a node that also carries whole IP packets to and from a TUN device (the TUN
    /// joiner): packets the device routes to a peer are sealed for it, and packets from
    /// peers not addressed to the node's own stack are written to the device.
    ///
    /// # Errors
    /// When the socket's address cannot be read.
    pub fn spawn_with_tun(
        mut config: NodeConfig,
        socket: UdpSocket,
        tun: tun_rs::AsyncDevice,
    ) -> io::Result<Self> {
        config.raw = true;
        let tun = TunIo::new(tun, config.mtu);
        Self::start(config, socket, Some(tun), SPIN)
    }

    fn start(
        config: NodeConfig,
        socket: UdpSocket,
        tun: Option<TunIo>,
        spin: Duration,
    ) -> io::Result<Self> {
        let socket = BatchSocket::new(socket)?;
        let local_addr = socket.local_addr()?;
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let node = Node::new(config, rand::random(), Instant::now());
        let task = NodeTask::new(
            node,
            socket,
            tun,
            receiver,
            commands.clone(),
            &cancel,
            &tasks,
        )
        .spinning(spin);
        tasks.spawn(task.run());
        Ok(Self {
            commands,
            cancel,
            tasks,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// # Errors
    /// As [`Node::add_peer`], or [`DriverError::Stopped`].
    pub async fn add_peer(&self, peer: PeerConfig) -> Result<(), DriverError> {
        Ok(self
            .call(|reply| Command::AddPeer(Box::new(peer), reply))
            .await??)
    }

    /// # Errors
    /// As [`Node::set_candidates`], or [`DriverError::Stopped`].
    pub async fn set_candidates(
        &self,
        key: PublicKey,
        candidates: Vec<SocketAddr>,
    ) -> Result<(), DriverError> {
        Ok(self
            .call(|reply| Command::SetCandidates(key, candidates, reply))
            .await??)
    }

    /// # Errors
    /// As [`Node::remove_peer`], or [`DriverError::Stopped`].
    pub async fn remove_peer(&self, key: PublicKey) -> Result<(), DriverError> {
        Ok(self.call(|reply| Command::RemovePeer(key, reply)).await??)
    }

    /// How to reach the hub over a stream when UDP to its relay goes unanswered (see
    /// [`super::relay_stream`]). Without one, the node stays on UDP.
    ///
    /// # Errors
    /// [`DriverError::Stopped`] when the tunnel is gone.
    pub async fn set_relay_dialer(&self, dialer: Arc<dyn RelayDialer>) -> Result<(), DriverError> {
        self.call(|reply| Command::SetRelayDialer(dialer, reply))
            .await
    }

    /// Uses a hub relay from now on: binds the slot at once and every 15 s after.
    ///
    /// # Errors
    /// [`DriverError::Stopped`] when the tunnel is gone.
    pub async fn set_relay(&self, relay: RelayConfig) -> Result<(), DriverError> {
        self.call(|reply| Command::SetRelay(relay, reply)).await
    }

    /// Replaces the tunnel addresses the node's own stack answers for.
    ///
    /// # Errors
    /// [`DriverError::Stopped`] when the tunnel is gone.
    pub async fn set_addresses(
        &self,
        addresses: Vec<std::net::Ipv4Addr>,
    ) -> Result<(), DriverError> {
        self.call(|reply| Command::SetAddresses(addresses, reply))
            .await
    }

    /// Starts the handshake with a peer now, so the first flow does not wait for it.
    ///
    /// # Errors
    /// As [`Node::connect_peer`], or [`DriverError::Stopped`].
    pub async fn connect_peer(&self, key: PublicKey) -> Result<(), DriverError> {
        Ok(self
            .call(|reply| Command::ConnectPeer(key, reply))
            .await??)
    }

    /// Returns once the peer has a fresh WireGuard session: at once when it has one, else
    /// after a handshake started now and again every `retry` until one completes (the
    /// first initiation may race the peer learning about us). Callers bound it in time.
    ///
    /// # Errors
    /// As [`Node::has_fresh_session`], or [`DriverError::Stopped`].
    pub async fn handshake(&self, key: PublicKey, retry: Duration) -> Result<(), DriverError> {
        loop {
            let done = self.call(|reply| Command::Handshake(key, reply)).await??;
            // A dropped sender (the peer was removed) is asked again, which says why.
            if let Ok(Ok(())) = tokio::time::timeout(retry, done).await {
                return Ok(());
            }
        }
    }

    /// A TCP connection through the tunnel, as a stream.
    ///
    /// # Errors
    /// [`DriverError::Refused`] when the far side resets or refuses it.
    pub async fn connect_tcp(&self, dst: SocketAddrV4) -> Result<FlowStream, DriverError> {
        self.call(|reply| Command::DialTcp(dst, reply)).await?
    }

    /// # Errors
    /// As [`Node::open_udp`], or [`DriverError::Stopped`].
    pub async fn open_udp(&self, dst: SocketAddrV4) -> Result<TunnelDatagram, DriverError> {
        let (flow, incoming) = self.call(|reply| Command::DialUdp(dst, reply)).await??;
        Ok(TunnelDatagram {
            flow,
            commands: self.commands.clone(),
            incoming,
        })
    }

    /// Counters, open flows with their memory, and per-peer figures.
    ///
    /// # Errors
    /// [`DriverError::Stopped`] when the tunnel is gone.
    pub async fn stats(&self) -> Result<Snapshot, DriverError> {
        self.call(Command::Stats).await
    }

    /// Stops the node and every flow task, and waits for them.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for Netstack {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What [`Netstack::stats`] returns.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub stats: Stats,
    pub flows: usize,
    pub flow_memory: usize,
    pub peers: Vec<PeerStats>,
    /// Our public address as the relay saw it, once it answered a bind.
    pub relay_observed: Option<SocketAddr>,
    /// How relay frames reach the hub now; `None` without a relay.
    pub relay_transport: Option<RelayTransport>,
}
