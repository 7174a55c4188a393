//! What the hub accepts from agents, checked in one place: service routes, SSH offers,
//! and the hex values lookups and MACs travel as.

use connect_api::{Route, SshOffer, is_account_name, route_problem};

use crate::error::ApiError;
use crate::store::NewSshKey;

/// A 32-byte value in hex, as lookups and MACs travel.
pub fn is_hex_64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// See [`route_problem`], the rule the agent applies too.
pub fn validate_route(route: &Route) -> Result<(), ApiError> {
    match route_problem(route) {
        Some(problem) => Err(ApiError::Invalid(problem.into())),
        None => Ok(()),
    }
}

/// An ed25519 key in OpenSSH's format is well under 1 KiB; leave room, refuse junk.
const MAX_KEY_LEN: usize = 4096;
const KEY_HEADER: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";

/// A share's SSH offer: an account name and an encrypted OpenSSH key, nothing else.
pub fn validate_ssh(offer: &SshOffer) -> Result<NewSshKey, ApiError> {
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
        encrypted_key: crate::secrets::Secret::new(key.to_owned()),
        once: offer.once,
    })
}
