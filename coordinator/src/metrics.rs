//! The hub's counters, shown at `/metrics`: bumped by the API, the relay and the proxy.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Default)]
pub struct Metrics {
    pub shares_created: AtomicU64,
    pub joins: AtomicU64,
    pub relay_packets: AtomicU64,
    pub relay_bytes: AtomicU64,
    pub relay_dropped: AtomicU64,
    pub proxy_requests: AtomicU64,
    /// Access-log rows dropped because the database fell behind.
    pub access_log_dropped: AtomicU64,
    /// Requests not logged because their share had logged its rate that second.
    pub access_log_over_rate: AtomicU64,
    pub errors: AtomicU64,
    pub started: Started,
    /// The relay's datagram count when the rate was last asked for.
    rate_sample: Mutex<Option<(Instant, u64)>>,
}

/// When the hub started, for its uptime.
pub struct Started(Instant);

impl Default for Started {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Started {
    pub fn elapsed(&self) -> std::time::Duration {
        self.0.elapsed()
    }
}

impl Metrics {
    /// Relayed datagrams per second since the previous call (at least a second apart;
    /// until then, the rate since the hub started).
    pub fn datagram_rate(&self) -> f64 {
        let now = Instant::now();
        let count = self.relay_packets.load(Ordering::Relaxed);
        let Ok(mut sample) = self.rate_sample.lock() else {
            return 0.0;
        };
        let (since, then) = sample.unwrap_or((self.started.0, 0));
        let secs = now.duration_since(since).as_secs_f64();
        if secs >= 1.0 {
            *sample = Some((now, count));
        }
        if secs <= 0.0 {
            return 0.0;
        }
        count.saturating_sub(then) as f64 / secs
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
