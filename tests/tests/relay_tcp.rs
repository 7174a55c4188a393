//! The relay over TCP: networks that drop all outgoing UDP still get a tunnel, carried
//! over the hub's API port, and when UDP opens again the path moves back to UDP and then
//! direct without breaking a download. Root-only, like every namespace test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use connect_e2e::cluster::*;
use connect_e2e::*;

struct Setup {
    net: Net,
    sharer: Sharer,
    joiner: Host,
    _hub: Proc,
    _agent: Proc,
    _http: Proc,
    digest: String,
}

/// A sharer and a joiner, each behind a NAT router; `blocked` names the routers that drop
/// outgoing UDP from the start. The sharer serves 50 MB of random bytes on port 8080.
fn setup(tag: &str, blocked: &[&str]) -> Setup {
    let mut net = Net::new(tag);
    let sharer_host = net.behind_nat("sharer");
    let sharer = Sharer::on(&net, sharer_host);
    let joiner = net.behind_nat("joiner");
    for role in blocked {
        net.block_udp(role);
    }
    let (http, digest) = serve_random_file(&net, &sharer.host.ns, "file.bin", 50 << 20);
    let hub = start_hub(&net, &net.dir.join("hub"));
    let agent = start_agent(&net, &sharer);
    Setup {
        net,
        sharer,
        joiner,
        _hub: hub,
        _agent: agent,
        _http: http,
        digest,
    }
}

impl Setup {
    fn share(&self) -> String {
        share_web(&self.sharer)
    }

    /// Downloads the file through the tunnel into `name` (at most `rate` bytes/s when
    /// given); whether it arrived whole, by sha256.
    fn download(&self, machine: &str, name: &str, rate: Option<&str>) -> bool {
        let target = self.net.dir.join(name);
        let _ = std::fs::remove_file(&target);
        let url = format!("http://{machine}:8080/file.bin");
        let mut args = vec!["-sf", "-m", "90", "-o", target.to_str().unwrap()];
        if let Some(rate) = rate {
            args.extend(["--limit-rate", rate]);
        }
        args.push(&url);
        let fetched = self.joiner.ns.output("curl", &args).status.success();
        fetched && sha256_file(&target) == self.digest
    }
}

#[test]
#[ignore = "needs root"]
fn both_sides_without_udp_share_over_the_hubs_tcp_port_and_move_to_udp_when_it_opens() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let setup = setup("t", &["sharer", "joiner"]);
    let code = setup.share();
    let (_join, ready) = join(&setup.net, &setup.joiner, "joiner", &code, &[]);
    let machine = ready["machine_ip"].as_str().unwrap().to_owned();
    assert!(
        setup.download(&machine, "first.bin", None),
        "50 MB over the TCP relay did not match"
    );
    let paths = joiner_paths(&setup.sharer);
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert_eq!(paths[0].0, "relayed-tcp", "{paths:?}");
    assert_eq!(
        paths[0].1,
        format!("{}:{HUB_PORT}", Net::hub_ip(1)),
        "{paths:?}"
    );

    // UDP opens mid-transfer: the path moves to the UDP relay and then direct, and the
    // download that spans the moves arrives whole.
    std::thread::scope(|scope| {
        let download = scope.spawn(|| setup.download(&machine, "second.bin", Some("4M")));
        let partial = setup.net.dir.join("second.bin");
        eventually("the download under way", Duration::from_secs(20), || {
            std::fs::metadata(&partial).is_ok_and(|m| m.len() > 4 << 20)
        });
        setup.net.unblock_udp("sharer");
        setup.net.unblock_udp("joiner");
        eventually(
            "a direct path after UDP opened",
            Duration::from_secs(40),
            || {
                joiner_paths(&setup.sharer)
                    .iter()
                    .any(|(path, _)| path == "direct")
            },
        );
        assert!(
            download.join().unwrap(),
            "the download across the moves did not match"
        );
    });
}

#[test]
#[ignore = "needs root"]
fn a_joiner_without_udp_reaches_a_sharer_with_it() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let setup = setup("u", &["joiner"]);
    let code = setup.share();
    let (_join, ready) = join(&setup.net, &setup.joiner, "joiner", &code, &[]);
    let machine = ready["machine_ip"].as_str().unwrap().to_owned();
    assert!(
        setup.download(&machine, "first.bin", None),
        "50 MB did not match"
    );
    // The sharer's own frames go over UDP; only the joiner's ride the stream.
    let paths = joiner_paths(&setup.sharer);
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert_eq!(paths[0].0, "relayed", "{paths:?}");
}
