//! `Pair`: two nodes, a sharer and a joiner, joined by a simulated link on virtual time,
//! optionally through a simulated hub relay (`Pair::with_relay`).
//!
//! The link can lose, duplicate, reorder and delay datagrams, all from one seed, so every
//! run of a test sees the same packets. `step` drains both nodes, delivers what is due and
//! otherwise jumps time to the next delivery or timer; `drive_until` bounds the steps and
//! fails loudly when the bound is hit.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::type_complexity,
    clippy::wildcard_enum_match_arm
)]

mod sim_relay;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use connect_netstack::{
    CloseReason, Event, FlowId, Ipv4Net, Node, NodeConfig, PeerConfig, Policy, Protocol, PublicKey,
    RelayConfig, Route, StaticSecret, Target, relay,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
pub use sim_relay::{RELAY_ADDR, SimRelay, UNIX_START_MS};

pub const SHARER_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
pub const JOINER_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 3);
pub const BULK_PORT: u16 = 80;
pub const ECHO_PORT: u16 = 7;
pub const DNS_PORT: u16 = 53;

#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    pub seed: u64,
    pub latency: Duration,
    /// Extra random delay up to this much: reorders packets.
    pub jitter: Duration,
    pub loss: f64,
    pub duplicate: f64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            latency: Duration::from_micros(500),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

pub const SHARER_SLOT: u64 = 11;
pub const JOINER_SLOT: u64 = 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    Sharer,
    Joiner,
    Relay,
}

pub struct Side {
    pub node: Node,
    pub addr: SocketAddr,
    pub events: VecDeque<Event>,
    /// Peers whose handshake completed, in order (kept apart from the flow events).
    pub handshakes: Vec<PublicKey>,
}

pub struct InFlight {
    pub at: Instant,
    pub to: To,
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
}

pub struct Pair {
    pub sharer: Side,
    pub joiner: Side,
    pub now: Instant,
    pub link: LinkConfig,
    pub in_flight: Vec<InFlight>,
    /// Every datagram that crossed the link, if set: for replay tests.
    pub capture: Option<Vec<(To, SocketAddr, Vec<u8>)>>,
    /// Drops datagrams for which it returns true, before loss is applied.
    pub filter: Option<Box<dyn FnMut(To, &[u8]) -> bool>>,
    /// The hub relay both nodes use, with `with_relay`.
    pub relay: Option<SimRelay>,
    /// Drops every datagram sent straight between the two nodes (a firewall between them).
    pub direct_blocked: bool,
    /// Datagrams sent to an address nobody is at (relay mode): (destination, bytes).
    pub strays: Vec<(SocketAddr, Vec<u8>)>,
    rng: ChaCha8Rng,
    buf: Vec<u8>,
}

pub fn key(byte: u8) -> StaticSecret {
    StaticSecret::from([byte; 32])
}

pub fn sharer_policy() -> Policy {
    Policy {
        routes: vec![
            Route {
                protocol: Protocol::Tcp,
                port: BULK_PORT,
                target: Target::new("127.0.0.1", 8080),
            },
            Route {
                protocol: Protocol::Tcp,
                port: ECHO_PORT,
                target: Target::new("127.0.0.1", 7007),
            },
            Route {
                protocol: Protocol::Udp,
                port: DNS_PORT,
                target: Target::new("127.0.0.1", 5353),
            },
        ],
        all_ports: None,
        closed_tcp: Vec::new(),
    }
}

pub fn peer(
    secret: &StaticSecret,
    ip: Ipv4Addr,
    endpoint: Option<SocketAddr>,
    policy: Policy,
) -> PeerConfig {
    PeerConfig {
        public_key: PublicKey::from(secret),
        allowed_ips: vec![Ipv4Net::new(ip, 32).unwrap()],
        endpoint,
        persistent_keepalive: None,
        policy,
        needs_checksums: true,
    }
}

impl Pair {
    pub fn new(link: LinkConfig) -> Self {
        Self::with_config(link, |_| {})
    }

    /// Like `new`, with `tweak` applied to both nodes' configuration.
    pub fn with_config(link: LinkConfig, tweak: impl Fn(&mut NodeConfig)) -> Self {
        Self::build(link, tweak, false)
    }

