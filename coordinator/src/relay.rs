//! The UDP relay: forwards sealed WireGuard datagrams between agents that have a live
//! join, tells agents their observed address and, while it forwards between two, where it
//! sees each (so they can try a direct path), and drops everything else.
//!
//! `RelayTable` is the pure part (slots, allowed pairs, per-source rate limits, binds
//! that must be newer than the last, slots known not to exist); `run` is the small driver
//! around one socket. The driver never waits on the database for a datagram: a bind for a
//! slot it has no key for is held while the key is looked up on the main runtime. See
//! `connect_netstack::relay` for the format.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;

use connect_netstack::io::batch::{BatchSocket, Received, RecvBatch};
use connect_netstack::io::relay_stream::{Frames, StreamMessage};
use connect_netstack::relay::{self, Frame};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Datagrams one source address may send per second before the excess is dropped.
/// 500,000 × 1.4 KB ≈ 5.6 Gbit/s: a busy tunnel fits, a flood does not.
const PER_SOURCE_PER_SECOND: u32 = 500_000;
/// How often an agent is re-told where a peer it talks to through us is, while it does:
/// each telling is a chance to punch through NAT, and a peer that moved is found again.
const INTRODUCE_EVERY_MS: u64 = 2_000;
/// Both sides of a pair count as talking through us when each sent within this long.
const BOTH_WAYS_MS: u64 = 5_000;
/// Source addresses tracked for rate limits; past this, new sources share one budget
/// until the next second's sweep, so a spoofed flood costs neither memory nor a rescan
/// per datagram.
const RATE_SOURCES: usize = 100_000;
/// Slots the store does not know, remembered this long so their binds cost no lookup.
const UNKNOWN_FOR_MS: u64 = 30_000;
/// At most this many unknown slots remembered at once.
const UNKNOWN_SLOTS: usize = 4_096;
/// Key lookups in flight at once; binds for further unknown slots are dropped meanwhile.
const LOOKUPS: usize = 16;
/// Datagrams held behind a bind whose key is being looked up: an agent sends its first
/// WireGuard initiation right after its first bind, and dropping it cost a join a retry.
const HELD_BEHIND: usize = 8;

