//! The one place that touches tokio: a task that owns a [`Node`] and its UDP socket, and
//! small per-flow tasks that bridge flows to real sockets or to the caller's streams.
//!
//! The node task `select!`s on the socket, a bounded command channel and the node's
//! next timeout; after every input it drains the node's outputs. Flow tasks never touch
//! the node: they send commands and wait for credit, so every queue between a socket and
//! the stack is bounded and a slow reader slows its sender through TCP's window.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::{BatchSocket, RecvBatch, Run, SendBatch};
use crate::flow::{CloseReason, Event, FlowId};
use crate::node::{Node, NodeConfig};
use crate::policy::{Protocol, Target};
use crate::spin::Spin;
use crate::stats::Stats;
use crate::tun_io::TunIo;
use crate::wg::{PeerConfig, PeerStats};
use crate::{Error, PublicKey, relay};

/// Bytes moved per chunk between a flow and the node: big enough that per-chunk costs
/// vanish, small enough that a flow's chunk queue stays a few hundred KiB.
const CHUNK: usize = 64 * 1024;
/// Chunks queued from the node to one flow's writer.
const FLOW_QUEUE: usize = 4;
/// Commands queued from all flows and callers to the node task.
const COMMAND_QUEUE: usize = 1024;
/// Datagrams (or commands) taken per wake-up before outputs are drained again: enough to
/// fill a GSO run of replies, few enough that what the node queues stays small.
const RECV_BATCH: usize = 64;
/// Room for one sealed datagram behind a relay header.
const DATAGRAM_ROOM: usize = 65536 + relay::DATA_HEADER;
/// A real target that has not answered by then is reported as refused.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often an agent re-binds its relay slot: keeps NAT mappings open and binds fresh.
const BIND_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

/// The hub relay this node can reach peers through (see [`crate::relay`]).
#[derive(Clone)]
pub struct RelayConfig {
    pub addr: SocketAddr,
    pub slot: u64,
    pub key: [u8; 32],
    /// Try direct paths to peers the relay introduces. Off, WireGuard is taken only
    /// through the relay (for networks that mangle direct UDP, and to measure the relay).
    pub direct: bool,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("addr", &self.addr)
            .field("slot", &self.slot)
            .field("direct", &self.direct)
            .finish_non_exhaustive()
    }
}