    /// Both nodes reach each other through a simulated hub relay that introduces them,
    /// as agents do: each peer's endpoint is the other's relay slot.
    pub fn with_relay(link: LinkConfig) -> Self {
        Self::build(link, |_| {}, true)
    }

    fn build(link: LinkConfig, tweak: impl Fn(&mut NodeConfig), relayed: bool) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_test_writer()
            .try_init();
        let now = Instant::now();
        let (sharer_key, joiner_key) = (key(1), key(2));
        let sharer_addr: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        let joiner_addr: SocketAddr = "198.51.100.7:40000".parse().unwrap();

        let mut sharer_config = NodeConfig::new(sharer_key.clone());
        sharer_config.addresses = vec![SHARER_IP];
        tweak(&mut sharer_config);
        let mut sharer = Node::new(sharer_config, link.seed, now);
        // The sharer learns the joiner's endpoint from its first handshake.
        let joiner_endpoint = relayed.then(|| relay::synthetic_endpoint(JOINER_SLOT));
        sharer
            .add_peer(peer(
                &joiner_key,
                JOINER_IP,
                joiner_endpoint,
                sharer_policy(),
            ))
            .unwrap();

        let mut joiner_config = NodeConfig::new(joiner_key);
        joiner_config.addresses = vec![JOINER_IP];
        tweak(&mut joiner_config);
        let mut joiner = Node::new(joiner_config, link.seed + 1, now);
        let sharer_endpoint = if relayed {
            relay::synthetic_endpoint(SHARER_SLOT)
        } else {
            sharer_addr
        };
        joiner
            .add_peer(peer(
                &sharer_key,
                SHARER_IP,
                Some(sharer_endpoint),
                Policy::default(),
            ))
            .unwrap();
        let relay = relayed.then(|| {
            let mut relay = SimRelay::new(now);
            for (node, slot) in [(&mut sharer, SHARER_SLOT), (&mut joiner, JOINER_SLOT)] {
                let key = relay.add_slot(slot);
                let config = RelayConfig {
                    addr: RELAY_ADDR,
                    slot,
                    key,
                    direct: true,
                    stream_only: false,
                };
                node.set_relay(config, now, UNIX_START_MS);
            }
            relay
        });