/// The relay thread's inputs from the rest of the hub.
pub struct Inbox {
    pub updates: mpsc::Receiver<RelayUpdate>,
    pub streams: mpsc::Receiver<StreamMessage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayUpdate {
    /// A join between the sharer's slot and the joiner's slot went live.
    Allow(u64, u64),
    /// That join's share ended.
    Disallow(u64, u64),
}

struct Slot {
    key: [u8; 32],
    addr: Option<SocketAddr>,
    /// Our address the agent's bind came to: what datagrams to it are sent from.
    local: Option<IpAddr>,
    /// The time in the last bind taken: a bind must be newer (a captured one replayed
    /// from elsewhere is refused).
    last_bind_ms: u64,
}

/// What to do with a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Rewrite the slot (bytes 4..12) to `source` and send the datagram to `to`, from our
    /// address `via` (the one `to` binds to, which its NAT expects answers from).
    Forward {
        to: SocketAddr,
        source: u64,
        /// The destination's slot.
        dest: u64,
        via: Option<IpAddr>,
    },
    /// Send this reply to the datagram's sender.
    Reply(Vec<u8>),
    /// A bind for a slot whose key is not loaded yet.
    NeedKey(u64),
    /// Data from an address with no bound slot (perhaps its bind is being looked up).
    Unbound,
    Drop(&'static str),
}

#[derive(Default)]
pub struct RelayTable {
    slots: HashMap<u64, Slot>,
    by_addr: HashMap<SocketAddr, u64>,
    /// Live joins per (lower slot, higher slot); a count, since one pair can share twice.
    pairs: HashMap<(u64, u64), u32>,
    rate: HashMap<IpAddr, (u64, u32)>,
    /// The shared budget of sources past [`RATE_SOURCES`].
    rate_overflow: (u64, u32),
    /// The second the rate table was last swept.
    rate_swept: u64,
    /// Slots the store does not know, until when.
    unknown: HashMap<u64, u64>,
    /// When the two slots of a pair were last told where the other is.
    introduced: HashMap<(u64, u64), u64>,
    /// When we last forwarded from one slot to another.
    forwarded: HashMap<(u64, u64), u64>,
}

fn pair(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

impl RelayTable {
    pub fn apply(&mut self, update: RelayUpdate) {
        match update {
            RelayUpdate::Allow(a, b) => *self.pairs.entry(pair(a, b)).or_default() += 1,
            RelayUpdate::Disallow(a, b) => {
                if let Some(count) = self.pairs.get_mut(&pair(a, b)) {
                    *count -= 1;
                    if *count == 0 {
                        self.pairs.remove(&pair(a, b));
                    }
                }
            }
        }
    }

    pub fn add_key(&mut self, slot: u64, key: [u8; 32]) {
        self.unknown.remove(&slot);
        self.slots.entry(slot).or_insert(Slot {
            key,
            addr: None,
            local: None,
            last_bind_ms: 0,
        });
    }

    /// The store has no agent with this slot: its binds are dropped for a while without
    /// asking again.
    pub fn unknown_slot(&mut self, slot: u64, now_ms: u64) {
        if self.unknown.len() >= UNKNOWN_SLOTS {
            self.unknown.retain(|_, until| *until > now_ms);
        }
        if self.unknown.len() >= UNKNOWN_SLOTS
            && let Some(&any) = self.unknown.keys().next()
        {
            self.unknown.remove(&any);
        }
        self.unknown.insert(slot, now_ms + UNKNOWN_FOR_MS);
    }

    fn allowed(&mut self, from: IpAddr, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        if self.rate.len() >= RATE_SOURCES && self.rate_swept != second {
            // Forget old windows rather than grow without bound under a spoofed flood.
            self.rate.retain(|_, (s, _)| *s == second);
            self.rate_swept = second;
        }
        let entry = if self.rate.len() < RATE_SOURCES || self.rate.contains_key(&from) {
            self.rate.entry(from).or_insert((second, 0))
        } else {
            &mut self.rate_overflow
        };
        if entry.0 != second {
            *entry = (second, 0);
        }
        entry.1 += 1;
        entry.1 <= PER_SOURCE_PER_SECOND
    }

    /// After forwarding from slot `source` (at `from`, which came to our address
    /// `from_local`) to slot `dest`: `PeerAt` frames to send, each with where and from
    /// which of our addresses. Both sides of a pair are told at the same moment, once
    /// both have sent through us lately (so each knows the other as a peer), and again
    /// every [`INTRODUCE_EVERY_MS`]: each side then opens its NAT and probes at the same
    /// time as the other (see `connect_netstack::path`), instead of one side's probe
    /// reaching the other's NAT first.
    pub fn introductions(
        &mut self,
        source: u64,
        from: SocketAddr,
        from_local: Option<IpAddr>,
        dest: u64,
        now_ms: u64,
    ) -> Vec<(Vec<u8>, SocketAddr, Option<IpAddr>)> {
        if self.forwarded.len() > 100_000 {
            self.forwarded
                .retain(|_, at| now_ms.saturating_sub(*at) < BOTH_WAYS_MS);
        }
        self.forwarded.insert((source, dest), now_ms);
        let answered = self
            .forwarded
            .get(&(dest, source))
            .is_some_and(|at| now_ms.saturating_sub(*at) < BOTH_WAYS_MS);
        let Some(Slot {
            addr: Some(to),
            local: to_local,
            ..
        }) = self.slots.get(&dest)
        else {
            return Vec::new();
        };
        let (to, to_local) = (*to, *to_local);
        // A peer on the hub's loopback (the hub's own) is no address for anyone else, and
        // an agent on a stream has no UDP address to give or use.
        if !answered
            || from.ip().is_loopback() != to.ip().is_loopback()
            || relay::is_stream_client(from)
            || relay::is_stream_client(to)
        {
            return Vec::new();
        }
        if self.introduced.len() > 100_000 {
            self.introduced
                .retain(|_, at| now_ms.saturating_sub(*at) < INTRODUCE_EVERY_MS);
        }
        let last = self.introduced.entry(pair(source, dest)).or_insert(0);
        if now_ms.saturating_sub(*last) < INTRODUCE_EVERY_MS {
            return Vec::new();
        }
        *last = now_ms;
        vec![
            (relay::write_peer_at(source, from), to, to_local),
            (relay::write_peer_at(dest, to), from, from_local),
        ]
    }

    /// A stream client went away: its slot, if still bound to it, is unbound.
    pub fn forget(&mut self, addr: SocketAddr) {
        if let Some(id) = self.by_addr.remove(&addr)
            && let Some(slot) = self.slots.get_mut(&id)
            && slot.addr == Some(addr)
        {
            slot.addr = None;
        }
    }

    /// `local` is our address the datagram came to, where the kernel tells it.
    pub fn handle(
        &mut self,
        from: SocketAddr,
        local: Option<IpAddr>,
        datagram: &[u8],
        now_ms: u64,
    ) -> Verdict {
        if !self.allowed(from.ip(), now_ms) {
            return Verdict::Drop("rate limited");
        }
        match relay::parse(datagram) {
            Some(Frame::Data { slot: to, .. }) => {
                let Some(&source) = self.by_addr.get(&from) else {
                    return Verdict::Unbound;
                };
                if !self.pairs.contains_key(&pair(source, to)) {
                    return Verdict::Drop("no live join between these agents");
                }
                match self.slots.get(&to) {
                    Some(Slot {
                        addr: Some(addr),
                        local: via,
                        ..
                    }) => Verdict::Forward {
                        to: *addr,
                        source,
                        dest: to,
                        via: *via,
                    },
                    _ => Verdict::Drop("destination has not bound its slot"),
                }
            }
            Some(Frame::Bind { id, unix_ms, mac }) => {
                let Some(slot) = self.slots.get_mut(&id) else {
                    if self.unknown.get(&id).is_some_and(|until| *until > now_ms) {
                        return Verdict::Drop("unknown slot");
                    }
                    return Verdict::NeedKey(id);
                };
                if unix_ms <= slot.last_bind_ms {
                    return Verdict::Drop("replayed bind");
                }
                if !relay::verify_bind(&slot.key, id, unix_ms, &mac, now_ms) {
                    return Verdict::Drop("bad or stale bind");
                }
                slot.last_bind_ms = unix_ms;
                if let Some(old) = slot.addr.replace(from)
                    && old != from
                {
                    self.by_addr.remove(&old);
                }
                slot.local = local;
                self.by_addr.insert(from, id);
                Verdict::Reply(relay::write_bind_ack(id, from))
            }
            Some(Frame::Probe { nonce }) => Verdict::Reply(relay::write_probe_ack(nonce, from)),
            Some(Frame::BindAck { .. } | Frame::PeerAt { .. } | Frame::ProbeAck { .. }) | None => {
                Verdict::Drop("not a relay frame")
            }
        }
    }
}

fn parse_key(text: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).ok()?;
    Some(key)
}

/// Serves the relay on `socket` (a std socket, registered here) until cancelled, on the
/// packet thread `packets` (see `own_thread`). The database stays on the main runtime
/// (`main`), which the relay asks for the little it needs.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    packets: &tokio::runtime::Handle,
    socket: std::net::UdpSocket,
    hub_slot: Option<u64>,
    store: Store,
    clock: Arc<dyn Clock>,
    inbox: Inbox,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let main = tokio::runtime::Handle::current();
    packets.spawn(async move {
        match UdpSocket::from_std(socket).and_then(BatchSocket::new) {
            Ok(socket) => {
                let (found, answers) = mpsc::channel(LOOKUPS);
                let mut relay = Relay {
                    socket,
                    table: RelayTable::default(),
                    store,
                    clock,
                    metrics,
                    main,
                    streams: HashMap::new(),
                    lookups: HashMap::new(),
                    found,
                };
                relay.load(hub_slot).await;
                relay.run(inbox, answers, cancel).await;
            }
            Err(err) => tracing::error!(%err, "cannot serve the relay socket"),
        }
    })
}

