//! [`Node`]: one WireGuard endpoint with its own userspace TCP/IP stack, as a pure state
//! machine.
//!
//! # The loop contract
//!
//! A node does no IO and reads no clock. Its driver feeds it inputs and drains its outputs:
//!
//! - inputs: [`Node::handle_datagram`] for every UDP datagram received (WireGuard or the
//!   hub relay's frames), [`Node::handle_ip_packet`] for every packet read from a TUN
//!   device (raw mode), [`Node::handle_timeout`] when [`Node::poll_timeout`] is reached,
//!   [`Node::set_wall_clock`] now and then, and the flow calls ([`Node::send`],
//!   [`Node::recv`], [`Node::close`], …) for the real sockets it bridges;
//! - outputs, drained after **every** input until they return `None`:
//!   [`Node::poll_transmit`] (datagrams ready for the wire: relay binds, and WireGuard
//!   framed for the relay where a peer is reached through it), [`Node::poll_ip_packet`]
//!   (packets for the TUN device), [`Node::poll_event`] (flow events and completed
//!   handshakes), then [`Node::poll_timeout`] (which covers the next relay bind).
//!
//! Every input takes `now`; the wall clock (relay binds carry Unix time) comes in with
//! [`Node::set_relay`] and [`Node::set_wall_clock`]. The node keeps no other notion of
//! time except boringtun's internal timers, which read the system clock (see `wg.rs`).
//! Network input never returns an error: whatever a peer sends is either used or dropped
//! and counted in [`Stats`].
//!
//! # Roles
//!
//! The same node serves (a peer's SYN to one of our addresses becomes an
//! [`Event::Accepted`] when the peer's [`Policy`](crate::Policy) allows it), dials
//! ([`Node::connect_tcp`], [`Node::open_udp`]) and, with [`NodeConfig::raw`], hands every
//! packet not addressed to its own stack to a TUN device. Packets are only exchanged
//! between a peer and this node: peers never reach each other through it.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use boringtun::x25519::{PublicKey, StaticSecret};
use bytes::{Bytes, BytesMut};
use smoltcp::socket::tcp;

use crate::Error;
use crate::answers::Answers;
use crate::event::Event;
use crate::flow::{CloseReason, Flow, FlowId, FlowKind, FlowTable, TcpFlow, UdpFlow};
use crate::packet::{self, FiveTuple, IPV4_HEADER, Inspected, UDP_HEADER};
use crate::path;
use crate::policy::Protocol;
use crate::relay;
use crate::relay_client::{Incoming, RelayClient, RelayConfig, RelayTransport};
use crate::stack::{SOCKET_OVERHEAD, Stack};
use crate::stats::Stats;
use crate::wg::{Inbound, MIN_DST, OVERHEAD, PeerConfig, PeerStats, Sessions};

/// boringtun's own device calls its timers every 250 ms; more often only costs CPU.
const TIMER_PERIOD: Duration = Duration::from_millis(250);
const UDP_SWEEP_PERIOD: Duration = Duration::from_secs(1);
/// Packets smoltcp may produce per poll before the driver has to drain them.
const TX_LIMIT: usize = 64;
/// Below this a TCP flow would crawl; refuse the flow instead.
const MIN_TCP_BUFFER: usize = 16 * 1024;
/// What a UDP flow is charged against the memory cap: its queue at the worst.
const UDP_FLOW_MEMORY: usize = 64 * 1024;
/// Packets waiting for the TUN device before new ones are dropped.
const RAW_QUEUE_LIMIT: usize = 1024;
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Static settings of a node.
#[derive(Clone)]
pub struct NodeConfig {
    pub private_key: StaticSecret,
    /// Tunnel addresses this node's own stack answers for (IPv4; 172.16.0.0/12 in
    /// connect). Empty for a pure TUN joiner.
    pub addresses: Vec<Ipv4Addr>,
    /// Hand packets for other addresses to [`Node::poll_ip_packet`] (TUN joiner).
    pub raw: bool,
    /// MTU of the tunnel: inner packets are at most this long.
    pub mtu: usize,
    /// Send and receive buffer of each TCP flow. Throughput per flow is buffer / RTT.
    pub tcp_buffer: usize,
    /// Total bytes all flows' buffers may take; new flows get smaller buffers, then are
    /// refused, as it fills.
    pub flow_memory_cap: usize,
    /// Flows one peer may have open towards this node: each is a real socket on the
    /// sharing machine, and one joiner must not take them all.
    pub max_flows_per_peer: usize,
    pub udp_idle_timeout: Duration,
    /// Datagrams a UDP flow holds for its reader before dropping.
    pub udp_queue: usize,
}

impl NodeConfig {
    /// Defaults: 512 KiB buffers fill 1 Gbit/s at 4 ms RTT per flow; the 1 GiB cap holds
    /// over 10,000 flows because later flows get smaller buffers.
    pub fn new(private_key: StaticSecret) -> Self {
        Self {
            private_key,
            addresses: Vec::new(),
            raw: false,
            mtu: 1420,
            tcp_buffer: 512 * 1024,
            flow_memory_cap: 1024 * 1024 * 1024,
            max_flows_per_peer: 512,
            udp_idle_timeout: Duration::from_secs(120),
            udp_queue: 64,
        }
    }
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field(
                "public_key",
                &crate::key_label(&PublicKey::from(&self.private_key)),
            )
            .field("addresses", &self.addresses)
            .field("raw", &self.raw)
            .field("mtu", &self.mtu)
            .finish_non_exhaustive()
    }
}

