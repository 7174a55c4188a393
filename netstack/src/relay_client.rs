//! The agent's side of the hub relay, as part of the protocol core: when to bind the slot,
//! how datagrams to relayed peers are framed, and what the relay's own frames mean.
//!
//! It does no IO and reads no clock. The node feeds it `now` and the wall clock (a bind
//! carries Unix milliseconds the relay checks against its own clock), so the whole
//! relay → direct → relay life of a path runs on a simulated link in tests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::relay::{self, Frame};

/// How often an agent re-binds its relay slot: keeps NAT mappings open and binds fresh.
pub const BIND_INTERVAL: Duration = Duration::from_secs(15);

/// The hub relay a node can reach peers through (see [`crate::relay`]).
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

/// What a datagram from the socket turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// A WireGuard datagram, from a real address or a relayed peer's synthetic one.
    WireGuard {
        from: SocketAddr,
        datagram: &'a [u8],
    },
    /// The relay says the peer it reaches at `relayed` is at `candidate`.
    Introduction {
        relayed: SocketAddr,
        candidate: SocketAddr,
    },
    /// Nothing for the node (a bind answer, or direct WireGuard while direct paths are off).
    Nothing,
}

/// The relay's wall clock as the node knows it: a Unix time read at one instant.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    at: Instant,
    unix_ms: u64,
}

impl WallClock {
    fn unix_ms(&self, now: Instant) -> u64 {
        let elapsed =
            u64::try_from(now.saturating_duration_since(self.at).as_millis()).unwrap_or(u64::MAX);
        self.unix_ms.saturating_add(elapsed)
    }
}

#[derive(Debug)]
pub(crate) struct RelayClient {
    config: RelayConfig,
    clock: WallClock,
    next_bind: Instant,
    observed: Option<SocketAddr>,
}

impl RelayClient {
    /// A client whose first bind is due at once, so the relay knows our address before
    /// our first handshake arrives.
    pub(crate) fn new(config: RelayConfig, now: Instant, unix_ms: u64) -> Self {
        Self {
            config,
            clock: WallClock { at: now, unix_ms },
            next_bind: now,
            observed: None,
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.config.addr
    }

    /// Our public address as the relay saw it, once it answered a bind.
    pub(crate) fn observed(&self) -> Option<SocketAddr> {
        self.observed
    }

    /// A fresh reading of the wall clock.
    pub(crate) fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.clock = WallClock { at: now, unix_ms };
    }

    pub(crate) fn next_bind(&self) -> Instant {
        self.next_bind
    }

    /// The bind to send now, when one is due.
    pub(crate) fn poll_bind(&mut self, now: Instant) -> Option<[u8; relay::BIND_LEN]> {
        if now < self.next_bind {
            return None;
        }
        self.next_bind = now + BIND_INTERVAL;
        Some(relay::write_bind(
            &self.config.key,
            self.config.slot,
            self.clock.unix_ms(now),
        ))
    }

