//! WireGuard sessions: one boringtun [`Tunn`] per peer, all behind one UDP socket.
//!
//! Finds the peer a datagram belongs to (the receiver index for data and responses, the
//! decrypted static key for initiations), keeps each peer's [`Path`] (relay or direct),
//! and maps boringtun's results into what the node needs. No IO: time comes from the caller
//! for paths; boringtun keeps its own.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::Ipv4Net;

use crate::Error;
use crate::path::{self, Heard, Path};
use crate::policy::Policy;
use crate::stats::Stats;

/// Bytes WireGuard adds to a packet (header, counter, tag).
pub(crate) const OVERHEAD: usize = 32;
/// The largest WireGuard message that is not data: a handshake initiation.
pub(crate) const MIN_DST: usize = 148;
/// Handshakes per second the node answers before asking for cookies. The shared limiter
/// sees each handshake twice (our front door, then `Tunn::decapsulate`), hence the double.
const HANDSHAKES_PER_SECOND: u64 = 2 * 20;
const HANDSHAKE_INIT: u8 = 1;
const HANDSHAKE_RESPONSE: u8 = 2;
const DATA: u8 = 4;
/// A session older than this is about to be refused (WireGuard's reject-after time is
/// 180 s), so a caller about to use it starts a new handshake instead.
const FRESH_SESSION: Duration = Duration::from_secs(170);
/// boringtun keeps 24 bits of the session index for the peer.
const MAX_INDEX: u32 = (1 << 24) - 1;

/// Static settings of one peer.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: PublicKey,
    /// Tunnel addresses the peer may send from and that route to it.
    pub allowed_ips: Vec<Ipv4Net>,
    /// Where to send until the peer speaks; learnt from its packets otherwise.
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: Option<u16>,
    /// What this peer may reach through our stack (serve side).
    pub policy: Policy,
    /// Whether the TCP segments our stack sends this peer need checksums: yes when they may
    /// end in a kernel (a TUN joiner's), which drops a segment without one. A peer known to
    /// run this userspace stack (a sharer, the hub's own peer, a joiner that said it runs in
    /// user space) does without: WireGuard's
    /// AEAD already vouches for every byte, and the checksum pass was a tenth of a sharer's
    /// CPU in a download.
    pub needs_checksums: bool,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("public_key", &crate::key_label(&self.public_key))
            .field("allowed_ips", &self.allowed_ips)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// What a peer looks like from outside, for `connect status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    pub public_key: PublicKey,
    pub endpoint: Option<SocketAddr>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub last_handshake: Option<Duration>,
}

pub(crate) struct Peer {
    pub(crate) config: PeerConfig,
    tunn: Tunn,
    pub(crate) path: Path,
    /// We answered the peer's initiation; its first data completes the handshake.
    answered: bool,
}

impl Peer {
    pub(crate) fn allows_source(&self, src: Ipv4Addr) -> bool {
        self.config.allowed_ips.iter().any(|net| net.contains(&src))
    }

    /// Follows the handshake through an authenticated datagram; true when it completed:
    /// an answer to our initiation, or the first data after we answered the peer's.
    /// `message_type` is WireGuard's, the datagram's first byte.
    fn handshake_step(&mut self, message_type: Option<u8>) -> bool {
        match message_type {
            Some(HANDSHAKE_INIT) => {
                self.answered = true;
                false
            }
            Some(HANDSHAKE_RESPONSE) => true,
            Some(DATA) => std::mem::take(&mut self.answered),
            _ => false,
        }
    }
}

/// The outcome of one datagram.
pub(crate) enum Inbound {
    /// An IP packet from `peer`, now at the start of the caller's buffer.
    Packet { peer: u32, len: usize },
    /// Nothing for the stack (handshake, keepalive, cookie, or dropped and counted).
    Nothing,
}

pub(crate) struct Sessions {
    private: StaticSecret,
    public: PublicKey,
    limiter: Arc<RateLimiter>,
    peers: HashMap<u32, Peer>,
    by_key: HashMap<[u8; 32], u32>,
    /// Allowed addresses that are single hosts, the common case, looked up per packet.
    hosts: HashMap<Ipv4Addr, u32>,
    /// Wider allowed prefixes, longest first.
    nets: Vec<(Ipv4Net, u32)>,
    next_index: u32,
    /// Peers whose handshake completed since the node last asked.
    completed: VecDeque<PublicKey>,
    /// Full probes waiting for their openers' lead: (when, where, the initiation).
    delayed: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
}

impl Sessions {
    pub(crate) fn new(private: StaticSecret, first_index: u32) -> Self {
        let public = PublicKey::from(&private);
        Self {
            limiter: Arc::new(RateLimiter::new(&public, HANDSHAKES_PER_SECOND)),
            private,
            public,
            peers: HashMap::new(),
            by_key: HashMap::new(),
            hosts: HashMap::new(),
            nets: Vec::new(),
            delayed: VecDeque::new(),
            next_index: first_index & MAX_INDEX,
            completed: VecDeque::new(),
        }
    }

