//! `connect expose HOST:PORT --name NAME [--udp]`, `--list`, `--remove NAME`.

use std::process::ExitCode;

use connect_api::{Protocol, Route};
use serde_json::json;

use crate::cli::ExposeArgs;
use crate::context::Context;
use crate::output;
use crate::target::parse_target;

pub async fn run(ctx: &Context, args: ExposeArgs) -> anyhow::Result<ExitCode> {
    let hub = ctx.agent_hub()?;
    if args.list {
        let services = hub.services().await?;
        if ctx.json {
            output::json(&json!({ "services": services }));
        } else if services.is_empty() {
            println!(
                "No services exposed. Add one with: connect expose localhost:5432 --name postgres"
            );
        } else {
            println!("Exposed services:");
            for s in services {
                println!("  • {} → {} ({}/{})", s.name, s.target, s.protocol, s.port);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(name) = args.remove {
        hub.remove_service(&name).await?;
        if ctx.json {
            output::json(&json!({ "removed": name }));
        } else {
            println!("[ok] Service {name} removed.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let target = args.target.unwrap_or_default();
    let (host, port) = parse_target(&target)?;
    let route = Route {
        name: args.name.unwrap_or_default(),
        target: if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        },
        port,
        protocol: if args.udp {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
    };
    let route = hub.add_service(&route).await?;
    if ctx.json {
        output::json(&route);
    } else {
        println!(
            "[ok] Exposed {} → {} ({}/{})",
            route.name, route.target, route.protocol, route.port
        );
    }
    Ok(ExitCode::SUCCESS)
}
