//! The flow table: which peer and socket each TCP connection or UDP conversation belongs
//! to, found by its addresses and ports, plus the events the node reports about flows.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Instant;

use boringtun::x25519::PublicKey;
use smoltcp::iface::SocketHandle;

use crate::packet::FiveTuple;
use crate::policy::{Protocol, Target};

/// One TCP connection or UDP conversation through the tunnel. Never reused by a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

impl std::fmt::Display for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "flow#{}", self.0)
    }
}

/// Why a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides finished sending.
    Finished,
    /// Reset by the other side, by us, or refused by the target.
    Reset,
    /// The peer was removed (revoke, expiry, leave).
    PeerRemoved,
    /// A UDP flow saw no datagram for the idle timeout; a TCP flow's peer went silent.
    TimedOut,
}

/// What the node tells its driver. Every event about a flow comes before its `Closed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Serve side: a peer opened a flow its policy allows. Connect to `target`, then call
    /// `handle_flow_connected` (or `handle_flow_refused` to answer with RST).
    Accepted {
        flow: FlowId,
        protocol: Protocol,
        peer: PublicKey,
        /// The peer's tunnel address and port.
        source: SocketAddrV4,
        target: Target,
    },
    /// Dial side: the TCP handshake finished.
    Connected { flow: FlowId },
    /// `recv` has something; reported again only after `recv` has drained the flow.
    Readable { flow: FlowId },
    /// `send` had accepted less than offered and now has room.
    Writable { flow: FlowId },
    /// The other side finished sending (TCP FIN); `recv` has returned all there was.
    ReadClosed { flow: FlowId },
    /// The flow is gone; its id is not valid any more.
    Closed { flow: FlowId, reason: CloseReason },
}

pub(crate) struct TcpFlow {
    pub(crate) handle: SocketHandle,
    /// Dial side: `Connected` still to be reported.
    pub(crate) connecting: bool,
    pub(crate) readable_sent: bool,
    pub(crate) want_writable: bool,
    pub(crate) read_closed_sent: bool,
    pub(crate) reset_seen: bool,
}

pub(crate) struct UdpFlow {
    pub(crate) queue: VecDeque<Vec<u8>>,
    pub(crate) last_active: Instant,
    pub(crate) readable_sent: bool,
}

pub(crate) enum FlowKind {
    Tcp(TcpFlow),
    Udp(UdpFlow),
}

pub(crate) struct Flow {
    pub(crate) peer: u32,
    /// As the flow's packets arrive: source is the remote end, destination is ours.
    pub(crate) inbound: FiveTuple,
    pub(crate) kind: FlowKind,
    /// Bytes counted against the node's flow memory cap.
    pub(crate) memory: usize,
}

#[derive(Default)]
pub(crate) struct FlowTable {
    flows: HashMap<FlowId, Flow>,
    by_tuple: HashMap<FiveTuple, FlowId>,
    next: u64,
    pub(crate) memory: usize,
}

impl FlowTable {
    pub(crate) fn insert(&mut self, flow: Flow) -> FlowId {
        self.next += 1;
        let id = FlowId(self.next);
        self.memory += flow.memory;
        self.by_tuple.insert(flow.inbound, id);
        self.flows.insert(id, flow);
        id
    }

    pub(crate) fn remove(&mut self, id: FlowId) -> Option<Flow> {
        let flow = self.flows.remove(&id)?;
        self.by_tuple.remove(&flow.inbound);
        self.memory -= flow.memory;
        Some(flow)
    }

    pub(crate) fn get_mut(&mut self, id: FlowId) -> Option<&mut Flow> {
        self.flows.get_mut(&id)
    }

    pub(crate) fn lookup(&self, inbound: &FiveTuple) -> Option<FlowId> {
        self.by_tuple.get(inbound).copied()
    }

    pub(crate) fn contains_tuple(&self, inbound: &FiveTuple) -> bool {
        self.by_tuple.contains_key(inbound)
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = FlowId> + '_ {
        self.flows.keys().copied()
    }

    pub(crate) fn of_peer(&self, peer: u32) -> Vec<FlowId> {
        self.flows
            .iter()
            .filter(|(_, flow)| flow.peer == peer)
            .map(|(id, _)| *id)
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }

    pub(crate) fn is_udp(&self, id: FlowId) -> bool {
        matches!(self.flows.get(&id).map(|f| &f.kind), Some(FlowKind::Udp(_)))
    }
}
