//! Direct paths: a sharer and a joiner, each behind a NAT router of its own, start through
//! the hub's relay, punch through both NATs after the relay tells each where the other is,
//! and keep working with the hub gone. Root-only, like every namespace test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use connect_e2e::cluster::*;
use connect_e2e::*;
use serde_json::Value;

#[test]
#[ignore = "needs root"]
fn agents_behind_nat_go_direct_and_keep_working_without_the_hub() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let mut net = Net::new("d");
    let sharer_host = net.behind_nat("sharer");
    let sharer = Sharer::on(&net, sharer_host);
    let joiner = net.behind_nat("joiner");
    let (_http, digest) = serve_random_file(&net, &sharer.host.ns, "file.bin", 4 << 20);
    let mut hub = start_hub(&net, &net.dir.join("hub"));
    let _agent = start_agent(&net, &sharer);
    let code = share_web(&sharer);
    let (_join, ready) = join(&net, &joiner, "joiner", &code, &[]);
    let machine = ready["machine_ip"].as_str().unwrap().to_owned();
    let url = format!("http://{machine}:8080/file.bin");
    let download = net.dir.join("download.bin");
    let fetch = || {
        joiner
            .ns
            .output(
                "curl",
                &["-sf", "-m", "10", "-o", download.to_str().unwrap(), &url],
            )
            .status
            .success()
    };

    // Traffic through the relay is what makes it introduce the two; both probe, and the
    // path turns direct once a handshake has crossed both NATs.
    eventually("a direct path", Duration::from_secs(40), || {
        assert!(fetch(), "download through the tunnel failed");
        joiner_paths(&sharer)
            .iter()
            .any(|(path, _)| path == "direct")
    });
    let paths = joiner_paths(&sharer);
    let (_, endpoint) = paths.iter().find(|(path, _)| path == "direct").unwrap();
    // The joiner as its router's masquerade shows it, on the router's public address.
    assert!(endpoint.starts_with("10.77."), "{paths:?}");
    assert!(fetch());
    assert_eq!(sha256_file(&download), digest);
    // The joiner hands its kernel coalesced segments, not one packet per write: what the
    // TUN device received averages well over one full packet.
    let interface = ready["interface"].as_str().unwrap();
    let link: Value = serde_json::from_slice(
        &joiner
            .ns
            .output("ip", &["-j", "-s", "link", "show", "dev", interface])
            .stdout,
    )
    .unwrap();
    let rx = &link[0]["stats64"]["rx"];
    let (bytes, packets) = (
        rx["bytes"].as_u64().unwrap(),
        rx["packets"].as_u64().unwrap(),
    );
    assert!(
        bytes > 3 * 1420 * packets,
        "{packets} packets for {bytes} bytes: TUN writes are not coalesced"
    );

    // With the hub gone, the direct path still carries new connections.
    hub.signal("KILL");
    assert!(hub.wait_exit(Duration::from_secs(10)).is_some());
    std::fs::remove_file(&download).unwrap();
    assert!(fetch(), "no tunnel without the hub");
    assert_eq!(sha256_file(&download), digest);
}
