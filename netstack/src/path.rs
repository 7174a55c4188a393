//! Which address a peer's datagrams go to: through the hub relay, or straight to the peer.
//!
//! Agents start through the relay, which works behind any NAT. The relay then tells each
//! side where it sees the other (`PeerAt` frames, see [`crate::relay`]); each side sends a
//! handshake initiation there. A path counts as direct only once it has carried both
//! ways: a handshake *response* from the peer's own address (our initiation got there, its
//! answer got back), or data from there (the peer saw such a response). One-way
//! reachability, common behind firewalls, therefore never strands a peer.
//!
//! Datagrams still in flight through the relay do not pull a fresh direct path back, and
//! a direct path that falls silent returns to the relay, where the next introduction
//! starts over.
//!
//! Each probe goes out twice: first as an *opener* with a TTL of [`OPENER_TTL`], which
//! opens our own NAT's mapping toward the peer but dies before the peer's NAT, then, after
//! [`OPENER_LEAD`], in full. A first packet that reaches a NAT before that NAT's own
//! mapping toward us exists leaves state there (Linux conntrack keeps an entry for it)
//! that makes the NAT give the peer's answer a new port, which our NAT then drops: both
//! sides opening first and probing second avoids that race.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::relay;

/// How long a direct path stays chosen without hearing from it.
const DIRECT_SILENCE: Duration = Duration::from_secs(15);
/// Least time between two probes of one peer: introductions may be forged, so each is
/// worth one small datagram at most this often.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Hops an opener lives: past our own NAT, not as far as the peer's.
pub(crate) const OPENER_TTL: u8 = 2;
/// How long after its opener a probe follows in full: time for the peer's opener to
/// open its NAT too, since both sides are introduced at about the same moment.
pub(crate) const OPENER_LEAD: Duration = Duration::from_millis(200);
/// A peer's own candidate addresses (its LAN addresses, passed on by the hub) are probed
/// this often, for this long after they arrive, and at most this many.
const CANDIDATE_INTERVAL: Duration = Duration::from_secs(2);
const CANDIDATE_WINDOW: Duration = Duration::from_secs(30);
pub(crate) const MAX_CANDIDATES: usize = 8;

/// What an authenticated datagram says about the way back to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heard {
    /// A handshake initiation or cookie reply: the peer reaches us, nothing more.
    Unprompted,
    /// A handshake response: our initiation reached the peer this way.
    Answer,
    /// Transport data or a keepalive.
    Data,
}

