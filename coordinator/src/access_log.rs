//! The public URLs' access log, written off the request path: each finished request
//! queues its row, and one writer task stores what has queued in one transaction, so a
//! busy URL costs the database a write per batch, not per request. When the database
//! falls behind by more than [`QUEUE`] rows, new rows are dropped and counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use connect_api::HttpLogEntry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::Store;

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
    /// response body ends, or the visitor goes away); 502 until an answer comes.
    pub fn start(
        &self,
        lookup: Arc<str>,
        at: time::OffsetDateTime,
        request: &Request,
        client: Option<SocketAddr>,
    ) -> Entry {
        Entry {
            log: self.clone(),
            lookup,
            row: Some(HttpLogEntry {
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
            }),
            started: Instant::now(),
        }
    }
}

/// A request's row while it is served.
pub struct Entry {
    log: AccessLog,
    lookup: Arc<str>,
    row: Option<HttpLogEntry>,
    started: Instant,
}

impl Entry {
    pub fn set_status(&mut self, status: u16) {
        if let Some(row) = &mut self.row {
            row.status = status;
        }
    }

    pub fn add_bytes(&mut self, bytes: usize) {
        if let Some(row) = &mut self.row {
            row.bytes += bytes as u64;
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let Some(mut row) = self.row.take() else {
            return;
        };
        row.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if self.log.queue.try_send((self.lookup.clone(), row)).is_err() {
            Metrics::add(&self.log.metrics.access_log_dropped, 1);
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
        for path in ["/one", "/two"] {
            let request = Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap_or_default();
            let mut entry = log.start(
                lookup.clone(),
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
            lookup.clone(),
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
}
