//! Polling instead of sleeping, for a moment after a little traffic.
//!
//! Request/response traffic arrives a datagram at a time, and every sleep in `epoll_wait`
//! costs a wake-up of tens of microseconds before the answer can go on; with a joiner and
//! a sharer on the way, the tunnel tripled a 64 B round trip. (The hub's relay does not
//! spin: the answer comes back long after any short spin, measured no gain.)
//! After a wake-up that brought little, a loop keeps yielding to the runtime for
//! [`SPIN`], which polls the reactor without sleeping. Bulk traffic arrives in batches and
//! never spins; an idle tunnel spins for 50 µs after its last datagram, then sleeps.

use std::time::{Duration, Instant};

/// How long to keep polling after a quiet wake-up.
pub const SPIN: Duration = Duration::from_micros(50);
/// A wake-up that brought at most this many datagrams or commands counts as quiet.
const QUIET: usize = 2;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Spin {
    until: Instant,
}

impl Spin {
    pub fn new(now: Instant) -> Self {
        Self { until: now }
    }

    /// A wake-up at `now` brought `taken` inputs.
    pub fn woke(&mut self, taken: usize, now: Instant) {
        if taken <= QUIET {
            self.until = self.until.max(now + SPIN);
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
        let mut spin = Spin::new(now);
        spin.woke(QUIET + 1, now);
        assert_eq!(spin.until, now, "a batch does not spin");
        spin.woke(1, now);
        assert_eq!(spin.until, now + SPIN);
        spin.woke(1, now - SPIN);
        assert_eq!(spin.until, now + SPIN, "never shortened");
    }
}
