//! The flow table: which peer and socket each TCP connection or UDP conversation belongs
//! to, found by its addresses and ports. Each kind keeps its own state (`tcp`, `udp`).

mod tcp;
mod udp;

use std::collections::HashMap;

pub use crate::event::{CloseReason, FlowId};
use crate::packet::FiveTuple;

pub(crate) use tcp::TcpFlow;
pub(crate) use udp::UdpFlow;

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
    /// Open flows per peer index, for the per-peer cap.
    per_peer: HashMap<u32, usize>,
    next: u64,
    pub(crate) memory: usize,
}

impl FlowTable {
    pub(crate) fn insert(&mut self, flow: Flow) -> FlowId {
        self.next += 1;
        let id = FlowId(self.next);
        self.memory += flow.memory;
        self.by_tuple.insert(flow.inbound, id);
        *self.per_peer.entry(flow.peer).or_default() += 1;
        self.flows.insert(id, flow);
        id
    }

    /// Open flows of one peer.
    pub(crate) fn count_of(&self, peer: u32) -> usize {
        self.per_peer.get(&peer).copied().unwrap_or(0)
    }

    pub(crate) fn remove(&mut self, id: FlowId) -> Option<Flow> {
        let flow = self.flows.remove(&id)?;
        self.by_tuple.remove(&flow.inbound);
        self.memory -= flow.memory;
        if let Some(count) = self.per_peer.get_mut(&flow.peer) {
            *count -= 1;
            if *count == 0 {
                self.per_peer.remove(&flow.peer);
            }
        }
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
