//! `connect ssh-once FILE MARKER` (hidden): the forced command of a `--ssh-once` key.
//! sshd runs it as the target account once the first session has authenticated; it
//! takes the key out of `authorized_keys`, then becomes the session the user asked for.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::ssh::authorized_keys::AuthorizedKeys;

/// The `authorized_keys` line of a one-time key: the key, forced through this hook.
/// `None` when a path cannot be quoted safely in sshd's option syntax.
pub fn forced_line(exe: &Path, file: &Path, public: &str, marker: &str) -> Option<String> {
    let quote = |path: &Path| {
        let text = path.to_str()?;
        (!text.contains(['\'', '"', '\\', '\n'])).then(|| format!("'{text}'"))
    };
    Some(format!(
        "command=\"{} ssh-once {} {marker}\" {public} {marker}",
        quote(exe)?,
        quote(file)?
    ))
}

pub fn run(file: PathBuf, marker: &str) -> ExitCode {
    let keys = AuthorizedKeys::at("", file, (0, 0));
    if let Err(err) = keys.remove(marker) {
        eprintln!("[!] Cannot remove the one-time key: {err}");
    }
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".to_owned());
    let err = match std::env::var("SSH_ORIGINAL_COMMAND") {
        Ok(command) => Command::new(&shell).arg("-c").arg(command).exec(),
        Err(_) => {
            let name = Path::new(&shell)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("sh");
            Command::new(&shell).arg0(format!("-{name}")).exec()
        }
    };
    eprintln!("[x] Cannot start {shell}: {err}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forced_line_quotes_paths_and_ends_with_the_marker() {
        let line = forced_line(
            Path::new("/usr/bin/connect"),
            Path::new("/home/a b/.ssh/authorized_keys"),
            "ssh-ed25519 AAAA",
            "connect-share:ab",
        );
        assert_eq!(
            line.as_deref(),
            Some(
                "command=\"'/usr/bin/connect' ssh-once '/home/a b/.ssh/authorized_keys' connect-share:ab\" ssh-ed25519 AAAA connect-share:ab"
            )
        );
        assert_eq!(
            forced_line(Path::new("/x\"y"), Path::new("/f"), "k", "m"),
            None
        );
    }
}
