//! `connect expose HOST:PORT --name NAME [--udp]`, `--list`, `--remove NAME`.

use std::process::ExitCode;

use connect_api::{Protocol, Route};
use serde_json::json;

use super::Context;
use crate::cli::ExposeArgs;
use crate::error::Fail;
use crate::output;

/// Splits `HOST:PORT` (IPv6 hosts in brackets), refusing anything else.
pub fn parse_target(target: &str) -> Result<(String, u16), Fail> {
    let bad = || {
        Fail::Usage(format!(
            "Invalid target {target:?}: use HOST:PORT, e.g. localhost:5432"
        ))
    };
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

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

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn targets_are_host_and_port() {
        assert_eq!(
            parse_target("localhost:5432").ok(),
            Some(("localhost".into(), 5432))
        );
        assert_eq!(parse_target("[::1]:80").ok(), Some(("::1".into(), 80)));
        for bad in ["localhost", ":80", "host:0", "host:99999", "a b:1"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
