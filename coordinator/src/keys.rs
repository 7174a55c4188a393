//! `connect-coordinator key create | list | revoke`, straight on the database.

use std::time::Duration;

use crate::cli::KeyCommand;
use crate::secrets::hash_secret;
use crate::state::{Ids, RandomIds};
use crate::store::{KeyRow, Store};

/// Runs a key command and returns what to print.
///
/// # Errors
/// A one-line message for bad input or a failing database.
pub async fn run_key_command(
    store: &Store,
    command: KeyCommand,
    now_ms: i64,
) -> Result<String, String> {
    match command {
        KeyCommand::Create { reusable, expires } => {
            let expires_at =
                match expires {
                    None => None,
                    Some(text) => {
                        let duration = connect_api::parse_duration(&text)
                            .ok_or("Invalid expires format. Use: 1h, 4h, 24h, 7d, etc.")?;
                        Some(now_ms.saturating_add(
                            i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
                        ))
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
            store
                .insert_key(&row, &hash_secret(&key))
                .await
                .map_err(|err| err.to_string())?;
            Ok(key)
        }
        KeyCommand::List => {
            let keys = store.keys().await.map_err(|err| err.to_string())?;
            let mut out = String::from("ID                    REUSABLE  USES  STATE    EXPIRES\n");
            for key in keys {
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
        KeyCommand::Revoke { key } => {
            let found = store
                .revoke_key(&key)
                .await
                .map_err(|err| err.to_string())?
                || store
                    .revoke_key(&hash_secret(&key))
                    .await
                    .map_err(|err| err.to_string())?;
            if found {
                Ok("[ok] Key revoked.".to_owned())
            } else {
                Err("No such key".to_owned())
            }
        }
    }
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
