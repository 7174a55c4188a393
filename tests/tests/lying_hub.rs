//! A lying hub: `lying-hub` (tests/src/bin) sits in front of the real hub's API (and, for
//! relay binds, its relay) and rewrites what passes. Agents talk only to it. For each lie
//! the agents refuse it or are not affected: routes it widens reach nothing, the public
//! URL it points elsewhere serves nothing else, its SSH user runs nothing, the expiry it
//! extends is cut by the sharer's own deadline with the hub killed, its swapped keys are
//! refused by both sides, the revoke events it drops do not keep joiners, and the relay
//! binds it replays move no slot. Root-only, like every namespace test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use connect_e2e::cluster::{self, HUB_PORT, Machine};
use connect_e2e::*;
use serde_json::Value;

const LIAR_PORT: u16 = 7081;
/// A service on the sharing machine that no share exposes.
const SECRET_PORT: u16 = 6380;

struct World {
    net: Net,
    hub: Proc,
    _liar: Proc,
    sharer: Machine,
    joiner: Machine,
    _services: Vec<Proc>,
}

fn liar_url() -> String {
    format!("http://{}:{LIAR_PORT}", Net::hub_ip(1))
}

/// A hub, the liar in front of it telling `lies`, a sharing machine with a web server on
/// 8080 (exposed) and a secret one on [`SECRET_PORT`] (not), its agent up, and a joiner.
fn world(tag: &str, lies: &[&str], env: &[(&str, &str)]) -> World {
    let mut net = Net::new(tag);
    // Each behind a NAT router of its own, as most machines are; direct paths work.
    let sharer_host = net.behind_nat("sharer");
    let joiner_host = net.behind_nat("joiner");
    let hub = cluster::start_hub(&net, &net.dir.join("hub"));
    let mut args = vec![
        "--listen".to_owned(),
        format!("0.0.0.0:{LIAR_PORT}"),
        "--upstream".to_owned(),
        format!("http://127.0.0.1:{HUB_PORT}"),
        "--relay".to_owned(),
        format!("{}:{HUB_PORT}", Net::hub_ip(1)),
        "--public".to_owned(),
        format!("{}:{LIAR_PORT}", Net::hub_ip(1)),
        "--secret-port".to_owned(),
        SECRET_PORT.to_string(),
        format!(
            "--ssh-user=-oProxyCommand=touch {}",
            net.dir.join("pwned").display()
        ),
        format!("--record={}", net.dir.join("requests.log").display()),
    ];
    for lie in lies {
        args.extend(["--lie".to_owned(), (*lie).to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut liar = net.spawn(&net.hub, "liar", &binary("lying-hub"), &args, &[], true);
    let ready = liar.json_line(Duration::from_secs(10));
    assert_eq!(ready["ready"], true, "lying hub: {ready}");
    let www = serve(&net, &sharer_host.ns, "web", 8080, "the shared page");
    let secret = serve(&net, &sharer_host.ns, "secret", SECRET_PORT, "the secret");
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let sharer = Machine {
        host: sharer_host,
        config: net.dir.join("sharer/config.toml"),
        hub: liar_url(),
        env: env.clone(),
    };
    let joiner = Machine {
        host: joiner_host,
        config: net.dir.join("joiner/config.toml"),
        hub: liar_url(),
        env,
    };
    let agent = sharer.spawn(&net, "agent", &["up", "--name", "alice"], false);
    eventually("agent up", Duration::from_secs(20), || {
        sharer.connect(&["status"]).status.success()
    });
    sharer.connect_ok(&["expose", "localhost:8080", "--name", "web"]);
    World {
        net,
        hub,
        _liar: liar,
        sharer,
        joiner,
        _services: vec![www, secret, agent],
    }
}

/// python's http.server on the namespace's 127.0.0.1:PORT, serving one page.
fn serve(net: &Net, ns: &Netns, name: &str, port: u16, text: &str) -> Proc {
    let dir = net.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), text).unwrap();
    let server = net.spawn(
        ns,
        name,
        Path::new("python3"),
        &[
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
            dir.to_str().unwrap(),
        ],
        &[],
        false,
    );
    let url = format!("http://127.0.0.1:{port}/");
    eventually("http server up", Duration::from_secs(20), || {
        ns.output("curl", &["-sf", "-o", "/dev/null", &url])
            .status
            .success()
    });
    server
}

fn share(world: &World, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "share"];
    args.extend_from_slice(extra);
    serde_json::from_str(&world.sharer.connect_ok(&args)).unwrap()
}

