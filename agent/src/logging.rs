//! The agent's logs: stderr, warnings and worse unless `CONNECT_LOG` says otherwise
//! (`target=level,...` and a bare default level, e.g. `connect_netstack=debug,info`). The
//! hub reads the same variable with the same syntax. A library never installs this:
//! whoever embeds `connect-netstack` decides where its `tracing` events go.
//!
//! `Targets` rather than `EnvFilter`: the same syntax for what we need, without a regex
//! engine in every agent's memory.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber; warnings and worse when `CONNECT_LOG` is unset or unreadable.
pub fn init() {
    let filter = std::env::var("CONNECT_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::WARN));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
}
