//! Logging for both programs: stderr, filtered by `CONNECT_LOG` (`target=level,...` and a
//! bare default level, e.g. `connect_netstack=debug,info`).
//!
//! `Targets` rather than `EnvFilter`: the same syntax for what we need, without a regex
//! engine in every agent's memory.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber; `default` applies when `CONNECT_LOG` is unset or unreadable.
pub fn init(default: tracing::Level) {
    let filter = std::env::var("CONNECT_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
}
