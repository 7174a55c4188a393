//! Entry points for the fuzz targets in `netstack/fuzz` (cargo-fuzz builds them apart,
//! with the `fuzzing` feature) and for the suite's replay of their corpus: each takes the
//! bytes a peer or the hub could send and runs them through one reader of the network.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::relay::{self, Frame};
use crate::{
    Ipv4Net, Node, NodeConfig, PeerConfig, Policy, Protocol, PublicKey, Route, StaticSecret, Target,
};

/// Relay frames as agents and the hub read them off UDP or a relay stream: parsing never
/// panics, and what parses writes back to the same frame.
pub fn relay_frame(data: &[u8]) {
    let Some(frame) = relay::parse(data) else {
        return;
    };
    let written = match frame {
        Frame::BindAck { id, observed } => relay::write_bind_ack(id, observed),
        Frame::PeerAt { slot, addr } => relay::write_peer_at(slot, addr),
        Frame::ProbeAck { nonce, observed } => relay::write_probe_ack(nonce, observed),
        Frame::Probe { nonce } => relay::write_probe(nonce).to_vec(),
        Frame::Bind { id, unix_ms, mac } => {
            // Only the right key makes this MAC; a bind of our own verifies.
            let key = [7u8; 32];
            let _ = relay::verify_bind(&key, id, unix_ms, &mac, unix_ms);
            let ours = relay::write_bind(&key, id, unix_ms);
            assert!(matches!(relay::parse(&ours), Some(Frame::Bind { .. })));
            return;
        }
        Frame::Data { slot, payload } => {
            let mut again = data.to_vec();
            relay::write_data_header(&mut again, slot);
            assert_eq!(&again[relay::DATA_HEADER..], payload);
            return;
        }
    };
    assert_eq!(relay::parse(&written), relay::parse(data));
}

/// Datagrams off the wire into a node with a live WireGuard session: each input is split
/// into several datagrams (two-byte lengths), sent to the sharer as from the joiner's
/// address and from a stranger's. Nothing panics, loops or grows without bound.
pub fn wireguard_datagram(data: &[u8]) {
    let mut pair = Pair::new();
    let stranger = "198.51.100.7:4000".parse().unwrap_or(JOINER_AT);
    let mut rest = data;
    let mut turn = 0;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let datagram = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let from = if turn % 2 == 0 { JOINER_AT } else { stranger };
        pair.sharer.handle_datagram(from, datagram, pair.now);
        pair.joiner.handle_datagram(from, datagram, pair.now);
        turn += 1;
    }
    pair.settle();
}

/// IP packets through a live tunnel into the sharer's stack and flows, and their answers
/// back through the joiner's inbound filter: each input is split into packets (two-byte
/// lengths) that the TUN joiner sends. Nothing panics, loops or grows without bound.
pub fn ip_packet(data: &[u8]) {
    let mut pair = Pair::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        pair.joiner.handle_ip_packet(&rest[2..2 + len], pair.now);
        rest = &rest[2 + len..];
        pair.settle();
    }
    pair.now += Duration::from_secs(1);
    pair.sharer.handle_timeout(pair.now);
    pair.joiner.handle_timeout(pair.now);
    pair.settle();
}

const SHARER_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
const JOINER_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 3);
const SHARER_AT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 51820);
const JOINER_AT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 51820);

/// A sharer and a TUN (raw) joiner with a finished WireGuard handshake.
struct Pair {
    sharer: Node,
    joiner: Node,
    now: Instant,
}

fn peer(secret: &StaticSecret, ip: Ipv4Addr, at: SocketAddr, policy: Policy) -> PeerConfig {
    PeerConfig {
        public_key: PublicKey::from(secret),
        allowed_ips: Ipv4Net::new(ip, 32).into_iter().collect(),
        endpoint: Some(at),
        persistent_keepalive: None,
        policy,
        needs_checksums: true,
    }
}

impl Pair {
    /// Both nodes, their handshake done: the sharer serves TCP 80 and UDP 53 (to targets
    /// nobody connects here), the joiner hands whole IP packets to its "kernel".
    fn new() -> Self {
        let now = Instant::now();
        let (sharer_key, joiner_key) = (StaticSecret::from([1; 32]), StaticSecret::from([2; 32]));
        let mut config = NodeConfig::new(sharer_key.clone());
        config.addresses = vec![SHARER_IP];
        let mut sharer = Node::new(config, 1, now);
        let mut config = NodeConfig::new(joiner_key.clone());
        config.addresses = Vec::new();
        config.raw = true;
        let mut joiner = Node::new(config, 2, now);
        let policy = Policy {
            routes: vec![
                Route {
                    protocol: Protocol::Tcp,
                    port: 80,
                    target: Target::new("192.0.2.9", 80),
                },
                Route {
                    protocol: Protocol::Udp,
                    port: 53,
                    target: Target::new("192.0.2.9", 53),
                },
            ],
            ..Policy::default()
        };
        let _ = sharer.add_peer(peer(&joiner_key, JOINER_IP, JOINER_AT, policy));
        let _ = joiner.add_peer(peer(&sharer_key, SHARER_IP, SHARER_AT, Policy::default()));
        let _ = joiner.connect_peer(&PublicKey::from(&sharer_key));
        let mut pair = Self {
            sharer,
            joiner,
            now,
        };
        pair.settle();
        pair
    }

    /// Moves datagrams both ways, and drains events and packets, until nothing moves
    /// (bounded: a fuzz input must not loop forever).
    fn settle(&mut self) {
        let mut buf = vec![0u8; 65_536];
        for _ in 0..64 {
            let mut moved = false;
            while let Some(t) = self.joiner.poll_transmit(&mut buf) {
                self.sharer
                    .handle_datagram(JOINER_AT, &buf[t.offset..t.offset + t.len], self.now);
                moved = true;
            }
            while let Some(t) = self.sharer.poll_transmit(&mut buf) {
                self.joiner
                    .handle_datagram(SHARER_AT, &buf[t.offset..t.offset + t.len], self.now);
                moved = true;
            }
            while self.sharer.poll_event().is_some() || self.joiner.poll_event().is_some() {
                moved = true;
            }
            while self.joiner.poll_ip_packet(&mut buf).is_some() {
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

/// Replays every input in `fuzz/corpus/TARGET/` through `run`: the suite's short run of
/// each target (scripts/fuzz.sh runs them for real).
#[cfg(test)]
pub(crate) fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if let Ok(bytes) = std::fs::read(entry.path()) {
            run(&bytes);
            inputs += 1;
        }
    }
    inputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pair_starts_with_a_session_so_packets_reach_the_stack() {
        let pair = Pair::new();
        let joiner = PublicKey::from(&StaticSecret::from([2; 32]));
        assert_eq!(pair.sharer.has_fresh_session(&joiner).ok(), Some(true));
    }

    #[test]
    fn every_fuzz_target_runs_its_corpus() {
        for (target, run) in [
            ("relay_frame", relay_frame as fn(&[u8])),
            ("wireguard_datagram", wireguard_datagram),
            ("ip_packet", ip_packet),
        ] {
            assert!(replay(target, run) > 0, "no corpus for {target}");
        }
    }
}
