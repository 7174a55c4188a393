//! `connect status`: what the running agent reports; exit 0 only when it is up.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::context::Context;
use crate::error::Fail;
use crate::output;
use crate::runtime::control;

pub async fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let status = match control::ask(&ctx.paths.socket(), "status").await {
        Ok(status) => status,
        Err(err) if matches!(err.downcast_ref::<Fail>(), Some(Fail::NotRunning)) => json!({
            "agent": ctx.config.name,
            "hub": ctx.hub_url,
            "up": false,
            "peers": [],
        }),
        Err(err) => return Err(err),
    };
    let up = status["up"].as_bool().unwrap_or(false);
    if ctx.json {
        output::json(&status);
    } else {
        print_human(&status);
    }
    Ok(if up {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_human(status: &Value) {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    println!("Hub: {}", text(&status["hub"]));
    println!(
        "Agent: {} ({})",
        text(&status["agent"]),
        if status["up"].as_bool().unwrap_or(false) {
            "up"
        } else {
            "not running"
        }
    );
    if let Some(shares) = status["shares"].as_array() {
        println!("Shares: {}", shares.len());
    }
    let peers = status["peers"].as_array().cloned().unwrap_or_default();
    if peers.is_empty() {
        println!("Peers: none");
        return;
    }
    println!("Peers:");
    for peer in peers {
        println!(
            "  • {} ({} via {}) rx {} B, tx {} B, last handshake {}",
            text(&peer["agent"]),
            text(&peer["path"]),
            text(&peer["endpoint"]),
            peer["rx_bytes"],
            peer["tx_bytes"],
            text(&peer["last_handshake"]),
        );
    }
}
