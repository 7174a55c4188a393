//! `connect netcheck`: what this machine's network allows, as the hub sees it, and what
//! that means for tunnels. Needs no registration; exits 1 when the hub is unreachable.

use std::process::ExitCode;

use crate::context::Context;
use crate::hub::Hub;
use crate::netcheck::{self, Nat, Report, Verdict};
use crate::output;

pub async fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let hub = Hub::new(&ctx.hub_url, None)?;
    let report = netcheck::check(&hub).await;
    if ctx.json {
        output::json(&report);
    } else {
        print_human(&report);
    }
    Ok(if report.verdict == Verdict::Unreachable {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_human(report: &Report) {
    let yes_no = |value: bool| if value { "yes" } else { "no" };
    println!("==> connect: Network check against {}", report.hub);
    match report.hub_rtt_ms {
        Some(ms) => println!("    Hub round trip: {ms} ms"),
        None => println!("    Hub round trip: no answer"),
    }
    println!(
        "    HTTP proxy:     {}",
        report.proxy.as_deref().unwrap_or("none")
    );
    match report.public_addr {
        Some(addr) => println!("    UDP:            yes (the hub sees {addr})"),
        None => println!("    UDP:            {}", yes_no(report.udp)),
    }
    let nat = match report.nat {
        Nat::None => "none (a public address)",
        Nat::EndpointIndependent => "keeps one port for every destination (easy)",
        Nat::EndpointDependent => "a new port per destination (hard)",
        Nat::Unknown => "unknown",
    };
    println!("    NAT:            {nat}");
    println!("    IPv6:           {}", yes_no(report.ipv6));
    let verdict = match report.verdict {
        Verdict::Direct => "direct",
        Verdict::Relayed => "relayed",
        Verdict::RelayedTcp => "relayed-tcp",
        Verdict::Unreachable => "unreachable",
    };
    println!("==> connect: Verdict: {verdict}. {}", report.advice);
}
