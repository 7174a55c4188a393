//! The only way out is an HTTP proxy: a sharer and a joiner on LANs whose routers forward
//! nothing, each with Debian's tinyproxy on the router, reach an HTTPS hub through it
//! (CONNECT, as curl and git do with `HTTPS_PROXY`). `up`, `share` and `join` work, and
//! the tunnel rides the hub's TCP port (`relayed-tcp`). Root-only, like every namespace
//! test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use connect_e2e::cluster::{HUB_PORT, Machine};
use connect_e2e::*;
use serde_json::Value;

fn hub_url() -> String {
    format!("https://{}:{HUB_PORT}", Net::hub_ip(1))
}

/// tinyproxy on `role`'s router, listening on its LAN address, allowed to CONNECT to the
/// hub's port only; the router forwards nothing else.
fn proxy_only(net: &Net, role: &str, lan: &str, ca: &str) -> (Proc, Vec<(String, String)>) {
    net.block_all(role);
    let listen = format!("{lan}.1");
    let conf = net.dir.join(format!("{role}-tinyproxy.conf"));
    std::fs::write(
        &conf,
        format!(
            "Port 8888\nListen {listen}\nAllow {lan}.0/24\nConnectPort {HUB_PORT}\nTimeout 600\nMaxClients 50\n"
        ),
    )
    .unwrap();
    let proxy = net.spawn(
        net.router(role),
        &format!("{role}-proxy"),
        std::path::Path::new("/usr/bin/tinyproxy"),
        &["-d", "-c", conf.to_str().unwrap()],
        &[],
        false,
    );
    let at = format!("{listen}:8888");
    eventually("tinyproxy listening", Duration::from_secs(10), || {
        net.router(role)
            .output("sh", &["-c", &format!("ss -ltn | grep -q '{at}'")])
            .status
            .success()
    });
    let env = vec![
        ("HTTPS_PROXY".to_owned(), format!("http://{at}")),
        ("SSL_CERT_FILE".to_owned(), ca.to_owned()),
    ];
    (proxy, env)
}

#[test]
#[ignore = "needs root"]
fn up_share_and_join_work_through_an_http_proxy_alone() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let mut net = Net::new("p");
    let sharer_host = net.behind_nat("sharer");
    let joiner_host = net.behind_nat("joiner");
    certificates(&net.dir, &format!("IP:{}", Net::hub_ip(1)));
    let at = |name: &str| net.dir.join(name).to_str().unwrap().to_owned();
    let ca = at("ca.pem");
    // behind_nat numbers the router's uplink N and the LAN behind it 192.168.N.
    let (_sharer_proxy, sharer_env) = proxy_only(&net, "sharer", "192.168.1", &ca);
    let (_joiner_proxy, joiner_env) = proxy_only(&net, "joiner", "192.168.2", &ca);
    let sharer = Machine {
        host: sharer_host,
        config: net.dir.join("sharer/config.toml"),
        hub: hub_url(),
        env: sharer_env,
    };
    let joiner = Machine {
        host: joiner_host,
        config: net.dir.join("joiner/config.toml"),
        hub: hub_url(),
        env: joiner_env,
    };
    // Nothing but the proxy: a direct request to the hub gets nowhere.
    let direct = sharer.host.ns.output(
        "curl",
        &[
            "-s",
            "-m",
            "3",
            "--cacert",
            &ca,
            &format!("{}/healthz", hub_url()),
        ],
    );
    assert!(
        !direct.status.success(),
        "the sharer's LAN reaches the hub without the proxy"
    );

    let hub_data = at("hub");
    let (cert, key) = (at("hub.pem"), at("hub.key"));
    let _hub = net.spawn(
        &net.hub,
        "hub",
        &binary("connect-coordinator"),
        &[
            "--listen",
            &format!("0.0.0.0:{HUB_PORT}"),
            "--open-registration",
            "--data-dir",
            &hub_data,
            "--public-url",
            &hub_url(),
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        &[],
        false,
    );
    eventually("hub healthy", Duration::from_secs(20), || {
        net.hub
            .output(
                "curl",
                &[
                    "-sf",
                    "-m",
                    "1",
                    "--cacert",
                    &ca,
                    &format!("{}/healthz", hub_url()),
                ],
            )
            .status
            .success()
    });
    let (_http, digest) = cluster::serve_random_file(&net, &sharer.host.ns, "file.bin", 20 << 20);
    let _agent = sharer.spawn(&net, "agent", &["up", "--name", "alice"], false);
    eventually(
        "agent up through the proxy",
        Duration::from_secs(20),
        || sharer.connect(&["status"]).status.success(),
    );
    sharer.connect_ok(&["expose", "localhost:8080", "--name", "web"]);
    let created: Value = serde_json::from_str(&sharer.connect_ok(&["--json", "share"])).unwrap();
    let code = created["code"].as_str().unwrap();

    let mut join = joiner.spawn(&net, "joiner", &["--json", "join", code], true);
    let ready = join.json_line(Duration::from_secs(30));
    let machine = ready["machine_ip"].as_str().unwrap();
    let target = net.dir.join("download.bin");
    let fetched = joiner.host.ns.output(
        "curl",
        &[
            "-sf",
            "-m",
            "60",
            "-o",
            target.to_str().unwrap(),
            &format!("http://{machine}:8080/file.bin"),
        ],
    );
    assert!(
        fetched.status.success(),
        "download through the tunnel failed"
    );
    assert_eq!(sha256_file(&target), digest);

    let status: Value = serde_json::from_str(&sharer.connect_ok(&["--json", "status"])).unwrap();
    let joiners: Vec<&Value> = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["agent"] != "hub (public URLs)")
        .collect();
    assert_eq!(joiners.len(), 1, "{status}");
    assert_eq!(joiners[0]["path"], "relayed-tcp", "{status}");
}