struct RelayState {
    config: RelayConfig,
    observed: Option<SocketAddr>,
    next_bind: Instant,
}

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
        Self::start(config, socket, None)
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
        Self::start(config, socket, Some(tun))
    }

    fn start(config: NodeConfig, socket: UdpSocket, tun: Option<TunIo>) -> io::Result<Self> {
        let socket = BatchSocket::new(socket)?;
        let local_addr = socket.local_addr()?;
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let node = Node::new(config, rand::random(), Instant::now());
        let driver = Driver {
            send_batch: SendBatch::new(DATAGRAM_ROOM, socket.max_segments()),
            chunk_buf: vec![0; CHUNK],
            node,
            socket,
            tun,
            relay: None,
            receiver,
            commands: commands.clone(),
            flows: HashMap::new(),
            cancel: cancel.clone(),
            tasks: tasks.clone(),
        };
        tasks.spawn(driver.run());
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
    /// As [`Node::remove_peer`], or [`DriverError::Stopped`].
    pub async fn remove_peer(&self, key: PublicKey) -> Result<(), DriverError> {
        Ok(self.call(|reply| Command::RemovePeer(key, reply)).await??)
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

    /// A TCP connection through the tunnel, as a stream.
    ///
    /// # Errors
    /// [`DriverError::Refused`] when the far side resets or refuses it.
    pub async fn connect_tcp(&self, dst: SocketAddrV4) -> Result<DuplexStream, DriverError> {
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
}

enum Command {
    AddPeer(Box<PeerConfig>, oneshot::Sender<Result<(), Error>>),
    RemovePeer(PublicKey, oneshot::Sender<Result<(), Error>>),
    ConnectPeer(PublicKey, oneshot::Sender<Result<(), Error>>),
    DialTcp(
        SocketAddrV4,
        oneshot::Sender<Result<DuplexStream, DriverError>>,
    ),
    DialUdp(
        SocketAddrV4,
        oneshot::Sender<Result<(FlowId, mpsc::Receiver<Chunk>), Error>>,
    ),
    Stats(oneshot::Sender<Snapshot>),
    SetRelay(RelayConfig, oneshot::Sender<()>),
    SetAddresses(Vec<std::net::Ipv4Addr>, oneshot::Sender<()>),
    /// Bytes (TCP) or one datagram (UDP) from the real side of a flow.
    Data(FlowId, Bytes),
    /// The real side finished sending.
    Eof(FlowId),
    /// The real side failed; reset the flow.
    Abort(FlowId),
    /// A flow's writer took a chunk: there may be room for more.
    Resume(FlowId),
    /// Serve side: the real target answered.
    TargetConnected(FlowId),
}

enum Chunk {
    Data(Bytes),
    Fin,
}

/// The node task's view of one flow.
struct FlowIo {
    to_real: mpsc::Sender<Chunk>,
    /// Data from the real side the node has not taken yet.
    pending: Option<Bytes>,
    /// The real side finished; close once `pending` is sent.
    eof_pending: bool,
    /// The node has data for the real side, but its queue was full.
    out_blocked: bool,
    /// The peer finished; tell the real side once its queue has room.
    fin_pending: bool,
    /// Lets the flow's reader send its next chunk.
    credit: Arc<Notify>,
    cancel: CancellationToken,
    /// Dial side, until the handshake finishes.
    dial: Option<DialWaiter>,
}

struct DialWaiter {
    reply: oneshot::Sender<Result<DuplexStream, DriverError>>,
    to_real: mpsc::Receiver<Chunk>,
}

struct Driver {
    node: Node,
    socket: BatchSocket,
    tun: Option<TunIo>,
    relay: Option<RelayState>,
    receiver: mpsc::Receiver<Command>,
    commands: mpsc::Sender<Command>,
    flows: HashMap<FlowId, FlowIo>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// Sealed datagrams, gathered into GSO runs.
    send_batch: SendBatch,
    /// Where flow data is read from the node before it is handed to a flow task.
    chunk_buf: Vec<u8>,
}

impl Driver {
    async fn run(mut self) {
        let mut received = RecvBatch::default();
        let mut spin = Spin::new(Instant::now());
        loop {
            self.bind_relay(Instant::now()).await;
            self.drain_outputs().await;
            let deadline = [
                self.node.poll_timeout(),
                self.relay.as_ref().map(|r| r.next_bind),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                readable = self.socket.readable() => {
                    if readable.is_err() {
                        break;
                    }
                    let now = Instant::now();
                    let mut taken = 0;
                    while taken < RECV_BATCH {
                        match self.socket.try_recv(&mut received) {
                            Ok(_) => {
                                for (from, datagram) in received.datagrams() {
                                    self.handle_datagram(from, datagram, now);
                                    taken += 1;
                                }
                            }
                            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                            // ICMP errors from a peer that went away surface here; they
                            // say nothing WireGuard's timers will not find out.
                            Err(err) => {
                                tracing::trace!(%err, "udp receive error");
                                taken += 1;
                            }
                        }
                    }
                    spin.woke(taken, now);
                }
                command = self.receiver.recv() => {
                    let Some(command) = command else { break };
                    spin.woke(1, Instant::now());
                    self.handle_command(command);
                    // Take what else is queued before draining outputs once.
                    for _ in 0..RECV_BATCH {
                        match self.receiver.try_recv() {
                            Ok(command) => self.handle_command(command),
                            Err(_) => break,
                        }
                    }
                }
                readable = tun_readable(self.tun.as_ref()) => {
                    let Some(tun) = self.tun.as_mut() else { continue };
                    if let Err(err) = readable {
                        tracing::warn!(%err, "TUN device failed");
                        break;
                    }
                    let now = Instant::now();
                    let node = &mut self.node;
                    let mut taken = 0;
                    while taken < RECV_BATCH {
                        match tun.try_recv(|packet| node.handle_ip_packet(packet, now)) {
                            Ok(count) => taken += count,
                            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                            Err(err) => {
                                tracing::debug!(%err, "TUN receive error");
                                break;
                            }
                        }
                    }
                    spin.woke(taken, now);
                }
                // A due relay bind is sent at the top of the loop.
                () = sleep => self.node.handle_timeout(Instant::now()),
                () = spin.poll() => {}
            }
        }
        for (_, flow) in self.flows.drain() {
            flow.cancel.cancel();
        }
    }

    async fn drain_outputs(&mut self) {
        if let Some(tun) = self.tun.as_mut() {
            while let Some(len) = self.node.poll_ip_packet(tun.next_packet()) {
                if tun.commit(len) {
                    tun.flush().await;
                }
            }
            tun.flush().await;
        }
        self.send_batch.set_max_segments(self.socket.max_segments());
        // Where the next datagram is sealed: behind room for a relay header when the last
        // one went through the relay, else in place. Datagrams come in runs to one peer, so
        // the guess is nearly always right and a datagram is moved only when it is wrong.
        let mut room = 0;
        loop {
            while let Some(transmit) = self.node.poll_transmit(&mut self.send_batch.tail()[room..])
            {
                let sealed_at = room;
                let slot = relay::slot_of(transmit.dst);
                room = if slot.is_some() {
                    relay::DATA_HEADER
                } else {
                    0
                };
                let (offset, len, dst) = match slot {
                    None => (sealed_at, transmit.len, transmit.dst),
                    Some(slot) => {
                        let Some(relay) = self.relay.as_ref() else {
                            continue;
                        };
                        let tail = self.send_batch.tail();
                        if sealed_at == 0 {
                            tail.copy_within(..transmit.len, relay::DATA_HEADER);
                        }
                        relay::write_data_header(tail, slot);
                        (0, relay::DATA_HEADER + transmit.len, relay.config.addr)
                    }
                };
                if let Some(run) = self.send_batch.push(offset, len, dst) {
                    self.send_run(run).await;
                }
            }
            let Some(event) = self.node.poll_event() else {
                break;
            };
            self.handle_event(event);
        }
        if let Some(run) = self.send_batch.finish() {
            self.send_run(run).await;
        }
    }

    async fn send_run(&self, run: Run) {
        let bytes = self.send_batch.run(&run);
        if let Err(err) = self.socket.send(run.dst, bytes, run.segment).await {
            tracing::debug!(%err, dst = %run.dst, "udp send failed");
        }
    }

    /// A datagram from the socket: relay frames are unwrapped, the rest is WireGuard.
    ///
    /// Frames are recognised by their magic, not by their source address: a hub bound to
    /// a wildcard address answers from whichever of its addresses faces us. Nothing is
    /// trusted for it: relayed payloads are WireGuard and authenticate themselves, and a
    /// forged bind answer changes only the address `status` reports.
    fn handle_datagram(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) {
        let Some(relay_state) = self.relay.as_ref() else {
            self.node.handle_datagram(from, datagram, now);
            return;
        };
        let direct = relay_state.config.direct;
        match relay::parse(datagram) {
            Some(relay::Frame::Data { slot, payload }) => {
                self.node
                    .handle_datagram(relay::synthetic_endpoint(slot), payload, now);
            }
            Some(relay::Frame::BindAck { observed, .. }) => {
                if let Some(relay) = self.relay.as_mut() {
                    if relay.observed != Some(observed) {
                        tracing::info!(%observed, "relay sees us at");
                    }
                    relay.observed = Some(observed);
                }
            }
            Some(relay::Frame::PeerAt { slot, addr }) if direct => {
                self.node
                    .offer_direct(relay::synthetic_endpoint(slot), addr, now);
            }
            Some(relay::Frame::Bind { .. } | relay::Frame::PeerAt { .. }) => {}
            None if direct => self.node.handle_datagram(from, datagram, now),
            None => {}
        }
    }

    async fn bind_relay(&mut self, now: Instant) {
        let Some(relay) = self.relay.as_mut().filter(|r| r.next_bind <= now) else {
            return;
        };
        relay.next_bind = now + BIND_INTERVAL;
        let bind = relay::write_bind(&relay.config.key, relay.config.slot, unix_ms());
        let addr = relay.config.addr;
        if let Err(err) = self.socket.send(addr, &bind, bind.len()).await {
            tracing::debug!(%err, %addr, "relay bind failed");
        }
    }

    fn handle_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::AddPeer(peer, reply) => {
                let _ = reply.send(self.node.add_peer(*peer));
            }
            Command::RemovePeer(key, reply) => {
                let _ = reply.send(self.node.remove_peer(&key));
            }
            Command::ConnectPeer(key, reply) => {
                let _ = reply.send(self.node.connect_peer(&key));
            }
            Command::DialTcp(dst, reply) => match self.node.connect_tcp(dst, now) {
                Ok(flow) => {
                    let (to_real, from_node) = mpsc::channel(FLOW_QUEUE);
                    let mut io = FlowIo::new(to_real, &self.cancel);
                    io.dial = Some(DialWaiter {
                        reply,
                        to_real: from_node,
                    });
                    self.flows.insert(flow, io);
                }
                Err(err) => {
                    let _ = reply.send(Err(err.into()));
                }
            },
            Command::DialUdp(dst, reply) => match self.node.open_udp(dst, now) {
                Ok(flow) => {
                    let (to_real, from_node) = mpsc::channel(FLOW_QUEUE * 16);
                    self.flows.insert(flow, FlowIo::new(to_real, &self.cancel));
                    let _ = reply.send(Ok((flow, from_node)));
                }
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            },
            Command::Stats(reply) => {
                let (flows, flow_memory) = self.node.flow_usage();
                let _ = reply.send(Snapshot {
                    stats: self.node.stats(),
                    flows,
                    flow_memory,
                    peers: self.node.peers(),
                    relay_observed: self.relay.as_ref().and_then(|r| r.observed),
                });
            }
            Command::SetAddresses(addresses, reply) => {
                self.node.set_addresses(addresses);
                let _ = reply.send(());
            }
            Command::SetRelay(config, reply) => {
                // Due at once: the loop binds before it sends anything else, so the relay
                // knows our address when our first handshake arrives.
                self.relay = Some(RelayState {
                    config,
                    observed: None,
                    next_bind: now,
                });
                let _ = reply.send(());
            }
            Command::Data(flow, bytes) => {
                if let Some(io) = self.flows.get_mut(&flow) {
                    io.pending = Some(bytes);
                    self.push_to_node(flow);
                }
            }
            Command::Eof(flow) => {
                if let Some(io) = self.flows.get_mut(&flow) {
                    io.eof_pending = true;
                    self.push_to_node(flow);
                }
            }
            Command::Abort(flow) => {
                let _ = self.node.abort(flow, now);
            }
            Command::Resume(flow) => self.pull_from_node(flow),
            Command::TargetConnected(flow) => {
                let _ = self.node.handle_flow_connected(flow, now);
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Accepted {
                flow,
                protocol,
                target,
                source,
                ..
            } => {
                let (to_real, from_node) = mpsc::channel(FLOW_QUEUE);
                let io = FlowIo::new(to_real, &self.cancel);
                let ends = FlowEnds {
                    flow,
                    commands: self.commands.clone(),
                    from_node,
                    credit: io.credit.clone(),
                    cancel: io.cancel.clone(),
                };
                self.flows.insert(flow, io);
                tracing::debug!(%flow, %source, %target, ?protocol, "serving flow");
                match protocol {
                    Protocol::Tcp => self.tasks.spawn(serve_tcp(target, ends)),
                    Protocol::Udp => self.tasks.spawn(serve_udp(target, ends)),
                };
            }
            Event::Connected { flow } => {
                let Some(io) = self.flows.get_mut(&flow) else {
                    return;
                };
                let Some(waiter) = io.dial.take() else {
                    return;
                };
                let (user, ours) = tokio::io::duplex(CHUNK * 2);
                let ends = FlowEnds {
                    flow,
                    commands: self.commands.clone(),
                    from_node: waiter.to_real,
                    credit: io.credit.clone(),
                    cancel: io.cancel.clone(),
                };
                self.tasks.spawn(bridge_stream(ours, ends));
                let _ = waiter.reply.send(Ok(user));
            }
            Event::Readable { flow } => self.pull_from_node(flow),
            Event::Writable { flow } => self.push_to_node(flow),
            Event::ReadClosed { flow } => {
                if let Some(io) = self.flows.get_mut(&flow) {
                    io.fin_pending = true;
                }
                self.pull_from_node(flow);
            }
            Event::Closed { flow, reason } => {
                tracing::debug!(%flow, ?reason, "flow closed");
                if let Some(io) = self.flows.remove(&flow) {
                    // A finished flow's writer still drains its queue (dropping our
                    // sender ends it); anything else stops at once.
                    if reason != CloseReason::Finished {
                        io.cancel.cancel();
                    }
                    if let Some(waiter) = io.dial {
                        let _ = waiter.reply.send(Err(DriverError::Refused));
                    }
                }
            }
        }
    }

    /// Offers the flow's pending real-side data to the node.
    fn push_to_node(&mut self, flow: FlowId) {
        let now = Instant::now();
        let Some(io) = self.flows.get_mut(&flow) else {
            return;
        };
        if let Some(bytes) = io.pending.as_mut() {
            match self.node.send(flow, bytes, now) {
                Ok(taken) if taken == bytes.len() => {
                    io.pending = None;
                    io.credit.notify_one();
                }
                Ok(taken) => {
                    let _ = bytes.split_to(taken);
                }
                Err(err) => {
                    tracing::debug!(%flow, %err, "flow cannot take data");
                    io.pending = None;
                    let _ = self.node.abort(flow, now);
                    return;
                }
            }
        }
        if io.pending.is_none() && io.eof_pending {
            io.eof_pending = false;
            let _ = self.node.close(flow, now);
        }
    }

    /// Moves what the node holds for a flow into the flow's queue, as far as it has room.
    fn pull_from_node(&mut self, flow: FlowId) {
        let Some(io) = self.flows.get_mut(&flow) else {
            return;
        };
        if io.dial.is_some() {
            return;
        }
        io.out_blocked = false;
        loop {
            let Ok(permit) = io.to_real.try_reserve() else {
                io.out_blocked = true;
                return;
            };
            // Read into one reused buffer and copy out only what arrived: an allocation
            // sized to the data, instead of a zeroed 64 KiB one per attempt.
            match self.node.recv(flow, &mut self.chunk_buf) {
                Ok(Some(len)) => {
                    permit.send(Chunk::Data(Bytes::copy_from_slice(&self.chunk_buf[..len])));
                }
                Ok(None) | Err(_) => {
                    if io.fin_pending {
                        io.fin_pending = false;
                        permit.send(Chunk::Fin);
                    }
                    return;
                }
            }
        }
    }
}

impl FlowIo {
    fn new(to_real: mpsc::Sender<Chunk>, parent: &CancellationToken) -> Self {
        Self {
            to_real,
            pending: None,
            eof_pending: false,
            out_blocked: false,
            fin_pending: false,
            credit: Arc::new(Notify::new()),
            cancel: parent.child_token(),
            dial: None,
        }
    }
}

/// What a flow task holds: its channels to and from the node task.
struct FlowEnds {
    flow: FlowId,
    commands: mpsc::Sender<Command>,
    from_node: mpsc::Receiver<Chunk>,
    credit: Arc<Notify>,
    cancel: CancellationToken,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn tun_readable(tun: Option<&TunIo>) -> io::Result<()> {
    match tun {
        Some(tun) => tun.readable().await,
        None => std::future::pending().await,
    }
}

async fn serve_tcp(target: Target, ends: FlowEnds) {
    let connect = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((target.host.as_ref(), target.port)),
    );
    let stream = tokio::select! {
        () = ends.cancel.cancelled() => return,
        result = connect => result,
    };
    match stream {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            if ends
                .commands
                .send(Command::TargetConnected(ends.flow))
                .await
                .is_ok()
            {
                bridge_stream(stream, ends).await;
            }
        }
        Ok(Err(err)) => {
            tracing::debug!(flow = %ends.flow, %target, %err, "target refused");
            let _ = ends.commands.send(Command::Abort(ends.flow)).await;
        }
        Err(_) => {
            tracing::debug!(flow = %ends.flow, %target, "target did not answer");
            let _ = ends.commands.send(Command::Abort(ends.flow)).await;
        }
    }
}

