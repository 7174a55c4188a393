//! Editing an account's `~/.ssh/authorized_keys`: add one marked line, remove exactly the
//! lines with that marker, leave every other byte as it was. Writes go through a
//! temporary file in the same directory and a rename, keeping the file's owner and mode.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Uid, User};

/// Vagrant's well-known insecure public keys (RSA and ed25519): anyone can log in with
/// their private halves, which ship with Vagrant.
const VAGRANT_INSECURE: [&str; 2] = [
    "AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFHzD8+v1I2YJ6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8HfdOV0IAdx4O7PtixWKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnDkbUvxhMmBYSdETk1rRgm+R4LOzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ==",
    "AAAAC3NzaC1lZDI1NTE5AAAAIN1YdxBpNlzxDqfJyw/QKow1F+wvG9hXGoqiysfJOn5Y",
];

#[derive(Debug, thiserror::Error)]
pub enum AuthorizedKeysError {
    #[error("no account named {0}")]
    NoAccount(String),
    #[error("cannot find the home directory of the account running connect")]
    NoHome,
    #[error("cannot edit {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One account's `authorized_keys`, and who must own it.
#[derive(Debug, Clone)]
pub struct AuthorizedKeys {
    pub user: String,
    pub path: PathBuf,
    /// uid and gid for files this creates.
    owner: (u32, u32),
}

impl AuthorizedKeys {
    /// The file of `user`, or of the account running connect (whose `$HOME` wins, as
    /// for every other tool it runs).
    pub fn of(user: Option<&str>) -> Result<Self, AuthorizedKeysError> {
        let me = User::from_uid(Uid::current()).ok().flatten();
        let (account, home) = match user {
            Some(name) => {
                let account = User::from_name(name)
                    .ok()
                    .flatten()
                    .ok_or_else(|| AuthorizedKeysError::NoAccount(name.to_owned()))?;
                let home = if me.as_ref().is_some_and(|m| m.uid == account.uid) {
                    std::env::var_os("HOME").map_or_else(|| account.dir.clone(), PathBuf::from)
                } else {
                    account.dir.clone()
                };
                (account, home)
            }
            None => {
                let account = me.ok_or(AuthorizedKeysError::NoHome)?;
                let home =
                    std::env::var_os("HOME").map_or_else(|| account.dir.clone(), PathBuf::from);
                (account, home)
            }
        };
        Ok(Self::at(
            &account.name,
            home.join(".ssh").join("authorized_keys"),
            (account.uid.as_raw(), account.gid.as_raw()),
        ))
    }

    pub fn at(user: &str, path: PathBuf, owner: (u32, u32)) -> Self {
        Self {
            user: user.to_owned(),
            path,
            owner,
        }
    }

    /// uid and gid of the account.
    pub fn owner(&self) -> (u32, u32) {
        self.owner
    }

    fn read(&self) -> Result<String, AuthorizedKeysError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => Ok(text),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(String::new()),
            Err(source) => Err(self.io(source)),
        }
    }

    fn io(&self, source: std::io::Error) -> AuthorizedKeysError {
        AuthorizedKeysError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Whether Vagrant's insecure key can still log in to this account.
    pub fn holds_vagrant_insecure_key(&self) -> bool {
        self.read().is_ok_and(|text| {
            text.lines()
                .any(|line| VAGRANT_INSECURE.iter().any(|key| line.contains(key)))
        })
    }

    /// A command that removes Vagrant's insecure keys from this file.
    pub fn vagrant_removal_hint(&self) -> String {
        format!(
            "sed -i -e '/{}/d' -e '/{}/d' {}",
            &VAGRANT_INSECURE[0][..40],
            &VAGRANT_INSECURE[1][..40].replace('/', "\\/"),
            self.path.display()
        )
    }

    /// Appends `line` unless a line with the same marker is there already.
    pub fn add(&self, line: &str, marker: &str) -> Result<(), AuthorizedKeysError> {
        let mut text = self.read()?;
        if text.lines().any(|l| has_marker(l, marker)) {
            return Ok(());
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        self.write(&text)
    }

    /// Removes the lines carrying `marker`; true when there was one.
    pub fn remove(&self, marker: &str) -> Result<bool, AuthorizedKeysError> {
        let text = self.read()?;
        let kept: String = text
            .split_inclusive('\n')
            .filter(|line| !has_marker(line, marker))
            .collect();
        if kept.len() == text.len() {
            return Ok(false);
        }
        self.write(&kept)?;
        Ok(true)
    }

    fn write(&self, text: &str) -> Result<(), AuthorizedKeysError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| self.io(e))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| self.io(e))?;
            let _ = std::os::unix::fs::chown(dir, Some(self.owner.0), Some(self.owner.1));
        }
        let (mode, owner) = match fs::metadata(&self.path) {
            Ok(meta) => (meta.permissions().mode() & 0o7777, (meta.uid(), meta.gid())),
            Err(_) => (0o600, self.owner),
        };
        let tmp = dir.join(format!(".authorized_keys.connect-{}", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| {
                // Only root may give a file away; a user editing their own file keeps it.
                let _ = std::os::unix::fs::chown(&tmp, Some(owner.0), Some(owner.1));
                fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
            })
            .and_then(|()| fs::rename(&tmp, &self.path));
        if let Err(err) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.io(err));
        }
        Ok(())
    }
}

/// A line is ours when its last field, the comment, is the marker.
fn has_marker(line: &str, marker: &str) -> bool {
    line.split_whitespace().last() == Some(marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &tempfile::TempDir) -> AuthorizedKeys {
        AuthorizedKeys::at("me", dir.path().join(".ssh/authorized_keys"), (0, 0))
    }

    #[test]
    fn removing_restores_every_other_byte() {
        let Ok(dir) = tempfile::tempdir() else { return };
        let keys = file(&dir);
        let original =
            "# team keys\nssh-ed25519 AAAA alice@x\n\nssh-rsa BBBB bob connect-share:nope\n";
        assert!(keys.write(original).is_ok());
        assert!(
            keys.add("ssh-ed25519 CCCC connect-share:abc", "connect-share:abc")
                .is_ok()
        );
        assert!(
            keys.add("ssh-ed25519 CCCC connect-share:abc", "connect-share:abc")
                .is_ok()
        );
        let with = fs::read_to_string(&keys.path).unwrap_or_default();
        assert_eq!(
            with,
            format!("{original}ssh-ed25519 CCCC connect-share:abc\n")
        );
        assert!(
            keys.remove("connect-share:abc")
                .is_ok_and(|removed| removed)
        );
        assert_eq!(fs::read_to_string(&keys.path).unwrap_or_default(), original);
        assert!(
            keys.remove("connect-share:abc")
                .is_ok_and(|removed| !removed)
        );
    }

    #[test]
    fn a_missing_file_is_created_private() {
        let Ok(dir) = tempfile::tempdir() else { return };
        let keys = file(&dir);
        assert!(
            keys.add("ssh-ed25519 CCCC connect-share:abc", "connect-share:abc")
                .is_ok()
        );
        let mode = fs::metadata(&keys.path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        assert!(!keys.holds_vagrant_insecure_key());
        let vagrant = format!(
            "ssh-rsa {} vagrant insecure public key\n",
            VAGRANT_INSECURE[0]
        );
        assert!(keys.write(&vagrant).is_ok());
        assert!(keys.holds_vagrant_insecure_key());
    }
}
