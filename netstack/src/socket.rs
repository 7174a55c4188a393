//! UDP socket buffers for tunnel traffic. The kernel's default (about 200 KiB) holds ~1 ms
//! of a gigabit: a burst overflows it, each lost datagram is a lost TCP segment inside
//! the tunnel, and throughput collapses into retransmissions long before any CPU is busy.
//! Profiling the relay path showed exactly that (UdpRcvbufErrors ≈ 10% at the hub).

use std::os::fd::AsFd;

/// What tunnel sockets ask for: tens of milliseconds at several Gbit/s.
const SOCKET_BUFFER: usize = 16 * 1024 * 1024;

/// Raises `socket`'s buffers to [`SOCKET_BUFFER`]: past `net.core.[rw]mem_max` when the
/// process may (CAP_NET_ADMIN), else as far as those limits allow.
pub(crate) fn tune_udp_buffers(socket: &impl AsFd) {
    use nix::sys::socket::{setsockopt, sockopt};
    let fd = socket.as_fd();
    if setsockopt(&fd, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err()
        && let Err(err) = setsockopt(&fd, sockopt::RcvBuf, &SOCKET_BUFFER)
    {
        tracing::debug!(%err, "cannot raise the receive buffer");
    }
    if setsockopt(&fd, sockopt::SndBufForce, &SOCKET_BUFFER).is_err()
        && let Err(err) = setsockopt(&fd, sockopt::SndBuf, &SOCKET_BUFFER)
    {
        tracing::debug!(%err, "cannot raise the send buffer");
    }
}
