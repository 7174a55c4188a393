//! The `joins` table: who joined which share, when, from where, with which address.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

/// Joiner hosts in a share's /24: .2 is the shared machine, .255 broadcast.
pub const FIRST_JOINER_HOST: i64 = 3;
pub const LAST_JOINER_HOST: i64 = 254;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRow {
    pub share_lookup: String,
    pub agent_id: String,
    pub agent_name: String,
    pub public_key: String,
    pub key_mac: String,
    pub joiner_host: u8,
    pub from_addr: String,
    pub at: i64,
    pub relay_id: u64,
}

impl JoinRow {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            share_lookup: row.try_get("share_lookup")?,
            agent_id: row.try_get("agent_id")?,
            agent_name: row.try_get("agent_name")?,
            public_key: row.try_get("public_key")?,
            key_mac: row.try_get("key_mac")?,
            joiner_host: u8::try_from(row.try_get::<i64, _>("joiner_host")?)
                .map_err(|_| StoreError::Corrupt("joiner host out of range".into()))?,
            from_addr: row.try_get("from_addr")?,
            at: row.try_get("at")?,
            relay_id: row.try_get::<i64, _>("relay_id")?.unsigned_abs(),
        })
    }
}

const SELECT: &str = "SELECT j.share_lookup, j.agent_id, a.name AS agent_name, j.public_key, j.key_mac, \
                      j.joiner_host, j.from_addr, j.at, a.relay_id FROM joins j JOIN agents a ON a.id = j.agent_id";

/// What recording a join can run into.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the share has no free joiner address left")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Records a join, and whether it is the agent's first join of this share. A second
    /// join by the same agent keeps its address and updates the rest (a restarted joiner
    /// comes back with a new key).
    pub async fn record_join(
        &self,
        share: &str,
        agent_id: &str,
        public_key: &str,
        key_mac: &str,
        from: &str,
        now_ms: i64,
    ) -> Result<(JoinRow, bool), JoinError> {
        let updated = sqlx::query(
            "UPDATE joins SET public_key = $1, key_mac = $2, from_addr = $3, at = $4 \
             WHERE share_lookup = $5 AND agent_id = $6",
        )
        .bind(public_key)
        .bind(key_mac)
        .bind(from)
        .bind(now_ms)
        .bind(share)
        .bind(agent_id)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from)?;
        let first = updated.rows_affected() == 0;
        if first {
            for _ in 0..8 {
                let taken: Vec<i64> = sqlx::query(
                    "SELECT joiner_host FROM joins WHERE share_lookup = $1 ORDER BY joiner_host",
                )
                .bind(share)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from)?
                .iter()
                .map(|row| row.try_get("joiner_host"))
                .collect::<Result<_, _>>()
                .map_err(StoreError::from)?;
                let mut host = FIRST_JOINER_HOST;
                for used in taken {
                    if used == host {
                        host += 1;
                    } else if used > host {
                        break;
                    }
                }
                if host > LAST_JOINER_HOST {
                    return Err(JoinError::Full);
                }
                let inserted = sqlx::query(
                    "INSERT INTO joins (share_lookup, agent_id, public_key, key_mac, joiner_host, from_addr, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(share)
                .bind(agent_id)
                .bind(public_key)
                .bind(key_mac)
                .bind(host)
                .bind(from)
                .bind(now_ms)
                .execute(&self.pool)
                .await;
                match inserted {
                    Ok(_) => break,
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => continue,
                    Err(err) => return Err(StoreError::from(err).into()),
                }
            }
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE j.share_lookup = $1 AND j.agent_id = $2"
        )))
        .bind(share)
        .bind(agent_id)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from)?;
        Ok((JoinRow::from_row(&row)?, first))
    }

    /// How many joins each share has, for the shares of `owner` (every share's when
    /// `None`): one query for a whole list, counted as [`Store::joins_of`] lists them.
    pub async fn join_counts(
        &self,
        owner: Option<&str>,
    ) -> Result<HashMap<String, usize>, StoreError> {
        const COUNT: &str = "SELECT j.share_lookup, COUNT(*) AS n FROM joins j \
                             JOIN agents a ON a.id = j.agent_id JOIN shares s ON s.lookup = j.share_lookup";
        let query = match owner {
            Some(owner) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "{COUNT} WHERE s.agent_id = $1 GROUP BY j.share_lookup"
            )))
            .bind(owner.to_owned()),
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "{COUNT} GROUP BY j.share_lookup"
            ))),
        };
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let n: i64 = row.try_get("n")?;
                Ok((
                    row.try_get("share_lookup")?,
                    usize::try_from(n).unwrap_or(usize::MAX),
                ))
            })
            .collect()
    }

    pub async fn joins_of(&self, share: &str) -> Result<Vec<JoinRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE j.share_lookup = $1 ORDER BY j.at"
        )))
        .bind(share)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(JoinRow::from_row)
        .collect()
    }

    /// Joins of every active share this agent shares: its peers after a restart.
    pub async fn live_joins_for_sharer(&self, agent_id: &str) -> Result<Vec<JoinRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} JOIN shares s ON s.lookup = j.share_lookup WHERE s.agent_id = $1 AND s.state = 'active'"
        )))
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(JoinRow::from_row)
        .collect()
    }

    /// Relay slot pairs (sharer, joiner) of every live join: who may relay to whom.
    pub async fn live_relay_pairs(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        sqlx::query(
            "SELECT sa.relay_id AS sharer, ja.relay_id AS joiner FROM joins j \
             JOIN shares s ON s.lookup = j.share_lookup JOIN agents sa ON sa.id = s.agent_id \
             JOIN agents ja ON ja.id = j.agent_id WHERE s.state = 'active'",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<i64, _>("sharer")?.unsigned_abs(),
                row.try_get::<i64, _>("joiner")?.unsigned_abs(),
            ))
        })
        .collect()
    }
}
