//! The public URLs' access log, written off the request path: each finished request
//! queues its row, and one writer task stores what has queued in one transaction, so a
//! busy URL costs the database a write per batch, not per request. A share logs at most
//! [`PER_SECOND`] requests a second: the store keeps only a share's newest ten thousand
//! rows anyway, and under a load test writing every row cost the proxy a tenth of its
//! tail latency for rows pruned a few seconds later. When the database falls behind by
//! more than [`QUEUE`] rows, new rows are dropped. Both are counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::Request;
use connect_api::HttpLogEntry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::Store;

/// Requests logged per share in one second at most; the rest of that second's are counted
/// (`connect_access_log_over_rate_total`), not logged.
pub const PER_SECOND: u32 = 1_000;
/// Rows waiting for the writer.
const QUEUE: usize = 16 * 1024;
/// Rows stored per transaction at most.
const BATCH: usize = 1024;
/// After a row arrives, how long the writer waits for more before writing: one
/// transaction a tenth of a second at most, however busy the URLs.
const GATHER: std::time::Duration = std::time::Duration::from_millis(100);

/// One request's row: the share it was for and what happened.
pub type LogRow = (Arc<str>, HttpLogEntry);

/// Where finished requests leave their rows.
#[derive(Clone)]
pub struct AccessLog {
    queue: mpsc::Sender<LogRow>,
    metrics: Arc<Metrics>,
}

impl AccessLog {
    /// The queue, and its receiving end for [`write`].
    pub fn new(metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<LogRow>) {
        let (queue, rows) = mpsc::channel(QUEUE);
        (Self { queue, metrics }, rows)
    }

    /// The row of a request to share `lookup`, queued when it is dropped (when the
    /// response body ends, or the visitor goes away); 502 until an answer comes. Empty
    /// when the share has logged its [`PER_SECOND`] this second.
    pub fn start(
        &self,
        lookup: &Arc<str>,
        allowance: &Allowance,
        at: time::OffsetDateTime,
        request: &Request,
        client: Option<SocketAddr>,
    ) -> Entry {
        let second = u64::try_from(at.unix_timestamp()).unwrap_or_default();
        if !allowance.take(second) {
            Metrics::add(&self.metrics.access_log_over_rate, 1);
            return Entry(None);
        }
        Entry(Some(Pending {
            log: self.clone(),
            lookup: lookup.clone(),
            row: HttpLogEntry {
                at,
                method: request.method().to_string(),
                path: request
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .chars()
                    .take(1024)
                    .collect(),
                status: 502,
                bytes: 0,
                client: client.map_or_else(|| "unknown".into(), |c| c.ip().to_string()),
                duration_ms: 0,
            },
            started: Instant::now(),
        }))
    }
}

/// How many requests a share has logged in the current second, for [`PER_SECOND`]: one
/// atomic word in the share's in-memory entry (the second above, the count in the low 32
/// bits), so the check costs no lock and no map lookup.
#[derive(Debug, Default)]
pub struct Allowance(AtomicU64);

impl Allowance {
    /// Takes one row for a request in the Unix second `second`; false once the share has
    /// logged [`PER_SECOND`] in it. Any other second (the clock set back too) starts afresh.
    fn take(&self, second: u64) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |packed| {
                if packed >> 32 != second {
                    Some(second << 32 | 1)
                } else if packed & u64::from(u32::MAX) < u64::from(PER_SECOND) {
                    Some(packed + 1)
                } else {
                    None
                }
            })
            .is_ok()
    }
}

/// A request's row while it is served; empty when over the share's rate.
pub struct Entry(Option<Pending>);

struct Pending {
    log: AccessLog,
    lookup: Arc<str>,
    row: HttpLogEntry,
    started: Instant,
}

impl Entry {
    pub fn set_status(&mut self, status: u16) {
        if let Some(pending) = &mut self.0 {
            pending.row.status = status;
        }
    }

