//! `connect netcheck` from four networks, against a real hub: a public address, a home
//! router (masquerade that keeps ports), a port-randomising NAT and a firewall that drops
//! UDP. Each gets the right `udp`, `nat` and verdict. Root-only, like every namespace test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use connect_e2e::cluster::*;
use connect_e2e::*;
use serde_json::Value;

fn netcheck(net: &Net, host: &Host) -> Value {
    let config = net.dir.join("netcheck/config.toml");
    let out = connect_ok(&host.ns, config.to_str().unwrap(), &["--json", "netcheck"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_keys(
        &report,
        &[
            "hub",
            "hub_rtt_ms",
            "udp",
            "public_addr",
            "nat",
            "ipv6",
            "proxy",
            "verdict",
            "advice",
        ],
    );
    report
}

#[test]
#[ignore = "needs root"]
fn netcheck_tells_each_network_apart() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let mut net = Net::new("n");
    let open = net.host("open");
    let home = net.behind_nat("home");
    let random = net.behind_nat("random");
    let blocked = net.behind_nat("blocked");
    net.randomise_nat_ports("random");
    net.block_udp("blocked");
    let _hub = start_hub(&net, &net.dir.join("hub"));

    let report = netcheck(&net, &open);
    assert_eq!(report["udp"], true, "{report}");
    assert_eq!(report["nat"], "none", "{report}");
    assert_eq!(report["verdict"], "direct", "{report}");
    assert_eq!(report["proxy"], Value::Null, "{report}");
    assert!(report["hub_rtt_ms"].is_u64(), "{report}");

    let report = netcheck(&net, &home);
    assert_eq!(report["udp"], true, "{report}");
    assert_eq!(report["nat"], "endpoint-independent", "{report}");
    assert_eq!(report["verdict"], "direct", "{report}");
    // As the hub sees it: the home router's own address on its uplink.
    let public = report["public_addr"].as_str().unwrap();
    assert!(public.starts_with("10.77.2.2:"), "{report}");

    let report = netcheck(&net, &random);
    assert_eq!(report["udp"], true, "{report}");
    assert_eq!(report["nat"], "endpoint-dependent", "{report}");
    assert_eq!(report["verdict"], "relayed", "{report}");

    let report = netcheck(&net, &blocked);
    assert_eq!(report["udp"], false, "{report}");
    assert_eq!(report["public_addr"], Value::Null, "{report}");
    assert_eq!(report["verdict"], "relayed-tcp", "{report}");

    // A hub nobody reaches: the verdict says so, and the exit code is 1.
    let config = net.dir.join("netcheck/config.toml");
    let out = open.ns.output(
        binary("connect"),
        &[
            "--hub",
            "http://10.77.1.1:1",
            "--config",
            config.to_str().unwrap(),
            "--json",
            "netcheck",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "unreachable", "{report}");
}
