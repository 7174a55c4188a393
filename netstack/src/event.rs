//! What a node reports to its driver: flow events and completed handshakes.

use std::net::SocketAddrV4;

use boringtun::x25519::PublicKey;

use crate::flow::{CloseReason, FlowId};
use crate::policy::{Protocol, Target};

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
    /// A WireGuard handshake with `peer` completed: we got the answer to our initiation,
    /// or the first data after answering the peer's. Callers wait for this instead of
    /// polling the peer's figures.
    HandshakeCompleted { peer: PublicKey },
}
