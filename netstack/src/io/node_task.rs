//! The node task: the one task that owns a [`Node`], its UDP socket and its TUN device.
//!
//! It `select!`s on the socket, the TUN device, a bounded command channel and the node's
//! next timeout; after every input it drains the node's outputs (datagrams in GSO runs,
//! packets for the TUN device, events). Everything the protocol decides (relay binds and
//! framing included) is the node's; this task only carries bytes and wakes it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::batch::{BatchSocket, RecvBatch, Run, SendBatch};
use super::command::{CHUNK, Chunk, Command, FLOW_QUEUE, Stall};
use super::flow_stream::FlowStream;
use super::flow_task::{FlowEnds, serve_tcp, serve_udp};
use super::handle::{DriverError, Snapshot};
use super::relay_stream::{self, RelayDialer, StreamLink};
use super::spin::{SPIN, Spin};
use super::tun::TunIo;
use crate::event::Event;
use crate::flow::{CloseReason, FlowId};
use crate::node::Node;
use crate::policy::Protocol;
use crate::{Error, PublicKey, relay};

/// Datagrams (or commands) taken per wake-up before outputs are drained again: enough to
/// fill a GSO run of replies, few enough that what the node queues stays small.
const RECV_BATCH: usize = 64;
/// Room for one sealed datagram behind a relay header.
const DATAGRAM_ROOM: usize = 65536 + relay::DATA_HEADER;

struct FlowIo {
    to_real: mpsc::Sender<Chunk>,
    /// Data from the real side the node has not taken yet.
    pending: Option<Bytes>,
    /// The real side finished; close once `pending` is sent.
    eof_pending: bool,
    /// The node has data for the real side, but its queue was full.
    stall: Stall,
    /// The peer finished; tell the real side once its queue has room.
    fin_pending: bool,
    /// Lets the flow's reader send its next chunk.
    credit: Arc<Notify>,
    cancel: CancellationToken,
    /// Dial side, until the handshake finishes.
    dial: Option<DialWaiter>,
}

type DialReply = oneshot::Sender<Result<FlowStream, DriverError>>;
type UdpReply = oneshot::Sender<Result<(FlowId, mpsc::Receiver<Chunk>), Error>>;

struct DialWaiter {
    reply: DialReply,
    from_node: mpsc::Receiver<Chunk>,
}

impl FlowIo {
    fn new(to_real: mpsc::Sender<Chunk>, parent: &CancellationToken) -> Self {
        Self {
            to_real,
            pending: None,
            eof_pending: false,
            stall: Stall::default(),
            fin_pending: false,
            credit: Arc::new(Notify::new()),
            cancel: parent.child_token(),
            dial: None,
        }
    }

    /// The ends a flow task holds, with the node's side of the flow in `from_node`.
    fn ends(
        &self,
        flow: FlowId,
        commands: &mpsc::Sender<Command>,
        from_node: mpsc::Receiver<Chunk>,
    ) -> FlowEnds {
        FlowEnds {
            flow,
            commands: commands.clone(),
            from_node,
            credit: self.credit.clone(),
            stall: self.stall.clone(),
            cancel: self.cancel.clone(),
        }
    }
}

pub(super) struct NodeTask {
    node: Node,
    socket: BatchSocket,
    tun: Option<TunIo>,
    receiver: mpsc::Receiver<Command>,
    commands: mpsc::Sender<Command>,
    flows: HashMap<FlowId, FlowIo>,
    /// Callers waiting for a peer's handshake, by its public key.
    handshakes: HashMap<[u8; 32], Vec<oneshot::Sender<()>>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// Sealed datagrams, gathered into GSO runs.
    send_batch: SendBatch,
    /// How to open a stream to the hub when UDP to its relay is blocked.
    relay_dialer: Option<Arc<dyn RelayDialer>>,
    /// The stream task, while one is wanted.
    relay_stream: Option<StreamLink>,
    stream_generation: u64,
    /// Polling after quiet wake-ups: for [`SPIN`], or never.
    spin: Spin,
}

impl NodeTask {
    pub(super) fn new(
        node: Node,
        socket: BatchSocket,
        tun: Option<TunIo>,
        receiver: mpsc::Receiver<Command>,
        commands: mpsc::Sender<Command>,
        cancel: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Self {
        Self {
            send_batch: SendBatch::new(DATAGRAM_ROOM, socket.max_segments()),
            node,
            socket,
            tun,
            receiver,
            commands,
            flows: HashMap::new(),
            handshakes: HashMap::new(),
            relay_dialer: None,
            relay_stream: None,
            stream_generation: 0,
            spin: Spin::new(Instant::now(), SPIN),
            cancel: cancel.clone(),
            tasks: tasks.clone(),
        }
    }

    /// Polls for `length` after a quiet wake-up instead of [`SPIN`] (zero: never).
    pub(super) fn spinning(mut self, length: std::time::Duration) -> Self {
        self.spin = Spin::new(Instant::now(), length);
        self
    }

    pub(super) async fn run(mut self) {
        let mut received = RecvBatch::default();
        let mut spin = self.spin;
        // Made once: a fresh `cancelled()` every turn locks and registers a waiter each time.
        let cancelled = self.cancel.clone().cancelled_owned();
        tokio::pin!(cancelled);
        loop {
            self.drain_outputs().await;
            let deadline = self.node.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut cancelled => break,
                readable = self.socket.readable() => {
                    if readable.is_err() {
                        break;
                    }
                    let now = Instant::now();
                    spin.woke(self.receive_datagrams(&mut received, now), now);
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
                    if let Err(err) = readable {
                        tracing::warn!(%err, "TUN device failed");
                        break;
                    }
                    let now = Instant::now();
                    spin.woke(self.receive_packets(now), now);
                }
                () = sleep => {
                    let now = Instant::now();
                    self.node.set_wall_clock(now, super::unix_ms());
                    self.node.handle_timeout(now);
                }
                () = spin.poll() => {}
            }
        }
        for (_, flow) in self.flows.drain() {
            flow.cancel.cancel();
        }
    }