impl Heard {
    /// By WireGuard's message type, the datagram's first byte.
    pub(crate) fn of(datagram: &[u8]) -> Self {
        match datagram.first() {
            Some(2) => Self::Answer,
            Some(4) => Self::Data,
            _ => Self::Unprompted,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Path {
    /// Where datagrams go now.
    pub(crate) endpoint: Option<SocketAddr>,
    /// The relay's address for this peer, once known; what a silent direct path falls back to.
    relay: Option<SocketAddr>,
    /// When a direct path last proved itself.
    direct_heard: Option<Instant>,
    last_probe: Option<Instant>,
    /// Where the peer says it may be reached directly (two peers behind one NAT that
    /// does not hairpin find each other only this way).
    candidates: Vec<SocketAddr>,
    /// The next candidate probe, while the window lasts.
    next_candidates: Option<Instant>,
    candidates_until: Option<Instant>,
}

fn is_relay(endpoint: SocketAddr) -> bool {
    relay::slot_of(endpoint).is_some()
}

impl Path {
    pub(crate) fn new(endpoint: Option<SocketAddr>) -> Self {
        Self {
            endpoint,
            relay: endpoint.filter(|e| is_relay(*e)),
            direct_heard: None,
            last_probe: None,
            candidates: Vec::new(),
            next_candidates: None,
            candidates_until: None,
        }
    }

    /// The peer's candidate addresses: probed at once, then every [`CANDIDATE_INTERVAL`]
    /// for [`CANDIDATE_WINDOW`] while the path is still relayed.
    pub(crate) fn set_candidates(&mut self, candidates: &[SocketAddr], now: Instant) {
        self.candidates = candidates
            .iter()
            .copied()
            .filter(|c| !is_relay(*c))
            .take(MAX_CANDIDATES)
            .collect();
        self.next_candidates = Some(now);
        self.candidates_until = Some(now + CANDIDATE_WINDOW);
    }

    /// The candidates to probe now (one initiation, sent to each: the first answer wins).
    pub(crate) fn due_candidates(&mut self, now: Instant) -> &[SocketAddr] {
        let due = self.next_candidates.is_some_and(|at| at <= now)
            && self.candidates_until.is_some_and(|until| now < until)
            && !self.is_direct();
        if !due {
            return &[];
        }
        self.next_candidates = Some(now + CANDIDATE_INTERVAL);
        &self.candidates
    }

    /// The relay's address for this peer, once known.
    pub(crate) fn relay(&self) -> Option<SocketAddr> {
        self.relay
    }

    pub(crate) fn is_direct(&self) -> bool {
        self.endpoint.is_some_and(|e| !is_relay(e))
    }

    /// An authenticated datagram of `kind` came from `from`.
    pub(crate) fn heard(&mut self, from: SocketAddr, kind: Heard, now: Instant) {
        if is_relay(from) {
            self.relay = Some(from);
            if self.is_direct() && self.direct_fresh(now) {
                return;
            }
            self.endpoint = Some(from);
            return;
        }
        let proves_both_ways = match self.endpoint {
            // Through the relay: only an answer (or the peer's own switch) proves the way back.
            Some(current) if is_relay(current) => kind != Heard::Unprompted,
            // No relay involved: plain WireGuard roaming.
            Some(_) | None => true,
        };
        if proves_both_ways {
            if self.endpoint != Some(from) {
                tracing::debug!(%from, "direct path to peer");
            }
            self.endpoint = Some(from);
            self.direct_heard = Some(now);
        }
    }

    /// Falls back to the relay when a direct path has gone quiet.
    pub(crate) fn tick(&mut self, now: Instant) {
        if self.is_direct()
            && let Some(relay) = self.relay
            && !self.direct_fresh(now)
        {
            tracing::debug!(%relay, "direct path silent, back through the relay");
            self.endpoint = Some(relay);
        }
    }

    /// Whether to probe `candidate` now: the peer is reached through the relay, and it was
    /// not probed in the last [`PROBE_INTERVAL`].
    pub(crate) fn should_probe(&mut self, candidate: SocketAddr, now: Instant) -> bool {
        if self.is_direct() || is_relay(candidate) || self.relay.is_none() {
            return false;
        }
        if self
            .last_probe
            .is_some_and(|at| now.duration_since(at) < PROBE_INTERVAL)
        {
            return false;
        }
        self.last_probe = Some(now);
        true
    }

    fn direct_fresh(&self, now: Instant) -> bool {
        self.direct_heard
            .is_some_and(|at| now.duration_since(at) < DIRECT_SILENCE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct() -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 7], 41000))
    }

    #[test]
    fn a_direct_path_needs_an_answer_from_it() {
        let now = Instant::now();
        let relayed = relay::synthetic_endpoint(9);
        let mut path = Path::new(Some(relayed));
        assert!(path.should_probe(direct(), now));
        assert!(!path.should_probe(direct(), now), "probes are rate limited");
        // The peer's own initiation shows only that its datagrams reach us.
        path.heard(direct(), Heard::Unprompted, now);
        assert_eq!(path.endpoint, Some(relayed));
        path.heard(direct(), Heard::Answer, now);
        assert_eq!(path.endpoint, Some(direct()));
        assert!(!path.should_probe(direct(), now + PROBE_INTERVAL));
    }

    #[test]
    fn data_from_the_peer_means_it_switched_so_we_follow() {
        let now = Instant::now();
        let mut path = Path::new(Some(relay::synthetic_endpoint(9)));
        path.heard(direct(), Heard::Data, now);
        assert!(path.is_direct());
    }

    #[test]
    fn relayed_stragglers_do_not_pull_a_fresh_direct_path_back() {
        let now = Instant::now();
        let relayed = relay::synthetic_endpoint(9);
        let mut path = Path::new(Some(relayed));
        path.heard(direct(), Heard::Answer, now);
        path.heard(relayed, Heard::Data, now + Duration::from_millis(5));
        assert_eq!(path.endpoint, Some(direct()));
        path.tick(now + DIRECT_SILENCE - Duration::from_millis(1));
        assert_eq!(path.endpoint, Some(direct()));
    }

    #[test]
    fn a_silent_direct_path_returns_to_the_relay() {
        let now = Instant::now();
        let relayed = relay::synthetic_endpoint(9);
        let mut path = Path::new(Some(relayed));
        path.heard(direct(), Heard::Answer, now);
        path.tick(now + DIRECT_SILENCE);
        assert_eq!(path.endpoint, Some(relayed));
        // ...and relayed datagrams are then followed as before.
        path.heard(relayed, Heard::Data, now + DIRECT_SILENCE);
        assert_eq!(path.endpoint, Some(relayed));
    }

    #[test]
    fn without_a_relay_it_is_plain_roaming() {
        let now = Instant::now();
        let mut path = Path::new(None);
        path.heard(direct(), Heard::Unprompted, now);
        assert_eq!(path.endpoint, Some(direct()));
        let moved = SocketAddr::from(([203, 0, 113, 1], 5000));
        path.heard(moved, Heard::Data, now);
        assert_eq!(path.endpoint, Some(moved));
        path.tick(now + DIRECT_SILENCE * 2);
        assert_eq!(path.endpoint, Some(moved), "no relay to fall back to");
        assert!(!path.should_probe(direct(), now));
    }

    #[test]
    fn candidates_are_probed_every_interval_for_a_window_while_relayed() {
        let now = Instant::now();
        let mut path = Path::new(Some(relay::synthetic_endpoint(9)));
        let many: Vec<SocketAddr> = (0..20u16)
            .map(|i| SocketAddr::from(([192, 168, 1, 2], 40000 + i)))
            .collect();
        path.set_candidates(&many, now);
        assert_eq!(path.due_candidates(now).len(), MAX_CANDIDATES);
        assert!(
            path.due_candidates(now + Duration::from_millis(500))
                .is_empty()
        );
        assert_eq!(
            path.due_candidates(now + CANDIDATE_INTERVAL).len(),
            MAX_CANDIDATES
        );
        assert!(
            path.due_candidates(now + CANDIDATE_WINDOW).is_empty(),
            "past the window"
        );
        path.set_candidates(&many[..1], now);
        path.heard(many[0], Heard::Answer, now);
        assert!(path.due_candidates(now).is_empty(), "already direct");
    }
}
