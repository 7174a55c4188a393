//! One module per subcommand. Commands use the runtime layer (`crate::runtime`) and the
//! layers under it; nothing below imports a command.

mod dashboard;
mod down;
mod expose;
mod join;
mod netcheck;
mod share;
pub(crate) mod ssh_once;
mod status;
mod up;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::{DEFAULT_HUB, Paths};
use crate::context::Context;

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
        Command::Netcheck => netcheck::run(&ctx).await,
        Command::Dashboard { no_open } => dashboard::run(&ctx, no_open).await,
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
