//! `connect-coordinator`: parses the command line, runs, and reports failure as one
//! `[x] ` line with exit code 1.

use std::process::ExitCode;

use clap::Parser;
use connect_coordinator::cli::{Cli, Command, StoreArgs};
use connect_coordinator::store::Store;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return connect_coordinator_usage(err),
    };
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("[x] cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Some(Command::Key(command)) => {
                on_store(&cli.store, |store, now_ms| async move {
                    connect_coordinator::run_key_command(&store, command, now_ms)
                        .await
                        .map_err(|err| err.to_string())
                })
                .await
            }
            Some(Command::AdminLink) => {
                let base = match cli.serve.base_url() {
                    Ok(base) => base,
                    Err(err) => {
                        eprintln!("[x] {err}");
                        return ExitCode::FAILURE;
                    }
                };
                on_store(&cli.store, |store, now_ms| async move {
                    connect_coordinator::admin_link(&store, &base, now_ms)
                        .await
                        .map_err(|err| err.to_string())
                })
                .await
            }
            None => match connect_coordinator::serve_main(cli).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("[x] {err}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

/// Runs a command straight on the database: what it returns is printed, an error is one
/// `[x] ` line and exit 1.
async fn on_store<F, Fut>(args: &StoreArgs, command: F) -> ExitCode
where
    F: FnOnce(Store, i64) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let store = match Store::open(args.database.as_deref(), &args.data_dir).await {
        Ok(store) => store,
        Err(err) => {
            eprintln!("[x] {err}");
            return ExitCode::FAILURE;
        }
    };
    let now_ms = connect_coordinator::clock::unix_ms(time::OffsetDateTime::now_utc());
    match command(store, now_ms).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("[x] {err}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout with 0; any usage error is one `[x] ` line and 1.
fn connect_coordinator_usage(err: clap::Error) -> ExitCode {
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
    eprintln!("    Run connect-coordinator --help for usage.");
    ExitCode::FAILURE
}

/// A hub logs what it serves at info; `CONNECT_LOG` (`target=level,...`, as the agent reads
/// it) narrows or widens that. `Targets` rather than `EnvFilter`: no regex engine needed.
fn init_logging() {
    let filter = std::env::var("CONNECT_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    tracing_subscriber::registry()
        .with(stderr)
        .with(filter)
        .init();
}
