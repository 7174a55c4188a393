//! Hole punching that does not depend on luck: a sharer and a joiner, each behind a Linux
//! masquerade router, reach a direct path within 5 s of traffic, 20 times out of 20 — with
//! home routers' input firewalls, and on bare masquerade boxes without one (where a
//! peer's first probe would otherwise leave conntrack state that moves our answer to a
//! new port). Root-only, like every namespace test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use connect_e2e::cluster::*;
use connect_e2e::*;

const RUNS: usize = 20;
const WITHIN: Duration = Duration::from_secs(5);

/// One run: how long after the join's first traffic the sharer saw a direct path, if it
/// did within twice the limit.
fn time_to_direct(tag: &str, input_firewall: bool) -> Option<Duration> {
    let mut net = Net::new(tag);
    let sharer_host = net.behind_nat("sharer");
    let sharer = Sharer::on(&net, sharer_host);
    let joiner = net.behind_nat("joiner");
    if !input_firewall {
        net.open_router_input("sharer");
        net.open_router_input("joiner");
    }
    let (_http, _) = serve_random_file(&net, &sharer.host.ns, "page", 1024);
    let _hub = start_hub(&net, &net.dir.join("hub"));
    let _agent = start_agent(&net, &sharer);
    let code = share_web(&sharer);
    let (_join, ready) = join(&net, &joiner, "joiner", &code, &[]);
    let url = format!("http://{}:8080/page", ready["machine_ip"].as_str().unwrap());
    let start = Instant::now();
    while start.elapsed() < 2 * WITHIN {
        let fetched = joiner
            .ns
            .output("curl", &["-sf", "-m", "2", "-o", "/dev/null", &url]);
        assert!(fetched.status.success(), "no traffic through the tunnel");
        if joiner_paths(&sharer)
            .iter()
            .any(|(path, _)| path == "direct")
        {
            return Some(start.elapsed());
        }
    }
    None
}

fn repeat(kind: &str, input_firewall: bool) {
    let times: Vec<Option<Duration>> = (0..RUNS)
        .map(|run| time_to_direct(&format!("{kind}{run}"), input_firewall))
        .collect();
    let late = times
        .iter()
        .filter(|t| t.is_none_or(|t| t > WITHIN))
        .count();
    assert_eq!(
        late, 0,
        "{late} of {RUNS} runs not direct within {WITHIN:?}: {times:?}"
    );
}

#[test]
#[ignore = "needs root"]
fn behind_home_routers_the_path_goes_direct_every_time() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    repeat("h", true);
}

#[test]
#[ignore = "needs root"]
fn behind_bare_masquerade_routers_the_path_goes_direct_every_time() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    repeat("m", false);
}
