//! The data plane of connect: WireGuard sessions (boringtun) and a userspace TCP/IP stack
//! (smoltcp) that turn tunnel packets into real sockets and back.
//!
//! [`Node`] is the whole protocol as a pure state machine, the hub relay's client
//! included: no IO, no clock, so tests run peers and a relay in one process on virtual
//! time. [`io`] is the thin tokio side that gives a node a UDP socket, a TUN device, real
//! TCP/UDP sockets for the flows it serves, and streams for the flows a program dials.
//! Imports point one way: `io` uses the core, never the reverse.

mod answers;
mod device;
mod error;
mod event;
mod flow;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod io;
mod node;
mod packet;
mod path;
mod policy;
pub mod relay;
mod relay_client;
mod socket;
mod stack;
mod stats;
mod wg;

pub use boringtun::x25519::{PublicKey, StaticSecret};
pub use error::Error;
pub use event::{CloseReason, Event, FlowId};
pub use ipnet::Ipv4Net;
pub use node::{Node, NodeConfig, Transmit};
pub use policy::{Policy, Protocol, Route, Target};
pub use relay_client::{
    BIND_INTERVAL, RelayConfig, RelayTransport, STREAM_AFTER, UDP_PROBE_INTERVAL,
};
pub use stats::Stats;
pub use wg::{PeerConfig, PeerStats};

/// A short, safe label for a public key in logs: the first bytes in hex.
pub fn key_label(key: &PublicKey) -> String {
    hex::encode(&key.as_bytes()[..4])
}