/// Runs `work` on the main runtime, where the database pool lives.
async fn on_main<T: Send + 'static>(
    main: &tokio::runtime::Handle,
    work: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    main.spawn(work).await.ok()
}

/// The relay's driver: its socket, its table, and what it needs from the rest of the hub.
struct Relay {
    socket: BatchSocket,
    table: RelayTable,
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    main: tokio::runtime::Handle,
    /// Stream clients by their synthetic address: where frames for them go.
    streams: HashMap<SocketAddr, mpsc::Sender<Frames>>,
    /// Slots whose key is being looked up, with the datagram that asked.
    lookups: HashMap<u64, Held>,
    /// Where lookups answer, read by `run`.
    found: mpsc::Sender<Found>,
}

/// A store lookup's answer: a slot and its key, if the slot exists.
type Found = (u64, Result<Option<[u8; 32]>, StoreError>);

/// A bind waiting for its slot's key, and what its sender sent right behind it.
struct Held {
    from: SocketAddr,
    local: Option<IpAddr>,
    /// The bind first, then at most [`HELD_BEHIND`] datagrams.
    datagrams: Vec<Vec<u8>>,
}

/// Forwarded datagrams gathered into one send: `bytes[start..end]` to `to`, from `via`.
struct Pending {
    to: SocketAddr,
    via: Option<IpAddr>,
    start: usize,
    end: usize,
}

