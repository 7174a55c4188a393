//! The `http_log` table: one row per request proxied to a public share.

use connect_api::HttpLogEntry;
use sqlx::Row;

use super::{Store, StoreError};

/// Entries `share --info` shows, newest last.
const SHOWN: i64 = 200;

impl Store {
    pub async fn insert_http_log(
        &self,
        lookup: &str,
        entry: &HttpLogEntry,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO http_log (share_lookup, at, method, path, status, bytes, client, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(lookup)
        .bind(crate::clock::unix_ms(entry.at))
        .bind(&entry.method)
        .bind(&entry.path)
        .bind(i64::from(entry.status))
        .bind(i64::try_from(entry.bytes).unwrap_or(i64::MAX))
        .bind(&entry.client)
        .bind(i64::try_from(entry.duration_ms).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn http_log(&self, lookup: &str) -> Result<Vec<HttpLogEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, method, path, status, bytes, client, duration_ms FROM http_log \
             WHERE share_lookup = $1 ORDER BY at DESC LIMIT $2",
        )
        .bind(lookup)
        .bind(SHOWN)
        .fetch_all(&self.pool)
        .await?;
        let mut entries = rows
            .iter()
            .map(|row| {
                let at: i64 = row.try_get("at")?;
                Ok(HttpLogEntry {
                    at: crate::clock::time_of(at),
                    method: row.try_get("method")?,
                    path: row.try_get("path")?,
                    status: u16::try_from(row.try_get::<i64, _>("status")?).unwrap_or(0),
                    bytes: row.try_get::<i64, _>("bytes")?.unsigned_abs(),
                    client: row.try_get("client")?,
                    duration_ms: row.try_get::<i64, _>("duration_ms")?.unsigned_abs(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        entries.reverse();
        Ok(entries)
    }
}
