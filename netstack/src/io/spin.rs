//! Polling instead of sleeping, for a moment after a little traffic.
//!
//! Request/response traffic arrives a datagram at a time, and every sleep in `epoll_wait`
//! costs a wake-up of tens of microseconds before the answer can go on; with a joiner and
//! a sharer on the way, the tunnel tripled a 64 B round trip. (The hub's relay does not
//! spin: the answer comes back long after any short spin, measured no gain.)
//! After a wake-up that brought little, a loop keeps yielding to the runtime for
//! [`SPIN`], which polls the reactor without sleeping. Bulk traffic arrives in batches and
//! never spins; an idle tunnel spins for 50 µs after its last datagram, then sleeps.
//! A node on a busy server (the hub's own peer) does not spin: there the next input is
//! rarely far away, and the polling took CPU from the traffic itself (the public URL's
//! p99 under wrk was lower without it in every one of six alternating runs).

use std::time::{Duration, Instant};

/// How long to keep polling after a quiet wake-up.
pub const SPIN: Duration = Duration::from_micros(50);
/// A wake-up that brought at most this many datagrams or commands counts as quiet.
const QUIET: usize = 2;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Spin {
    until: Instant,
    /// [`SPIN`], or zero for a node that never spins.
    length: Duration,
}

impl Spin {
    pub fn new(now: Instant, length: Duration) -> Self {
        Self { until: now, length }
    }

    /// A wake-up at `now` brought `taken` inputs.
    pub fn woke(&mut self, taken: usize, now: Instant) {
        if taken <= QUIET {
            self.until = self.until.max(now + self.length);
        }
    }

    /// Yields to the runtime (and the OS) until the spin is over, then never completes: one
    /// branch of a `select!` whose other branches are the real inputs.
    pub async fn poll(self) {
        while Instant::now() < self.until {
            tokio::task::yield_now().await;
            // Politely: a process sharing this core (the service, the other agent) runs
            // first if it is ready.
            std::thread::yield_now();
        }
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_quiet_wake_ups_spin() {
        let now = Instant::now();
        let mut spin = Spin::new(now, SPIN);
        spin.woke(QUIET + 1, now);
        assert_eq!(spin.until, now, "a batch does not spin");
        spin.woke(1, now);
        assert_eq!(spin.until, now + SPIN);
        spin.woke(1, now - SPIN);
        assert_eq!(spin.until, now + SPIN, "never shortened");
        let mut still = Spin::new(now, Duration::ZERO);
        still.woke(1, now);
        assert_eq!(still.until, now, "a node that does not spin");
    }
}