    pub(crate) fn public_key(&self) -> PublicKey {
        self.public
    }

    pub(crate) fn add(&mut self, config: PeerConfig) -> Result<u32, Error> {
        if self.by_key.contains_key(config.public_key.as_bytes()) {
            return Err(Error::DuplicatePeer);
        }
        if let Some(net) = config.allowed_ips.iter().find(|net| {
            self.hosts.keys().any(|host| net.contains(host))
                || self.nets.iter().any(|(other, _)| {
                    other.contains(&net.network()) || net.contains(&other.network())
                })
        }) {
            return Err(Error::AddressInUse(IpAddr::V4(net.addr())));
        }
        let index = self.free_index();
        for net in &config.allowed_ips {
            if net.prefix_len() == 32 {
                self.hosts.insert(net.addr(), index);
            } else {
                self.nets.push((*net, index));
            }
        }
        self.nets
            .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        let tunn = Tunn::new(
            self.private.clone(),
            config.public_key,
            None,
            config.persistent_keepalive,
            index,
            Some(self.limiter.clone()),
        );
        self.by_key.insert(*config.public_key.as_bytes(), index);
        self.peers.insert(
            index,
            Peer {
                path: Path::new(config.endpoint),
                answered: false,
                config,
                tunn,
            },
        );
        Ok(index)
    }

