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
/// UDP binds unanswered for this long, and the node asks for a stream to the hub
/// ([`crate::Event::RelayStream`]) to carry its relay frames instead.
pub const STREAM_AFTER: Duration = Duration::from_secs(2);
/// While frames go over the stream, UDP is asked again this often; an answer moves them
/// back.
pub const UDP_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// An unanswered UDP bind is sent again after this long (a lost datagram is not a block).
const BIND_RETRY: Duration = Duration::from_secs(1);
/// After a stream fails, the next is asked for after this long, doubling up to
/// [`REDIAL_MAX`] until one carries a frame.
const REDIAL_MIN: Duration = Duration::from_secs(1);
const REDIAL_MAX: Duration = Duration::from_secs(30);

/// How relay frames reach the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTransport {
    /// Datagrams to the relay's UDP address.
    Udp,
    /// A stream to the hub's HTTPS port, for networks that drop UDP.
    Stream,
}

/// Where the stream is, as the node knows it from its driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Unwanted,
    /// Asked for; the driver is dialling.
    Wanted,
    Up,
}

/// The hub relay a node can reach peers through (see [`crate::relay`]).
#[derive(Clone, PartialEq, Eq)]
pub struct RelayConfig {
    pub addr: SocketAddr,
    pub slot: u64,
    pub key: [u8; 32],
    /// Try direct paths to peers the relay introduces. Off, WireGuard is taken only
    /// through the relay (for networks that mangle direct UDP, and to measure the relay).
    pub direct: bool,
    /// Frames go only over the driver's stream, asked for at once and never over UDP:
    /// for the hub's own peer, whose relay is in the same process and is reached
    /// through channels rather than a socket.
    pub stream_only: bool,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("addr", &self.addr)
            .field("slot", &self.slot)
            .field("direct", &self.direct)
            .field("stream_only", &self.stream_only)
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
    /// The time in our last bind: the relay refuses a bind no newer than the last it took
    /// (a replay), so ours only go forward, even when a fresh wall-clock reading is behind.
    last_bind_ms: u64,
    observed: Option<SocketAddr>,
    next_udp_bind: Instant,
    /// When the first UDP bind since the last UDP answer went out; `None` while UDP
    /// answers.
    unanswered_since: Option<Instant>,
    stream: StreamState,
    next_stream_bind: Instant,
    redial_at: Instant,
    redial_wait: Duration,
    /// A change for the driver: `true` open a stream, `false` close it.
    stream_change: Option<bool>,
}

impl RelayClient {
    /// A client whose first bind is due at once, so the relay knows our address before
    /// our first handshake arrives.
    pub(crate) fn new(config: RelayConfig, now: Instant, unix_ms: u64) -> Self {
        Self {
            config,
            clock: WallClock { at: now, unix_ms },
            last_bind_ms: 0,
            observed: None,
            next_udp_bind: now,
            unanswered_since: None,
            stream: StreamState::Unwanted,
            next_stream_bind: now,
            redial_at: now,
            redial_wait: REDIAL_MIN,
            stream_change: None,
        }
    }

    pub(crate) fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Binds again at once, over whatever carries the frames now (the relay may have
    /// restarted and forgotten us), with a fresh reading of the wall clock.
    pub(crate) fn rebind(&mut self, now: Instant, unix_ms: u64) {
        self.clock = WallClock { at: now, unix_ms };
        self.next_udp_bind = now;
        self.next_stream_bind = now;
    }

    /// Where frames to relayed peers go now: the relay's UDP address, or
    /// [`relay::STREAM_ENDPOINT`] while the stream carries them.
    pub(crate) fn addr(&self) -> SocketAddr {
        match self.transport() {
            RelayTransport::Udp => self.config.addr,
            RelayTransport::Stream => relay::STREAM_ENDPOINT,
        }
    }

    pub(crate) fn transport(&self) -> RelayTransport {
        if self.stream == StreamState::Up || self.config.stream_only {
            RelayTransport::Stream
        } else {
            RelayTransport::Udp
        }
    }

    /// Our public address as the relay saw it, once it answered a bind over UDP.
    pub(crate) fn observed(&self) -> Option<SocketAddr> {
        self.observed
    }

    /// A fresh reading of the wall clock.
    pub(crate) fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.clock = WallClock { at: now, unix_ms };
    }

