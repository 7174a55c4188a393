//! The agent's files: `config.toml` and, beside it, the private key, the API token, the
//! shares this machine made (with their codes) and the control socket of a running agent.
//! Secrets are written 0600 and never leave the machine (the token goes only to the hub).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use connect_api::{Route, ShareState};
use connect_netstack::{PublicKey, StaticSecret};
use serde::{Deserialize, Serialize};

use crate::error::Fail;

/// The documented settings of `config.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Hub URL used when neither --hub nor CONNECT_HUB is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    /// This agent's name on the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Set by `connect up` on registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// A share made on this machine: the code and the routes it serves are only here.
#[derive(Clone, Serialize, Deserialize)]
pub struct LocalShare {
    pub code: String,
    pub lookup: String,
    pub name: String,
    pub machine_ip: std::net::Ipv4Addr,
    pub routes: Vec<Route>,
    #[serde(default)]
    pub all_ports: Option<String>,
    /// The port the hub's public URL reaches, if any.
    #[serde(default)]
    pub http_port: Option<u16>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: time::OffsetDateTime,
    /// `--ssh`: the line this share put in an account's `authorized_keys`.
    #[serde(default)]
    pub ssh: Option<LocalSsh>,
    /// How the share ended, once it has: it stays listed, with its code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
    /// Who may join, as this machine decides it (`--max-joins`, `--approve`).
    #[serde(default)]
    pub joiners: JoinerRules,
}

/// `share --max-joins` and `--approve`, and what this machine decided under them. A joiner
/// is its WireGuard key (base64): every `connect join` run is a fresh one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinerRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_joins: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approve: bool,
    /// Joiners let in so far (counted against `max_joins`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admitted: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<String>,
}

/// What the rules say of a joiner the share code vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// `--approve`, and the sharer has not decided yet.
    Wait,
    Denied,
    /// `--max-joins` joiners are in already.
    Full,
}

impl JoinerRules {
    /// The verdict on `key`; an admitted joiner is counted.
    pub fn admit(&mut self, key: &str) -> Verdict {
        if self.denied.iter().any(|k| k == key) {
            return Verdict::Denied;
        }
        if self.approve && !self.approved.iter().any(|k| k == key) {
            return Verdict::Wait;
        }
        if self.admitted.iter().any(|k| k == key) {
            return Verdict::Admit;
        }
        if self
            .max_joins
            .is_some_and(|max| self.admitted.len() >= usize::try_from(max).unwrap_or(usize::MAX))
        {
            return Verdict::Full;
        }
        self.admitted.push(key.to_owned());
        Verdict::Admit
    }

    pub fn decide(&mut self, key: &str, approved: bool) {
        let list = if approved {
            &mut self.approved
        } else {
            &mut self.denied
        };
        if !list.iter().any(|k| k == key) {
            list.push(key.to_owned());
        }
    }
}

impl LocalShare {
    /// Not ended, and before its own deadline (kept here, not taken from the hub).
    pub fn is_live(&self, now: time::OffsetDateTime) -> bool {
        self.ended.is_none() && self.expires_at > now
    }
}

/// How a share made here ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Ended {
    pub state: ShareState,
    /// Whether the hub knows: a revoke made here while the hub was unreachable is told
    /// to it later, by the running agent.
    pub hub_told: bool,
}

/// Everything but the code, which is a secret.
impl std::fmt::Debug for LocalShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalShare")
            .field("lookup", &self.lookup)
            .field("name", &self.name)
            .field("machine_ip", &self.machine_ip)
            .field("routes", &self.routes)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A share's SSH key as this machine installed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalSsh {
    pub user: String,
    pub authorized_keys: PathBuf,
    pub line: String,
    pub marker: String,
    #[serde(default)]
    pub once: bool,
}

/// This agent's WireGuard key pair; the private half never leaves the machine.
pub struct Keys {
    pub secret: StaticSecret,
    pub public: PublicKey,
}

#[derive(Debug, Clone)]
pub struct Paths {
    pub config: PathBuf,
    pub dir: PathBuf,
}

pub const DEFAULT_HUB: &str = "http://127.0.0.1:7070";

