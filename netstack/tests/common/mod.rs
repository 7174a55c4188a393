//! `Pair`: two nodes, a sharer and a joiner, joined by a simulated link on virtual time.
//!
//! The link can lose, duplicate, reorder and delay datagrams, all from one seed, so every
//! run of a test sees the same packets. `step` drains both nodes, delivers what is due and
//! otherwise jumps time to the next delivery or timer; `drive_until` bounds the steps and
//! fails loudly when the bound is hit.
#![allow(dead_code, clippy::unwrap_used, clippy::type_complexity)]

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use connect_netstack::{
    Event, Ipv4Net, Node, NodeConfig, PeerConfig, Policy, Protocol, PublicKey, Route, StaticSecret,
    Target,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    Sharer,
    Joiner,
}

pub struct Side {
    pub node: Node,
    pub addr: SocketAddr,
    pub events: VecDeque<Event>,
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
    }
}

impl Pair {
    pub fn new(link: LinkConfig) -> Self {
        Self::with_config(link, |_| {})
    }

    /// Like `new`, with `tweak` applied to both nodes' configuration.
    pub fn with_config(link: LinkConfig, tweak: impl Fn(&mut NodeConfig)) -> Self {
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
        sharer
            .add_peer(peer(&joiner_key, JOINER_IP, None, sharer_policy()))
            .unwrap();

        let mut joiner_config = NodeConfig::new(joiner_key);
        joiner_config.addresses = vec![JOINER_IP];
        tweak(&mut joiner_config);
        let mut joiner = Node::new(joiner_config, link.seed + 1, now);
        joiner
            .add_peer(peer(
                &sharer_key,
                SHARER_IP,
                Some(sharer_addr),
                Policy::default(),
            ))
            .unwrap();

        Self {
            sharer: Side {
                node: sharer,
                addr: sharer_addr,
                events: VecDeque::new(),
            },
            joiner: Side {
                node: joiner,
                addr: joiner_addr,
                events: VecDeque::new(),
            },
            now,
            rng: ChaCha8Rng::seed_from_u64(link.seed),
            link,
            in_flight: Vec::new(),
            capture: None,
            filter: None,
            buf: vec![0; 2048],
        }
    }

    pub fn side(&mut self, to: To) -> &mut Side {
        match to {
            To::Sharer => &mut self.sharer,
            To::Joiner => &mut self.joiner,
        }
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
        let to = match from {
            To::Sharer => To::Joiner,
            To::Joiner => To::Sharer,
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
            let bytes = buf[..transmit.len].to_vec();
            self.buf = buf;
            assert_eq!(
                transmit.dst,
                self.side(to).addr,
                "datagram sent to the wrong endpoint"
            );
            if let Some(capture) = &mut self.capture {
                capture.push((to, src, bytes.clone()));
            }
            if let Some(filter) = &mut self.filter
                && filter(to, &bytes)
            {
                continue;
            }
            if self.rng.random_bool(self.link.loss) {
                continue;
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
        while let Some(event) = self.side(from).node.poll_event() {
            self.side(from).events.push_back(event);
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
            self.side(packet.to)
                .node
                .handle_datagram(packet.from, &packet.bytes, now);
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
            self.side(packet.to)
                .node
                .handle_datagram(packet.from, &packet.bytes, now);
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