/// The body at `url` from the joiner, if it answers within 2 s.
fn fetch(world: &World, url: &str) -> Option<String> {
    let out = world
        .joiner
        .host
        .ns
        .output("curl", &["-sf", "-m", "2", url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A TUN joiner of `code` (`WHAT.log`): the process and its ready line.
fn join(world: &World, what: &str, code: &str, extra: &[&str]) -> (Proc, Value) {
    let mut args = vec!["--json", "join", code];
    args.extend_from_slice(extra);
    let mut proc = world.joiner.spawn(&world.net, what, &args, true);
    let ready = proc.json_line(Duration::from_secs(30));
    (proc, ready)
}

fn page(ready: &Value) -> String {
    format!("http://{}:8080/", ready["machine_ip"].as_str().unwrap())
}

/// Waits until the joiner can no longer fetch `url`; how long that took.
fn cut_off(world: &World, url: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    eventually("joiner cut off", limit, || fetch(world, url).is_none());
    started.elapsed()
}

#[test]
#[ignore = "needs root"]
fn lying_hub_widened_routes_and_a_swapped_http_target_reach_nothing_more() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let world = world("lr", &["widen-routes", "http-target"], &[]);
    let created = share(&world, &[]);
    let code = created["code"].as_str().unwrap();

    // The joiner is told of a `secret` route and of every port; the sharer serves neither.
    let (_userspace, ready) = join(&world, "join", code, &["--no-tun"]);
    let secret = cluster::address_of(&ready, "secret");
    assert!(fetch(&world, &format!("http://{secret}/")).is_none());
    let web = cluster::address_of(&ready, "web");
    assert_eq!(
        fetch(&world, &format!("http://{web}/")).as_deref(),
        Some("the shared page")
    );

    // The hub was asked to serve the public URL from the secret port; the sharer lets its
    // peer reach the port it chose (8080) only, so the URL shows an error, never the secret.
    let url = created["url"].as_str().unwrap();
    let host = url.trim_start_matches("http://").split(':').next().unwrap();
    let hub_at = format!("http://{}:{HUB_PORT}/", Net::hub_ip(1));
    let out = world.joiner.host.ns.output(
        "curl",
        &["-s", "-m", "10", "-H", &format!("Host: {host}"), &hub_at],
    );
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        !body.contains("the secret"),
        "the public URL served the secret"
    );
}

#[test]
#[ignore = "needs root"]
fn lying_hub_ssh_user_runs_nothing_on_the_joiner() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let world = world("ls", &["ssh-user"], &[]);
    let created = share(&world, &[]);
    let code = created["code"].as_str().unwrap();
    for args in [vec!["join", code, "--no-tun"], vec!["join", "--ssh", code]] {
        let out = world.joiner.connect(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("[x] The hub sent an SSH user"),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        !world.net.dir.join("pwned").exists(),
        "the hub ran a command"
    );
}

#[test]
#[ignore = "needs root"]
fn lying_hub_extended_expiry_is_cut_by_the_sharers_own_deadline_with_the_hub_killed() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let mut world = world("le", &["extend-expiry", "drop-revokes"], &[]);
    let created = share(&world, &["--expires", "30s"]);
    let code = created["code"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let expires = created["expires_at"].as_str().unwrap();
    assert!(
        !expires.starts_with("2099"),
        "the sharer took the hub's expiry: {expires}"
    );
    let (_joiner, ready) = join(&world, "join", code, &[]);
    let url = page(&ready);
    assert_eq!(fetch(&world, &url).as_deref(), Some("the shared page"));
    // Direct between the two, so the tunnel outlives the hub's relay.
    eventually("a direct path", Duration::from_secs(10), || {
        let status: Value =
            serde_json::from_str(&world.sharer.connect_ok(&["--json", "status"])).unwrap();
        status["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["agent"] != "hub (public URLs)" && p["path"] == "direct")
    });

    world.hub.signal("KILL");
    world.hub.wait_exit(Duration::from_secs(5));
    // Without the hub the share keeps working until its deadline…
    assert!(
        Instant::now() + Duration::from_secs(3) < deadline,
        "setup too slow"
    );
    assert_eq!(fetch(&world, &url).as_deref(), Some("the shared page"));
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    // …and stops within 5 s of it, though the hub was told it has 30 days.
    let took = cut_off(&world, &url, Duration::from_secs(5));
    eprintln!("cut off {took:?} after the deadline");
}

#[test]
#[ignore = "needs root"]
fn lying_hub_dropped_revoke_events_and_a_dead_hub_do_not_keep_joiners() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let mut world = world("ld", &["drop-revokes"], &[]);
    // With the hub up but revoke events dropped.
    let first = share(&world, &[]);
    let (first_joiner, ready) = join(&world, "join-1", first["code"].as_str().unwrap(), &[]);
    let url = page(&ready);
    assert!(fetch(&world, &url).is_some());
    world
        .sharer
        .connect_ok(&["share", "--revoke", first["code"].as_str().unwrap()]);
    cut_off(&world, &url, Duration::from_secs(5));
    // It never heard the share end (nor would it from this hub); its addresses go with it.
    drop(first_joiner);

    // With the hub killed: the revoke still ends the share here, and fails as the contract
    // says (exit 1, one `[x]` line) with a hint that it did.
    let second = share(&world, &[]);
    let code = second["code"].as_str().unwrap();
    let (_second_joiner, ready) = join(&world, "join-2", code, &[]);
    let url = page(&ready);
    assert!(fetch(&world, &url).is_some());
    world.hub.signal("KILL");
    world.hub.wait_exit(Duration::from_secs(5));
    let out = world.sharer.connect(&["share", "--revoke", code]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("[x] "), "{stderr}");
    assert!(stderr.contains("ended on this machine"), "{stderr}");
    cut_off(&world, &url, Duration::from_secs(5));
}

#[test]
#[ignore = "needs root"]
fn lying_hub_swapped_keys_are_refused_by_both_sides() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let world = world("lk", &["swap-keys"], &[]);
    let created = share(&world, &[]);
    let code = created["code"].as_str().unwrap();
    let out = world.joiner.connect(&["join", code, "--no-tun"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("[x] The hub sent a key that the share code does not vouch for"),
        "{stderr}"
    );
    let log = world.net.dir.join("agent.log");
    eventually(
        "the sharer refuses the joiner",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Refused a joiner")
        },
    );
    // Everything the agents sent the hub, sharing and joining: never the code.
    let sent = std::fs::read_to_string(world.net.dir.join("requests.log"))
        .unwrap()
        .to_ascii_lowercase();
    assert!(sent.contains("/v1/join"), "nothing recorded: {sent}");
    for form in [code.to_owned(), code.replace('-', "")] {
        assert!(!sent.contains(&form), "the hub was sent the code {form}");
    }
}

#[test]
#[ignore = "needs root"]
fn lying_hub_replayed_relay_binds_move_no_slot() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    // Relayed only: every byte goes through the relay the liar replays binds to.
    let world = world("lb", &["replay-binds"], &[("CONNECT_RELAY_ONLY", "1")]);
    let created = share(&world, &[]);
    let (_joiner, ready) = join(&world, "join", created["code"].as_str().unwrap(), &[]);
    let url = page(&ready);
    // Over two bind intervals (15 s each), every bind replayed from the liar's address.
    let until = Instant::now() + Duration::from_secs(32);
    let mut fetched = 0;
    while Instant::now() < until {
        assert_eq!(
            fetch(&world, &url).as_deref(),
            Some("the shared page"),
            "a replayed bind took the slot"
        );
        fetched += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(fetched >= 10);
    let status: Value =
        serde_json::from_str(&world.sharer.connect_ok(&["--json", "status"])).unwrap();
    let peers = status["peers"].as_array().unwrap();
    assert!(
        !peers.is_empty() && peers.iter().all(|p| p["path"] == "relayed"),
        "{status}"
    );
}
