//! `connect expose HOST:PORT --name NAME [--udp]`, `--list`, `--remove NAME`.
//!
//! The services live in this machine's `services.json`, which `share` snapshots; the hub
//! gets a copy to list and never decides what a share serves.

use std::process::ExitCode;

use connect_api::{Protocol, Route, route_problem};
use serde_json::json;

use crate::cli::ExposeArgs;
use crate::context::Context;
use crate::error::Fail;
use crate::output;
use crate::target::parse_target;

pub async fn run(ctx: &Context, args: ExposeArgs) -> anyhow::Result<ExitCode> {
    let mut services = ctx.paths.local_services()?;
    if args.list {
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
    let hub = ctx.agent_hub()?;
    if let Some(name) = args.remove {
        let Some(index) = services.iter().position(|s| s.name == name) else {
            return Err(Fail::Usage(format!("No exposed service named {name}")).into());
        };
        services.remove(index);
        ctx.paths.save_local_services(&services)?;
        hub.forget_service(&name).await?;
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
    if let Some(problem) = route_problem(&route) {
        return Err(Fail::Usage(output::capitalize(problem)).into());
    }
    if services.iter().any(|s| s.name == route.name) {
        return Err(Fail::Usage(format!(
            "A service named {} is already exposed (remove it first: connect expose --remove {})",
            route.name, route.name
        ))
        .into());
    }
    // The hub is told first: a hub that cannot be reached leaves nothing half done.
    hub.copy_service(&route).await?;
    services.push(route.clone());
    ctx.paths.save_local_services(&services)?;
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
