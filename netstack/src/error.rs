//! Errors of the data plane, named for the operation that failed.

use std::net::IpAddr;

/// What went wrong in a [`crate::Node`] operation that a caller asked for.
///
/// Network input never produces an `Error`: bad datagrams and packets are dropped and
/// counted in [`crate::Stats`] instead, so a hostile peer cannot make the caller fail.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("a peer with this public key is already configured")]
    DuplicatePeer,
    #[error("allowed address {0} already belongs to another peer")]
    AddressInUse(IpAddr),
    #[error("no peer is configured for this public key")]
    UnknownPeer,
    #[error("no peer routes to {0}")]
    NoRoute(IpAddr),
    #[error("this node has no IPv4 tunnel address to send from")]
    NoLocalAddress,
    #[error("no free local port for a new flow")]
    PortsExhausted,
    #[error("flow memory cap reached: {used} of {cap} bytes in use")]
    MemoryCap { used: usize, cap: usize },
    #[error("no such flow (closed or never opened)")]
    UnknownFlow,
    #[error("the TCP connection cannot send (not established yet, or closing)")]
    FlowNotOpen,
    #[error("a {0}-byte datagram does not fit the tunnel MTU")]
    DatagramTooLarge(usize),
    #[error("the tunnel carries IPv4 only, {0} is not")]
    NotIpv4(IpAddr),
}
