//! One UDP conversation: the datagrams waiting for the driver and when it was last used.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub(crate) struct UdpFlow {
    pub(crate) queue: VecDeque<Vec<u8>>,
    last_active: Instant,
    /// `Readable` reported and the queue not drained since.
    readable_sent: bool,
}

impl UdpFlow {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            queue: VecDeque::new(),
            last_active: now,
            readable_sent: false,
        }
    }

    pub(crate) fn touch(&mut self, now: Instant) {
        self.last_active = now;
    }

    pub(crate) fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_active)
    }

    /// Queues a datagram unless `limit` are waiting (then it comes back); returns whether
    /// a `Readable` is due.
    pub(crate) fn deliver(&mut self, datagram: Vec<u8>, limit: usize) -> Result<bool, Vec<u8>> {
        if self.queue.len() >= limit {
            return Err(datagram);
        }
        self.queue.push_back(datagram);
        Ok(!std::mem::replace(&mut self.readable_sent, true))
    }

    /// The next waiting datagram; an empty queue makes the next one worth a `Readable`.
    pub(crate) fn take(&mut self) -> Option<Vec<u8>> {
        let datagram = self.queue.pop_front();
        if self.queue.is_empty() {
            self.readable_sent = false;
        }
        datagram
    }
}
