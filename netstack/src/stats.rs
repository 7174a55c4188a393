//! Counters of what a node did and, above all, what it refused.

/// Totals since the node started. Every dropped or refused packet lands in one counter,
/// so a misbehaving peer shows up here rather than as an error.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the node.
    pub rx_datagrams: u64,
    /// Datagrams sealed and handed out.
    pub tx_datagrams: u64,
    /// Malformed or unauthenticated datagrams.
    pub rx_invalid: u64,
    /// Replayed data packets or handshakes.
    pub rx_replayed: u64,
    /// Datagrams for a peer or session we do not know.
    pub rx_unknown_peer: u64,
    /// Packets whose inner source is not an address the peer may use.
    pub rx_spoofed: u64,
    /// Cookie replies sent because handshakes came in faster than the limit.
    pub cookies_sent: u64,
    /// Packets to a peer whose endpoint is not known yet.
    pub tx_no_endpoint: u64,
    /// Packets for an address this node neither owns nor routes.
    pub no_route: u64,
    /// Raw mode: packets from the tunnel that answer no flow this side opened, dropped.
    pub rx_unsolicited: u64,
    /// New flows the policy refused (answered with RST or ICMP port unreachable).
    pub policy_refused: u64,
    /// New flows refused because the flow memory cap was reached.
    pub memory_refused: u64,
    /// New flows refused because their peer had `max_flows_per_peer` open.
    pub peer_cap_refused: u64,
    /// UDP datagrams dropped because their flow's queue was full.
    pub udp_dropped: u64,
}