impl Relay {
    /// Loads who may talk: live joins, and the hub's own peer with every public share.
    async fn load(&mut self, hub_slot: Option<u64>) {
        let pairs = {
            let store = self.store.clone();
            on_main(&self.main, async move { store.live_relay_pairs().await }).await
        };
        match pairs.unwrap_or_else(|| Ok(Vec::new())) {
            Ok(pairs) => {
                for (a, b) in pairs {
                    self.table.apply(RelayUpdate::Allow(a, b));
                }
            }
            Err(err) => tracing::error!(%err, "cannot load live joins for the relay"),
        }
        if let Some(hub_slot) = hub_slot {
            let shares = {
                let store = self.store.clone();
                on_main(&self.main, async move { store.live_http_shares().await }).await
            };
            match shares.unwrap_or_else(|| Ok(Vec::new())) {
                Ok(shares) => {
                    for share in shares {
                        self.table
                            .apply(RelayUpdate::Allow(share.sharer_slot, hub_slot));
                    }
                }
                Err(err) => tracing::error!(%err, "cannot load public shares for the relay"),
            }
        }
    }

    async fn run(
        &mut self,
        inbox: Inbox,
        mut answers: mpsc::Receiver<Found>,
        cancel: CancellationToken,
    ) {
        let Inbox {
            mut updates,
            mut streams,
        } = inbox;
        let mut streams_open = true;
        let mut received = RecvBatch::default();
        // Made once: a fresh `cancelled()` every turn locks and registers a waiter each time.
        let cancelled = cancel.cancelled_owned();
        tokio::pin!(cancelled);
        loop {
            // Biased: changes to who may talk are applied before the next datagram is read,
            // so a revoke takes effect for every datagram that arrives after it.
            tokio::select! {
                biased;
                () = &mut cancelled => return,
                update = updates.recv() => match update {
                    Some(update) => self.table.apply(update),
                    None => return,
                },
                message = streams.recv(), if streams_open => match message {
                    Some(message) => self.stream_message(message).await,
                    None => streams_open = false,
                },
                Some((slot, found)) = answers.recv() => self.key_found(slot, found).await,
                readable = self.socket.readable() => {
                    if readable.is_err() {
                        continue;
                    }
                    // One receive per wake-up, so updates stay between batches.
                    if self.socket.try_recv(&mut received).is_ok() {
                        for index in 0..received.len() {
                            let Received { from, local, bytes, stride } = received.buffer(index);
                            self.forward(from, local, bytes, stride).await;
                        }
                    }
                }
            }
        }
    }

    async fn stream_message(&mut self, message: StreamMessage) {
        match message {
            StreamMessage::Open { addr, frames } => {
                self.streams.insert(addr, frames);
            }
            StreamMessage::Frames { addr, frames } => {
                let mut bytes = Vec::from(frames.bytes);
                self.forward(addr, None, &mut bytes, frames.stride).await;
            }
            StreamMessage::Closed { addr } => {
                self.streams.remove(&addr);
                self.table.forget(addr);
            }
        }
    }