        Self {
            sharer: Side {
                node: sharer,
                addr: sharer_addr,
                events: VecDeque::new(),
                handshakes: Vec::new(),
            },
            joiner: Side {
                node: joiner,
                addr: joiner_addr,
                events: VecDeque::new(),
                handshakes: Vec::new(),
            },
            now,
            rng: ChaCha8Rng::seed_from_u64(link.seed),
            link,
            in_flight: Vec::new(),
            capture: None,
            filter: None,
            relay,
            direct_blocked: false,
            strays: Vec::new(),
            buf: vec![0; 2048],
        }
    }

    pub fn side(&mut self, to: To) -> &mut Side {
        match to {
            To::Sharer => &mut self.sharer,
            To::Joiner => &mut self.joiner,
            To::Relay => panic!("the relay is no node"),
        }
    }

    /// Who is at `addr`, if anyone.
    fn at(&self, addr: SocketAddr) -> Option<To> {
        if addr == self.sharer.addr {
            Some(To::Sharer)
        } else if addr == self.joiner.addr {
            Some(To::Joiner)
        } else if self.relay.is_some() && addr == RELAY_ADDR {
            Some(To::Relay)
        } else {
            None
        }
    }

    /// Where a peer's datagrams go from `side` now: the other's address or a relay slot.
    pub fn endpoint_of_peer(&mut self, side: To) -> Option<SocketAddr> {
        let node = &self.side(side).node;
        node.peers().first().and_then(|p| p.endpoint)
    }

    /// Whether `side` sends its peer's datagrams straight to it.
    pub fn is_direct(&mut self, side: To) -> bool {
        self.endpoint_of_peer(side)
            .is_some_and(|e| relay::slot_of(e).is_none())
    }

    /// Puts a datagram on the wire as if `from` sent it to `to`, past loss and filters.
    pub fn inject(&mut self, to: To, from: SocketAddr, bytes: Vec<u8>) {
        self.in_flight.push(InFlight {
            at: self.now,
            to,
            from,
            bytes,
        });
    }

    fn drain(&mut self, from: To) {
        let peer = match from {
            To::Sharer => To::Joiner,
            To::Joiner | To::Relay => To::Sharer,
        };
        loop {
            let side = self.side(from);
            let src = side.addr;
            let mut buf = std::mem::take(&mut self.buf);
            let transmit = self.side(from).node.poll_transmit(&mut buf);
            let Some(transmit) = transmit else {
                self.buf = buf;
                break;
            };
            let bytes = buf[transmit.range()].to_vec();
            self.buf = buf;
            // A hole-punching opener dies before the peer: there is no NAT here for it to
            // open.
            if transmit.ttl.is_some() {
                continue;
            }
            if self.relay.is_none() {
                assert_eq!(
                    transmit.dst,
                    self.side(peer).addr,
                    "datagram sent to the wrong endpoint"
                );
            }
            let Some(to) = self.at(transmit.dst) else {
                self.strays.push((transmit.dst, bytes));
                continue;
            };
            if self.direct_blocked && to != To::Relay {
                continue;
            }
            self.send(to, src, bytes);
        }
        while let Some(event) = self.side(from).node.poll_event() {
            match event {
                Event::HandshakeCompleted { peer } => self.side(from).handshakes.push(peer),
                event => self.side(from).events.push_back(event),
            }
        }
    }

    /// Puts one datagram on the link from `src` to `to`, through capture, filter and loss.
    fn send(&mut self, to: To, src: SocketAddr, bytes: Vec<u8>) {
        if let Some(capture) = &mut self.capture {
            capture.push((to, src, bytes.clone()));
        }
        if let Some(filter) = &mut self.filter
            && filter(to, &bytes)
        {
            return;
        }
        if self.rng.random_bool(self.link.loss) {
            return;
        }
        let copies = if self.rng.random_bool(self.link.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.link.jitter.is_zero() {
                Duration::ZERO
            } else {
                self.link.jitter.mul_f64(self.rng.random::<f64>())
            };
            self.in_flight.push(InFlight {
                at: self.now + self.link.latency + jitter,
                to,
                from: src,
                bytes: bytes.clone(),
            });
        }
    }

    /// Delivers one datagram where it was going; the relay's answers go on the link.
    fn deliver(&mut self, packet: InFlight) {
        if packet.to != To::Relay {
            let now = self.now;
            self.side(packet.to)
                .node
                .handle_datagram(packet.from, &packet.bytes, now);
            return;
        }
        let Some(relay) = &mut self.relay else {
            return;
        };
        for (dst, bytes) in relay.handle(packet.from, &packet.bytes, self.now) {
            match self.at(dst) {
                Some(to) => self.send(to, RELAY_ADDR, bytes),
                None => self.strays.push((dst, bytes)),
            }
        }
    }

    /// One round: drain outputs, deliver what is due, else jump to the next deadline.
    pub fn step(&mut self) {
        self.drain(To::Sharer);
        self.drain(To::Joiner);
        let now = self.now;
        if !self.in_flight.iter().any(|p| p.at <= now) {
            let next_delivery = self.in_flight.iter().map(|p| p.at).min();
            let next_timer = [
                self.sharer.node.poll_timeout(),
                self.joiner.node.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let next = [next_delivery, next_timer].into_iter().flatten().min();
            if let Some(next) = next {
                self.now = self.now.max(next);
            }
        }
        let now = self.now;
        for to in [To::Sharer, To::Joiner] {
            if self.side(to).node.poll_timeout().is_some_and(|t| t <= now) {
                self.side(to).node.handle_timeout(now);
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|p| p.at <= now);
        self.in_flight = later;
        for packet in due {
            self.deliver(packet);
        }
        self.drain(To::Sharer);
        self.drain(To::Joiner);
    }

    /// A round at the current `now`: timers and deliveries due, no jump in time.
    pub fn step_without_jumping(&mut self) {
        let saved = std::mem::take(&mut self.in_flight);
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = saved.into_iter().partition(|p| p.at <= now);
        self.in_flight = later;
        self.drain(To::Sharer);
        self.drain(To::Joiner);
        for to in [To::Sharer, To::Joiner] {
            if self.side(to).node.poll_timeout().is_some_and(|t| t <= now) {
                self.side(to).node.handle_timeout(now);
            }
        }
        for packet in due {
            self.deliver(packet);
        }
        self.drain(To::Sharer);
        self.drain(To::Joiner);
    }

    /// Steps until `done` holds; panics after `max_steps`.
    pub fn drive_until(&mut self, max_steps: usize, mut done: impl FnMut(&mut Pair) -> bool) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            self.step();
        }
        panic!(
            "condition not reached after {max_steps} steps; sharer {:?}, joiner {:?}",
            self.sharer.node.stats(),
            self.joiner.node.stats()
        );
    }

    /// Runs `steps` rounds whatever happens.
    pub fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step();
        }
    }

    /// The sharer accepts every flow its policy let through, as a real target would.
    pub fn accept_all(&mut self) -> Vec<Event> {
        let mut others = Vec::new();
        while let Some(event) = self.sharer.events.pop_front() {
            if let Event::Accepted { flow, .. } = &event {
                self.sharer
                    .node
                    .handle_flow_connected(*flow, self.now)
                    .unwrap();
            }
            others.push(event);
        }
        others
    }
}

