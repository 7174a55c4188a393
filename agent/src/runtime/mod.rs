//! The runtime layer: the running agent (`connect up`) and what commands share with it.
//!
//! `run` holds the hub's event stream (`stream`), turns joins into WireGuard peers limited
//! to each share's own snapshot of routes (`agent`, `policy`), keeps this machine's shares
//! in memory (`shares`), and answers `status`, `reload` and `down` on the control socket
//! (`control`). It stops on Ctrl-C, SIGTERM or `connect down`.
//!
//! Layers point down only: `commands` → `runtime` → hub client, config, netstack.

mod agent;
pub mod control;
mod policy;
pub(crate) mod shares;
mod stream;

use std::process::ExitCode;

use anyhow::Context as _;
use connect_netstack::io::Netstack;
use connect_netstack::{NodeConfig, RelayConfig, relay};
use serde_json::json;
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::config::LocalShare;
use crate::context::Context;
use crate::hub::{self, Hub};
use crate::output;
use agent::Agent;
use control::Request;
use shares::ShareBook;
use stream::Input;

/// How often a sharing agent with joiners tells the hub about them (the dashboard's live
/// peers); well inside the hub's freshness window.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// What the running agent was started with.
struct Started {
    hub: Hub,
    name: String,
    relay: RelayConfig,
    control: UnixListener,
}

pub async fn run(ctx: Context) -> anyhow::Result<ExitCode> {
    let hub = ctx.agent_hub()?;
    let token = ctx.paths.token_value().unwrap_or_default();
    let keys = ctx.paths.keys()?;
    let me = hub.me().await?;
    let book = ShareBook::load(&ctx.paths)?;
    let socket = connect_netstack::io::tunnel_socket()
        .await
        .context("cannot open a UDP socket")?;
    let mut config = NodeConfig::new(keys.secret.clone());
    config.addresses = book.live_addresses();
    let net = Netstack::spawn(config, socket).context("cannot start the tunnel")?;
    let relay = RelayConfig {
        addr: hub::resolve_relay(&me.relay).await?,
        slot: me.relay_id,
        key: relay::relay_key(&token),
        direct: crate::config::direct_paths(),
        stream_only: false,
    };
    net.set_relay_dialer(hub.relay_dialer()).await?;
    net.set_relay(relay.clone()).await?;
    let control = control::listen(&ctx.paths.socket()).await?;
    let started = Started {
        hub,
        name: me.name,
        relay,
        control,
    };
    if ctx.json {
        output::json(&json!({"agent": started.name, "hub": started.hub.url(), "up": true}));
    } else {
        println!(
            "==> connect: Agent {} is up (hub {}).",
            started.name,
            started.hub.url()
        );
        println!("==> connect: Press Ctrl-C to stop.");
    }
    let mut agent = Agent::new(&net, book, me.hub_peer, started.hub.clone(), !ctx.json);
    // Shares whose deadline passed while the agent was stopped end now.
    agent.expire_due().await;
    sync_ssh_keys(agent.shares(), true);
    let served = serve(&mut agent, &net, &started).await;
    // Nobody can SSH in through a stopped agent; the keys go until it runs again.
    sync_ssh_keys(agent.shares(), false);
    let _ = std::fs::remove_file(ctx.paths.socket());
    net.shutdown().await;
    served?;
    if !ctx.json {
        println!("==> connect: Agent stopped.");
    }
    Ok(ExitCode::SUCCESS)
}

/// The agent's loop, until a signal or `connect down`.
async fn serve(agent: &mut Agent<'_>, net: &Netstack, started: &Started) -> anyhow::Result<()> {
    let (inputs, mut events) = mpsc::channel(256);
    let stream_task = tokio::spawn(stream::hold(started.hub.clone(), inputs));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut report_tick = tokio::time::interval(REPORT_EVERY);
    report_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = agent.next_deadline();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            () = until(deadline) => agent.expire_due().await,
            _ = report_tick.tick() => {
                if agent.hub_connected && let Some(report) = agent.peer_report(started.relay.addr).await {
                    let hub = started.hub.clone();
                    // Off the loop: a slow hub must not hold up joins.
                    tokio::spawn(async move {
                        if let Err(err) = hub.report_peers(&report).await {
                            tracing::debug!("{err:#}; the dashboard's live peers wait for the next report");
                        }
                    });
                }
            }
            input = events.recv() => match input {
                Some(Input::Event(event)) => agent.apply(event).await,
                Some(Input::Connected(up)) => {
                    agent.hub_connected = up;
                    // A restarted hub forgot our relay binding: bind again now rather
                    // than at the next 15 s refresh.
                    if up {
                        let _ = net.set_relay(started.relay.clone()).await;
                        agent.tell_hub(&started.hub).await;
                    }
                }
                None => break,
            },
            accepted = started.control.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let Some((request, reply)) = control::read(stream).await else { continue };
                let stop = request == Request::Down;
                let reloaded = request == Request::Reload;
                reply.send(&answer(agent, started, request).await).await;
                if stop {
                    break;
                }
                // After the answer: `share --revoke` need not wait on a slow hub.
                if reloaded {
                    agent.tell_hub(&started.hub).await;
                }
            }
        }
    }
    stream_task.abort();
    Ok(())
}

async fn answer(agent: &mut Agent<'_>, started: &Started, request: Request) -> serde_json::Value {
    match request {
        Request::Status => {
            agent
                .status(&started.name, &started.hub, started.relay.addr)
                .await
        }
        // `connect share` wrote a new share: serve its address and URL now.
        Request::Reload => {
            agent.reload_shares().await;
            json!({"reloaded": true})
        }
        Request::Down => json!({"up": false}),
        Request::Decide {
            lookup,
            approved,
            joiner,
        } => json!({"decided": agent.decide(&lookup, &joiner, approved).await}),
        Request::Unknown(other) => json!({"error": format!("unknown request {other:?}")}),
    }
}

/// Resolves at `deadline` (wall-clock time), never without one.
async fn until(deadline: Option<time::OffsetDateTime>) {
    match deadline {
        Some(at) => {
            let wait = at - time::OffsetDateTime::now_utc();
            tokio::time::sleep(wait.try_into().unwrap_or_default()).await;
        }
        None => std::future::pending().await,
    }
}

/// Keys of live `--ssh` shares in `authorized_keys` while the agent runs (`running`),
/// none otherwise. A `--ssh-once` key is never put back: it may have been used.
fn sync_ssh_keys(shares: &[LocalShare], running: bool) {
    let now = time::OffsetDateTime::now_utc();
    for share in shares {
        let Some(ssh) = &share.ssh else { continue };
        if running && share.is_live(now) {
            if !ssh.once
                && let Err(err) = crate::ssh::install(share)
            {
                tracing::warn!(%err, share = %share.name, "cannot put the share's SSH key back");
            }
        } else {
            crate::ssh::uninstall(share);
        }
    }
}
