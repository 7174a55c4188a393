//! `connect`, the agent and CLI: register and run the agent (`up`), expose services,
//! make share codes, and join a teammate's share over WireGuard (TUN or user space).
//!
//! `main` only parses and reports. Layers point down only: `cli` → `commands/` (one module
//! per subcommand) → `runtime/` (the running agent and its control socket) → `hub.rs` (the
//! hub's API), `config.rs`/`context.rs` (files and settings), and `connect-netstack`.

mod candidates;
mod cli;
mod code;
mod commands;
mod config;
mod context;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod hub;
mod logging;
mod netcheck;
mod output;
mod runtime;
mod socks;
mod ssh;
mod target;
mod tun;
mod udp_flow;

use std::process::ExitCode;

use clap::Parser;

pub use code::{Role, ShareCode};
pub use error::Fail;

/// Parses the command line, runs the command, and prints any failure as one `[x] ` line
/// (plus a hint) with exit code 1. Usage errors also exit 1, not clap's 2.
pub fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = err.print();
                return ExitCode::SUCCESS;
            }
            let text = err.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("[x] {first}");
            eprintln!("    Run connect --help for usage.");
            return ExitCode::FAILURE;
        }
    };
    logging::init();
    // One thread: the data plane is one task, and every hand-off between runtime threads
    // costs a wake-up per packet. Profiling the relay path showed half the time in task
    // switches; one thread per agent nearly doubled tunnel throughput on 2 cores.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("[x] Cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

fn report(err: &anyhow::Error) {
    match err.downcast_ref::<Fail>() {
        Some(fail) => {
            eprintln!("[x] {fail}");
            if let Some(hint) = fail.hint() {
                for line in hint.lines() {
                    eprintln!("    {line}");
                }
            }
        }
        None => eprintln!("[x] {err:#}"),
    }
}