    /// When something is due: a bind, or asking for a stream.
    pub(crate) fn next_timeout(&self) -> Instant {
        let mut next = self.next_udp_bind;
        if self.stream == StreamState::Up {
            next = next.min(self.next_stream_bind);
        }
        if let Some(want) = self.stream_due() {
            next = next.min(want);
        }
        next
    }

    /// When UDP will have gone unanswered long enough to ask for a stream.
    fn stream_due(&self) -> Option<Instant> {
        if self.config.stream_only {
            return (self.stream == StreamState::Unwanted).then_some(self.redial_at);
        }
        let since = self.unanswered_since?;
        (self.stream == StreamState::Unwanted).then(|| (since + STREAM_AFTER).max(self.redial_at))
    }

    /// The bind to send now and where to, when one is due. Over the stream while it is
    /// up (and again shortly after each UDP probe, which may have moved our slot to a
    /// UDP address whose answers cannot reach us); over UDP on its own schedule: every
    /// [`BIND_INTERVAL`] while answered, every [`BIND_RETRY`] while not, every
    /// [`UDP_PROBE_INTERVAL`] while the stream carries the frames.
    pub(crate) fn poll_bind(
        &mut self,
        now: Instant,
    ) -> Option<([u8; relay::BIND_LEN], SocketAddr)> {
        let dst = if self.stream == StreamState::Up && now >= self.next_stream_bind {
            self.next_stream_bind = now + BIND_INTERVAL;
            relay::STREAM_ENDPOINT
        } else if now >= self.next_udp_bind {
            if self.config.stream_only {
                // Nothing goes over UDP; its timer only comes round now and then.
                self.next_udp_bind = now + BIND_INTERVAL;
                return None;
            }
            self.unanswered_since.get_or_insert(now);
            if self.stream == StreamState::Up {
                self.next_udp_bind = now + UDP_PROBE_INTERVAL;
                self.next_stream_bind = self.next_stream_bind.min(now + STREAM_AFTER);
            } else {
                self.next_udp_bind = now + BIND_RETRY;
            }
            self.config.addr
        } else {
            return None;
        };
        let unix_ms = self
            .clock
            .unix_ms(now)
            .max(self.last_bind_ms.saturating_add(1));
        self.last_bind_ms = unix_ms;
        let bind = relay::write_bind(&self.config.key, self.config.slot, unix_ms);
        Some((bind, dst))
    }

    /// `Some(true)` when the driver should open a stream to the hub, `Some(false)` when
    /// it should close it; each change is reported once.
    pub(crate) fn poll_stream(&mut self, now: Instant) -> Option<bool> {
        if self.stream_due().is_some_and(|due| now >= due) {
            if !self.config.stream_only {
                tracing::info!("relay: no answer over UDP; asking for a stream to the hub");
            }
            self.stream = StreamState::Wanted;
            self.stream_change = Some(true);
        }
        self.stream_change.take()
    }

    /// The driver's stream is open: frames go over it from now on, starting with a bind.
    pub(crate) fn stream_up(&mut self, now: Instant) {
        match self.stream {
            StreamState::Wanted => {
                self.stream = StreamState::Up;
                self.next_stream_bind = now;
                self.next_udp_bind = self.next_udp_bind.max(now + UDP_PROBE_INTERVAL);
            }
            // UDP answered meanwhile: the stream is not needed after all.
            StreamState::Unwanted => self.stream_change = Some(false),
            StreamState::Up => {}
        }
    }