/// A datagram written by [`Node::poll_transmit`] into the caller's buffer, at
/// `buf[offset..offset + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub dst: SocketAddr,
    pub offset: usize,
    pub len: usize,
    /// Send with this IP TTL instead of the socket's: a hole-punching opener meant to
    /// open our own NAT's mapping without reaching the peer's (see `path`).
    pub ttl: Option<u8>,
}

impl Transmit {
    /// Where the datagram is in the buffer it was written to.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

pub struct Node {
    config: NodeConfig,
    sessions: Sessions,
    stack: Stack,
    flows: FlowTable,
    events: VecDeque<Event>,
    /// Sealed datagrams boringtun produced itself (handshakes, cookies, keepalives).
    control: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Hole-punching openers, sent with a small TTL (see `path`).
    openers: VecDeque<(SocketAddr, Vec<u8>)>,
    raw_rx: VecDeque<Vec<u8>>,
    /// Raw mode: what may come back to the joiner's kernel (answers to its own flows).
    answers: Answers,
    /// Flows whose socket may have changed since the last look.
    touched: Vec<FlowId>,
    touch_all: bool,
    stats: Stats,
    now: Instant,
    /// Inputs arrived that smoltcp has not processed yet.
    dirty: bool,
    /// smoltcp stopped at a full device queue and must run again once it drains.
    egress_blocked: bool,
    next_timers: Instant,
    next_udp_sweep: Instant,
    stack_deadline: Option<Instant>,
    next_port: u16,
    /// Scratch space for boringtun's timer output.
    scratch: Vec<u8>,
    relay: Option<RelayClient>,
    /// Where the next datagram is sealed in the caller's buffer: behind room for a relay
    /// header when the last one went through the relay, else at the start. Datagrams come
    /// in runs to one peer, so the guess is nearly always right and a datagram is moved
    /// only when it is wrong.
    room: usize,
}

impl Node {
    /// `seed` makes smoltcp's sequence numbers and the node's port choice reproducible in
    /// tests; production passes a random one.
    pub fn new(config: NodeConfig, seed: u64, now: Instant) -> Self {
        let stack = Stack::new(&config.addresses, config.mtu, TX_LIMIT, seed, now);
        let span = EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start();
        let next_port = EPHEMERAL_PORTS.start() + (seed % u64::from(span)) as u16;
        Self {
            sessions: Sessions::new(config.private_key.clone(), (seed >> 16) as u32),
            stack,
            flows: FlowTable::default(),
            events: VecDeque::new(),
            control: VecDeque::new(),
            openers: VecDeque::new(),
            raw_rx: VecDeque::new(),
            answers: Answers::default(),
            touched: Vec::new(),
            touch_all: false,
            stats: Stats::default(),
            now,
            dirty: false,
            egress_blocked: false,
            next_timers: now,
            next_udp_sweep: now + UDP_SWEEP_PERIOD,
            stack_deadline: None,
            next_port,
            scratch: vec![0; MIN_DST.max(config.mtu + OVERHEAD)],
            relay: None,
            room: 0,
            config,
        }
    }

    /// Reaches peers through a hub relay from now on. The first bind is due at once, so
    /// the relay knows our address before our first handshake arrives; later ones every
    /// [`BIND_INTERVAL`](crate::relay_client::BIND_INTERVAL). `unix_ms` is the wall clock
    /// at `now`.
    ///
    /// The same relay again (a hub that restarted forgot our binding) binds at once and
    /// keeps the rest: a stream to the hub that carries our frames stays in use.
    pub fn set_relay(&mut self, config: RelayConfig, now: Instant, unix_ms: u64) {
        self.now = now;
        match &mut self.relay {
            Some(relay) if relay.config() == &config => relay.rebind(now, unix_ms),
            _ => self.relay = Some(RelayClient::new(config, now, unix_ms)),
        }
    }

