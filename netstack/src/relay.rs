//! The hub relay's wire format, spoken by agents (through the driver) and by the hub.
//!
//! A relay forwards WireGuard datagrams between agents that cannot reach each other.
//! Each agent owns a numbered slot; it binds the slot to its current address with a
//! message authenticated by a key derived from its API token, and then sends
//! `Data` frames naming the destination slot. The relay rewrites the slot to the source's
//! before forwarding. WireGuard stays end to end: the relay sees only sealed datagrams.
//!
//! While it forwards between two agents, the relay also tells each where it sees the
//! other (`PeerAt`), so they can try a direct path (see `path`).
//!
//! Peers reached through the relay get a synthetic endpoint (an IPv6 address in a private
//! prefix that carries the slot number), so the [`crate::Node`] treats them like any other
//! endpoint and roaming between relay and direct paths needs no special case.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

use hmac::{Hmac, Mac};
use sha2::Sha256;

const BIND: &[u8; 4] = b"CNB1";
const BIND_ACK: &[u8; 4] = b"CNA1";
const DATA: &[u8; 4] = b"CND1";
const PEER_AT: &[u8; 4] = b"CNP1";
const PROBE: &[u8; 4] = b"CNQ1";
const PROBE_ACK: &[u8; 4] = b"CNR1";
/// A probe's length, padding included: at least any answer's (30 bytes), so a probe with
/// a forged source cannot make the hub send more than it received.
pub const PROBE_LEN: usize = 32;
const MAC_LEN: usize = 16;
/// Bytes a data frame adds in front of a WireGuard datagram.
pub const DATA_HEADER: usize = 12;
pub const BIND_LEN: usize = 4 + 8 + 8 + MAC_LEN;
/// How far a bind's timestamp may be from the relay's clock.
pub const BIND_WINDOW_MS: u64 = 60_000;
/// fd63:6f6e:6e65::/48 ("con","ne"): a unique-local prefix no real peer uses.
const SYNTHETIC_PREFIX: [u16; 3] = [0xfd63, 0x6f6e, 0x6e65];