    /// The driver's stream failed or closed: frames go over UDP until the next one is up,
    /// which is asked for again after a wait that grows with each failure.
    pub(crate) fn stream_down(&mut self, now: Instant) {
        if self.stream == StreamState::Unwanted {
            return;
        }
        self.stream = StreamState::Unwanted;
        self.redial_at = now + self.redial_wait;
        self.redial_wait = (self.redial_wait * 2).min(REDIAL_MAX);
    }

    /// Sorts one datagram from the socket, or one frame from the stream when `from` is
    /// [`relay::STREAM_ENDPOINT`].
    ///
    /// Frames are recognised by their magic, not by their source address: a hub bound to
    /// a wildcard address answers from whichever of its addresses faces us. Nothing is
    /// trusted for it: relayed payloads are WireGuard and authenticate themselves, a
    /// forged introduction costs one probe a second at most (see `path`), and a forged
    /// bind answer changes only the address `status` reports and moves frames back to
    /// UDP, which the stream takes over again if UDP does not answer.
    pub(crate) fn classify<'a>(
        &mut self,
        from: SocketAddr,
        datagram: &'a [u8],
        now: Instant,
    ) -> Incoming<'a> {
        let via_stream = from == relay::STREAM_ENDPOINT;
        match relay::parse(datagram) {
            Some(Frame::Data { slot, payload }) => Incoming::WireGuard {
                from: relay::synthetic_endpoint(slot),
                datagram: payload,
            },
            Some(Frame::BindAck { .. }) if via_stream => {
                self.redial_wait = REDIAL_MIN;
                Incoming::Nothing
            }
            Some(Frame::BindAck { observed, .. }) => {
                self.udp_answered(observed, now);
                Incoming::Nothing
            }
            Some(Frame::PeerAt { slot, addr }) if self.config.direct => Incoming::Introduction {
                relayed: relay::synthetic_endpoint(slot),
                candidate: addr,
            },
            None if self.config.direct && !via_stream => Incoming::WireGuard { from, datagram },
            Some(
                Frame::Bind { .. }
                | Frame::PeerAt { .. }
                | Frame::Probe { .. }
                | Frame::ProbeAck { .. },
            )
            | None => Incoming::Nothing,
        }
    }

    fn udp_answered(&mut self, observed: SocketAddr, now: Instant) {
        if self.observed != Some(observed) {
            tracing::info!(%observed, "relay sees us at");
        }
        self.observed = Some(observed);
        self.unanswered_since = None;
        self.next_udp_bind = now + BIND_INTERVAL;
        if self.stream != StreamState::Unwanted {
            tracing::info!("relay: UDP answers again; closing the stream to the hub");
            self.stream = StreamState::Unwanted;
            self.stream_change = Some(false);
        }
        self.redial_wait = REDIAL_MIN;
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
        let dst = self.addr();
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
        Some((start, relay::DATA_HEADER + len, dst))
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
            stream_only: false,
        }
    }

    #[test]
    fn binds_are_due_at_once_then_every_interval_with_the_wall_clock() {
        let now = Instant::now();
        let mut client = RelayClient::new(config(true), now, 1_000_000);
        let (bind, dst) = client.poll_bind(now).expect("due at once");
        assert_eq!(dst, config(true).addr);
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
        let observed = SocketAddr::from(([198, 51, 100, 1], 9));
        let ack = relay::write_bind_ack(5, observed);
        client.classify(config(true).addr, &ack, now);
        assert!(client.poll_bind(now + Duration::from_secs(1)).is_none());
        let later = now + BIND_INTERVAL;
        let (bind, _) = client.poll_bind(later).expect("due again");
        let Some(Frame::Bind { unix_ms, .. }) = relay::parse(&bind) else {
            panic!("not a bind");
        };
        assert_eq!(unix_ms, 1_000_000 + 15_000);
    }

    #[test]
    fn bind_times_only_go_forward_when_the_wall_clock_steps_back() {
        let now = Instant::now();
        let mut client = RelayClient::new(config(true), now, 1_000_000);
        let times: Vec<u64> = [0, 1, 2]
            .into_iter()
            .filter_map(|step| {
                let at = now + BIND_RETRY * step;
                if step > 0 {
                    client.set_wall_clock(at, 500_000);
                }
                let (bind, _) = client.poll_bind(at)?;
                match relay::parse(&bind) {
                    Some(Frame::Bind { unix_ms, .. }) => Some(unix_ms),
                    _ => None,
                }
            })
            .collect();
        assert_eq!(times, vec![1_000_000, 1_000_001, 1_000_002]);
    }

    #[test]
    fn frames_are_sorted_and_direct_datagrams_dropped_when_direct_is_off() {
        let now = Instant::now();
        let from = SocketAddr::from(([198, 51, 100, 1], 9));
        let mut frame = vec![0u8; relay::DATA_HEADER + 2];
        relay::write_data_header(&mut frame, 77);
        let mut relayed_only = RelayClient::new(config(false), now, 0);
        assert_eq!(
            relayed_only.classify(from, &frame, now),
            Incoming::WireGuard {
                from: relay::synthetic_endpoint(77),
                datagram: &[0, 0]
            }
        );
        assert_eq!(
            relayed_only.classify(from, &[1, 0, 0, 0], now),
            Incoming::Nothing
        );
        let peer_at = relay::write_peer_at(77, from);
        assert_eq!(
            relayed_only.classify(from, &peer_at, now),
            Incoming::Nothing
        );
        let mut direct = RelayClient::new(config(true), now, 0);
        assert_eq!(
            direct.classify(from, &peer_at, now),
            Incoming::Introduction {
                relayed: relay::synthetic_endpoint(77),
                candidate: from
            }
        );
        let ack = relay::write_bind_ack(5, from);
        assert_eq!(direct.classify(from, &ack, now), Incoming::Nothing);
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

    /// Binds sent: when (ms) and where to.
    type Binds = Vec<(u64, SocketAddr)>;

    /// Drives a client for `secs` seconds in 100 ms steps, answering UDP binds when
    /// `udp_answers` says so at that second; returns the stream changes reported with
    /// when they came, and where each bind went.
    fn drive(
        client: &mut RelayClient,
        start: Instant,
        secs: u64,
        udp_answers: impl Fn(u64) -> bool,
    ) -> (Vec<(u64, bool)>, Binds) {
        let (mut changes, mut binds) = (Vec::new(), Vec::new());
        for step in 0..secs * 10 {
            let now = start + Duration::from_millis(step * 100);
            let ms = step * 100;
            while let Some(open) = client.poll_stream(now) {
                changes.push((ms, open));
                if open {
                    client.stream_up(now);
                }
            }
            while let Some((_, dst)) = client.poll_bind(now) {
                binds.push((ms, dst));
                if dst != relay::STREAM_ENDPOINT && udp_answers(ms / 1000) {
                    let ack = relay::write_bind_ack(5, SocketAddr::from(([198, 51, 100, 1], 9)));
                    client.classify(dst, &ack, now);
                }
            }
        }
        (changes, binds)
    }

    #[test]
    fn unanswered_udp_asks_for_a_stream_and_an_answer_moves_frames_back() {
        let start = Instant::now();
        let mut client = RelayClient::new(config(true), start, 0);
        // UDP dropped for the first 12 seconds, then open.
        let (changes, binds) = drive(&mut client, start, 20, |second| second >= 12);
        assert_eq!(
            changes.first(),
            Some(&(STREAM_AFTER.as_millis() as u64, true))
        );
        let (closed_at, _) = changes[1];
        assert!(!changes[1].1, "{changes:?}");
        assert!((12_000..=12_000 + UDP_PROBE_INTERVAL.as_millis() as u64).contains(&closed_at));
        assert_eq!(changes.len(), 2, "{changes:?}");
        // Over the stream: a bind at once, and again after each unanswered probe.
        assert!(
            binds.contains(&(2_000, relay::STREAM_ENDPOINT)),
            "{binds:?}"
        );
        let probes = binds
            .iter()
            .filter(|(ms, dst)| (2_000..12_000).contains(ms) && *dst == config(true).addr)
            .count();
        assert!(
            (1..=2).contains(&probes),
            "UDP probes while on the stream: {binds:?}"
        );
        assert_eq!(client.transport(), RelayTransport::Udp);
        assert_eq!(client.addr(), config(true).addr);
    }

    #[test]
    fn a_failed_stream_is_asked_for_again_after_a_growing_wait() {
        let start = Instant::now();
        let mut client = RelayClient::new(config(true), start, 0);
        let mut asked = Vec::new();
        for step in 0..600 {
            let now = start + Duration::from_millis(step * 100);
            while client.poll_bind(now).is_some() {}
            if client.poll_stream(now) == Some(true) {
                asked.push(step * 100);
                client.stream_down(now);
            }
        }
        let gaps: Vec<u64> = asked.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(&gaps[..4], &[1_000, 2_000, 4_000, 8_000], "{asked:?}");
        assert!(gaps.iter().all(|&gap| gap <= REDIAL_MAX.as_millis() as u64));
        assert_eq!(client.transport(), RelayTransport::Udp);
    }

    #[test]
    fn the_stream_carries_frames_only_while_up_and_not_plain_wireguard() {
        let start = Instant::now();
        let mut client = RelayClient::new(config(true), start, 0);
        drive(&mut client, start, 3, |_| false);
        assert_eq!(client.transport(), RelayTransport::Stream);
        let mut buf = vec![0u8; 64];
        let (_, _, dst) = client
            .frame(9, &mut buf, relay::DATA_HEADER, 3)
            .expect("room");
        assert_eq!(dst, relay::STREAM_ENDPOINT);
        assert_eq!(
            client.classify(relay::STREAM_ENDPOINT, &[1, 0, 0, 0], start),
            Incoming::Nothing,
            "unframed bytes over the stream are not WireGuard"
        );
        client.stream_down(start + Duration::from_secs(3));
        assert_eq!(client.transport(), RelayTransport::Udp);
    }

    #[test]
    fn the_same_relay_again_rebinds_at_once_and_keeps_the_stream() {
        let start = Instant::now();
        let mut client = RelayClient::new(config(true), start, 0);
        drive(&mut client, start, 3, |_| false);
        assert_eq!(client.transport(), RelayTransport::Stream);
        let later = start + Duration::from_secs(4);
        assert!(client.poll_bind(later).is_none(), "nothing due yet");
        client.rebind(later, 4_000);
        let (_, dst) = client.poll_bind(later).expect("a bind at once");
        assert_eq!(
            dst,
            relay::STREAM_ENDPOINT,
            "the stream still carries the frames"
        );
        assert_eq!(client.transport(), RelayTransport::Stream);
    }

    #[test]
    fn a_stream_only_client_asks_for_its_stream_at_once_and_never_binds_over_udp() {
        let start = Instant::now();
        let mut client = RelayClient::new(
            RelayConfig {
                stream_only: true,
                ..config(false)
            },
            start,
            0,
        );
        assert_eq!(client.poll_bind(start), None, "no UDP bind");
        assert_eq!(client.poll_stream(start), Some(true), "asked for at once");
        client.stream_up(start);
        let mut binds = Vec::new();
        for step in 0..600 {
            let now = start + Duration::from_millis(step * 100);
            while let Some((_, dst)) = client.poll_bind(now) {
                binds.push((step * 100, dst));
            }
            assert!(client.next_timeout() > now, "nothing left due: no spin");
        }
        assert!(
            binds.iter().all(|&(_, dst)| dst == relay::STREAM_ENDPOINT),
            "{binds:?}"
        );
        assert_eq!(binds.len(), 4, "every 15 s over the stream: {binds:?}");
        client.stream_down(start + Duration::from_secs(60));
        assert_eq!(client.transport(), RelayTransport::Stream, "never UDP");
        let again = start + Duration::from_secs(61);
        assert_eq!(client.poll_stream(again), Some(true), "asked for again");
    }
}
