//! The command line, as `../shared/CONTRACT.md` fixes it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "connect",
    version,
    about = "Share your running environment; join a teammate's"
)]
pub struct Cli {
    /// Hub URL.
    #[arg(long, global = true, env = "CONNECT_HUB")]
    pub hub: Option<String>,
    /// Config file; keys and state live beside it.
    #[arg(long, global = true, env = "CONNECT_CONFIG")]
    pub config: Option<PathBuf>,
    /// One JSON object on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register once (keys made locally), then run the agent until Ctrl-C.
    Up {
        #[arg(long)]
        auth_key: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Stop a running agent.
    Down,
    /// Hub, agent, shares and peers; exit 0 when the agent is up.
    Status,
    /// Add a service (HOST:PORT), list or remove them.
    Expose(ExposeArgs),
    /// Create a share code for the exposed services, or list, inspect and revoke shares.
    Share(ShareArgs),
    /// Join a share: the shared machine appears at a static 172.16.x.x address.
    Join(JoinArgs),
    /// What the network allows: UDP, NAT kind, IPv6, proxy, hub round trip; a verdict.
    Netcheck,
    /// A one-time login link to the hub's web dashboard (opens a browser if it can).
    Dashboard {
        /// Print the link only.
        #[arg(long)]
        no_open: bool,
    },
    /// The forced command of a `--ssh-once` key (run by sshd, not by people).
    #[command(hide = true)]
    SshOnce {
        authorized_keys: PathBuf,
        marker: String,
    },
}

#[derive(Debug, Args)]
pub struct ExposeArgs {
    /// HOST:PORT the sharing machine reaches (a VM's IP too).
    #[arg(required_unless_present_any = ["list", "remove"], conflicts_with_all = ["list", "remove"])]
    pub target: Option<String>,
    #[arg(long, required_unless_present_any = ["list", "remove"])]
    pub name: Option<String>,
    /// A UDP service.
    #[arg(long)]
    pub udp: bool,
    #[arg(long, conflicts_with = "remove")]
    pub list: bool,
    #[arg(long, value_name = "NAME")]
    pub remove: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShareArgs {
    #[arg(long)]
    pub name: Option<String>,
    /// 90s, 30m, 4h, 24h (default), 7d.
    #[arg(long)]
    pub expires: Option<String>,
    #[arg(long)]
    pub disable_http: bool,
    #[arg(long, conflicts_with = "disable_http")]
    pub http_port: Option<u16>,
    /// Serve the public URL from this local HTTPS server (any certificate, self-signed too).
    #[arg(long, value_name = "PORT", conflicts_with_all = ["disable_http", "http_port"])]
    pub https_port: Option<u16>,
    /// The public URL's first label (a DNS label), instead of a random one.
    #[arg(long, value_name = "NAME", conflicts_with = "disable_http")]
    pub public_name: Option<String>,
    /// Ask visitors of the public URL for this user and password (basic auth at the hub).
    #[arg(long, value_name = "USER:PASS", conflicts_with = "disable_http")]
    pub http_auth: Option<String>,
    /// Let joiners SSH in (`join --ssh`) with a new key kept encrypted at the hub.
    #[arg(long)]
    pub ssh: bool,
    /// The key works for one SSH session only.
    #[arg(long, requires = "ssh")]
    pub ssh_once: bool,
    /// The account joiners log in as (default: the one running connect).
    #[arg(long, requires = "ssh")]
    pub ssh_user: Option<String>,
    /// Read the key's password from this file instead of asking twice.
    #[arg(long, requires = "ssh")]
    pub ssh_password_file: Option<PathBuf>,
    /// Every TCP/UDP port of HOST, not only exposed services.
    #[arg(long)]
    pub all_ports: bool,
    #[arg(long, requires = "all_ports")]
    pub host: Option<String>,
    /// The code stops working after N distinct joiners (each `connect join` run is one).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_joins: Option<u32>,
    /// Each joiner waits until you approve it (--approve-join, or the dashboard).
    #[arg(long)]
    pub approve: bool,
    /// Let a waiting joiner of an --approve share in (JOINER: its name as shown).
    #[arg(long, num_args = 2, value_names = ["CODE", "JOINER"], conflicts_with_all = ["list", "info", "revoke", "deny_join"])]
    pub approve_join: Option<Vec<String>>,
    /// Refuse a waiting joiner of an --approve share.
    #[arg(long, num_args = 2, value_names = ["CODE", "JOINER"], conflicts_with_all = ["list", "info", "revoke"])]
    pub deny_join: Option<Vec<String>>,
    #[arg(long, conflicts_with_all = ["info", "revoke"])]
    pub list: bool,
    #[arg(long, value_name = "CODE", conflicts_with = "revoke")]
    pub info: Option<String>,
    #[arg(long, value_name = "CODE")]
    pub revoke: Option<String>,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    pub code: String,
    /// Run fully in user space: local ports and a SOCKS5 proxy, no TUN.
    #[arg(long)]
    pub no_tun: bool,
    #[arg(long)]
    pub socks: Option<SocketAddr>,
    /// Open an SSH session on the shared machine (password: asked, or CONNECT_SSH_PASSWORD).
    #[arg(long)]
    pub ssh: bool,
    /// Arguments for ssh after `--`, e.g. a command to run.
    #[arg(last = true, requires = "ssh")]
    pub ssh_args: Vec<String>,
}
