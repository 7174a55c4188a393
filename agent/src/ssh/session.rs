//! The joiner's side of `join --ssh`: the decrypted key in a private temporary file for
//! exactly as long as the system `ssh` runs, and `ssh` pointed through the tunnel.
//!
//! Host keys are not checked against `known_hosts`: the address only exists inside this
//! tunnel, whose far end the share code already authenticated, and it is reused by
//! unrelated shares, which would only teach users to ignore the warning.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;

use crate::error::Fail;

/// Runs `ssh USER@ADDRESS ARGS…` with the key, and returns ssh's own exit code.
pub async fn run(
    key: &str,
    user: &str,
    address: SocketAddr,
    args: &[String],
) -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("connect-ssh-")
        .tempdir()
        .map_err(Fail::io("cannot make a private directory for the key"))?;
    let key_path = dir.path().join("id_ed25519");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .and_then(|mut file| file.write_all(key.as_bytes()))
        .map_err(Fail::io("cannot write the key file"))?;
    let mut command = std::process::Command::new("ssh");
    command
        .arg("-i")
        .arg(&key_path)
        .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "LogLevel=ERROR", "-o", "PasswordAuthentication=no"])
        .arg("-p")
        .arg(address.port().to_string())
        // The user comes from the hub: checked by the caller, and still never where ssh
        // could read it as an option or part of the destination.
        .args(["-l", user, "--"])
        .arg(address.ip().to_string())
        .args(args);
    // Ctrl-C belongs to ssh while it runs; this process only waits and then cleans up.
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let status = tokio::task::spawn_blocking(move || command.status()).await?;
    drop(interrupt);
    drop(dir);
    let status = status.map_err(Fail::io("cannot run ssh (install the OpenSSH client)"))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
