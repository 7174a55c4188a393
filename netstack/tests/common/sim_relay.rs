//! A hub relay on the simulated link: binds slots to addresses (with the real bind
//! authentication), forwards data frames between bound slots with the slot rewritten to
//! the sender's, and introduces the two ends to each other every two seconds while it
//! forwards, as the hub's relay does. `restart` forgets every binding.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use connect_netstack::relay::{self, Frame};

pub const RELAY_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(203, 0, 113, 1),
    3478,
));
/// The wall clock both nodes and the relay start from (virtual time moves it on).
pub const UNIX_START_MS: u64 = 1_800_000_000_000;
const INTRODUCE_EVERY: Duration = Duration::from_secs(2);

pub struct SimRelay {
    start: Instant,
    keys: HashMap<u64, [u8; 32]>,
    bound: HashMap<u64, SocketAddr>,
    introduced: HashMap<(u64, SocketAddr), Instant>,
    /// Introduce the ends of a forwarded pair to each other.
    pub introduce: bool,
    pub binds: u64,
    pub forwarded: u64,
    /// Data frames dropped because the sender or the destination had no binding.
    pub unbound: u64,
}

impl SimRelay {
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            keys: HashMap::new(),
            bound: HashMap::new(),
            introduced: HashMap::new(),
            introduce: true,
            binds: 0,
            forwarded: 0,
            unbound: 0,
        }
    }

    /// Registers a slot; returns the key its binds are authenticated with.
    pub fn add_slot(&mut self, slot: u64) -> [u8; 32] {
        let key = relay::relay_key(&format!("token-{slot}"));
        self.keys.insert(slot, key);
        key
    }

    /// A restart: the relay keeps its slots (they are in the hub's database) but forgets
    /// where each is bound until the agent binds again.
    pub fn restart(&mut self) {
        self.bound.clear();
        self.introduced.clear();
    }

    pub fn is_bound(&self, slot: u64) -> bool {
        self.bound.contains_key(&slot)
    }

    /// One datagram to the relay; returns what it sends in answer, and where.
    pub fn handle(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let now_ms = UNIX_START_MS + now.duration_since(self.start).as_millis() as u64;
        match relay::parse(datagram) {
            Some(Frame::Bind { id, unix_ms, mac }) => {
                let Some(key) = self.keys.get(&id) else {
                    return Vec::new();
                };
                if !relay::verify_bind(key, id, unix_ms, &mac, now_ms) {
                    return Vec::new();
                }
                self.binds += 1;
                self.bound.insert(id, from);
                vec![(from, relay::write_bind_ack(id, from))]
            }
            Some(Frame::Data { slot, payload }) => self.forward(from, slot, payload, now),
            Some(
                Frame::BindAck { .. }
                | Frame::PeerAt { .. }
                | Frame::Probe { .. }
                | Frame::ProbeAck { .. },
            )
            | None => Vec::new(),
        }
    }

    fn forward(
        &mut self,
        from: SocketAddr,
        slot: u64,
        payload: &[u8],
        now: Instant,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let source = self
            .bound
            .iter()
            .find_map(|(slot, at)| (*at == from).then_some(*slot));
        let (Some(source), Some(to)) = (source, self.bound.get(&slot).copied()) else {
            self.unbound += 1;
            return Vec::new();
        };
        self.forwarded += 1;
        let mut frame = vec![0u8; relay::DATA_HEADER + payload.len()];
        relay::write_data_header(&mut frame, source);
        frame[relay::DATA_HEADER..].copy_from_slice(payload);
        let mut out = vec![(to, frame)];
        let last = self.introduced.get(&(source, to));
        if self.introduce && last.is_none_or(|at| now.duration_since(*at) >= INTRODUCE_EVERY) {
            self.introduced.insert((source, to), now);
            out.push((to, relay::write_peer_at(source, from)));
        }
        out
    }
}
