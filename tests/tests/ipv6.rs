//! An IPv6-only underlay: the hub listens on `[::]`, a sharer and a joiner have no IPv4
//! address at all (but loopback's): netcheck sees UDP over IPv6 without NAT, and the join
//! works, goes direct over IPv6 and carries traffic intact. Root-only, like every namespace test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use connect_e2e::cluster::*;
use connect_e2e::*;
use serde_json::Value;

#[test]
#[ignore = "needs root"]
fn an_ipv6_only_network_joins_and_goes_direct_over_ipv6() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let mut net = Net::new("6");
    let sharer_host = net.host_v6("sharer");
    let joiner_host = net.host_v6("joiner");
    let hub = format!("http://[fd00:77:1::1]:{HUB_PORT}");
    let data = net.dir.join("hub");
    let _hub = net.spawn(
        &net.hub,
        "hub",
        &binary("connect-coordinator"),
        &[
            "--listen",
            &format!("[::]:{HUB_PORT}"),
            "--insecure",
            "--open-registration",
            "--data-dir",
            data.to_str().unwrap(),
            "--public-url",
            &hub,
        ],
        &[],
        false,
    );
    let health = format!("{hub}/healthz");
    eventually("hub healthy over IPv6", Duration::from_secs(20), || {
        let args = ["-gsf", "-m", "1", health.as_str()];
        net.hub.output("curl", &args).status.success()
    });
    let machine = |host: Host, name: &str| Machine {
        host,
        config: net.dir.join(format!("{name}/config.toml")),
        hub: hub.clone(),
        env: Vec::new(),
    };
    let sharer = machine(sharer_host, "sharer");
    let report: Value = serde_json::from_str(&sharer.connect_ok(&["--json", "netcheck"])).unwrap();
    assert_eq!(report["udp"], true, "{report}");
    assert_eq!(report["ipv6"], true, "{report}");
    assert_eq!(report["nat"], "none", "{report}");
    assert_eq!(report["verdict"], "direct", "{report}");
    let joiner = machine(joiner_host, "joiner");
    let (_http, digest) = serve_random_file(&net, &sharer.host.ns, "file.bin", 8 << 20);
    let _agent = sharer.spawn(&net, "agent", &["up", "--name", "alice"], false);
    eventually("agent up over IPv6", Duration::from_secs(20), || {
        sharer.connect(&["status"]).status.success()
    });
    sharer.connect_ok(&["expose", "localhost:8080", "--name", "web"]);
    let created: Value = serde_json::from_str(&sharer.connect_ok(&["--json", "share"])).unwrap();
    let code = created["code"].as_str().unwrap();
    let mut join = joiner.spawn(&net, "joiner", &["--json", "join", code], true);
    let ready = join.json_line(Duration::from_secs(30));
    let url = format!(
        "http://{}:8080/file.bin",
        ready["machine_ip"].as_str().unwrap()
    );
    let target = net.dir.join("download.bin");
    let fetch = || {
        let args = ["-sf", "-m", "10", "-o", target.to_str().unwrap(), &url];
        joiner.host.ns.output("curl", &args).status.success()
    };
    let joiner_path = || {
        let status: Value =
            serde_json::from_str(&sharer.connect_ok(&["--json", "status"])).unwrap();
        status["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["agent"] != "hub (public URLs)")
            .map(|p| (p["path"].to_string(), p["endpoint"].to_string()))
            .next()
    };
    eventually("a direct path over IPv6", Duration::from_secs(20), || {
        assert!(fetch(), "download through the tunnel failed");
        joiner_path().is_some_and(|(path, _)| path == "\"direct\"")
    });
    let (_, endpoint) = joiner_path().unwrap();
    assert!(
        endpoint.contains(&joiner.host.ip),
        "not the joiner's IPv6 address: {endpoint}"
    );
    assert!(fetch());
    assert_eq!(sha256_file(&target), digest);
}
