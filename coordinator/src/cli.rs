//! The command line of `connect-coordinator`: serve (the default) and `key …`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "connect-coordinator", version, about = "The connect hub")]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// State directory (SQLite inside).
    #[arg(
        long,
        global = true,
        default_value = "./connect-data",
        env = "CONNECT_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// sqlite://… (default) or postgres://… (several coordinators share one).
    #[arg(long, global = true, env = "CONNECT_DATABASE")]
    pub database: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TCP: API, dashboard and public HTTP shares.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// UDP: WireGuard relay and endpoint discovery (default: same as --listen).
    #[arg(long)]
    pub udp: Option<SocketAddr>,
    /// UDP: a second port that only answers `connect netcheck` probes, so agents learn
    /// whether their NAT keeps a port across destinations (default: the --udp port + 1;
    /// none if that cannot be bound).
    #[arg(long)]
    pub probe_udp: Option<SocketAddr>,
    /// Public share URLs are http(s)://NAME.DOMAIN.
    #[arg(long, default_value = "share.localhost")]
    pub domain: String,
    /// How agents reach this hub, if not --listen.
    #[arg(long)]
    pub public_url: Option<crate::public_url::PublicUrl>,
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Let any agent register without an enrollment key.
    #[arg(long)]
    pub open_registration: bool,
    /// Allow plain HTTP on a non-loopback address.
    #[arg(long)]
    pub insecure: bool,
    /// How long a sharing machine may take to start answering a public URL request
    /// before the visitor gets 502 (90s, 30m, …).
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub proxy_timeout: std::time::Duration,
    /// No rate limits for callers in this network (repeatable; e.g. a monitoring host, or
    /// 127.0.0.1/32 for benchmarks). Behind a reverse proxy on the same host, loopback is
    /// every visitor: do not exempt it there.
    #[arg(long, value_name = "CIDR")]
    pub rate_limit_exempt: Vec<ipnet::IpNet>,
    /// Serve /metrics to anyone with this bearer token (without it, to this host only).
    #[arg(long, env = "CONNECT_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enrollment keys that let agents register.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print a one-time dashboard login link for the admin (valid for 5 minutes). The
    /// link is under --public-url (or --listen), as the hub is started with.
    AdminLink,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print a new enrollment key.
    Create {
        /// Usable by any number of agents (default: one).
        #[arg(long)]
        reusable: bool,
        /// Lifetime, e.g. 7d (default: none).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List keys (ids only; keys are stored as hashes).
    List,
    /// Revoke a key, by the key or its id.
    Revoke { key: String },
}

impl ServeArgs {
    /// Where people reach the hub: `--public-url`, or the scheme and `--listen` address.
    ///
    /// # Errors
    /// A `--listen` that does not make a URL (it always does).
    pub fn base_url(
        &self,
    ) -> Result<crate::public_url::PublicUrl, crate::public_url::BadPublicUrl> {
        if let Some(url) = &self.public_url {
            return Ok(url.clone());
        }
        let scheme = if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.listen).parse()
    }
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    connect_api::parse_duration(text)
        .ok_or_else(|| "use a number and s, m, h or d, e.g. 30s".into())
}