pub fn sharer_socket(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(SHARER_IP, port)
}

/// A deterministic byte stream for bulk tests.
pub fn pattern(offset: usize, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        let n = (offset + i) as u64;
        *byte = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ (n >> 12) as u8;
    }
}

/// Sends `total` bytes sharer → joiner over one TCP flow; returns both sides' digests.
pub fn bulk(pair: &mut Pair, total: usize, max_steps: usize) -> ([u8; 32], [u8; 32]) {
    bulk_with(pair, total, max_steps, |_, _| {})
}

/// As `bulk`, calling `each_step` with the pair and the bytes received so far before
/// every step (to change the network mid-transfer).
pub fn bulk_with(
    pair: &mut Pair,
    total: usize,
    max_steps: usize,
    mut each_step: impl FnMut(&mut Pair, usize),
) -> ([u8; 32], [u8; 32]) {
    let flow = pair
        .joiner
        .node
        .connect_tcp(sharer_socket(BULK_PORT), pair.now)
        .unwrap();
    let mut served: Option<FlowId> = None;
    let (mut sent, mut received) = (0usize, 0usize);
    let (mut sent_hash, mut received_hash) = (Sha256::new(), Sha256::new());
    let mut chunk = vec![0u8; 64 * 1024];
    let mut read_buf = vec![0u8; 64 * 1024];
    let (mut sharer_done, mut joiner_done) = (false, false);
    pair.drive_until(max_steps, |p| {
        each_step(p, received);
        for event in p.accept_all() {
            match event {
                Event::Accepted { flow, target, .. } => {
                    assert_eq!(target.port, 8080);
                    served = Some(flow);
                }
                Event::Closed { reason, .. } => {
                    assert_eq!(reason, CloseReason::Finished);
                    sharer_done = true;
                }
                _ => {}
            }
        }
        if let Some(s) = served {
            while sent < total {
                let len = chunk.len().min(total - sent);
                pattern(sent, &mut chunk[..len]);
                let n = p.sharer.node.send(s, &chunk[..len], p.now).unwrap_or(0);
                sent_hash.update(&chunk[..n]);
                sent += n;
                if n < len {
                    break;
                }
            }
            if sent == total && !sharer_done {
                let _ = p.sharer.node.close(s, p.now);
            }
        }
        while let Some(event) = p.joiner.events.pop_front() {
            match event {
                Event::ReadClosed { flow: f } => {
                    assert_eq!(f, flow);
                    p.joiner.node.close(flow, p.now).unwrap();
                }
                Event::Closed { reason, .. } => {
                    assert_eq!(reason, CloseReason::Finished);
                    joiner_done = true;
                }
                _ => {}
            }
        }
        if !joiner_done {
            while let Ok(Some(n)) = p.joiner.node.recv(flow, &mut read_buf) {
                received_hash.update(&read_buf[..n]);
                received += n;
            }
        }
        sharer_done && joiner_done
    });
    assert_eq!(received, total);
    (sent_hash.finalize().into(), received_hash.finalize().into())
}
