//! The `http_log` table: one row per request proxied to a public share.

use connect_api::HttpLogEntry;
use sqlx::Row;

use super::{Store, StoreError};

/// Entries `share --info` shows, newest last.
const SHOWN: i64 = 200;
/// Rows per INSERT at most (a power of two): 8 parameters each, well under SQLite's and
/// PostgreSQL's limits.
const ROWS_PER_INSERT: usize = 64;

/// `INSERT … VALUES (…), (…), …` for `rows` rows: numbered `$N` parameters for
/// PostgreSQL, plain `?` for SQLite (whose numbered parameters cost a search per bind,
/// which profiling showed at 5% of the hub under load).
fn insert_sql(rows: usize, numbered: bool) -> String {
    let mut sql = String::from(
        "INSERT INTO http_log (share_lookup, at, method, path, status, bytes, client, duration_ms) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..8 {
            if column > 0 {
                sql.push_str(", ");
            }
            if numbered {
                sql.push_str(&format!("${}", row * 8 + column + 1));
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

impl Store {
    /// Stores `rows` (share lookup, entry) in one transaction, in statements of
    /// [`ROWS_PER_INSERT`] rows or a smaller power of two, so the few statement shapes stay
    /// prepared in the connection's cache.
    pub async fn insert_http_log<L: AsRef<str>>(
        &self,
        rows: &[(L, HttpLogEntry)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut rest = rows;
        while !rest.is_empty() {
            let n = ROWS_PER_INSERT.min(1 << rest.len().ilog2());
            let (chunk, after) = rest.split_at(n);
            rest = after;
            let sql = insert_sql(chunk.len(), self.is_postgres());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (lookup, entry) in chunk {
                query = query
                    .bind(lookup.as_ref().to_owned())
                    .bind(crate::clock::unix_ms(entry.at))
                    .bind(entry.method.clone())
                    .bind(entry.path.clone())
                    .bind(i64::from(entry.status))
                    .bind(i64::try_from(entry.bytes).unwrap_or(i64::MAX))
                    .bind(entry.client.clone())
                    .bind(i64::try_from(entry.duration_ms).unwrap_or(i64::MAX));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest [`SHOWN`] entries, oldest first, as `share --info` prints them.
    pub async fn http_log(&self, lookup: &str) -> Result<Vec<HttpLogEntry>, StoreError> {
        let mut entries = self.http_log_page(lookup, &LogPage::newest(SHOWN)).await?;
        entries.reverse();
        Ok(entries)
    }

    /// One page of a share's access log, newest first.
    pub async fn http_log_page(
        &self,
        lookup: &str,
        page: &LogPage,
    ) -> Result<Vec<HttpLogEntry>, StoreError> {
        let (low, high) = page.statuses;
        let rows = sqlx::query(
            "SELECT at, method, path, status, bytes, client, duration_ms FROM http_log \
             WHERE share_lookup = $1 AND status >= $2 AND status < $3 \
             ORDER BY at DESC LIMIT $4 OFFSET $5",
        )
        .bind(lookup)
        .bind(i64::from(low))
        .bind(i64::from(high))
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
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
            .collect::<Result<Vec<_>, StoreError>>()
    }
}

/// Which rows of an access log to read: statuses in `[low, high)`, `limit` rows after
/// skipping `offset`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    pub statuses: (u16, u16),
    pub limit: i64,
    pub offset: i64,
}

impl LogPage {
    pub fn newest(limit: i64) -> Self {
        Self {
            statuses: (0, 1000),
            limit,
            offset: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_statement_numbers_every_rows_parameters() {
        assert_eq!(
            super::insert_sql(2, true)
                .split_once("VALUES ")
                .map(|(_, v)| v),
            Some("($1, $2, $3, $4, $5, $6, $7, $8), ($9, $10, $11, $12, $13, $14, $15, $16)")
        );
        assert_eq!(
            super::insert_sql(1, false)
                .split_once("VALUES ")
                .map(|(_, v)| v),
            Some("(?, ?, ?, ?, ?, ?, ?, ?)")
        );
    }
}
