//! The hub's counters, shown at `/metrics`: bumped by the API, the relay and the proxy.

use std::sync::atomic::{AtomicU64, Ordering};

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
    pub errors: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