impl Paths {
    /// `--config` / CONNECT_CONFIG, else `$XDG_CONFIG_HOME/connect/config.toml`.
    pub fn new(config: Option<PathBuf>) -> anyhow::Result<Self> {
        let config = match config {
            Some(path) => path,
            None => {
                let base = std::env::var_os("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute())
                    .or_else(|| {
                        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config"))
                    })
                    .context(
                        "cannot find a config directory: set HOME, XDG_CONFIG_HOME or --config",
                    )?;
                base.join("connect").join("config.toml")
            }
        };
        let dir = config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(Self { config, dir })
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("private.key")
    }

    pub fn token(&self) -> PathBuf {
        self.dir.join("token")
    }

    pub fn shares(&self) -> PathBuf {
        self.dir.join("shares.json")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }

    pub fn load(&self) -> anyhow::Result<Config> {
        match std::fs::read_to_string(&self.config) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("cannot read {}", self.config.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(err) => Err(err).with_context(|| format!("cannot read {}", self.config.display())),
        }
    }

    pub fn save(&self, config: &Config) -> anyhow::Result<()> {
        let text = toml::to_string(config).context("cannot encode the config")?;
        write_private(&self.config, text.as_bytes())
    }

    /// This agent's WireGuard key pair, or "Agent not configured".
    pub fn keys(&self) -> anyhow::Result<Keys> {
        let text = std::fs::read_to_string(self.key()).map_err(|_| Fail::NotConfigured)?;
        let bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{} is not a WireGuard private key", self.key().display()))?;
        let secret = StaticSecret::from(bytes);
        Ok(Keys {
            public: PublicKey::from(&secret),
            secret,
        })
    }

    pub fn save_key(&self, secret: &StaticSecret) -> anyhow::Result<()> {
        let text = base64::engine::general_purpose::STANDARD.encode(secret.to_bytes());
        write_private(&self.key(), text.as_bytes())
    }

    pub fn token_value(&self) -> Option<String> {
        std::fs::read_to_string(self.token())
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    }

    /// The services `connect expose` added: kept here, decided here (the hub lists a copy).
    pub fn services(&self) -> PathBuf {
        self.dir.join("services.json")
    }

    pub fn local_shares(&self) -> anyhow::Result<Vec<LocalShare>> {
        read_list(&self.shares())
    }

    pub fn save_local_shares(&self, shares: &[LocalShare]) -> anyhow::Result<()> {
        write_list(&self.shares(), shares)
    }

    pub fn local_services(&self) -> anyhow::Result<Vec<Route>> {
        read_list(&self.services())
    }

    pub fn save_local_services(&self, services: &[Route]) -> anyhow::Result<()> {
        write_list(&self.services(), services)
    }
}

/// A JSON list this machine keeps; no file is an empty list.
fn read_list<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("cannot read {}", path.display()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_list<T: Serialize>(path: &Path, items: &[T]) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(items)
        .with_context(|| format!("cannot encode {}", path.display()))?;
    write_private(path, &text)
}

/// Creates the directory that will hold `path` when it is missing, readable by its owner
/// only (0700): keys, codes and the control socket live there.
pub fn private_dir_for(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display())),
        None => Ok(()),
    }
}

/// Writes a file readable by its owner only, replacing it atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    private_dir_for(path)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Whether to try direct paths to peers. `CONNECT_RELAY_ONLY=1` keeps every datagram on
/// the hub's relay: for networks that mangle direct UDP, and to measure the relay.
pub fn direct_paths() -> bool {
    std::env::var_os("CONNECT_RELAY_ONLY").is_none_or(|v| v.is_empty() || v == "0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_and_state_are_private_files_in_a_private_directory() {
        let Ok(dir) = tempfile::tempdir() else { return };
        let paths = Paths {
            config: dir.path().join("connect/config.toml"),
            dir: dir.path().join("connect"),
        };
        let secret = StaticSecret::from([3; 32]);
        assert!(paths.save_key(&secret).is_ok());
        assert!(paths.save_local_services(&[]).is_ok());
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .ok()
        };
        assert_eq!(mode(&paths.dir), Some(0o700));
        assert_eq!(mode(&paths.key()), Some(0o600));
        assert_eq!(mode(&paths.services()), Some(0o600));
        assert_eq!(
            paths.keys().map(|k| k.public.to_bytes()).ok(),
            Some(PublicKey::from(&secret).to_bytes())
        );
    }
}

#[cfg(test)]
mod joiner_rules {
    use super::{JoinerRules, Verdict};

    #[test]
    fn max_joins_counts_distinct_joiners_and_approval_comes_first() {
        let mut rules = JoinerRules {
            max_joins: Some(2),
            ..JoinerRules::default()
        };
        assert_eq!(rules.admit("a"), Verdict::Admit);
        assert_eq!(rules.admit("a"), Verdict::Admit, "the same joiner again");
        assert_eq!(rules.admit("b"), Verdict::Admit);
        assert_eq!(rules.admit("c"), Verdict::Full);
        assert_eq!(rules.admitted, ["a", "b"]);

        let mut rules = JoinerRules {
            max_joins: Some(1),
            approve: true,
            ..JoinerRules::default()
        };
        assert_eq!(rules.admit("a"), Verdict::Wait);
        assert!(rules.admitted.is_empty(), "waiting is not joining");
        rules.decide("a", true);
        rules.decide("b", false);
        assert_eq!(rules.admit("b"), Verdict::Denied);
        assert_eq!(rules.admit("a"), Verdict::Admit);
        rules.decide("c", true);
        assert_eq!(rules.admit("c"), Verdict::Full);
    }
}
