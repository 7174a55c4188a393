//! What the handle and the flow tasks tell the node task, and what it hands a flow back.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::handle::{DriverError, Snapshot};
use super::relay_stream::RelayDialer;
use crate::flow::FlowId;
use crate::relay_client::RelayConfig;
use crate::wg::PeerConfig;
use crate::{Error, PublicKey};

/// Bytes moved per chunk between a flow and the node: big enough that per-chunk costs
/// vanish, small enough that a flow's chunk queue stays a few hundred KiB.
pub(super) const CHUNK: usize = 64 * 1024;
/// Chunks queued from the node to one flow's writer.
pub(super) const FLOW_QUEUE: usize = 4;

pub(super) enum Command {
    AddPeer(Box<PeerConfig>, oneshot::Sender<Result<(), Error>>),
    RemovePeer(PublicKey, oneshot::Sender<Result<(), Error>>),
    ConnectPeer(PublicKey, oneshot::Sender<Result<(), Error>>),
    SetCandidates(
        PublicKey,
        Vec<std::net::SocketAddr>,
        oneshot::Sender<Result<(), Error>>,
    ),
    /// Answers with a receiver that fires once the peer has a fresh session: at once when
    /// it has one, else after the handshake this starts.
    Handshake(
        PublicKey,
        oneshot::Sender<Result<oneshot::Receiver<()>, Error>>,
    ),
    DialTcp(
        SocketAddrV4,
        oneshot::Sender<Result<super::flow_stream::FlowStream, DriverError>>,
    ),
    DialUdp(
        SocketAddrV4,
        oneshot::Sender<Result<(FlowId, mpsc::Receiver<Chunk>), Error>>,
    ),
    Stats(oneshot::Sender<Snapshot>),
    SetRelay(RelayConfig, oneshot::Sender<()>),
    SetRelayDialer(Arc<dyn RelayDialer>, oneshot::Sender<()>),
    /// The stream task of this generation reached the hub.
    RelayStreamUp(u64),
    /// The stream task of this generation ended (or never reached the hub).
    RelayStreamDown(u64),
    /// A frame the hub sent over the stream.
    RelayFrames(super::relay_stream::Frames),
    SetAddresses(Vec<Ipv4Addr>, oneshot::Sender<()>),
    /// Bytes (TCP) or one datagram (UDP) from the real side of a flow.
    Data(FlowId, Bytes),
    /// The real side finished sending.
    Eof(FlowId),
    /// The real side failed; reset the flow.
    Abort(FlowId),
    /// A flow's writer took a chunk after the node stalled (see [`Stall`]).
    Resume(FlowId),
    /// Serve side: the real target answered.
    TargetConnected(FlowId),
}

/// Set when the node stopped moving a flow's data for want of room in its queue. The
/// flow's reader, having taken a chunk, sends `Resume` only then: a command (and a
/// wake-up of the node task) per stall instead of per chunk, which for a small request is
/// one per request on each side of the tunnel.
#[derive(Debug, Clone, Default)]
pub(super) struct Stall(Arc<AtomicBool>);

impl Stall {
    pub(super) fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the node waits for a `Resume`; it is told once.
    pub(super) fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

/// What the node task hands a flow's writer.
pub(super) enum Chunk {
    Data(Bytes),
    Fin,
}
