//! What the hub accepts from agents, checked in one place: service routes, SSH offers,
//! and the hex values lookups and MACs travel as.

use connect_api::{Route, SshOffer, is_account_name};

use crate::error::ApiError;
use crate::store::NewSshKey;

/// A 32-byte value in hex, as lookups and MACs travel.
pub fn is_hex_64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Names are what users type; targets are `HOST:PORT` the sharing machine resolves.
pub fn validate_route(route: &Route) -> Result<(), ApiError> {
    let name_ok = !route.name.is_empty()
        && route.name.len() <= 64
        && route
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(ApiError::Invalid(
            "service name must be 1 to 64 letters, digits, '-', '_' or '.'".into(),
        ));
    }
    if route.port == 0 {
        return Err(ApiError::Invalid("port must be 1 to 65535".into()));
    }
    let target_ok = route.target.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && host.len() <= 253 && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !target_ok
        || route
            .target
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::Invalid("target must be HOST:PORT".into()));
    }
    Ok(())
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
