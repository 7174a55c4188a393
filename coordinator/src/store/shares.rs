//! The `shares` table: shares, their routes snapshot, address block and lifecycle.

use connect_api::{Route, ShareState};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{NewSshKey, Store, StoreError};

/// Address blocks in 172.16.0.0/12: one /24 per live share.
pub const BLOCKS: u32 = 4096;
/// The PostgreSQL advisory lock that serialises choosing a block across hubs.
const BLOCK_LOCK: i64 = 0x636f_6e6e_6563_7401;

#[derive(Debug, Clone)]
pub struct ShareRow {
    pub lookup: String,
    pub agent_id: String,
    pub name: String,
    pub public_name: String,
    pub block: u32,
    pub routes: Vec<Route>,
    pub all_ports: Option<String>,
    pub http_port: Option<u16>,
    /// Hash of `USER:PASS` for basic auth on the public URL, salted with the lookup.
    pub http_auth: Option<String>,
    /// The public URL is served from the sharing machine's HTTPS server.
    pub https: bool,
    pub key_mac: String,
    /// The account `join --ssh` logs in as, when the share offers SSH.
    pub ssh_user: Option<String>,
    pub state: ShareState,
    pub created_at: i64,
    pub expires_at: i64,
    /// `share --max-joins`: distinct joiners the sharer lets in.
    pub max_joins: Option<u32>,
    /// `share --approve`: the sharer approves each joiner.
    pub approve: bool,
}

/// A live share with a public URL: what the proxy needs to serve it and the hub's own
/// peer needs to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpShare {
    pub lookup: String,
    pub agent_id: String,
    pub public_name: String,
    pub block: u32,
    pub http_port: u16,
    /// The sharing machine serves the public URL over HTTPS (`share --https-port`).
    pub https: bool,
    pub http_auth: Option<String>,
    pub expires_at: i64,
    pub sharer_key: String,
    pub sharer_slot: u64,
}

