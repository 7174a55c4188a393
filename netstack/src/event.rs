//! What a node reports to its driver: flow events and completed handshakes, and the
//! words they use (which flow, why it ended).

use std::net::SocketAddrV4;

use boringtun::x25519::PublicKey;

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
    /// A WireGuard handshake with `peer` completed: we got the answer to our initiation,
    /// or the first data after answering the peer's. Callers wait for this instead of
    /// polling the peer's figures.
    HandshakeCompleted { peer: PublicKey },
    /// UDP to the hub relay went unanswered (`open: true`): open a stream to the hub and
    /// report it with `handle_relay_stream_up`/`_down`. `open: false`: UDP answers again
    /// and the stream is no longer used; close it.
    RelayStream { open: bool },
}
