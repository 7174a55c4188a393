//! SSH sharing (`share --ssh`, `join --ssh`): a fresh ed25519 key per share, encrypted
//! here under a password that never leaves the machine, its public half in the target
//! account's `authorized_keys` for as long as the share lives.

pub mod authorized_keys;
pub mod keypair;
pub mod password;
pub mod session;

/// The comment that marks a share's line in `authorized_keys`, so it can be removed
/// without touching any other line.
pub fn marker(lookup: &str) -> String {
    format!("connect-share:{}", &lookup[..lookup.len().min(16)])
}

/// The port sshd listens on; shared only with `--ssh`.
pub const PORT: u16 = 22;

use crate::config::LocalShare;
use authorized_keys::{AuthorizedKeys, AuthorizedKeysError};

fn file_of(share: &LocalShare) -> Option<(AuthorizedKeys, &str)> {
    let ssh = share.ssh.as_ref()?;
    let owner = AuthorizedKeys::of(Some(&ssh.user)).map_or((u32::MAX, u32::MAX), |k| k.owner());
    Some((
        AuthorizedKeys::at(&ssh.user, ssh.authorized_keys.clone(), owner),
        &ssh.marker,
    ))
}

/// Puts the share's key (back) into `authorized_keys`, if it has one.
pub fn install(share: &LocalShare) -> Result<(), AuthorizedKeysError> {
    match (file_of(share), &share.ssh) {
        (Some((keys, marker)), Some(ssh)) => keys.add(&ssh.line, marker),
        _ => Ok(()),
    }
}

/// Takes the share's key out of `authorized_keys`, leaving every other line alone.
pub fn uninstall(share: &LocalShare) {
    if let Some((keys, marker)) = file_of(share)
        && let Err(err) = keys.remove(marker)
    {
        tracing::warn!(%err, "cannot remove a share's SSH key");
        eprintln!("[!] {err}: remove the line ending in {marker} by hand.");
    }
}