    /// Sorts one datagram from the socket.
    ///
    /// Frames are recognised by their magic, not by their source address: a hub bound to
    /// a wildcard address answers from whichever of its addresses faces us. Nothing is
    /// trusted for it: relayed payloads are WireGuard and authenticate themselves, a
    /// forged introduction costs one probe a second at most (see `path`), and a forged
    /// bind answer changes only the address `status` reports.
    pub(crate) fn classify<'a>(&mut self, from: SocketAddr, datagram: &'a [u8]) -> Incoming<'a> {
        match relay::parse(datagram) {
            Some(Frame::Data { slot, payload }) => Incoming::WireGuard {
                from: relay::synthetic_endpoint(slot),
                datagram: payload,
            },
            Some(Frame::BindAck { observed, .. }) => {
                if self.observed != Some(observed) {
                    tracing::info!(%observed, "relay sees us at");
                }
                self.observed = Some(observed);
                Incoming::Nothing
            }
            Some(Frame::PeerAt { slot, addr }) if self.config.direct => Incoming::Introduction {
                relayed: relay::synthetic_endpoint(slot),
                candidate: addr,
            },
            None if self.config.direct => Incoming::WireGuard { from, datagram },
            Some(Frame::Bind { .. } | Frame::PeerAt { .. }) | None => Incoming::Nothing,
        }
    }

    /// Frames a sealed datagram for a peer behind `slot`: the `len` bytes at
    /// `buf[at..]` end up behind a data header. Returns where the frame starts, its
    /// length and the relay's address; `None` when `buf` has no room for the header.
    /// Sealing at [`relay::DATA_HEADER`] leaves the room, so nothing moves; sealing at 0
    /// costs one move.
    pub(crate) fn frame(
        &self,
        slot: u64,
        buf: &mut [u8],
        at: usize,
        len: usize,
    ) -> Option<(usize, usize, SocketAddr)> {
        let start = if at >= relay::DATA_HEADER {
            at - relay::DATA_HEADER
        } else {
            if buf.len() < relay::DATA_HEADER + len {
                return None;
            }
            buf.copy_within(at..at + len, relay::DATA_HEADER);
            0
        };
        relay::write_data_header(&mut buf[start..], slot);
        Some((start, relay::DATA_HEADER + len, self.config.addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(direct: bool) -> RelayConfig {
        RelayConfig {
            addr: SocketAddr::from(([192, 0, 2, 200], 3478)),
            slot: 5,
            key: relay::relay_key("token"),
            direct,
        }
    }

    #[test]
    fn binds_are_due_at_once_then_every_interval_with_the_wall_clock() {
        let now = Instant::now();
        let mut client = RelayClient::new(config(true), now, 1_000_000);
        let bind = client.poll_bind(now).expect("due at once");
        let Some(Frame::Bind { id, unix_ms, mac }) = relay::parse(&bind) else {
            panic!("not a bind");
        };
        assert_eq!((id, unix_ms), (5, 1_000_000));
        assert!(relay::verify_bind(
            &relay::relay_key("token"),
            id,
            unix_ms,
            &mac,
            unix_ms
        ));
        assert!(client.poll_bind(now + Duration::from_secs(1)).is_none());
        let later = now + BIND_INTERVAL;
        let bind = client.poll_bind(later).expect("due again");
        let Some(Frame::Bind { unix_ms, .. }) = relay::parse(&bind) else {
            panic!("not a bind");
        };
        assert_eq!(unix_ms, 1_000_000 + 15_000);
    }

    #[test]
    fn frames_are_sorted_and_direct_datagrams_dropped_when_direct_is_off() {
        let now = Instant::now();
        let from = SocketAddr::from(([198, 51, 100, 1], 9));
        let mut frame = vec![0u8; relay::DATA_HEADER + 2];
        relay::write_data_header(&mut frame, 77);
        let mut relayed_only = RelayClient::new(config(false), now, 0);
        assert_eq!(
            relayed_only.classify(from, &frame),
            Incoming::WireGuard {
                from: relay::synthetic_endpoint(77),
                datagram: &[0, 0]
            }
        );
        assert_eq!(
            relayed_only.classify(from, &[1, 0, 0, 0]),
            Incoming::Nothing
        );
        let peer_at = relay::write_peer_at(77, from);
        assert_eq!(relayed_only.classify(from, &peer_at), Incoming::Nothing);
        let mut direct = RelayClient::new(config(true), now, 0);
        assert_eq!(
            direct.classify(from, &peer_at),
            Incoming::Introduction {
                relayed: relay::synthetic_endpoint(77),
                candidate: from
            }
        );
        let ack = relay::write_bind_ack(5, from);
        assert_eq!(direct.classify(from, &ack), Incoming::Nothing);
        assert_eq!(direct.observed(), Some(from));
    }

    #[test]
    fn framing_moves_nothing_when_the_room_was_left() {
        let client = RelayClient::new(config(true), Instant::now(), 0);
        let mut buf = vec![0u8; 64];
        buf[relay::DATA_HEADER..relay::DATA_HEADER + 3].copy_from_slice(b"abc");
        let (start, len, _) = client
            .frame(9, &mut buf, relay::DATA_HEADER, 3)
            .expect("room");
        assert_eq!(
            relay::parse(&buf[start..start + len]),
            Some(Frame::Data {
                slot: 9,
                payload: b"abc"
            })
        );
        let mut buf = vec![0u8; 64];
        buf[..3].copy_from_slice(b"xyz");
        let (start, len, addr) = client.frame(9, &mut buf, 0, 3).expect("room");
        assert_eq!(addr, config(true).addr);
        assert_eq!(
            relay::parse(&buf[start..start + len]),
            Some(Frame::Data {
                slot: 9,
                payload: b"xyz"
            })
        );
    }
}
