//! The data plane of connect: WireGuard sessions (boringtun) and a userspace TCP/IP stack
//! (smoltcp) that turn tunnel packets into real sockets and back.
//!
//! [`Node`] is the whole protocol as a pure state machine: no IO, no clock, so tests run
//! two nodes in one process on virtual time. [`driver`] is the one thin tokio loop that
//! gives a node a UDP socket, real TCP/UDP sockets for the flows it serves, and streams
//! for the flows a program dials.

pub mod batch;
mod device;
pub mod driver;
mod error;
mod flow;
pub mod logging;
mod node;
mod packet;
mod path;
mod policy;
pub mod relay;
mod socket;
mod spin;
mod stack;
mod stats;
mod tun_io;
mod wg;

pub use boringtun::x25519::{PublicKey, StaticSecret};
pub use error::Error;
pub use flow::{CloseReason, Event, FlowId};
pub use ipnet::Ipv4Net;
pub use node::{Node, NodeConfig, Transmit};
pub use policy::{Policy, Protocol, Route, Target};
pub use stats::Stats;
pub use wg::{PeerConfig, PeerStats};

/// A short, safe label for a public key in logs: the first bytes in hex.
pub fn key_label(key: &PublicKey) -> String {
    key.as_bytes()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
