//! Two hubs on one PostgreSQL database: a join handled by one reaches the sharer whose
//! stream the other holds, relayed through the sharer's home hub; a revoke handled by that
//! one reaches the joiner whose stream the first holds; a public URL one hub serves from
//! memory stops when the share is revoked through the other. Loopback only, no root. Needs
//! `CONNECT_TEST_POSTGRES` (scripts/test.sh starts a throwaway server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use connect_e2e::*;
use serde_json::Value;

fn hub(dir: &Path, name: &str, database: &str, port: u16) -> Proc {
    let data = dir.join(name);
    loopback_hub(
        dir,
        name,
        port,
        &[
            "--open-registration",
            "--database",
            database,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
}

#[test]
fn two_hubs_on_one_database_serve_the_same_shares() {
    let Ok(server) = std::env::var("CONNECT_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide CONNECT_TEST_POSTGRES (scripts/test.sh does)"
        );
        eprintln!("CONNECT_TEST_POSTGRES not set: the two-hub test needs PostgreSQL");
        return;
    };
    let dir = std::env::temp_dir().join(format!("connect-e2e-hubs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("connect_hubs_{}", std::process::id());
    run(
        "psql",
        &[&server, "-qc", &format!("CREATE DATABASE {name}")],
    );
    let base = server.rsplit_once('/').unwrap().0;
    let database = format!("{base}/{name}");
    let (port_a, port_b) = (free_port(), free_port());
    let _hub_a = hub(&dir, "hub-a", &database, port_a);
    let _hub_b = hub(&dir, "hub-b", &database, port_b);

    let echo_port = tcp_echo();
    let connect = |port: u16, who: &str| {
        let mut command = Command::new(binary("connect"));
        command.args(["--hub", &format!("http://127.0.0.1:{port}")]);
        command.args([
            "--config",
            dir.join(format!("{who}/config.toml")).to_str().unwrap(),
        ]);
        command
    };
    // Alice's agent holds its stream on hub A.
    let _alice = Proc::start(
        &dir,
        "alice",
        connect(port_a, "alice").args(["up", "--name", "alice"]),
        false,
    );
    eventually("alice up", Duration::from_secs(20), || {
        connect(port_a, "alice")
            .arg("status")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let expose = connect(port_a, "alice")
        .args([
            "expose",
            &format!("127.0.0.1:{echo_port}"),
            "--name",
            "echo",
        ])
        .output()
        .unwrap();
    assert!(expose.status.success());
    let share: Value = serde_json::from_slice(
        &connect(port_a, "alice")
            .args(["--json", "share"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let code = share["code"].as_str().unwrap().to_owned();

    // Bob joins through hub B; the join must reach Alice's stream on hub A.
    let started = Instant::now();
    let mut bob = Proc::start(
        &dir,
        "bob",
        connect(port_b, "bob").args(["--json", "join", &code, "--no-tun"]),
        true,
    );
    let ready = bob.json_line(Duration::from_secs(30));
    // Usually about a second; on a loaded machine the first WireGuard initiation can
    // race the relay learning of the pair, and the next one is what gets through.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "join across hubs took {:?}",
        started.elapsed()
    );
    let address = ready["routes"][0]["address"].as_str().unwrap().to_owned();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"across two hubs").unwrap();
    let mut echoed = [0u8; 15];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"across two hubs");

    // Alice revokes through hub A; Bob's stream is on hub B and must hear it.
    let revoke = connect(port_a, "alice")
        .args(["share", "--revoke", &code])
        .output()
        .unwrap();
    assert!(revoke.status.success());
    let status = bob
        .wait_exit(Duration::from_secs(5))
        .expect("bob still joined 5 s after a revoke on the other hub");
    assert_eq!(status.code(), Some(1));

    // A public URL served by hub A stops the moment the share ends through hub B: hub A
    // answers from memory, kept true by the other hub's share events.
    let web_port = free_port();
    let _web = Proc::start(
        &dir,
        "web",
        Command::new("/usr/bin/python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &web_port.to_string(),
            ])
            .current_dir(&dir),
        false,
    );
    eventually("web server", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", web_port)).is_ok()
    });
    let web = format!("127.0.0.1:{web_port}");
    let exposed = connect(port_a, "alice")
        .args(["expose", &web, "--name", "web"])
        .output()
        .unwrap();
    assert!(exposed.status.success());
    let share: Value = serde_json::from_slice(
        &connect(port_a, "alice")
            .args(["--json", "share", "--public-name", "across"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let status_at_a = || {
        let out = Command::new("curl")
            .args(["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-H", "Host: across.share.localhost"])
            .arg(format!("http://127.0.0.1:{port_a}/"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    eventually(
        "the public URL served by hub A",
        Duration::from_secs(20),
        || status_at_a() == "200",
    );
    let code = share["code"].as_str().unwrap();
    let revoke = connect(port_b, "alice")
        .args(["share", "--revoke", code])
        .output()
        .unwrap();
    assert!(revoke.status.success());
    eventually(
        "hub A refuses the URL revoked through hub B",
        Duration::from_secs(5),
        || status_at_a() == "404",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
