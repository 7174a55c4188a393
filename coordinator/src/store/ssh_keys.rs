//! The `ssh_keys` table: a share's SSH private key, encrypted by the sharer under a
//! password the hub never sees. Kept apart from `shares` so listing shares never reads it.

use sqlx::Row;

use super::{Store, StoreError};
use crate::secrets::Secret;

/// A key to store with a new share.
#[derive(Debug, Clone)]
pub struct NewSshKey {
    pub user: String,
    pub encrypted_key: Secret,
    pub once: bool,
}

impl Store {
    /// The share's encrypted key; a `--ssh-once` key is cleared in the same transaction,
    /// so of two joiners racing for it exactly one gets it.
    pub async fn take_ssh_key(&self, lookup: &str) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(row) =
            sqlx::query("SELECT encrypted_key, once FROM ssh_keys WHERE share_lookup = $1")
                .bind(lookup)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(None);
        };
        let Some(key) = row.try_get::<Option<String>, _>("encrypted_key")? else {
            return Ok(None);
        };
        if row.try_get::<i64, _>("once")? != 0 {
            let taken = sqlx::query(
                "UPDATE ssh_keys SET encrypted_key = NULL \
                 WHERE share_lookup = $1 AND encrypted_key IS NOT NULL",
            )
            .bind(lookup)
            .execute(&mut *tx)
            .await?;
            if taken.rows_affected() != 1 {
                return Ok(None);
            }
        }
        tx.commit().await?;
        Ok(Some(key))
    }

    /// Forgets the key of a share that ended.
    pub(super) async fn delete_ssh_key(&self, lookup: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM ssh_keys WHERE share_lookup = $1")
            .bind(lookup)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
