//! The `agents` table: registered agents, their token hashes and relay slots.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, flag};
use crate::secrets::Secret;

#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: String,
    pub name: String,
    pub public_key: String,
    pub relay_key: Secret,
    pub relay_id: u64,
    pub guest: bool,
    /// The relay of the hub holding this agent's stream, where its joins relay.
    pub home_relay: Option<String>,
}

impl AgentRow {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            public_key: row.try_get("public_key")?,
            relay_key: Secret::new(row.try_get("relay_key")?),
            relay_id: row.try_get::<i64, _>("relay_id")?.unsigned_abs(),
            guest: row.try_get::<i64, _>("guest")? != 0,
            home_relay: row.try_get("home_relay")?,
        })
    }
}

const COLUMNS: &str = "id, name, public_key, relay_key, relay_id, guest, home_relay";

impl Store {
    pub async fn insert_agent(
        &self,
        agent: &AgentRow,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agents (id, name, public_key, token_hash, relay_key, relay_id, guest, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&agent.id)
        .bind(&agent.name)
        .bind(&agent.public_key)
        .bind(token_hash)
        .bind(agent.relay_key.expose())
        .bind(agent.relay_id as i64)
        .bind(flag(agent.guest))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn agent_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<AgentRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE token_hash = $1"
        )))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(AgentRow::from_row).transpose()
    }

    pub async fn agent(&self, id: &str) -> Result<Option<AgentRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(AgentRow::from_row).transpose()
    }

    pub async fn agent_by_relay_id(&self, relay_id: u64) -> Result<Option<AgentRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE relay_id = $1"
        )))
        .bind(relay_id as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(AgentRow::from_row).transpose()
    }

    pub async fn set_home_relay(&self, id: &str, relay: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE agents SET home_relay = $1 WHERE id = $2")
            .bind(relay)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every agent with when it registered, newest first: the admin's view.
    pub async fn agents(&self) -> Result<Vec<(AgentRow, i64)>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, created_at FROM agents ORDER BY created_at DESC"
        )))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| Ok((AgentRow::from_row(row)?, row.try_get("created_at")?)))
        .collect()
    }

    pub async fn agent_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM agents")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }
}
