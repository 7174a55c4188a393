//! Durable state in SQL, one file per table. The same queries run on SQLite (embedded,
//! the default) and PostgreSQL (several hubs sharing state) through sqlx's `Any` driver:
//! positional `$N` parameters, TEXT and BIGINT columns only.

mod agents;
mod http_log;
mod joins;
mod keys;
mod prune;
mod services;
mod sessions;
mod shares;
mod ssh_keys;

use std::path::Path;

use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, install_default_drivers};

pub use agents::AgentRow;
pub use http_log::LogPage;
pub use joins::{JoinError, JoinRow};
pub use keys::KeyRow;
pub use prune::{LOG_ROWS_PER_SHARE, Pruned};
pub use sessions::{LinkTaken, SessionRow};
pub use shares::{BLOCKS, CreateShareError, HttpShare, NewShare, ShareRow};
pub use ssh_keys::NewSshKey;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database at {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// The URL when the database is PostgreSQL: other hubs are reached through it.
    postgres: Option<String>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database. `database` is a
    /// `postgres://` or `sqlite://` URL; without one, SQLite in `data_dir`.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    pub async fn open(database: Option<&str>, data_dir: &Path) -> Result<Self, StoreError> {
        install_default_drivers();
        let url = match database {
            Some(url) => url.to_owned(),
            None => {
                std::fs::create_dir_all(data_dir).map_err(|err| StoreError::Open {
                    url: data_dir.display().to_string(),
                    source: sqlx::Error::Io(err),
                })?;
                format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("connect.db").display()
                )
            }
        };
        let postgres = url.starts_with("postgres").then(|| url.clone());
        let mut options =
            AnyPoolOptions::new().max_connections(if postgres.is_some() { 10 } else { 1 });
        if postgres.is_none() {
            // One connection: SQLite serialises writers anyway, and WAL keeps readers fast.
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(&url)
            .await
            .map_err(|source| StoreError::Open {
                url: redact(&url),
                source,
            })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool, postgres })
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    pub fn postgres_url(&self) -> Option<String> {
        self.postgres.clone()
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// A database URL with any password replaced, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn flag(value: bool) -> i64 {
    i64::from(value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_do_not_reach_messages() {
        assert_eq!(
            super::redact("postgres://connect:hunter2@db:5432/connect"),
            "postgres://connect:***@db:5432/connect"
        );
        assert_eq!(super::redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
