//! A share's SSH key: validated when the share is made, handed only to agents that
//! joined the share. The hub stores it encrypted and never learns the password.

use axum::Json;
use axum::extract::{Path, State};
use connect_api::{ShareState, SshKey, SshOffer};

use super::Agent;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::NewSshKey;

/// An ed25519 key in OpenSSH's format is well under 1 KiB; leave room, refuse junk.
const MAX_KEY_LEN: usize = 4096;
const KEY_HEADER: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";

/// A POSIX account name, as `useradd` accepts it.
fn is_account_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub fn validate(offer: &SshOffer) -> Result<NewSshKey, ApiError> {
    if !is_account_name(&offer.user) {
        return Err(ApiError::Invalid(
            "ssh user must be an account name (letters, digits, _ - .)".into(),
        ));
    }
    let key = offer.encrypted_key.trim();
    if key.len() > MAX_KEY_LEN || !key.starts_with(KEY_HEADER) {
        return Err(ApiError::Invalid(
            "ssh key must be an OpenSSH private key".into(),
        ));
    }
    Ok(NewSshKey {
        user: offer.user.clone(),
        encrypted_key: key.to_owned(),
        once: offer.once,
    })
}

/// `GET /v1/shares/{lookup}/ssh-key`, for an agent that joined the live share.
pub async fn key(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(lookup): Path<String>,
) -> Result<Json<SshKey>, ApiError> {
    let share = match state.store.share(&lookup).await? {
        Some(share) if share.state_at(state.now_ms()) == ShareState::Active => share,
        _ => return Err(ApiError::ShareNotFound),
    };
    let joined = state
        .store
        .joins_of(&lookup)
        .await?
        .iter()
        .any(|j| j.agent_id == agent.id);
    if !joined {
        return Err(ApiError::Forbidden(
            "join the share before asking for its SSH key",
        ));
    }
    let Some(user) = share.ssh_user else {
        return Err(ApiError::NoSsh);
    };
    match state.store.take_ssh_key(&lookup).await? {
        Some(encrypted_key) => {
            tracing::info!(share = %share.public_name, agent = %agent.id, "ssh key downloaded");
            Ok(Json(SshKey {
                user,
                encrypted_key,
            }))
        }
        None => Err(ApiError::Gone(
            "this share's one-time SSH key was already used (--ssh-once)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_are_checked() {
        for good in ["root", "vagrant", "dev_1", "a.b-c", "_svc"] {
            assert!(is_account_name(good), "{good}");
        }
        for bad in ["", "Root", "-x", "a b", "a:b", "x\n", &"a".repeat(33)] {
            assert!(!is_account_name(bad), "{bad:?}");
        }
    }
}