/// The key that authenticates an agent's binds: derived from its API token, so the
/// token itself never crosses the relay.
pub fn relay_key(token: &str) -> [u8; 32] {
    let mut mac = hmac(token.as_bytes());
    mac.update(b"connect relay key v1");
    mac.finalize().into_bytes().into()
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

fn bind_mac(key: &[u8; 32], body: &[u8]) -> [u8; MAC_LEN] {
    let mut mac = hmac(key);
    mac.update(body);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// A parsed relay message.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Agent → relay: "slot `id` is at the address this came from", at `unix_ms`.
    Bind {
        id: u64,
        unix_ms: u64,
        mac: [u8; MAC_LEN],
    },
    /// Relay → agent: the address the relay saw the bind come from.
    BindAck { id: u64, observed: SocketAddr },
    /// A WireGuard datagram; `slot` is the destination going in, the source coming out.
    Data { slot: u64, payload: &'a [u8] },
    /// Relay → agent: the agent behind `slot`, which we relay for you, is at `addr`.
    PeerAt { slot: u64, addr: SocketAddr },
    /// Anyone → hub: "where do you see me?" (`connect netcheck`; no slot, no key).
    Probe { nonce: u64 },
    /// Hub → prober: the address the probe came from.
    ProbeAck { nonce: u64, observed: SocketAddr },
}

/// Parses a relay message; `None` for anything else (including plain WireGuard).
pub fn parse(datagram: &[u8]) -> Option<Frame<'_>> {
    let magic = datagram.get(..4)?;
    let id = u64::from_be_bytes(datagram.get(4..12)?.try_into().ok()?);
    if magic == DATA {
        return Some(Frame::Data {
            slot: id,
            payload: &datagram[DATA_HEADER..],
        });
    }
    if magic == BIND && datagram.len() == BIND_LEN {
        let unix_ms = u64::from_be_bytes(datagram.get(12..20)?.try_into().ok()?);
        let mac = datagram.get(20..BIND_LEN)?.try_into().ok()?;
        return Some(Frame::Bind { id, unix_ms, mac });
    }
    if magic == BIND_ACK {
        let observed = parse_address(datagram)?;
        return Some(Frame::BindAck { id, observed });
    }
    if magic == PEER_AT {
        let addr = parse_address(datagram)?;
        return Some(Frame::PeerAt { slot: id, addr });
    }
    if magic == PROBE && datagram.len() == PROBE_LEN {
        return Some(Frame::Probe { nonce: id });
    }
    if magic == PROBE_ACK {
        let observed = parse_address(datagram)?;
        return Some(Frame::ProbeAck {
            nonce: id,
            observed,
        });
    }
    None
}

/// The address after a magic and an id: port, then 4 or 16 address bytes.
fn parse_address(datagram: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes(datagram.get(12..14)?.try_into().ok()?);
    let ip: IpAddr = match datagram.len() {
        18 => <[u8; 4]>::try_from(&datagram[14..18]).ok()?.into(),
        30 => <[u8; 16]>::try_from(&datagram[14..30]).ok()?.into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Checks a bind's MAC (constant time) and freshness against the relay's clock.
pub fn verify_bind(
    key: &[u8; 32],
    id: u64,
    unix_ms: u64,
    mac: &[u8; MAC_LEN],
    now_ms: u64,
) -> bool {
    if now_ms.abs_diff(unix_ms) > BIND_WINDOW_MS {
        return false;
    }
    let mut body = [0u8; 20];
    body[..4].copy_from_slice(BIND);
    body[4..12].copy_from_slice(&id.to_be_bytes());
    body[12..20].copy_from_slice(&unix_ms.to_be_bytes());
    let mut check = hmac(key);
    check.update(&body);
    check.verify_truncated_left(mac).is_ok()
}

pub fn write_bind(key: &[u8; 32], id: u64, unix_ms: u64) -> [u8; BIND_LEN] {
    let mut out = [0u8; BIND_LEN];
    out[..4].copy_from_slice(BIND);
    out[4..12].copy_from_slice(&id.to_be_bytes());
    out[12..20].copy_from_slice(&unix_ms.to_be_bytes());
    let mac = bind_mac(key, &out[..20]);
    out[20..].copy_from_slice(&mac);
    out
}

pub fn write_bind_ack(id: u64, observed: SocketAddr) -> Vec<u8> {
    write_addressed(BIND_ACK, id, observed)
}

pub fn write_peer_at(slot: u64, addr: SocketAddr) -> Vec<u8> {
    write_addressed(PEER_AT, slot, addr)
}

pub fn write_probe(nonce: u64) -> [u8; PROBE_LEN] {
    let mut out = [0u8; PROBE_LEN];
    out[..4].copy_from_slice(PROBE);
    out[4..12].copy_from_slice(&nonce.to_be_bytes());
    out
}

pub fn write_probe_ack(nonce: u64, observed: SocketAddr) -> Vec<u8> {
    write_addressed(PROBE_ACK, nonce, observed)
}

fn write_addressed(magic: &[u8; 4], id: u64, addr: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(30);
    out.extend_from_slice(magic);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&addr.port().to_be_bytes());
    match addr.ip() {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
    out
}

/// Writes a data frame header for `slot` into the first [`DATA_HEADER`] bytes of `buf`.
pub fn write_data_header(buf: &mut [u8], slot: u64) {
    buf[..4].copy_from_slice(DATA);
    buf[4..12].copy_from_slice(&slot.to_be_bytes());
}

/// The endpoint a node uses for a peer reached through relay slot `slot`.
pub fn synthetic_endpoint(slot: u64) -> SocketAddr {
    synthetic(0, slot, 1)
}

/// Where a node sends relay frames, and from where it is handed them, while a stream to
/// the hub carries them: an address in the synthetic prefix that no slot uses, so the
/// core sees one more endpoint and its driver knows to use the stream.
pub const STREAM_ENDPOINT: SocketAddr = stream_client(0);

/// The hub relay's name for the agent on its stream number `id` (a synthetic address
/// outside the slots'), so its tables treat UDP and stream clients alike.
pub const fn stream_client(id: u64) -> SocketAddr {
    synthetic(1, id, 2)
}

/// An address in the synthetic prefix: fourth group `kind` (0 slots, 1 stream clients),
/// `id` in the last four.
const fn synthetic(kind: u16, id: u64, port: u16) -> SocketAddr {
    let [a, b, c] = SYNTHETIC_PREFIX;
    let ip = Ipv6Addr::new(
        a,
        b,
        c,
        kind,
        (id >> 48) as u16,
        (id >> 32) as u16,
        (id >> 16) as u16,
        id as u16,
    );
    SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))
}

/// Whether `addr` is a stream client's (see [`stream_client`]).
pub fn is_stream_client(addr: SocketAddr) -> bool {
    let SocketAddr::V6(v6) = addr else {
        return false;
    };
    let s = v6.ip().segments();
    s[..3] == SYNTHETIC_PREFIX && s[3] == 1
}

/// The `Upgrade` token of the hub's relay stream (`GET /v1/relay` on its API listener).
/// On the stream, each relay frame is sent as a 2-byte big-endian length and the frame.
pub const STREAM_UPGRADE: &str = "connect-relay/1";

/// The relay slot behind a synthetic endpoint, `None` for a real address.
pub fn slot_of(endpoint: SocketAddr) -> Option<u64> {
    let SocketAddr::V6(v6) = endpoint else {
        return None;
    };
    let s = v6.ip().segments();
    if s[..3] != SYNTHETIC_PREFIX || s[3] != 0 {
        return None;
    }
    Some(
        (u64::from(s[4]) << 48)
            | (u64::from(s[5]) << 32)
            | (u64::from(s[6]) << 16)
            | u64::from(s[7]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_verify_only_with_the_right_key_and_time() {
        let key = relay_key("token");
        let bind = write_bind(&key, 42, 1_000_000);
        let Some(Frame::Bind { id, unix_ms, mac }) = parse(&bind) else {
            panic!("not a bind");
        };
        assert_eq!((id, unix_ms), (42, 1_000_000));
        assert!(verify_bind(&key, id, unix_ms, &mac, 1_000_500));
        assert!(!verify_bind(
            &relay_key("other"),
            id,
            unix_ms,
            &mac,
            1_000_500
        ));
        assert!(!verify_bind(&key, 43, unix_ms, &mac, 1_000_500));
        assert!(!verify_bind(
            &key,
            id,
            unix_ms,
            &mac,
            1_000_000 + BIND_WINDOW_MS + 1
        ));
    }

    #[test]
    fn frames_round_trip_and_garbage_is_not_a_frame() {
        let observed: SocketAddr = "203.0.113.9:4500"
            .parse()
            .unwrap_or_else(|_| synthetic_endpoint(0));
        assert_eq!(
            parse(&write_bind_ack(7, observed)),
            Some(Frame::BindAck { id: 7, observed })
        );
        let v6: SocketAddr = "[2001:db8::1]:51820"
            .parse()
            .unwrap_or_else(|_| synthetic_endpoint(0));
        assert_eq!(
            parse(&write_peer_at(u64::MAX, v6)),
            Some(Frame::PeerAt {
                slot: u64::MAX,
                addr: v6
            })
        );
        let mut data = vec![0u8; DATA_HEADER + 3];
        write_data_header(&mut data, 9);
        data[DATA_HEADER..].copy_from_slice(b"abc");
        assert_eq!(
            parse(&data),
            Some(Frame::Data {
                slot: 9,
                payload: b"abc"
            })
        );
        assert_eq!(parse(&write_probe(5)), Some(Frame::Probe { nonce: 5 }));
        assert_eq!(parse(&write_probe(5)[..20]), None, "an unpadded probe");
        let ack = write_probe_ack(5, v6);
        assert!(ack.len() <= PROBE_LEN, "an answer larger than the probe");
        assert_eq!(
            parse(&ack),
            Some(Frame::ProbeAck {
                nonce: 5,
                observed: v6
            })
        );
        assert_eq!(parse(&[1, 0, 0, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5]), None);
        assert_eq!(parse(b"CNB1short"), None);
    }

    #[test]
    fn synthetic_endpoints_carry_the_slot() {
        for slot in [0, 1, 0xdead_beef, u64::MAX] {
            assert_eq!(slot_of(synthetic_endpoint(slot)), Some(slot));
        }
        assert_eq!(
            slot_of(
                "127.0.0.1:1"
                    .parse()
                    .unwrap_or_else(|_| synthetic_endpoint(0))
            ),
            None
        );
    }
}