    /// A fresh reading of the wall clock (`unix_ms` at `now`), which relay binds carry.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        if let Some(relay) = &mut self.relay {
            relay.set_wall_clock(now, unix_ms);
        }
    }

    /// Our public address as the relay saw it, once it answered a bind.
    pub fn relay_observed(&self) -> Option<SocketAddr> {
        self.relay.as_ref().and_then(RelayClient::observed)
    }

    /// How relay frames reach the hub now; `None` without a relay.
    pub fn relay_transport(&self) -> Option<RelayTransport> {
        self.relay.as_ref().map(RelayClient::transport)
    }

    /// The driver's stream to the hub (asked for with [`Event::RelayStream`]) is open:
    /// relay frames go over it, as datagrams to [`relay::STREAM_ENDPOINT`], and frames
    /// read from it come in through [`Node::handle_datagram`] from that address.
    pub fn handle_relay_stream_up(&mut self, now: Instant) {
        self.now = now;
        if let Some(relay) = &mut self.relay {
            relay.stream_up(now);
        }
    }

    /// The driver's stream to the hub failed or closed: frames go over UDP again, and
    /// another stream is asked for after a wait if UDP still does not answer.
    pub fn handle_relay_stream_down(&mut self, now: Instant) {
        self.now = now;
        if let Some(relay) = &mut self.relay {
            relay.stream_down(now);
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.sessions.public_key()
    }

    /// Replaces the tunnel addresses this node's stack answers for (a sharer owns one per
    /// live share). Flows on a removed address end when their peers are removed.
    pub fn set_addresses(&mut self, addresses: Vec<Ipv4Addr>) {
        self.config.addresses = addresses;
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Open flows and the bytes their buffers are charged against the cap.
    pub fn flow_usage(&self) -> (usize, usize) {
        (self.flows.len(), self.flows.memory)
    }

    /// # Errors
    /// [`Error::DuplicatePeer`] or [`Error::AddressInUse`] when the peer clashes with one
    /// already configured.
    pub fn add_peer(&mut self, peer: PeerConfig) -> Result<(), Error> {
        self.sessions.add(peer).map(|_| ())
    }

    /// Addresses where the peer says it may be reached directly (its LAN addresses, from
    /// the hub): each gets a handshake probe at once and every 2 s for 30 s while the
    /// path is relayed; an answer from one makes the path direct, as an introduction's
    /// does. At most 8 are kept.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`] when no such peer is configured.
    pub fn set_candidates(
        &mut self,
        key: &PublicKey,
        candidates: &[SocketAddr],
        now: Instant,
    ) -> Result<(), Error> {
        self.now = now;
        if !self.sessions.set_candidates(key, candidates, now) {
            return Err(Error::UnknownPeer);
        }
        self.sessions
            .probe_candidates(now, &mut self.scratch, &mut self.control);
        Ok(())
    }

    /// Removes a peer and ends all its flows at once (`Closed` with `PeerRemoved`).
    ///
    /// # Errors
    /// [`Error::UnknownPeer`] when no such peer is configured.
    pub fn remove_peer(&mut self, key: &PublicKey) -> Result<(), Error> {
        let index = self.sessions.index_of(key).ok_or(Error::UnknownPeer)?;
        let flows = self.flows.of_peer(index);
        self.reset_flows_of(index, &flows);
        self.sessions.remove(key);
        for id in flows {
            self.end_flow(id, CloseReason::PeerRemoved);
        }
        Ok(())
    }

    /// Sends an RST for each of the peer's TCP flows while its session still exists, so
    /// the far side's applications (a kernel TCP behind a TUN joiner) learn at once that
    /// the connection is gone instead of waiting on a silent socket.
    fn reset_flows_of(&mut self, index: u32, flows: &[FlowId]) {
        let mut any = false;
        for id in flows {
            if let Some(Flow {
                kind: FlowKind::Tcp(tcp),
                ..
            }) = self.flows.get_mut(*id)
            {
                self.stack.tcp(tcp.handle).abort();
                any = true;
            }
        }
        if !any {
            return;
        }
        self.stack.poll(self.now);
        let mut others = std::collections::VecDeque::new();
        let mut sealed = vec![0u8; MIN_DST.max(self.config.mtu + OVERHEAD)];
        while let Some(mut packet) = self.stack.device.tx.pop_front() {
            let for_peer = packet::ipv4_addresses(&packet)
                .and_then(|(_, dst)| self.sessions.route_ipv4(dst))
                == Some(index);
            if !for_peer {
                others.push_back(packet);
                continue;
            }
            if let Some(transmit) = self.seal(&mut packet, &mut sealed) {
                self.control
                    .push_back((transmit.dst, sealed[..transmit.len].to_vec()));
            }
            self.stack.device.pool.give(packet);
        }
        self.stack.device.tx = others;
    }

    /// Starts the WireGuard handshake with a peer now instead of with its first packet.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`] when no such peer is configured.
    pub fn connect_peer(&mut self, key: &PublicKey) -> Result<(), Error> {
        let index = self.sessions.index_of(key).ok_or(Error::UnknownPeer)?;
        self.sessions
            .initiate(index, &mut self.scratch, &mut self.control);
        Ok(())
    }

    /// A relay's word that the peer it reaches at `relayed` is at `candidate`: probes a
    /// direct path there (at most once a second per peer; see `path`).
    fn offer_direct(&mut self, relayed: SocketAddr, candidate: SocketAddr, now: Instant) {
        self.sessions.probe(
            relayed,
            candidate,
            now,
            &mut self.scratch,
            &mut self.openers,
        );
    }

    pub fn peer_stats(&self, key: &PublicKey) -> Option<PeerStats> {
        self.sessions.stats(self.sessions.index_of(key)?)
    }

    pub fn peers(&self) -> Vec<PeerStats> {
        self.sessions
            .peers()
            .filter_map(|(index, _)| self.sessions.stats(*index))
            .collect()
    }

    /// One UDP datagram from the network: WireGuard, or with a relay set, its frames.
    pub fn handle_datagram(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) {
        self.now = now;
        let Some(relay) = self.relay.as_mut() else {
            return self.open_datagram(from, datagram, now);
        };
        match relay.classify(from, datagram, now) {
            Incoming::WireGuard { from, datagram } => self.open_datagram(from, datagram, now),
            Incoming::Introduction { relayed, candidate } => {
                self.offer_direct(relayed, candidate, now);
            }
            Incoming::Nothing => {}
        }
    }

    fn open_datagram(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) {
        let mut buf = self.stack.device.pool.take();
        buf.resize(
            datagram.len().max(MIN_DST).max(self.config.mtu + OVERHEAD),
            0,
        );
        match self.sessions.decapsulate(
            from,
            now,
            datagram,
            &mut buf,
            &mut self.control,
            &mut self.stats,
        ) {
            Inbound::Packet { peer, len } => {
                buf.truncate(len);
                self.route_inbound(peer, buf);
            }
            Inbound::Nothing => self.stack.device.pool.give(buf),
        }
    }

    /// One IP packet read from the TUN device, to be sealed for the peer that owns its
    /// destination.
    pub fn handle_ip_packet(&mut self, packet: &[u8], now: Instant) {
        self.now = now;
        let routed = packet.len() <= self.config.mtu
            && packet::ipv4_addresses(packet)
                .is_some_and(|(_, dst)| self.sessions.route_ipv4(dst).is_some());
        if !routed {
            self.stats.no_route += 1;
            return;
        }
        if self.config.raw {
            self.answers.outbound(packet, now);
        }
        let mut buf = self.stack.device.pool.take();
        buf.extend_from_slice(packet);
        self.stack.device.tx.push_back(buf);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if now >= self.next_timers {
            self.sessions
                .update_timers(now, &mut self.scratch, &mut self.control);
            self.sessions
                .probe_candidates(now, &mut self.scratch, &mut self.control);
            self.next_timers = now + TIMER_PERIOD;
        }
        self.sessions.release_probes(now, &mut self.control);
        if now >= self.next_udp_sweep {
            self.expire_udp_flows();
            self.next_udp_sweep = now + UDP_SWEEP_PERIOD;
        }
        if self.stack_deadline.is_some_and(|deadline| deadline <= now) {
            self.touch_all = true;
            self.dirty = true;
        }
        self.run_if_dirty();
    }

    /// The next datagram for the wire, written into `buf`, which should hold at least
    /// `mtu + 44` bytes (a sealed packet behind a relay header); packets that do not fit
    /// are dropped. A due relay bind comes before anything else.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(relay) = &mut self.relay
            && let Some((bind, dst)) = relay.poll_bind(self.now)
        {
            buf.get_mut(..bind.len())?.copy_from_slice(&bind);
            return Some(Transmit {
                dst,
                offset: 0,
                len: bind.len(),
                ttl: None,
            });
        }
        loop {
            let at = self.room.min(buf.len());
            let sealed = self.poll_sealed(&mut buf[at..])?;
            let Some(slot) = relay::slot_of(sealed.dst) else {
                self.room = 0;
                return Some(Transmit {
                    offset: at,
                    ..sealed
                });
            };
            // A relayed peer with no relay set any more: nowhere to send it.
            let Some(relay) = &self.relay else { continue };
            self.room = relay::DATA_HEADER;
            if let Some((offset, len, dst)) = relay.frame(slot, buf, at, sealed.len) {
                return Some(Transmit {
                    dst,
                    offset,
                    len,
                    ttl: None,
                });
            }
        }
    }

    /// The next sealed WireGuard datagram, at the start of `buf`.
    fn poll_sealed(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        self.run_if_dirty();
        loop {
            let (queued, ttl) = match self.openers.pop_front() {
                Some(opener) => (Some(opener), Some(path::OPENER_TTL)),
                None => (self.control.pop_front(), None),
            };
            if let Some((dst, bytes)) = queued {
                if let Some(out) = buf.get_mut(..bytes.len()) {
                    out.copy_from_slice(&bytes);
                    self.stats.tx_datagrams += 1;
                    return Some(Transmit {
                        dst,
                        offset: 0,
                        len: bytes.len(),
                        ttl,
                    });
                }
                continue;
            }
            let Some(mut packet) = self.stack.device.tx.pop_front() else {
                if !self.egress_blocked {
                    return None;
                }
                self.process();
                if self.stack.device.tx.is_empty() && self.control.is_empty() {
                    return None;
                }
                continue;
            };
            let sealed = self.seal(&mut packet, buf);
            self.stack.device.pool.give(packet);
            if let Some(transmit) = sealed {
                self.stats.tx_datagrams += 1;
                return Some(transmit);
            }
        }
    }

    fn seal(&mut self, packet: &mut [u8], buf: &mut [u8]) -> Option<Transmit> {
        let Some(peer) =
            packet::ipv4_addresses(packet).and_then(|(_, dst)| self.sessions.route_ipv4(dst))
        else {
            self.stats.no_route += 1;
            return None;
        };
        if buf.len() < (packet.len() + OVERHEAD).max(MIN_DST) {
            tracing::warn!(
                len = packet.len(),
                buf = buf.len(),
                "transmit buffer too small, packet dropped"
            );
            return None;
        }
        let (dst, len) = self
            .sessions
            .encapsulate(peer, packet, buf, &mut self.stats)?;
        Some(Transmit {
            dst,
            offset: 0,
            len,
            ttl: None,
        })
    }

    /// The next packet for the TUN device (raw mode), written into `buf`.
    pub fn poll_ip_packet(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let packet = self.raw_rx.pop_front()?;
            let len = packet.len();
            let copied = buf.get_mut(..len).map(|out| out.copy_from_slice(&packet));
            self.stack.device.pool.give(packet);
            if copied.is_some() {
                return Some(len);
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.run_if_dirty();
        if let Some(peer) = self.sessions.poll_completed() {
            return Some(Event::HandshakeCompleted { peer });
        }
        if let Some(relay) = &mut self.relay
            && let Some(open) = relay.poll_stream(self.now)
        {
            return Some(Event::RelayStream { open });
        }
        self.events.pop_front()
    }

    /// Whether the peer has a session young enough to carry packets without a new
    /// handshake first.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`] when no such peer is configured.
    pub fn has_fresh_session(&self, key: &PublicKey) -> Result<bool, Error> {
        let index = self.sessions.index_of(key).ok_or(Error::UnknownPeer)?;
        Ok(self.sessions.has_fresh_session(index))
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.run_if_dirty();
        [
            Some(self.next_timers),
            Some(self.next_udp_sweep),
            self.stack_deadline,
            self.relay.as_ref().map(RelayClient::next_timeout),
            self.sessions.next_probe(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Opens a TCP connection through the tunnel; `Connected` or `Closed` tells how it went.
    ///
    /// # Errors
    /// When the node has no address, no peer routes to `dst`, ports or flow memory ran out.
    pub fn connect_tcp(&mut self, dst: SocketAddrV4, now: Instant) -> Result<FlowId, Error> {
        self.now = now;
        let (peer, local) = self.dial_from(Protocol::Tcp, dst)?;
        let buffer = self.tcp_buffer_for_new_flow()?;
        let handle = self
            .stack
            .connect(local, dst, buffer)
            .ok_or(Error::PortsExhausted)?;
        let id = self.flows.insert(Flow {
            peer,
            inbound: FiveTuple {
                protocol: Protocol::Tcp,
                src: dst,
                dst: local,
            },
            kind: FlowKind::Tcp(TcpFlow::dialing(handle)),
            memory: 2 * buffer + SOCKET_OVERHEAD,
        });
        self.touch(id);
        Ok(id)
    }

    /// Opens a UDP conversation with `dst` through the tunnel.
    ///
    /// # Errors
    /// As [`Node::connect_tcp`].
    pub fn open_udp(&mut self, dst: SocketAddrV4, now: Instant) -> Result<FlowId, Error> {
        self.now = now;
        let (peer, local) = self.dial_from(Protocol::Udp, dst)?;
        self.reserve(UDP_FLOW_MEMORY)?;
        Ok(self.insert_udp_flow(
            peer,
            FiveTuple {
                protocol: Protocol::Udp,
                src: dst,
                dst: local,
            },
        ))
    }

    /// Queues bytes (TCP) or one datagram (UDP) on a flow. Returns how much was taken; a
    /// TCP flow that takes less reports `Writable` once it has room again.
    ///
    /// # Errors
    /// [`Error::UnknownFlow`] for a closed flow; [`Error::FlowNotOpen`] when the TCP
    /// connection cannot send any more (closing);
    /// [`Error::DatagramTooLarge`] for a datagram over the tunnel MTU.
    pub fn send(&mut self, id: FlowId, data: &[u8], now: Instant) -> Result<usize, Error> {
        self.now = now;
        let max_datagram = self.config.mtu - IPV4_HEADER - UDP_HEADER;
        let flow = self.flows.get_mut(id).ok_or(Error::UnknownFlow)?;
        let inbound = flow.inbound;
        match &mut flow.kind {
            FlowKind::Tcp(tcp) => {
                let socket = self.stack.tcp(tcp.handle);
                // A target that speaks first (SSH, SMTP) may answer before the peer has
                // finished its handshake: take nothing yet and report `Writable` later.
                if matches!(
                    socket.state(),
                    tcp::State::SynReceived | tcp::State::SynSent
                ) {
                    tcp.wait_writable();
                    self.touch(id);
                    return Ok(0);
                }
                let sent = socket.send_slice(data).map_err(|_| Error::FlowNotOpen)?;
                if sent < data.len() {
                    tcp.wait_writable();
                }
                self.touch(id);
                Ok(sent)
            }
            FlowKind::Udp(udp) => {
                if data.len() > max_datagram {
                    return Err(Error::DatagramTooLarge(data.len()));
                }
                udp.touch(now);
                let mut buf = self.stack.device.pool.take();
                packet::write_udp(&mut buf, inbound.dst, inbound.src, data);
                self.stack.device.tx.push_back(buf);
                Ok(data.len())
            }
        }
    }

    /// Reads from a flow: bytes (TCP) or one whole datagram (UDP, truncated to `buf`).
    /// `None` when nothing is waiting; `Readable` announces more.
    ///
    /// # Errors
    /// [`Error::UnknownFlow`] for a closed flow.
    pub fn recv(&mut self, id: FlowId, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let mut read = 0;
        self.read_flow(id, buf.len(), |data, _| {
            buf[read..read + data.len()].copy_from_slice(data);
            read += data.len();
        })?;
        Ok((read > 0).then_some(read))
    }

    /// As [`Node::recv`], up to `max` bytes in a buffer of their own: one copy out of the
    /// stack into what the caller hands on, not one into a scratch buffer and another
    /// out of it.
    ///
    /// # Errors
    /// [`Error::UnknownFlow`] for a closed flow.
    pub fn recv_bytes(&mut self, id: FlowId, max: usize) -> Result<Option<Bytes>, Error> {
        let mut out = BytesMut::new();
        self.read_flow(id, max, |data, total| {
            out.reserve(total);
            out.extend_from_slice(data);
        })?;
        Ok((!out.is_empty()).then(|| out.freeze()))
    }

    /// Hands `put` what a flow holds, up to `max` bytes, in one or two slices (a TCP ring
    /// that wraps) or one datagram truncated to `max`; with each, the total still to come
    /// (that slice included), so a buffer is sized once.
    fn read_flow(
        &mut self,
        id: FlowId,
        max: usize,
        mut put: impl FnMut(&[u8], usize),
    ) -> Result<(), Error> {
        let flow = self.flows.get_mut(id).ok_or(Error::UnknownFlow)?;
        match &mut flow.kind {
            FlowKind::Tcp(tcp) => {
                let socket = self.stack.tcp(tcp.handle);
                let mut left = socket.recv_queue().min(max);
                while left > 0 {
                    let taken = socket
                        .recv(|data| {
                            let len = data.len().min(left);
                            put(&data[..len], left);
                            (len, len)
                        })
                        .unwrap_or(0);
                    if taken == 0 {
                        break;
                    }
                    left -= taken;
                }
                if !socket.can_recv() {
                    tcp.drained();
                }
                // The freed window must be announced, and a FIN behind the data reported.
                self.touch(id);
            }
            FlowKind::Udp(udp) => {
                if let Some(datagram) = udp.take() {
                    let len = datagram.len().min(max);
                    put(&datagram[..len], len);
                    self.stack.device.pool.give(datagram);
                }
            }
        }
        Ok(())
    }

    /// Serve side: the real target accepted, so the peer's SYN is answered now.
    ///
    /// # Errors
    /// [`Error::UnknownFlow`] for a closed flow.
    pub fn handle_flow_connected(&mut self, id: FlowId, now: Instant) -> Result<(), Error> {
        self.now = now;
        let flow = self.flows.get_mut(id).ok_or(Error::UnknownFlow)?;
        if let FlowKind::Tcp(tcp) = &flow.kind {
            self.stack.tcp(tcp.handle).pause_synack(false);
            self.touch(id);
        }
        Ok(())
    }

    /// Finishes sending: TCP sends FIN after what is queued (half-close; reading goes on),
    /// UDP ends the flow.
    ///
    /// # Errors
    /// [`Error::UnknownFlow`] for a closed flow.
    pub fn close(&mut self, id: FlowId, now: Instant) -> Result<(), Error> {
        self.now = now;
        let flow = self.flows.get_mut(id).ok_or(Error::UnknownFlow)?;
        match &flow.kind {
            FlowKind::Tcp(tcp) => {
                self.stack.tcp(tcp.handle).close();
                self.touch(id);
            }
            FlowKind::Udp(_) => self.end_flow(id, CloseReason::Finished),
        }
        Ok(())
    }

    /// Resets a flow: RST for TCP (also how a refused target is reported to the peer).
    ///
    /// # Errors
    /// [`Error::UnknownFlow`] for a closed flow.
    pub fn abort(&mut self, id: FlowId, now: Instant) -> Result<(), Error> {
        self.now = now;
        let flow = self.flows.get_mut(id).ok_or(Error::UnknownFlow)?;
        match &mut flow.kind {
            FlowKind::Tcp(tcp) => {
                tcp.reset();
                let socket = self.stack.tcp(tcp.handle);
                socket.abort();
                // smoltcp keeps a closed socket readable while it holds data; nobody will
                // read a reset flow's, and the flow ends only once it is gone.
                while socket
                    .recv(|data| (data.len(), data.len()))
                    .is_ok_and(|len| len > 0)
                {}
                self.touch(id);
            }
            FlowKind::Udp(_) => self.end_flow(id, CloseReason::Reset),
        }
        Ok(())
    }

    fn dial_from(
        &mut self,
        protocol: Protocol,
        dst: SocketAddrV4,
    ) -> Result<(u32, SocketAddrV4), Error> {
        // The address in the destination's /24 when we own one (a hub proxy owns one per
        // share), so the far side sees the source its peer entry allows.
        let same_block = |a: &&Ipv4Addr| a.octets()[..3] == dst.ip().octets()[..3];
        let local_ip = *self
            .config
            .addresses
            .iter()
            .find(same_block)
            .or_else(|| self.config.addresses.first())
            .ok_or(Error::NoLocalAddress)?;
        let peer = self
            .sessions
            .route_ipv4(*dst.ip())
            .ok_or(Error::NoRoute((*dst.ip()).into()))?;
        let span = usize::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) + 1;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port == *EPHEMERAL_PORTS.end() {
                *EPHEMERAL_PORTS.start()
            } else {
                port + 1
            };
            let local = SocketAddrV4::new(local_ip, port);
            let inbound = FiveTuple {
                protocol,
                src: dst,
                dst: local,
            };
            if !self.flows.contains_tuple(&inbound) {
                return Ok((peer, local));
            }
        }
        Err(Error::PortsExhausted)
    }

    fn reserve(&self, bytes: usize) -> Result<(), Error> {
        let used = self.flows.memory;
        let cap = self.config.flow_memory_cap;
        if used + bytes <= cap {
            Ok(())
        } else {
            Err(Error::MemoryCap { used, cap })
        }
    }

    /// The buffer size a new TCP flow gets: the configured one while less than a quarter
    /// of the cap is in use, then a quarter, a sixteenth and a sixty-fourth of it (never
    /// below [`MIN_TCP_BUFFER`]) as the cap fills. The first flows stay fast, and the
    /// default 512 KiB and 1 GiB still hold over 10,000 flows before refusing any.
    fn tcp_buffer_for_new_flow(&self) -> Result<usize, Error> {
        let quarter = (self.config.flow_memory_cap / 4).max(1);
        let shift = match self.flows.memory / quarter {
            0 => 0,
            1 => 2,
            2 => 4,
            _ => 6,
        };
        let size = (self.config.tcp_buffer >> shift).max(MIN_TCP_BUFFER);
        self.reserve(2 * size + SOCKET_OVERHEAD).map(|()| size)
    }

    fn insert_udp_flow(&mut self, peer: u32, inbound: FiveTuple) -> FlowId {
        self.flows.insert(Flow {
            peer,
            inbound,
            kind: FlowKind::Udp(UdpFlow::new(self.now)),
            memory: UDP_FLOW_MEMORY,
        })
    }

    /// A decrypted packet from `peer`: to our stack, to a flow, to the TUN device, or away.
    fn route_inbound(&mut self, peer: u32, buf: Vec<u8>) {
        let Some(inspected) = packet::inspect(&buf) else {
            self.stats.rx_invalid += 1;
            self.stack.device.pool.give(buf);
            return;
        };
        let dst = match &inspected {
            Inspected::Tcp { tuple, .. } | Inspected::Udp { tuple, .. } => *tuple.dst.ip(),
            Inspected::Other { dst, .. } => *dst,
        };
        if !self.config.addresses.contains(&dst) {
            if self.config.raw && !self.answers.admits(&buf, self.now) {
                self.stats.rx_unsolicited += 1;
                self.stack.device.pool.give(buf);
            } else if self.config.raw && self.raw_rx.len() < RAW_QUEUE_LIMIT {
                self.raw_rx.push_back(buf);
            } else {
                self.stats.no_route += 1;
                self.stack.device.pool.give(buf);
            }
            return;
        }
        match inspected {
            Inspected::Tcp { tuple, opens, rst } => match self.flows.lookup(&tuple) {
                Some(id) => {
                    if rst
                        && let Some(FlowKind::Tcp(tcp)) =
                            self.flows.get_mut(id).map(|f| &mut f.kind)
                    {
                        tcp.reset();
                    }
                    self.touch(id);
                    self.push_to_stack(buf);
                }
                None if opens => self.accept_tcp(peer, tuple, buf),
                // smoltcp answers a segment for no connection with RST.
                None => self.push_to_stack(buf),
            },
            Inspected::Udp { tuple, payload } => {
                let id = match self.flows.lookup(&tuple) {
                    Some(id) => Some(id),
                    None => self.accept_udp(peer, tuple),
                };
                match id {
                    Some(id) => {
                        self.deliver_udp(id, &buf[payload]);
                        self.stack.device.pool.give(buf);
                    }
                    // smoltcp has no UDP sockets, so it answers ICMP port unreachable.
                    None => self.push_to_stack(buf),
                }
            }
            Inspected::Other { .. } => self.push_to_stack(buf),
        }
    }

    fn push_to_stack(&mut self, buf: Vec<u8>) {
        self.stack.device.rx.push_back(buf);
        self.dirty = true;
    }

    fn policy_target(&mut self, peer: u32, protocol: Protocol, port: u16) -> Option<crate::Target> {
        let target = self
            .sessions
            .get(peer)
            .and_then(|p| p.config.policy.target(protocol, port));
        if target.is_none() {
            self.stats.policy_refused += 1;
        }
        target
    }

    /// Whether `peer` has room for one more flow; counted when it has not.
    fn peer_has_room(&mut self, peer: u32) -> bool {
        let room = self.flows.count_of(peer) < self.config.max_flows_per_peer;
        if !room {
            self.stats.peer_cap_refused += 1;
        }
        room
    }

    fn accept_tcp(&mut self, peer: u32, tuple: FiveTuple, syn: Vec<u8>) {
        let Some(target) = self.policy_target(peer, Protocol::Tcp, tuple.dst.port()) else {
            return self.push_to_stack(syn);
        };
        if !self.peer_has_room(peer) {
            return self.push_to_stack(syn);
        }
        let Ok(buffer) = self.tcp_buffer_for_new_flow() else {
            self.stats.memory_refused += 1;
            return self.push_to_stack(syn);
        };
        // Earlier packets first, so this SYN is the one the new listener takes.
        self.stack.ingress(self.now);
        let Some(handle) = self.stack.listen(tuple.dst, buffer) else {
            return self.stack.device.pool.give(syn);
        };
        self.stack.device.rx.push_back(syn);
        self.stack.ingress(self.now);
        if self.stack.tcp(handle).state() != tcp::State::SynReceived {
            self.stats.rx_invalid += 1;
            self.stack.sockets.remove(handle);
            return;
        }
        let Some(key) = self.sessions.get(peer).map(|p| p.config.public_key) else {
            return;
        };
        let id = self.flows.insert(Flow {
            peer,
            inbound: tuple,
            kind: FlowKind::Tcp(TcpFlow::accepted(handle)),
            memory: 2 * buffer + SOCKET_OVERHEAD,
        });
        self.events.push_back(Event::Accepted {
            flow: id,
            protocol: Protocol::Tcp,
            peer: key,
            source: tuple.src,
            target,
        });
    }

    fn accept_udp(&mut self, peer: u32, tuple: FiveTuple) -> Option<FlowId> {
        let target = self.policy_target(peer, Protocol::Udp, tuple.dst.port())?;
        if !self.peer_has_room(peer) {
            return None;
        }
        if self.reserve(UDP_FLOW_MEMORY).is_err() {
            self.stats.memory_refused += 1;
            return None;
        }
        let key = self.sessions.get(peer)?.config.public_key;
        let id = self.insert_udp_flow(peer, tuple);
        self.events.push_back(Event::Accepted {
            flow: id,
            protocol: Protocol::Udp,
            peer: key,
            source: tuple.src,
            target,
        });
        Some(id)
    }

    fn deliver_udp(&mut self, id: FlowId, payload: &[u8]) {
        let Some(FlowKind::Udp(udp)) = self.flows.get_mut(id).map(|f| &mut f.kind) else {
            return;
        };
        udp.touch(self.now);
        let mut buf = self.stack.device.pool.take();
        buf.extend_from_slice(payload);
        match udp.deliver(buf, self.config.udp_queue) {
            Ok(true) => self.events.push_back(Event::Readable { flow: id }),
            Ok(false) => {}
            Err(buf) => {
                self.stats.udp_dropped += 1;
                self.stack.device.pool.give(buf);
            }
        }
    }

    fn expire_udp_flows(&mut self) {
        let timeout = self.config.udp_idle_timeout;
        let now = self.now;
        let idle: Vec<FlowId> = self
            .flows
            .ids()
            .filter(|id| self.flows.is_udp(*id))
            .collect::<Vec<_>>()
            .into_iter()
            .filter(|id| {
                matches!(self.flows.get_mut(*id).map(|f| &f.kind),
                    Some(FlowKind::Udp(udp)) if udp.idle_for(now) >= timeout)
            })
            .collect();
        for id in idle {
            self.end_flow(id, CloseReason::TimedOut);
        }
    }

    /// Removes a flow now, without waiting for the peer, and reports it closed.
    fn end_flow(&mut self, id: FlowId, reason: CloseReason) {
        let Some(flow) = self.flows.remove(id) else {
            return;
        };
        match flow.kind {
            FlowKind::Tcp(tcp) => {
                self.stack.sockets.remove(tcp.handle);
            }
            FlowKind::Udp(udp) => {
                for buf in udp.queue {
                    self.stack.device.pool.give(buf);
                }
            }
        }
        self.events.push_back(Event::Closed { flow: id, reason });
    }

    fn touch(&mut self, id: FlowId) {
        self.touched.push(id);
        self.dirty = true;
    }

    fn run_if_dirty(&mut self) {
        if self.dirty {
            self.process();
        }
    }

    fn process(&mut self) {
        self.dirty = false;
        self.stack.poll(self.now);
        self.egress_blocked = self.stack.device.tx_full();
        self.collect_events();
        self.stack_deadline = self.stack.poll_at(self.now);
    }

    /// Turns socket state changes of touched flows into events.
    fn collect_events(&mut self) {
        let mut ids = std::mem::take(&mut self.touched);
        if std::mem::take(&mut self.touch_all) {
            ids.clear();
            ids.extend(self.flows.ids());
        } else {
            ids.sort_unstable();
            ids.dedup();
        }
        for id in ids.drain(..) {
            self.check_tcp(id);
        }
        // Keep the allocation for the next round.
        if self.touched.is_empty() {
            self.touched = ids;
        }
    }

    fn check_tcp(&mut self, id: FlowId) {
        let Some(Flow {
            kind: FlowKind::Tcp(tcp),
            ..
        }) = self.flows.get_mut(id)
        else {
            return;
        };
        let socket = self.stack.sockets.get::<tcp::Socket>(tcp.handle);
        if let Some(reason) = tcp.observe(id, socket, &mut self.events) {
            self.end_flow(id, reason);
        }
    }
}