    /// Hands the node what the socket has, up to a batch; returns how many were taken.
    fn receive_datagrams(&mut self, received: &mut RecvBatch, now: Instant) -> usize {
        let mut taken = 0;
        while taken < RECV_BATCH {
            match self.socket.try_recv(received) {
                Ok(_) => {
                    for (from, datagram) in received.datagrams() {
                        self.node.handle_datagram(from, datagram, now);
                        taken += 1;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors from a peer that went away surface here; they say nothing
                // WireGuard's timers will not find out.
                Err(err) => {
                    tracing::trace!(%err, "udp receive error");
                    taken += 1;
                }
            }
        }
        taken
    }

    /// Hands the node what the TUN device has, up to a batch; returns how many were taken.
    fn receive_packets(&mut self, now: Instant) -> usize {
        let Some(tun) = self.tun.as_mut() else {
            return 0;
        };
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
        taken
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
        loop {
            while let Some(transmit) = self.node.poll_transmit(self.send_batch.tail()) {
                if let Some(ttl) = transmit.ttl {
                    let opener = self.send_batch.tail()[transmit.range()].to_vec();
                    if let Err(err) = self.socket.send_with_ttl(transmit.dst, &opener, ttl).await {
                        tracing::debug!(%err, dst = %transmit.dst, "opener not sent");
                    }
                    continue;
                }
                if let Some(run) = self
                    .send_batch
                    .push(transmit.offset, transmit.len, transmit.dst)
                {
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

    /// Sends a run of datagrams: in one GSO send, or whole to the stream when it is for
    /// [`relay::STREAM_ENDPOINT`] (dropped while there is none, as UDP would drop it).
    async fn send_run(&self, run: Run) {
        let bytes = self.send_batch.run(&run);
        if run.dst == relay::STREAM_ENDPOINT {
            if let Some(stream) = &self.relay_stream {
                stream.send(bytes, run.segment);
            }
            return;
        }
        if let Err(err) = self.socket.send(run.dst, bytes, run.segment).await {
            tracing::debug!(%err, dst = %run.dst, "udp send failed");
        }
    }

    /// A receiver that fires once `key` has a fresh session, starting a handshake unless
    /// it has one already.
    fn handshake(&mut self, key: PublicKey) -> Result<oneshot::Receiver<()>, Error> {
        let (done, receiver) = oneshot::channel();
        if self.node.has_fresh_session(&key)? {
            let _ = done.send(());
            return Ok(receiver);
        }
        self.node.connect_peer(&key)?;
        let waiters = self.handshakes.entry(*key.as_bytes()).or_default();
        waiters.retain(|waiter| !waiter.is_closed());
        waiters.push(done);
        Ok(receiver)
    }

    fn handle_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::AddPeer(peer, reply) => {
                let _ = reply.send(self.node.add_peer(*peer));
            }
            Command::RemovePeer(key, reply) => {
                // Waiters for its handshake are woken by the drop and ask again, which
                // says the peer is gone.
                self.handshakes.remove(key.as_bytes());
                let _ = reply.send(self.node.remove_peer(&key));
            }
            Command::ConnectPeer(key, reply) => {
                let _ = reply.send(self.node.connect_peer(&key));
            }
            Command::SetCandidates(key, candidates, reply) => {
                let _ = reply.send(self.node.set_candidates(&key, &candidates, now));
            }
            Command::Handshake(key, reply) => {
                let _ = reply.send(self.handshake(key));
            }
            Command::DialTcp(dst, reply) => self.dial_tcp(dst, reply, now),
            Command::DialUdp(dst, reply) => self.dial_udp(dst, reply, now),
            Command::Stats(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Command::SetAddresses(addresses, reply) => {
                self.node.set_addresses(addresses);
                let _ = reply.send(());
            }
            Command::SetRelay(config, reply) => {
                self.node.set_relay(config, now, super::unix_ms());
                let _ = reply.send(());
            }
            Command::SetRelayDialer(dialer, reply) => {
                self.relay_dialer = Some(dialer);
                let _ = reply.send(());
            }
            Command::RelayStreamUp(generation) => {
                if self.current_stream(generation) {
                    self.node.handle_relay_stream_up(now);
                }
            }
            Command::RelayStreamDown(generation) => {
                if self.current_stream(generation) {
                    self.relay_stream = None;
                    self.node.handle_relay_stream_down(now);
                }
            }
            Command::RelayFrames(frames) => {
                for frame in frames.iter() {
                    self.node
                        .handle_datagram(relay::STREAM_ENDPOINT, frame, now);
                }
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
                let ends = io.ends(flow, &self.commands, from_node);
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
                let stream = FlowStream::new(
                    flow,
                    &self.commands,
                    waiter.from_node,
                    io.credit.clone(),
                    io.stall.clone(),
                    io.cancel.clone(),
                );
                let _ = waiter.reply.send(Ok(stream));
            }
            Event::Readable { flow } => self.pull_from_node(flow),
            Event::Writable { flow } => self.push_to_node(flow),
            Event::ReadClosed { flow } => {
                if let Some(io) = self.flows.get_mut(&flow) {
                    io.fin_pending = true;
                }
                self.pull_from_node(flow);
            }
            Event::RelayStream { open } => self.relay_stream(open),
            Event::HandshakeCompleted { peer } => {
                for waiter in self.handshakes.remove(peer.as_bytes()).unwrap_or_default() {
                    let _ = waiter.send(());
                }
            }
            Event::Closed { flow, reason } => {
                tracing::debug!(%flow, ?reason, "flow closed");
                if let Some(io) = self.flows.remove(&flow) {
                    // A finished flow's writer still drains its queue (dropping our
                    // sender ends it); anything else stops at once.
                    // A writer waiting for credit wakes to find it reset.
                    if reason != CloseReason::Finished {
                        io.cancel.cancel();
                        io.credit.notify_one();
                    }
                    if let Some(waiter) = io.dial {
                        let _ = waiter.reply.send(Err(DriverError::Refused));
                    }
                }
            }
        }
    }

    fn dial_tcp(&mut self, dst: SocketAddrV4, reply: DialReply, now: Instant) {
        match self.node.connect_tcp(dst, now) {
            Ok(flow) => {
                let (to_real, from_node) = mpsc::channel(FLOW_QUEUE);
                let mut io = FlowIo::new(to_real, &self.cancel);
                io.dial = Some(DialWaiter { reply, from_node });
                self.flows.insert(flow, io);
            }
            Err(err) => {
                let _ = reply.send(Err(err.into()));
            }
        }
    }

    fn dial_udp(&mut self, dst: SocketAddrV4, reply: UdpReply, now: Instant) {
        match self.node.open_udp(dst, now) {
            Ok(flow) => {
                let (to_real, from_node) = mpsc::channel(FLOW_QUEUE * 16);
                self.flows.insert(flow, FlowIo::new(to_real, &self.cancel));
                let _ = reply.send(Ok((flow, from_node)));
            }
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        let (flows, flow_memory) = self.node.flow_usage();
        Snapshot {
            stats: self.node.stats(),
            flows,
            flow_memory,
            peers: self.node.peers(),
            relay_observed: self.node.relay_observed(),
            relay_transport: self.node.relay_transport(),
        }
    }

    fn current_stream(&self, generation: u64) -> bool {
        self.relay_stream
            .as_ref()
            .is_some_and(|stream| stream.generation == generation)
    }

    /// Starts or stops the stream to the hub as the node asks; without a dialer (the
    /// hub's own peer, on the relay's machine) the node stays on UDP.
    fn relay_stream(&mut self, open: bool) {
        if !open {
            self.relay_stream = None;
            return;
        }
        let Some(dialer) = self.relay_dialer.clone() else {
            return;
        };
        if self.relay_stream.is_none() {
            self.stream_generation += 1;
            self.relay_stream = Some(relay_stream::spawn(
                dialer,
                self.stream_generation,
                self.commands.clone(),
                &self.tasks,
                &self.cancel,
            ));
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
        loop {
            let permit = match io.to_real.try_reserve() {
                Ok(permit) => permit,
                Err(mpsc::error::TrySendError::Full(())) => {
                    io.stall.set();
                    // The reader may have taken chunks between the two: it saw no stall
                    // then, so look again rather than wait for a Resume that may not come.
                    if io.to_real.capacity() > 0 {
                        continue;
                    }
                    return;
                }
                // Nobody reads the flow any more (its stream was dropped): what arrives
                // for it is refused, as a closed socket's is.
                Err(mpsc::error::TrySendError::Closed(())) => {
                    let _ = self.node.abort(flow, Instant::now());
                    return;
                }
            };
            // One copy out of the stack, into an allocation sized to what arrived.
            match self.node.recv_bytes(flow, CHUNK) {
                Ok(Some(bytes)) => permit.send(Chunk::Data(bytes)),
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

/// Resolves when the TUN device has packets; never without one.
async fn tun_readable(tun: Option<&TunIo>) -> io::Result<()> {
    match tun {
        Some(tun) => tun.readable().await,
        None => std::future::pending().await,
    }
}
