//! One module per subcommand, and what they share: where the files are, which hub, and
//! whether this machine has registered.

pub(crate) mod control;
mod down;
pub(crate) mod expose;
mod join;
mod share;
pub(crate) mod ssh_once;
mod status;
pub(crate) mod up;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::{Config, DEFAULT_HUB, Paths};
use crate::error::Fail;
use crate::hub::Hub;

pub struct Context {
    pub paths: Paths,
    pub config: Config,
    pub hub_url: String,
    pub json: bool,
}

impl Context {
    /// The hub with this agent's token, or "Agent not configured".
    pub fn agent_hub(&self) -> anyhow::Result<Hub> {
        let token = self.paths.token_value().ok_or(Fail::NotConfigured)?;
        Hub::new(&self.hub_url, Some(token))
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // sshd runs this as the target account, which may have no connect config at all.
    if let Command::SshOnce {
        authorized_keys,
        marker,
    } = cli.command
    {
        return Ok(ssh_once::run(authorized_keys, &marker));
    }
    let paths = Paths::new(cli.config)?;
    let config = paths.load()?;
    let hub_url = cli
        .hub
        .or_else(|| config.hub.clone())
        .unwrap_or_else(|| DEFAULT_HUB.to_owned());
    let ctx = Context {
        paths,
        config,
        hub_url,
        json: cli.json,
    };
    match cli.command {
        Command::Up { auth_key, name } => up::run(ctx, auth_key, name).await,
        Command::Down => down::run(&ctx).await,
        Command::Status => status::run(&ctx).await,
        Command::Expose(args) => expose::run(&ctx, args).await,
        Command::Share(args) => share::run(&ctx, args).await,
        Command::Join(args) => join::run(&ctx, args).await,
        Command::SshOnce { .. } => Ok(ExitCode::FAILURE),
    }
}

/// "user@host", for names nobody chose.
pub fn user_at_host() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "someone".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{user}@{host}")
}
