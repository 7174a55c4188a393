//! One LAN: a sharer and a joiner behind the same NAT router, which does not hairpin, so
//! the addresses the relay introduces (the router's public ones) lead nowhere. The joiner
//! offers its LAN address through the hub; the sharer probes it and the path turns direct
//! on the LAN. Root-only, like every namespace test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use connect_e2e::cluster::*;
use connect_e2e::*;

#[test]
#[ignore = "needs root"]
fn two_machines_behind_one_router_without_hairpin_go_direct_on_their_lan() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let mut net = Net::new("l");
    let mut hosts = net.behind_one_nat("office", &["sharer", "joiner"]);
    let joiner = hosts.pop().unwrap();
    let sharer = Sharer::on(&net, hosts.pop().unwrap());
    let (_http, digest) = serve_random_file(&net, &sharer.host.ns, "file.bin", 8 << 20);
    let _hub = start_hub(&net, &net.dir.join("hub"));
    let _agent = start_agent(&net, &sharer);
    let code = share_web(&sharer);
    let (_join, ready) = join(&net, &joiner, "joiner", &code, &[]);
    let url = format!(
        "http://{}:8080/file.bin",
        ready["machine_ip"].as_str().unwrap()
    );
    let target = net.dir.join("download.bin");
    let fetch = || {
        let args = ["-sf", "-m", "10", "-o", target.to_str().unwrap(), &url];
        joiner.ns.output("curl", &args).status.success()
    };
    eventually("a direct path on the LAN", Duration::from_secs(20), || {
        assert!(fetch(), "download through the tunnel failed");
        joiner_paths(&sharer)
            .iter()
            .any(|(path, _)| path == "direct")
    });
    let (_, endpoint) = joiner_paths(&sharer).pop().unwrap();
    assert!(
        endpoint.starts_with(&format!("{}:", joiner.ip)),
        "direct, but not on the LAN: {endpoint}"
    );
    assert!(fetch());
    assert_eq!(sha256_file(&target), digest);
}