    /// Indices are handed out in sequence and skip live ones, so a stale datagram for a
    /// removed peer is very unlikely to meet a new peer under the same index (and would
    /// fail authentication if it did).
    fn free_index(&mut self) -> u32 {
        loop {
            let index = self.next_index;
            self.next_index = (self.next_index + 1) & MAX_INDEX;
            if !self.peers.contains_key(&index) {
                return index;
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &PublicKey) -> Option<(u32, Peer)> {
        let index = self.by_key.remove(key.as_bytes())?;
        self.hosts.retain(|_, owner| *owner != index);
        self.nets.retain(|(_, owner)| *owner != index);
        self.peers.remove(&index).map(|peer| (index, peer))
    }

    pub(crate) fn index_of(&self, key: &PublicKey) -> Option<u32> {
        self.by_key.get(key.as_bytes()).copied()
    }

    pub(crate) fn get(&self, index: u32) -> Option<&Peer> {
        self.peers.get(&index)
    }

    pub(crate) fn peers(&self) -> impl Iterator<Item = (&u32, &Peer)> {
        self.peers.iter()
    }

    /// The next peer whose handshake completed.
    pub(crate) fn poll_completed(&mut self) -> Option<PublicKey> {
        self.completed.pop_front()
    }

    pub(crate) fn has_fresh_session(&self, index: u32) -> bool {
        self.peers
            .get(&index)
            .and_then(|peer| peer.tunn.stats().0)
            .is_some_and(|age| age < FRESH_SESSION)
    }

    pub(crate) fn stats(&self, index: u32) -> Option<PeerStats> {
        let peer = self.peers.get(&index)?;
        let (last_handshake, tx, rx, _, _) = peer.tunn.stats();
        Some(PeerStats {
            public_key: peer.config.public_key,
            endpoint: peer.path.endpoint,
            rx_bytes: rx as u64,
            tx_bytes: tx as u64,
            last_handshake,
        })
    }

    /// Opens one datagram. Replies boringtun wants sent (handshake responses, cookies,
    /// queued packets after a handshake) go to `control`.
    pub(crate) fn decapsulate(
        &mut self,
        from: SocketAddr,
        now: Instant,
        datagram: &[u8],
        dst: &mut [u8],
        control: &mut VecDeque<(SocketAddr, Vec<u8>)>,
        stats: &mut Stats,
    ) -> Inbound {
        stats.rx_datagrams += 1;
        let Some(index) = self.route_datagram(from, datagram, dst, control, stats) else {
            return Inbound::Nothing;
        };
        let Some(peer) = self.peers.get_mut(&index) else {
            stats.rx_unknown_peer += 1;
            return Inbound::Nothing;
        };
        let outcome = match peer.tunn.decapsulate(Some(from.ip()), datagram, dst) {
            TunnResult::Done => Ok(Inbound::Nothing),
            TunnResult::Err(err) => Err(err),
            TunnResult::WriteToNetwork(reply) => {
                control.push_back((from, reply.to_vec()));
                // boringtun may hold packets queued while the handshake ran.
                while let TunnResult::WriteToNetwork(queued) = peer.tunn.decapsulate(None, &[], dst)
                {
                    control.push_back((from, queued.to_vec()));
                }
                Ok(Inbound::Nothing)
            }
            TunnResult::WriteToTunnelV4(packet, src) => {
                let len = packet.len();
                if peer.allows_source(src) {
                    Ok(Inbound::Packet { peer: index, len })
                } else {
                    stats.rx_spoofed += 1;
                    Ok(Inbound::Nothing)
                }
            }
            TunnResult::WriteToTunnelV6(..) => {
                stats.rx_spoofed += 1;
                Ok(Inbound::Nothing)
            }
        };
        match outcome {
            Ok(inbound) => {
                let heard = Heard::of(datagram);
                peer.path.heard(from, heard, now);
                if peer.handshake_step(datagram.first().copied()) {
                    self.completed.push_back(peer.config.public_key);
                }
                inbound
            }
            Err(err) => {
                count_error(&err, stats);
                Inbound::Nothing
            }
        }
    }

    /// Which peer a datagram claims to be for, checking MACs and load first.
    fn route_datagram(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        dst: &mut [u8],
        control: &mut VecDeque<(SocketAddr, Vec<u8>)>,
        stats: &mut Stats,
    ) -> Option<u32> {
        let packet = match Tunn::parse_incoming_packet(datagram) {
            Ok(Packet::PacketData(data)) => return Some(data.receiver_idx >> 8),
            Ok(Packet::PacketCookieReply(cookie)) => return Some(cookie.receiver_idx >> 8),
            Ok(packet) => packet,
            Err(_) => {
                stats.rx_invalid += 1;
                return None;
            }
        };
        // Handshake messages: MAC1 and load are checked before any public-key work.
        let packet = match self.limiter.verify_packet(Some(from.ip()), datagram, dst) {
            Ok(_) => packet,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                stats.cookies_sent += 1;
                control.push_back((from, cookie.to_vec()));
                return None;
            }
            Err(_) => {
                stats.rx_invalid += 1;
                return None;
            }
        };
        match packet {
            Packet::HandshakeInit(init) => {
                match parse_handshake_anon(&self.private, &self.public, &init) {
                    Ok(half) => match self.by_key.get(&half.peer_static_public) {
                        Some(index) => Some(*index),
                        None => {
                            stats.rx_unknown_peer += 1;
                            None
                        }
                    },
                    Err(_) => {
                        stats.rx_invalid += 1;
                        None
                    }
                }
            }
            Packet::HandshakeResponse(response) => Some(response.receiver_idx >> 8),
            Packet::PacketData(_) | Packet::PacketCookieReply(_) => None,
        }
    }

    /// Seals one IP packet for `peer` into `dst`, its TCP checksum filled in first if the
    /// peer needs one (see [`PeerConfig::needs_checksums`]). Returns where to send it and
    /// its length; `None` when nothing can go out now (no endpoint, or the packet waits in
    /// boringtun for a handshake, whose initiation is then returned instead).
    pub(crate) fn encapsulate(
        &mut self,
        index: u32,
        packet: &mut [u8],
        dst: &mut [u8],
        stats: &mut Stats,
    ) -> Option<(SocketAddr, usize)> {
        let peer = self.peers.get_mut(&index)?;
        let Some(endpoint) = peer.path.endpoint else {
            stats.tx_no_endpoint += 1;
            return None;
        };
        if peer.config.needs_checksums {
            crate::packet::fill_tcp_checksum(packet);
        }
        match peer.tunn.encapsulate(packet, dst) {
            TunnResult::WriteToNetwork(out) => Some((endpoint, out.len())),
            TunnResult::Done => None,
            TunnResult::Err(err) => {
                tracing::debug!(peer = index, ?err, "cannot seal packet");
                None
            }
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => None,
        }
    }

    /// Drives boringtun's timers (handshake retries, keepalives, rekeying) and the shared
    /// handshake limiter. Meant for every 250 ms, boringtun's own device period.
    pub(crate) fn update_timers(
        &mut self,
        now: Instant,
        dst: &mut [u8],
        control: &mut VecDeque<(SocketAddr, Vec<u8>)>,
    ) {
        self.limiter.reset_count();
        for (index, peer) in &mut self.peers {
            peer.path.tick(now);
            match peer.tunn.update_timers(dst) {
                TunnResult::WriteToNetwork(out) => {
                    if let Some(endpoint) = peer.path.endpoint {
                        control.push_back((endpoint, out.to_vec()));
                    }
                }
                TunnResult::Err(WireGuardError::ConnectionExpired) => {
                    tracing::trace!(peer = index, "session expired");
                }
                TunnResult::Err(err) => tracing::debug!(peer = index, ?err, "timer error"),
                TunnResult::Done
                | TunnResult::WriteToTunnelV4(..)
                | TunnResult::WriteToTunnelV6(..) => {}
            }
        }
    }

    /// Sends a handshake initiation now, even if one is under way: a join checks the path
    /// before any flow waits on it, and retries sooner than boringtun's 5 s when the
    /// first initiation raced the sharer learning about the joiner. (Not forcing it made
    /// every retry a no-op while the first initiation was still "in progress": a join
    /// that lost that race waited 2 s for the sharer's own probe, 3 joins in 10 here.)
    pub(crate) fn initiate(
        &mut self,
        index: u32,
        dst: &mut [u8],
        control: &mut VecDeque<(SocketAddr, Vec<u8>)>,
    ) {
        if let Some(peer) = self.peers.get_mut(&index)
            && let Some(endpoint) = peer.path.endpoint
            && let TunnResult::WriteToNetwork(out) =
                peer.tunn.format_handshake_initiation(dst, true)
        {
            control.push_back((endpoint, out.to_vec()));
        }
    }

    /// The relay says the peer behind `relayed` is at `candidate`: send it a handshake
    /// initiation there, whose answer proves a direct path (see [`Path`]).
    pub(crate) fn probe(
        &mut self,
        relayed: SocketAddr,
        candidate: SocketAddr,
        now: Instant,
        dst: &mut [u8],
        openers: &mut VecDeque<(SocketAddr, Vec<u8>)>,
    ) {
        let Some(peer) = self
            .peers
            .values_mut()
            .find(|p| p.path.relay() == Some(relayed))
        else {
            return;
        };
        if peer.path.should_probe(candidate, now)
            && let TunnResult::WriteToNetwork(out) =
                peer.tunn.format_handshake_initiation(dst, true)
        {
            tracing::debug!(%candidate, "probing a direct path");
            openers.push_back((candidate, out.to_vec()));
            self.delayed
                .push_back((now + path::OPENER_LEAD, candidate, out.to_vec()));
        }
    }

    /// When the next full probe is due after its opener.
    pub(crate) fn next_probe(&self) -> Option<Instant> {
        self.delayed.front().map(|(at, _, _)| *at)
    }

    /// Releases the full probes whose openers went out long enough ago.
    pub(crate) fn release_probes(
        &mut self,
        now: Instant,
        control: &mut VecDeque<(SocketAddr, Vec<u8>)>,
    ) {
        while self.delayed.front().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, candidate, bytes)) = self.delayed.pop_front() {
                control.push_back((candidate, bytes));
            }
        }
    }

    /// The peer's candidate addresses (see [`Path::set_candidates`]).
    pub(crate) fn set_candidates(
        &mut self,
        key: &PublicKey,
        candidates: &[SocketAddr],
        now: Instant,
    ) -> bool {
        let Some(peer) = self
            .index_of(key)
            .and_then(|index| self.peers.get_mut(&index))
        else {
            return false;
        };
        peer.path.set_candidates(candidates, now);
        true
    }

    /// Sends each peer with candidates due one handshake initiation, the same bytes to
    /// every candidate: the peer answers the first copy that reaches it (later copies
    /// are replays), and that answer makes the path direct.
    pub(crate) fn probe_candidates(
        &mut self,
        now: Instant,
        dst: &mut [u8],
        control: &mut VecDeque<(SocketAddr, Vec<u8>)>,
    ) {
        for peer in self.peers.values_mut() {
            let due = peer.path.due_candidates(now);
            if due.is_empty() {
                continue;
            }
            if let TunnResult::WriteToNetwork(out) =
                peer.tunn.format_handshake_initiation(dst, true)
            {
                for candidate in due {
                    tracing::debug!(%candidate, "probing a candidate address");
                    control.push_back((*candidate, out.to_vec()));
                }
            }
        }
    }

    pub(crate) fn route_ipv4(&self, dst: Ipv4Addr) -> Option<u32> {
        if let Some(index) = self.hosts.get(&dst) {
            return Some(*index);
        }
        self.nets
            .iter()
            .find(|(net, _)| net.contains(&dst))
            .map(|(_, index)| *index)
    }
}

fn count_error(err: &WireGuardError, stats: &mut Stats) {
    match err {
        WireGuardError::DuplicateCounter
        | WireGuardError::InvalidCounter
        | WireGuardError::WrongTai64nTimestamp => stats.rx_replayed += 1,
        WireGuardError::NoCurrentSession | WireGuardError::WrongIndex => stats.rx_unknown_peer += 1,
        WireGuardError::DestinationBufferTooSmall
        | WireGuardError::IncorrectPacketLength
        | WireGuardError::UnexpectedPacket
        | WireGuardError::WrongPacketType
        | WireGuardError::WrongKey
        | WireGuardError::InvalidTai64nTimestamp
        | WireGuardError::InvalidMac
        | WireGuardError::InvalidAeadTag
        | WireGuardError::InvalidPacket
        | WireGuardError::LockFailed
        | WireGuardError::ConnectionExpired
        | WireGuardError::UnderLoad => stats.rx_invalid += 1,
    }
}
