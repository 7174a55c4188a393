//! Forgetting what the hub no longer needs, so nothing grows without bound: old access-log
//! rows (and all but the newest of a busy share's), guests that never joined anything,
//! and guests whose joins are all on shares long ended (with those joins).

use super::{Store, StoreError};

/// Access-log rows and ended shares' guest joins are kept this long.
pub const KEEP_MS: i64 = 30 * 86_400_000;
/// A guest that has joined nothing is dropped after this long (registration floods).
pub const IDLE_GUEST_MS: i64 = 86_400_000;
/// The newest access-log rows kept per share.
pub const LOG_ROWS_PER_SHARE: i64 = 10_000;

/// What one pruning removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub log_rows: u64,
    pub guests: u64,
}

impl Store {
    /// Prunes as of `now_ms`.
    pub async fn prune(&self, now_ms: i64) -> Result<Pruned, StoreError> {
        let mut log_rows = sqlx::query("DELETE FROM http_log WHERE at < $1")
            .bind(now_ms - KEEP_MS)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let busy: Vec<String> = sqlx::query_scalar(
            "SELECT share_lookup FROM http_log GROUP BY share_lookup HAVING COUNT(*) > $1",
        )
        .bind(LOG_ROWS_PER_SHARE)
        .fetch_all(&self.pool)
        .await?;
        for lookup in busy {
            log_rows += sqlx::query(
                "DELETE FROM http_log WHERE share_lookup = $1 AND at < \
                 (SELECT at FROM http_log WHERE share_lookup = $1 ORDER BY at DESC LIMIT 1 OFFSET $2)",
            )
            .bind(&lookup)
            .bind(LOG_ROWS_PER_SHARE - 1)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        sqlx::query(
            "DELETE FROM joins WHERE agent_id IN (SELECT id FROM agents WHERE guest = 1) \
             AND share_lookup IN (SELECT lookup FROM shares WHERE state <> 'active' AND ended_at < $1)",
        )
        .bind(now_ms - KEEP_MS)
        .execute(&self.pool)
        .await?;
        let guests = sqlx::query(
            "DELETE FROM agents WHERE guest = 1 AND created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM joins j WHERE j.agent_id = agents.id)",
        )
        .bind(now_ms - IDLE_GUEST_MS)
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.prune_sign_ins(now_ms).await?;
        Ok(Pruned { log_rows, guests })
    }
}
