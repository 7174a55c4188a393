//! The IO side of the data plane: everything that touches tokio, the sockets or the TUN
//! device. The protocol itself is [`crate::Node`], which does no IO; this folder only moves
//! bytes between it and the world.
//!
//! - `handle`: [`Netstack`], the public handle a program holds, and its calls.
//! - `command`: the messages the handle and the flow tasks send the node task.
//! - `node_task`: the one task that owns a node, its UDP socket and its TUN device.
//! - `flow_task`: small per-flow tasks that bridge served flows to real sockets; they
//!   never touch the node, only send it commands.
//! - [`FlowStream`]: a dialled flow as the caller's stream, sending the node commands
//!   as it is read and written.
//! - [`batch`]: UDP in batches (GSO sends, GRO and recvmmsg receives) through quinn-udp.
//! - `tun`: the TUN device with the kernel's TCP offloads, through tun-rs.
//! - `peer_set`: [`PeerSet`], a group of peers kept equal to a list its owner recomputes.
//! - [`relay_stream`]: relay frames over a stream to the hub when UDP is blocked.
//! - `spin`: polling for a moment after a quiet wake-up instead of sleeping.
//!
//! Every queue between a socket and the stack is bounded, and a slow reader slows its
//! sender through TCP's window. Imports point one way: this folder uses the core, the
//! core never uses this folder.

pub mod batch;
mod command;
mod flow_stream;
mod flow_task;
mod handle;
mod node_task;
mod peer_set;
pub mod relay_stream;
mod spin;
mod tun;

pub use flow_stream::FlowStream;
pub use handle::{DriverError, Netstack, Snapshot, TunnelDatagram};
pub use peer_set::{Changes, PeerSet};

/// A UDP socket for a tunnel: dual stack (`[::]`, IPv4 peers too) where the machine has
/// IPv6, IPv4 only where it does not.
///
/// # Errors
/// When neither can be bound.
pub async fn tunnel_socket() -> std::io::Result<tokio::net::UdpSocket> {
    match tokio::net::UdpSocket::bind("[::]:0").await {
        Ok(socket) => Ok(socket),
        Err(_) => tokio::net::UdpSocket::bind("0.0.0.0:0").await,
    }
}

/// The wall clock in Unix milliseconds, which the node's relay binds carry.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