    pub fn add_bytes(&mut self, bytes: usize) {
        if let Some(pending) = &mut self.0 {
            pending.row.bytes += bytes as u64;
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let Some(Pending {
            log,
            lookup,
            mut row,
            started,
        }) = self.0.take()
        else {
            return;
        };
        row.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if log.queue.try_send((lookup, row)).is_err() {
            Metrics::add(&log.metrics.access_log_dropped, 1);
        }
    }
}

/// Stores queued rows in batches until cancelled, then what is left.
pub async fn write(store: Store, mut rows: mpsc::Receiver<LogRow>, cancel: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            got = rows.recv_many(&mut batch, BATCH) => if got == 0 {
                return;
            },
            () = cancel.cancelled() => {}
        }
        // Gather a moment longer (not once stopping), then take what queued meanwhile.
        tokio::select! {
            () = tokio::time::sleep(GATHER) => {}
            () = cancel.cancelled() => {}
        }
        if cancel.is_cancelled() {
            rows.close();
        }
        while batch.len() < BATCH
            && let Ok(row) = rows.try_recv()
        {
            batch.push(row);
        }
        if !batch.is_empty()
            && let Err(err) = store.insert_http_log(&batch).await
        {
            tracing::warn!(%err, rows = batch.len(), "cannot write the access log");
        }
        batch.clear();
        if cancel.is_cancelled() && rows.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of finished requests reach the database in one batch, and what is queued when
    /// the hub stops is still written.
    #[tokio::test]
    async fn queued_rows_are_written_and_flushed_at_shutdown() {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let store = Store::open(None, dir.path())
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let (log, rows) = AccessLog::new(Arc::default());
        let cancel = CancellationToken::new();
        let writer = tokio::spawn(write(store.clone(), rows, cancel.clone()));
        let lookup: Arc<str> = "a".repeat(64).into();
        let allowance = Allowance::default();
        for path in ["/one", "/two"] {
            let request = Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap_or_default();
            let mut entry = log.start(
                &lookup,
                &allowance,
                time::OffsetDateTime::now_utc(),
                &request,
                None,
            );
            entry.set_status(200);
        }
        // Queued just before the stop: written by the flush, not lost.
        let request = Request::builder()
            .uri("/last")
            .body(axum::body::Body::empty())
            .unwrap_or_default();
        drop(log.start(
            &lookup,
            &allowance,
            time::OffsetDateTime::now_utc(),
            &request,
            None,
        ));
        cancel.cancel();
        writer.await.unwrap_or_else(|err| panic!("{err}"));
        let written = store.http_log(&lookup).await.unwrap_or_default();
        let mut paths: Vec<&str> = written.iter().map(|row| row.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(paths, ["/last", "/one", "/two"]);
        assert!(
            written.iter().any(|row| row.status == 502),
            "the unanswered one"
        );
    }

    /// A share logs its first [`PER_SECOND`] requests of a second and counts the rest;
    /// the next second it logs again.
    #[test]
    fn a_share_logs_at_most_its_rate_and_counts_the_rest() {
        let metrics = Arc::new(Metrics::default());
        let (log, _rows) = AccessLog::new(metrics.clone());
        let lookup: Arc<str> = "b".repeat(64).into();
        let allowance = Allowance::default();
        let request = Request::builder()
            .uri("/")
            .body(axum::body::Body::empty())
            .unwrap_or_default();
        let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let entries: Vec<Entry> = (0..=PER_SECOND)
            .map(|_| log.start(&lookup, &allowance, at, &request, None))
            .collect();
        assert!(entries[..PER_SECOND as usize].iter().all(|e| e.0.is_some()));
        assert!(entries[PER_SECOND as usize].0.is_none(), "over the rate");
        assert_eq!(metrics.access_log_over_rate.load(Ordering::Relaxed), 1);
        let next = log.start(
            &lookup,
            &allowance,
            at + time::Duration::SECOND,
            &request,
            None,
        );
        assert!(next.0.is_some(), "a new second");
    }
}
