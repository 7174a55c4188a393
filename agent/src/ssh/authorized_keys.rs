//! Editing an account's `~/.ssh/authorized_keys`: add one marked line, remove exactly the
//! lines with that marker, leave every other byte as it was. Writes go through a
//! temporary file in the same directory and a rename, keeping the file's owner and mode.
//!
//! A root agent edits a directory another account controls, so every step is relative to
//! the `.ssh` directory opened once without following links: the file is read without
//! following links, the temporary file has a random name and is created exclusively, and
//! owner and mode are set on the open file. A symlink planted at `.ssh` or at
//! `authorized_keys` makes the edit fail instead of writing elsewhere.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{Uid, UnlinkatFlags, User, unlinkat};

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
        let dir = match self.open_dir() {
            Ok(dir) => dir,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(String::new()),
            Err(err) => return Err(self.io(err)),
        };
        match self.read_in(&dir) {
            Ok(Some((text, _))) => Ok(text),
            Ok(None) => Ok(String::new()),
            Err(err) => Err(self.io(err)),
        }
    }

    fn name(&self) -> &Path {
        Path::new(self.path.file_name().unwrap_or("authorized_keys".as_ref()))
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The `.ssh` directory, refusing a symlink in its place.
    fn open_dir(&self) -> std::io::Result<OwnedFd> {
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
        Ok(open(self.dir(), flags, Mode::empty())?)
    }

    /// The file's text with its metadata, or `None` when there is no file yet. A link or
    /// anything but a regular file is refused.
    fn read_in(&self, dir: &OwnedFd) -> std::io::Result<Option<(String, fs::Metadata)>> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let mut file = match openat(dir, self.name(), flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(errno) => return Err(errno.into()),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(Some((text, meta)))
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
        match with_line(&self.read()?, line, marker) {
            Some(text) => self.write(&text),
            None => Ok(()),
        }
    }

    /// Removes the lines carrying `marker`; true when there was one.
    pub fn remove(&self, marker: &str) -> Result<bool, AuthorizedKeysError> {
        match without_marker(&self.read()?, marker) {
            Some(text) => self.write(&text).map(|()| true),
            None => Ok(false),
        }
    }

    fn write(&self, text: &str) -> Result<(), AuthorizedKeysError> {
        self.write_safely(text).map_err(|e| self.io(e))
    }

    fn write_safely(&self, text: &str) -> std::io::Result<()> {
        let dir = match self.open_dir() {
            Ok(dir) => dir,
            Err(err) if err.kind() == ErrorKind::NotFound => self.make_dir()?,
            Err(err) => return Err(err),
        };
        let (mode, owner) = match self.read_in(&dir)? {
            Some((_, meta)) => (meta.mode() & 0o7777, (meta.uid(), meta.gid())),
            None => (0o600, self.owner),
        };
        let tmp = PathBuf::from(format!(
            ".authorized_keys.connect-{:016x}",
            rand::random::<u64>()
        ));
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut file = File::from(openat(&dir, &tmp, flags, Mode::from_bits_truncate(0o600))?);
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| {
                // Only root may give a file away; a user editing their own file keeps it.
                let _ = std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1));
                file.set_permissions(fs::Permissions::from_mode(mode))
            })
            .and_then(|()| file.sync_all())
            .and_then(|()| Ok(renameat(&dir, &tmp, &dir, self.name())?));
        if written.is_err() {
            let _ = unlinkat(&dir, &tmp, UnlinkatFlags::NoRemoveDir);
        }
        written
    }

    /// Creates a missing `.ssh`, private and owned by the account, and opens it.
    fn make_dir(&self) -> std::io::Result<OwnedFd> {
        fs::create_dir(self.dir())?;
        let dir = self.open_dir()?;
        let handle = File::from(dir.try_clone()?);
        handle.set_permissions(fs::Permissions::from_mode(0o700))?;
        let _ = std::os::unix::fs::fchown(&handle, Some(self.owner.0), Some(self.owner.1));
        Ok(dir)
    }
}

/// `text` with `line` appended (after a newline, if `text` lacks its last one), or `None`
/// when a line with `marker` is there already.
pub fn with_line(text: &str, line: &str, marker: &str) -> Option<String> {
    if text.lines().any(|l| has_marker(l, marker)) {
        return None;
    }
    let mut text = text.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    Some(text)
}

/// `text` without the lines carrying `marker`, every other byte kept; `None` when there
/// was none.
pub fn without_marker(text: &str, marker: &str) -> Option<String> {
    let kept: String = text
        .split_inclusive('\n')
        .filter(|line| !has_marker(line, marker))
        .collect();
    (kept.len() != text.len()).then_some(kept)
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

    #[test]
    fn planted_links_are_refused_not_followed() {
        let Ok(dir) = tempfile::tempdir() else { return };
        let keys = file(&dir);
        let elsewhere = dir.path().join("shadow");
        assert!(fs::write(&elsewhere, "root:secret\n").is_ok());
        assert!(fs::create_dir(dir.path().join(".ssh")).is_ok());
        assert!(std::os::unix::fs::symlink(&elsewhere, &keys.path).is_ok());
        assert!(
            keys.add("ssh-ed25519 CCCC connect-share:abc", "connect-share:abc")
                .is_err()
        );
        assert_eq!(
            fs::read_to_string(&elsewhere).ok().as_deref(),
            Some("root:secret\n")
        );

        let other = tempfile::tempdir();
        let Ok(other) = other else { return };
        let linked = dir.path().join("home2");
        assert!(fs::create_dir(&linked).is_ok());
        assert!(std::os::unix::fs::symlink(other.path(), linked.join(".ssh")).is_ok());
        let keys = AuthorizedKeys::at("me", linked.join(".ssh/authorized_keys"), (0, 0));
        assert!(
            keys.add("ssh-ed25519 CCCC connect-share:abc", "connect-share:abc")
                .is_err()
        );
        assert_eq!(
            fs::read_dir(other.path()).map(Iterator::count).ok(),
            Some(0)
        );
    }

    #[test]
    fn no_temporary_file_is_left_behind() {
        let Ok(dir) = tempfile::tempdir() else { return };
        let keys = file(&dir);
        assert!(
            keys.add("ssh-ed25519 CCCC connect-share:abc", "connect-share:abc")
                .is_ok()
        );
        assert!(keys.remove("connect-share:abc").is_ok());
        let names: Vec<_> = fs::read_dir(dir.path().join(".ssh"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(names, vec![std::ffi::OsString::from("authorized_keys")]);
    }
}