    /// Handles the datagrams of one receive buffer (`stride` bytes each, the last maybe
    /// shorter), all from one sender. Consecutive ones forwarded to one address leave in
    /// one send, their headers rewritten in place.
    async fn forward(
        &mut self,
        from: SocketAddr,
        local: Option<IpAddr>,
        bytes: &mut [u8],
        stride: usize,
    ) {
        let now_ms = self.now_ms();
        let mut pending: Option<Pending> = None;
        let mut introductions = Vec::new();
        let (mut packets, mut relayed) = (0, 0);
        let mut start = 0;
        while start < bytes.len() {
            let end = (start + stride).min(bytes.len());
            let verdict = self.table.handle(from, local, &bytes[start..end], now_ms);
            if let Verdict::Forward {
                to,
                source,
                dest,
                via,
            } = verdict
            {
                relay::write_data_header(&mut bytes[start..end], source);
                packets += 1;
                relayed += end - start;
                match pending.as_mut() {
                    Some(run) if run.to == to && run.end == start => run.end = end,
                    _ => {
                        // Once per run, not per datagram: a run has one sender and one
                        // destination.
                        introductions
                            .extend(self.table.introductions(source, from, local, dest, now_ms));
                        let next = Pending {
                            to,
                            via,
                            start,
                            end,
                        };
                        if let Some(run) = pending.replace(next) {
                            self.send(&bytes[run.start..run.end], run.to, run.via, stride)
                                .await;
                        }
                    }
                }
            } else {
                if let Some(run) = pending.take() {
                    self.send(&bytes[run.start..run.end], run.to, run.via, stride)
                        .await;
                }
                match verdict {
                    Verdict::Reply(reply) => self.send(&reply, from, local, reply.len()).await,
                    Verdict::Drop(reason) => {
                        tracing::debug!(%from, reason, "relay dropped a datagram");
                        Metrics::add(&self.metrics.relay_dropped, 1);
                    }
                    Verdict::NeedKey(slot) => self.look_up(slot, from, local, &bytes[start..end]),
                    Verdict::Unbound => self.hold_behind_bind(from, &bytes[start..end]),
                    Verdict::Forward { .. } => {}
                }
            }
            start = end;
        }
        if let Some(run) = pending {
            self.send(&bytes[run.start..run.end], run.to, run.via, stride)
                .await;
        }
        for (frame, to, via) in introductions {
            self.send(&frame, to, via, frame.len()).await;
        }
        Metrics::add(&self.metrics.relay_packets, packets);
        Metrics::add(&self.metrics.relay_bytes, relayed as u64);
    }

    /// Asks the store for the key of a slot that has not bound yet, without waiting: the
    /// datagram is held (one per slot, [`LOOKUPS`] slots at a time; others are dropped and
    /// their agents retry) and handled again when the answer comes.
    fn look_up(&mut self, slot: u64, from: SocketAddr, local: Option<IpAddr>, datagram: &[u8]) {
        if self.lookups.len() >= LOOKUPS || self.lookups.contains_key(&slot) {
            Metrics::add(&self.metrics.relay_dropped, 1);
            return;
        }
        let held = Held {
            from,
            local,
            datagrams: vec![datagram.to_vec()],
        };
        self.lookups.insert(slot, held);
        let store = self.store.clone();
        let found = self.found.clone();
        self.main.spawn(async move {
            let key = store
                .agent_by_relay_id(slot)
                .await
                .map(|agent| agent.and_then(|agent| parse_key(agent.relay_key.expose())));
            let _ = found.send((slot, key)).await;
        });
    }

    /// The store's answer for a slot: its key, or that there is no such slot (remembered,
    /// see [`RelayTable::unknown_slot`]). The held datagram is handled again unless the
    /// store failed, which would only ask again.
    async fn key_found(&mut self, slot: u64, found: Result<Option<[u8; 32]>, StoreError>) {
        let held = self.lookups.remove(&slot);
        match found {
            Ok(Some(key)) => self.table.add_key(slot, key),
            Ok(None) => self.table.unknown_slot(slot, self.now_ms()),
            Err(err) => {
                tracing::warn!(%err, "cannot look up relay slot");
                return;
            }
        }
        if let Some(Held {
            from,
            local,
            datagrams,
        }) = held
        {
            for mut datagram in datagrams {
                let stride = datagram.len().max(1);
                self.forward(from, local, &mut datagram, stride).await;
            }
        }
    }