/// A share to create; the block is chosen by the store.
#[derive(Debug, Clone)]
pub struct NewShare {
    pub lookup: String,
    pub agent_id: String,
    pub name: String,
    pub public_name: String,
    pub routes: Vec<Route>,
    pub all_ports: Option<String>,
    pub http_port: Option<u16>,
    pub https: bool,
    pub http_auth: Option<String>,
    pub key_mac: String,
    pub ssh: Option<NewSshKey>,
    pub created_at: i64,
    pub expires_at: i64,
    pub max_joins: Option<u32>,
    pub approve: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateShareError {
    #[error("a share with this code already exists")]
    DuplicateCode,
    #[error("the public name is taken")]
    NameTaken,
    #[error("every address block is in use by a live share")]
    NoBlock,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn state_from(text: &str) -> ShareState {
    match text {
        "active" => ShareState::Active,
        "expired" => ShareState::Expired,
        _ => ShareState::Revoked,
    }
}

impl ShareRow {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let routes: String = row.try_get("routes")?;
        Ok(Self {
            lookup: row.try_get("lookup")?,
            agent_id: row.try_get("agent_id")?,
            name: row.try_get("name")?,
            public_name: row.try_get("public_name")?,
            block: u32::try_from(row.try_get::<i64, _>("block")?)
                .map_err(|_| StoreError::Corrupt("address block out of range".into()))?,
            routes: serde_json::from_str(&routes)
                .map_err(|err| StoreError::Corrupt(err.to_string()))?,
            all_ports: row.try_get("all_ports")?,
            http_port: row
                .try_get::<Option<i64>, _>("http_port")?
                .and_then(|p| u16::try_from(p).ok()),
            http_auth: row.try_get("http_auth")?,
            https: row.try_get::<i64, _>("http_tls")? != 0,
            key_mac: row.try_get("key_mac")?,
            ssh_user: row.try_get("ssh_user")?,
            state: state_from(&row.try_get::<String, _>("state")?),
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            max_joins: row
                .try_get::<Option<i64>, _>("max_joins")?
                .and_then(|n| u32::try_from(n).ok()),
            approve: row.try_get::<i64, _>("approve")? != 0,
        })
    }

    /// The state as of `now_ms`: an active share past its deadline is expired even if
    /// the timer has not run yet.
    pub fn state_at(&self, now_ms: i64) -> ShareState {
        if self.state == ShareState::Active && self.expires_at <= now_ms {
            ShareState::Expired
        } else {
            self.state
        }
    }
}

const COLUMNS: &str = "lookup, agent_id, name, public_name, block, routes, all_ports, http_port, http_auth, \
                       http_tls, key_mac, ssh_user, state, created_at, expires_at, max_joins, approve";

fn is_unique_violation(err: &sqlx::Error) -> Option<String> {
    if let sqlx::Error::Database(db) = err
        && db.is_unique_violation()
    {
        return Some(db.message().to_owned());
    }
    None
}

impl Store {
    /// Inserts a share in the lowest address block no live share holds. The block is
    /// chosen inside the INSERT, so concurrent requests never race for it: SQLite runs one
    /// statement at a time, and on PostgreSQL an advisory lock makes hubs take turns. The
    /// partial unique index still has the last word; a loser would try again.
    pub async fn insert_share(&self, share: &NewShare) -> Result<ShareRow, CreateShareError> {
        let routes = serde_json::to_string(&share.routes)
            .map_err(|err| StoreError::Corrupt(err.to_string()))?;
        for _ in 0..8 {
            match self.insert_share_in(share, &routes).await {
                Ok(false) => return Err(CreateShareError::NoBlock),
                Ok(true) => {
                    return self.share(&share.lookup).await?.ok_or_else(|| {
                        StoreError::Corrupt("share vanished after insert".into()).into()
                    });
                }
                Err(err) => match is_unique_violation(&err) {
                    Some(message) if message.contains("public_name") => {
                        return Err(CreateShareError::NameTaken);
                    }
                    Some(message)
                        if message.contains("block") || message.contains("shares_live_block") =>
                    {
                        continue;
                    }
                    Some(_) => return Err(CreateShareError::DuplicateCode),
                    None => return Err(StoreError::from(err).into()),
                },
            }
        }
        Err(CreateShareError::NoBlock)
    }

