//! `connect-coordinator key create | list | revoke`, straight on the database.

use std::time::Duration;

use crate::cli::KeyCommand;
use crate::ids::{Ids, RandomIds};
use crate::secrets::hash_secret;
use crate::store::{KeyRow, Store, StoreError};

/// Why a key command failed, in one line.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("Invalid expires format. Use: 1h, 4h, 24h, 7d, etc.")]
    InvalidExpires,
    #[error("No such key")]
    NoSuchKey,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs a key command and returns what to print.
///
/// # Errors
/// Bad input or a failing database.
pub async fn run_key_command(
    store: &Store,
    command: KeyCommand,
    now_ms: i64,
) -> Result<String, KeyError> {
    match command {
        KeyCommand::Create { reusable, expires } => {
            create(store, reusable, expires.as_deref(), now_ms).await
        }
        KeyCommand::List => list(store, now_ms).await,
        KeyCommand::Revoke { key } => {
            // By id, or by the key itself.
            let found =
                store.revoke_key(&key).await? || store.revoke_key(&hash_secret(&key)).await?;
            if found {
                Ok("[ok] Key revoked.".to_owned())
            } else {
                Err(KeyError::NoSuchKey)
            }
        }
    }
}

/// A new enrollment key; only its hash is stored, so this is the one time it is seen.
pub(crate) async fn create(
    store: &Store,
    reusable: bool,
    expires: Option<&str>,
    now_ms: i64,
) -> Result<String, KeyError> {
    let expires_at = match expires {
        None => None,
        Some(text) => {
            let duration = connect_api::parse_duration(text).ok_or(KeyError::InvalidExpires)?;
            Some(now_ms.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)))
        }
    };
    let ids = RandomIds;
    let key = ids.secret("ck_");
    let row = KeyRow {
        id: ids.id("key_"),
        reusable,
        expires_at,
        uses: 0,
        revoked: false,
        created_at: now_ms,
    };
    store.insert_key(&row, &hash_secret(&key)).await?;
    Ok(key)
}

async fn list(store: &Store, now_ms: i64) -> Result<String, KeyError> {
    let mut out = String::from("ID                    REUSABLE  USES  STATE    EXPIRES\n");
    for key in store.keys().await? {
        let state = if key.revoked {
            "revoked"
        } else if key.usable(now_ms) {
            "usable"
        } else {
            "spent"
        };
        let expires = key.expires_at.map_or_else(
            || "never".to_owned(),
            |at| {
                humanize(Duration::from_millis(
                    u64::try_from(at - now_ms).unwrap_or(0),
                ))
            },
        );
        out.push_str(&format!(
            "{:<21} {:<9} {:<5} {:<8} {}\n",
            key.id,
            if key.reusable { "yes" } else { "no" },
            key.uses,
            state,
            expires
        ));
    }
    Ok(out.trim_end().to_owned())
}

fn humanize(left: Duration) -> String {
    let secs = left.as_secs();
    match secs {
        0 => "expired".to_owned(),
        s if s < 3600 => format!("in {}m", s.div_ceil(60)),
        s if s < 86_400 => format!("in {}h", s / 3600),
        s => format!("in {}d", s / 86_400),
    }
}
