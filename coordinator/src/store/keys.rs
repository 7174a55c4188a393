//! The `enrollment_keys` table: keys admins hand out so agents may register.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, flag};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: String,
    pub reusable: bool,
    pub expires_at: Option<i64>,
    pub uses: i64,
    pub revoked: bool,
    pub created_at: i64,
}

impl KeyRow {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.try_get("id")?,
            reusable: row.try_get::<i64, _>("reusable")? != 0,
            expires_at: row.try_get("expires_at")?,
            uses: row.try_get("uses")?,
            revoked: row.try_get::<i64, _>("revoked")? != 0,
            created_at: row.try_get("created_at")?,
        })
    }

    /// Whether the key may enrol one more agent at `now_ms`.
    pub fn usable(&self, now_ms: i64) -> bool {
        !self.revoked
            && (self.reusable || self.uses == 0)
            && self.expires_at.is_none_or(|at| at > now_ms)
    }
}

const COLUMNS: &str = "id, reusable, expires_at, uses, revoked, created_at";

impl Store {
    pub async fn insert_key(&self, key: &KeyRow, key_hash: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO enrollment_keys (id, key_hash, reusable, expires_at, uses, revoked, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.id)
        .bind(key_hash)
        .bind(flag(key.reusable))
        .bind(key.expires_at)
        .bind(key.uses)
        .bind(flag(key.revoked))
        .bind(key.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM enrollment_keys ORDER BY created_at"
        )))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(KeyRow::from_row)
        .collect()
    }

    pub async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM enrollment_keys WHERE key_hash = $1"
        )))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(KeyRow::from_row).transpose()
    }

    /// Counts one use of a key, only while it is still usable, so two agents racing for
    /// a one-time key cannot both win. Returns whether this use counted.
    pub async fn use_key(&self, key_hash: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE enrollment_keys SET uses = uses + 1 WHERE key_hash = $1 AND revoked = 0 \
             AND (reusable = 1 OR uses = 0) AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(key_hash)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes by id or by the key's hash. Returns whether a key was found.
    pub async fn revoke_key(&self, id_or_hash: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE enrollment_keys SET revoked = 1 WHERE id = $1 OR key_hash = $1")
                .bind(id_or_hash)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }
}