    /// Data from an unbound address: held behind that address's bind when one is being
    /// looked up (handled after it, in order), dropped otherwise.
    fn hold_behind_bind(&mut self, from: SocketAddr, datagram: &[u8]) {
        let held = self
            .lookups
            .values_mut()
            .find(|held| held.from == from && held.datagrams.len() <= HELD_BEHIND);
        match held {
            Some(held) => held.datagrams.push(datagram.to_vec()),
            None => {
                tracing::debug!(%from, "relay dropped data from an unbound address");
                Metrics::add(&self.metrics.relay_dropped, 1);
            }
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(crate::clock::unix_ms(self.clock.now())).unwrap_or(0)
    }

    /// Sends `bytes` to `to` as datagrams of `segment` bytes (the last maybe shorter):
    /// over UDP, or as frames on a stream client's connection.
    async fn send(&self, bytes: &[u8], to: SocketAddr, via: Option<IpAddr>, segment: usize) {
        if relay::is_stream_client(to) {
            let Some(frames) = self.streams.get(&to) else {
                return;
            };
            // The run goes whole, in one copy and one message.
            let run = Frames {
                bytes: Bytes::copy_from_slice(bytes),
                stride: segment.max(1),
            };
            if frames.try_send(run).is_err() {
                let dropped = bytes.len().div_ceil(segment.max(1));
                Metrics::add(&self.metrics.relay_dropped, dropped as u64);
            }
            return;
        }
        if let Err(err) = self.socket.send_from(via, to, bytes, segment).await {
            tracing::debug!(%err, %to, "relay send failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    fn data(to: u64) -> Vec<u8> {
        let mut frame = vec![0u8; relay::DATA_HEADER + 4];
        relay::write_data_header(&mut frame, to);
        frame
    }

    #[test]
    fn forwards_only_between_bound_agents_with_a_live_join() {
        let mut table = RelayTable::default();
        let (ka, kb) = (relay::relay_key("a"), relay::relay_key("b"));
        let (a, b) = (addr("198.51.100.1:1000"), addr("203.0.113.2:2000"));
        assert_eq!(
            table.handle(a, None, &relay::write_bind(&ka, 1, 5000), 5000),
            Verdict::NeedKey(1)
        );
        table.add_key(1, ka);
        table.add_key(2, kb);
        assert!(matches!(
            table.handle(a, None, &relay::write_bind(&ka, 1, 5000), 5000),
            Verdict::Reply(_)
        ));
        // A bind with the wrong key does not move slot 2 to the attacker.
        assert!(matches!(
            table.handle(a, None, &relay::write_bind(&ka, 2, 5000), 5000),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            table.handle(b, None, &relay::write_bind(&kb, 2, 5000), 5000),
            Verdict::Reply(_)
        ));
        assert!(
            matches!(table.handle(a, None, &data(2), 5000), Verdict::Drop(_)),
            "strangers relayed"
        );
        table.apply(RelayUpdate::Allow(2, 1));
        assert_eq!(
            table.handle(a, None, &data(2), 5000),
            Verdict::Forward {
                to: b,
                source: 1,
                dest: 2,
                via: None
            }
        );
        assert_eq!(
            table.handle(b, None, &data(1), 5000),
            Verdict::Forward {
                to: a,
                source: 2,
                dest: 1,
                via: None
            }
        );
        table.apply(RelayUpdate::Disallow(1, 2));
        assert!(matches!(
            table.handle(a, None, &data(2), 5000),
            Verdict::Drop(_)
        ));
    }

    #[test]
    fn both_sides_are_told_together_once_both_talk_and_now_and_then() {
        let mut table = RelayTable::default();
        let (ka, kb) = (relay::relay_key("a"), relay::relay_key("b"));
        let (a, b) = (addr("198.51.100.1:1000"), addr("203.0.113.2:2000"));
        table.add_key(1, ka);
        table.add_key(2, kb);
        table.handle(a, None, &relay::write_bind(&ka, 1, 10_000), 10_000);
        table.handle(b, None, &relay::write_bind(&kb, 2, 10_000), 10_000);
        assert!(
            table.introductions(1, a, None, 2, 10_000).is_empty(),
            "told before the other side ever answered"
        );
        let told = table.introductions(2, b, None, 1, 10_100);
        let frames: Vec<_> = told
            .iter()
            .map(|(frame, to, _)| (relay::parse(frame), *to))
            .collect();
        assert_eq!(
            frames,
            vec![
                (Some(Frame::PeerAt { slot: 2, addr: b }), a),
                (Some(Frame::PeerAt { slot: 1, addr: a }), b),
            ]
        );
        assert!(
            table.introductions(1, a, None, 2, 10_500).is_empty(),
            "too soon"
        );
        let again = table.introductions(1, a, None, 2, 10_100 + INTRODUCE_EVERY_MS);
        assert_eq!(again.len(), 2);
        // One side silent for a while: nobody is told until it talks again.
        let later = 10_100 + BOTH_WAYS_MS + 3 * INTRODUCE_EVERY_MS;
        assert!(table.introductions(1, a, None, 2, later).is_empty());
    }

    #[test]
    fn garbage_is_dropped() {
        let mut table = RelayTable::default();
        let from = addr("192.0.2.1:9");
        let mut seed = 1u64;
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 100)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect();
            assert!(matches!(
                table.handle(from, None, &bytes, 1),
                Verdict::Drop(_) | Verdict::NeedKey(_)
            ));
        }
    }

    #[test]
    fn a_replayed_bind_cannot_move_a_slot() {
        let mut table = RelayTable::default();
        let key = relay::relay_key("a");
        let (agent, thief) = (addr("198.51.100.1:1000"), addr("203.0.113.9:666"));
        table.add_key(1, key);
        let captured = relay::write_bind(&key, 1, 5_000);
        assert!(matches!(
            table.handle(agent, None, &captured, 5_000),
            Verdict::Reply(_)
        ));
        assert_eq!(
            table.handle(thief, None, &captured, 5_100),
            Verdict::Drop("replayed bind")
        );
        assert!(matches!(
            table.handle(agent, None, &relay::write_bind(&key, 1, 5_001), 5_100),
            Verdict::Reply(_)
        ));
        assert_eq!(table.slots.get(&1).and_then(|slot| slot.addr), Some(agent));
    }

    #[test]
    fn unknown_slots_are_remembered_a_while_and_in_bounded_number() {
        let mut table = RelayTable::default();
        let key = relay::relay_key("x");
        let from = addr("192.0.2.1:9");
        let bind = relay::write_bind(&key, 7, 1_000);
        assert_eq!(table.handle(from, None, &bind, 1_000), Verdict::NeedKey(7));
        table.unknown_slot(7, 1_000);
        assert_eq!(
            table.handle(from, None, &bind, 2_000),
            Verdict::Drop("unknown slot")
        );
        let after = 1_000 + UNKNOWN_FOR_MS + 1;
        let fresh = relay::write_bind(&key, 7, after);
        assert_eq!(table.handle(from, None, &fresh, after), Verdict::NeedKey(7));
        for slot in 0..2 * UNKNOWN_SLOTS as u64 {
            table.unknown_slot(1_000 + slot, after);
        }
        assert!(table.unknown.len() <= UNKNOWN_SLOTS);
    }

    #[test]
    fn a_spoofed_flood_keeps_the_rate_table_bounded() {
        let mut table = RelayTable::default();
        let sources = RATE_SOURCES as u32 + 1_000;
        for n in 0..sources {
            let from = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + n), 9));
            table.handle(from, None, b"junk", 1_000);
        }
        assert_eq!(table.rate.len(), RATE_SOURCES);
        // Sources past the bound share one budget.
        assert_eq!(table.rate_overflow, (1, 1_000));
        // A second later the sweep makes room again.
        let late = SocketAddr::from(([192, 0, 2, 1], 9));
        table.handle(late, None, b"junk", 2_000);
        assert_eq!(table.rate.len(), 1);
    }
}