/// Copies between a byte stream and a flow in both directions until both are done or
/// the flow is cancelled. Half-close passes through: EOF on one side is FIN on the other.
async fn bridge_stream<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S, ends: FlowEnds) {
    let FlowEnds {
        flow,
        commands,
        mut from_node,
        credit,
        cancel,
    } = ends;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let inbound = {
        let commands = commands.clone();
        async move {
            loop {
                let mut buf = BytesMut::with_capacity(CHUNK);
                match reader.read_buf(&mut buf).await {
                    Ok(0) => {
                        let _ = commands.send(Command::Eof(flow)).await;
                        return;
                    }
                    Ok(_) => {
                        if commands
                            .send(Command::Data(flow, buf.freeze()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        credit.notified().await;
                    }
                    Err(_) => {
                        let _ = commands.send(Command::Abort(flow)).await;
                        return;
                    }
                }
            }
        }
    };
    let outbound = async move {
        while let Some(chunk) = from_node.recv().await {
            match chunk {
                Chunk::Data(bytes) => {
                    if writer.write_all(&bytes).await.is_err() {
                        let _ = commands.send(Command::Abort(flow)).await;
                        return;
                    }
                    let _ = commands.send(Command::Resume(flow)).await;
                }
                Chunk::Fin => {
                    let _ = writer.shutdown().await;
                }
            }
        }
    };
    tokio::select! {
        () = cancel.cancelled() => {}
        _ = async { tokio::join!(inbound, outbound) } => {}
    }
}

async fn serve_udp(target: Target, ends: FlowEnds) {
    let FlowEnds {
        flow,
        commands,
        mut from_node,
        cancel,
        ..
    } = ends;
    let socket = async {
        let bind: SocketAddr = if target.host.contains(':') {
            "[::]:0".parse().ok()?
        } else {
            "0.0.0.0:0".parse().ok()?
        };
        let socket = UdpSocket::bind(bind).await.ok()?;
        socket
            .connect((target.host.as_ref(), target.port))
            .await
            .ok()?;
        Some(socket)
    };
    let Some(socket) = socket.await else {
        tracing::debug!(%flow, %target, "cannot reach UDP target");
        let _ = commands.send(Command::Abort(flow)).await;
        return;
    };
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            chunk = from_node.recv() => match chunk {
                Some(Chunk::Data(datagram)) => {
                    let _ = socket.send(&datagram).await;
                }
                Some(Chunk::Fin) => {}
                None => return,
            },
            received = socket.recv(&mut buf) => {
                // A refused datagram (ICMP unreachable) is not the peer's error to see.
                if let Ok(len) = received
                    && commands.send(Command::Data(flow, Bytes::copy_from_slice(&buf[..len]))).await.is_err()
                {
                    return;
                }
            }
        }
    }
}