    /// The share in the first free block, and its SSH key, all or nothing; false when
    /// every block is taken.
    async fn insert_share_in(&self, share: &NewShare, routes: &str) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if self.is_postgres() {
            // Hubs sharing the database take turns choosing a block (until this
            // transaction ends), so concurrent shares do not keep colliding on one.
            sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
                .bind(BLOCK_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO shares (lookup, agent_id, name, public_name, block, routes, all_ports, http_port, \
             key_mac, state, created_at, expires_at, http_auth, ssh_user, http_tls, max_joins, approve) \
             SELECT $1, $2, $3, $4, free.block, $5, $6, $7, $8, 'active', $9, $10, $11, $12, $14, $15, $16 \
             FROM (SELECT COALESCE( \
               (SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM shares WHERE state = 'active' AND block = 0)), \
               (SELECT MIN(s.block) + 1 FROM shares s WHERE s.state = 'active' AND NOT EXISTS \
                  (SELECT 1 FROM shares t WHERE t.state = 'active' AND t.block = s.block + 1)) \
             ) AS block) AS free \
             WHERE free.block < $13",
        )
        .bind(&share.lookup)
        .bind(&share.agent_id)
        .bind(&share.name)
        .bind(&share.public_name)
        .bind(routes)
        .bind(share.all_ports.clone())
        .bind(share.http_port.map(i64::from))
        .bind(&share.key_mac)
        .bind(share.created_at)
        .bind(share.expires_at)
        .bind(share.http_auth.clone())
        .bind(share.ssh.as_ref().map(|ssh| ssh.user.clone()))
        .bind(i64::from(BLOCKS))
        .bind(i64::from(share.https))
        .bind(share.max_joins.map(i64::from))
        .bind(i64::from(share.approve))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            return Ok(false);
        }
        if let Some(ssh) = &share.ssh {
            sqlx::query(
                "INSERT INTO ssh_keys (share_lookup, encrypted_key, once) VALUES ($1, $2, $3)",
            )
            .bind(&share.lookup)
            .bind(ssh.encrypted_key.expose())
            .bind(i64::from(ssh.once))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn share(&self, lookup: &str) -> Result<Option<ShareRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM shares WHERE lookup = $1"
        )))
        .bind(lookup)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ShareRow::from_row).transpose()
    }

    pub async fn share_by_public_name(
        &self,
        public_name: &str,
    ) -> Result<Option<ShareRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM shares WHERE public_name = $1"
        )))
        .bind(public_name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ShareRow::from_row).transpose()
    }

    pub async fn shares_of(&self, agent_id: &str) -> Result<Vec<ShareRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM shares WHERE agent_id = $1 ORDER BY created_at DESC"
        )))
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(ShareRow::from_row)
        .collect()
    }

    /// Every share, newest first: the admin's view.
    pub async fn all_shares(&self) -> Result<Vec<ShareRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM shares ORDER BY created_at DESC"
        )))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(ShareRow::from_row)
        .collect()
    }

    /// Moves an active share's deadline. Returns false when it is not active.
    pub async fn extend_share(&self, lookup: &str, expires_at: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE shares SET expires_at = $1 WHERE lookup = $2 AND state = 'active'")
                .bind(expires_at)
                .bind(lookup)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends an active share. Returns false if it was not active (already ended).
    pub async fn end_share(
        &self,
        lookup: &str,
        state: ShareState,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE shares SET state = $1, ended_at = $2 WHERE lookup = $3 AND state = 'active'",
        )
        .bind(state.to_string())
        .bind(now_ms)
        .bind(lookup)
        .execute(&self.pool)
        .await?;
        self.delete_ssh_key(lookup).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Active shares whose deadline has passed.
    pub async fn due_shares(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        sqlx::query("SELECT lookup FROM shares WHERE state = 'active' AND expires_at <= $1")
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok(row.try_get("lookup")?))
            .collect()
    }

    pub async fn next_expiry(&self) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query("SELECT MIN(expires_at) AS at FROM shares WHERE state = 'active'")
                .fetch_one(&self.pool)
                .await?
                .try_get("at")?,
        )
    }

    /// Live shares with a public URL, with their sharer's key and relay slot: what the
    /// hub's own peer must reach.
    pub async fn live_http_shares(&self) -> Result<Vec<HttpShare>, StoreError> {
        sqlx::query(
            "SELECT s.lookup, s.agent_id, s.public_name, s.block, s.http_port, s.http_tls, \
             s.http_auth, s.expires_at, a.public_key, a.relay_id FROM shares s \
             JOIN agents a ON a.id = s.agent_id WHERE s.state = 'active' AND s.http_port IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(HttpShare {
                lookup: row.try_get("lookup")?,
                agent_id: row.try_get("agent_id")?,
                public_name: row.try_get("public_name")?,
                https: row.try_get::<i64, _>("http_tls")? != 0,
                http_auth: row.try_get("http_auth")?,
                expires_at: row.try_get("expires_at")?,
                block: u32::try_from(row.try_get::<i64, _>("block")?)
                    .map_err(|_| StoreError::Corrupt("address block out of range".into()))?,
                http_port: u16::try_from(row.try_get::<i64, _>("http_port")?)
                    .map_err(|_| StoreError::Corrupt("http port out of range".into()))?,
                sharer_key: row.try_get("public_key")?,
                sharer_slot: row.try_get::<i64, _>("relay_id")?.unsigned_abs(),
            })
        })
        .collect()
    }

    pub async fn active_share_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM shares WHERE state = 'active'")
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }
}
