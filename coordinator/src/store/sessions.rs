//! The `login_links` and `sessions` tables: how the dashboard signs people in. Both hold
//! only hashes of their tokens; `agent_id` is `None` for the hub's admin.

use sqlx::Row;

use super::{Store, StoreError};

/// A signed-in dashboard visitor, as the database keeps the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// `None`: the admin.
    pub agent_id: Option<String>,
    /// The token every form of this session must carry.
    pub csrf: String,
}

/// Whose a login link is, once taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTaken {
    /// For this agent, or for the admin (`None`).
    Valid(Option<String>),
    /// Unknown, used already, or past its deadline.
    Invalid,
}

impl Store {
    pub async fn insert_login_link(
        &self,
        token_hash: &str,
        agent_id: Option<&str>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO login_links (token_hash, agent_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(agent_id)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes a login link: it is deleted in the same statement that reads it, so of two
    /// uses racing, one gets nothing.
    pub async fn take_login_link(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<LinkTaken, StoreError> {
        let row = sqlx::query(
            "DELETE FROM login_links WHERE token_hash = $1 RETURNING agent_id, expires_at",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(LinkTaken::Invalid);
        };
        if row.try_get::<i64, _>("expires_at")? <= now_ms {
            return Ok(LinkTaken::Invalid);
        }
        Ok(LinkTaken::Valid(row.try_get("agent_id")?))
    }

    pub async fn insert_session(
        &self,
        token_hash: &str,
        session: &SessionRow,
        now_ms: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, agent_id, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(session.agent_id.as_deref())
        .bind(&session.csrf)
        .bind(now_ms)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A live session. One whose agent no longer exists has ended with it.
    pub async fn session(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT s.agent_id, s.csrf, a.id AS agent FROM sessions s \
             LEFT JOIN agents a ON a.id = s.agent_id WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let agent_id: Option<String> = row.try_get("agent_id")?;
        let agent: Option<String> = row.try_get("agent")?;
        if agent_id.is_some() && agent.is_none() {
            return Ok(None);
        }
        Ok(Some(SessionRow {
            agent_id,
            csrf: row.try_get("csrf")?,
        }))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Drops links and sessions past their deadline.
    pub(super) async fn prune_sign_ins(&self, now_ms: i64) -> Result<(), StoreError> {
        for table in ["login_links", "sessions"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE expires_at <= $1"
            )))
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}
