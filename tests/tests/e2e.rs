//! The real binaries in network namespaces, with Debian's PostgreSQL, Redis, dnsmasq and
//! an HTTP server on the sharer and their real clients on the joiners. Root-only tests
//! are `#[ignore = "needs root"]`; scripts/test.sh runs them as root in CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use connect_e2e::cluster::*;
use connect_e2e::*;
use serde_json::Value;

/// PostgreSQL, Redis, dnsmasq and an HTTP server with a 50 MB file, all on the sharer's
/// loopback; returns their processes and the file's digest.
fn start_services(net: &Net, ns: &Netns) -> (Vec<Proc>, String) {
    let (http, digest) = serve_random_file(net, ns, "big.bin", 50 << 20);
    let mut procs = vec![http];
    procs.push(net.spawn(
        ns,
        "redis",
        Path::new("redis-server"),
        &[
            "--port",
            "6379",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        &[],
        false,
    ));
    procs.push(net.spawn(
        ns,
        "dnsmasq",
        Path::new("dnsmasq"),
        &[
            "--no-daemon",
            "--port=5353",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--address=/demo.connect/10.9.8.7",
        ],
        &[],
        false,
    ));
    // PostgreSQL as the postgres user, trust auth on loopback.
    let pg = net.dir.join("pg");
    std::fs::create_dir_all(&pg).unwrap();
    run("chown", &["postgres", pg.to_str().unwrap()]);
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .max()
        .unwrap();
    run(
        "runuser",
        &[
            "-u",
            "postgres",
            "--",
            bin.join("initdb").to_str().unwrap(),
            "-D",
            pg.join("data").to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "connect",
        ],
    );
    let pg_data = pg.join("data");
    procs.push(net.spawn(
        ns,
        "postgres",
        Path::new("runuser"),
        &[
            "-u",
            "postgres",
            "--",
            bin.join("postgres").to_str().unwrap(),
            "-D",
            pg_data.to_str().unwrap(),
            "-k",
            pg.to_str().unwrap(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-p",
            "5432",
        ],
        &[],
        false,
    ));
    eventually("services ready", Duration::from_secs(30), || {
        ns.output("redis-cli", &["-h", "127.0.0.1", "ping"])
            .status
            .success()
            && ns
                .output(
                    "curl",
                    &["-sf", "-o", "/dev/null", "http://127.0.0.1:8080/"],
                )
                .status
                .success()
            && ns
                .output(
                    "psql",
                    &[
                        "-h",
                        "127.0.0.1",
                        "-U",
                        "connect",
                        "-d",
                        "postgres",
                        "-tAc",
                        "select 1",
                    ],
                )
                .status
                .success()
            && ns
                .output(
                    "dig",
                    &[
                        "@127.0.0.1",
                        "-p",
                        "5353",
                        "demo.connect",
                        "+short",
                        "+time=1",
                        "+tries=1",
                    ],
                )
                .stdout
                .starts_with(b"10.9.8.7")
    });
    (procs, digest)
}

fn expose_all(sharer: &Sharer) {
    for (target, name, udp) in [
        ("localhost:5432", "postgres", false),
        ("localhost:6379", "redis", false),
        ("localhost:8080", "web", false),
        ("127.0.0.1:5353", "dns", true),
    ] {
        let mut args = vec!["expose", target, "--name", name];
        if udp {
            args.push("--udp");
        }
        connect_ok(&sharer.host.ns, &sharer.config, &args);
    }
}

fn share(sharer: &Sharer, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "share", "--name", "staging-env"];
    args.extend_from_slice(extra);
    serde_json::from_str(&connect_ok(&sharer.host.ns, &sharer.config, &args)).unwrap()
}

#[test]
#[ignore = "needs root"]
fn a_teammate_uses_shared_services_with_ordinary_clients() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let mut net = Net::new("a");
    let sharer = new_sharer(&mut net);
    let joiner = net.host("joiner");
    let second = net.host("second");
    let _hub = start_hub(&net, &net.dir.join("hub"));
    let (_services, digest) = start_services(&net, &sharer.host.ns);
    let _agent = start_agent(&net, &sharer);
    expose_all(&sharer);
    let created = share(&sharer, &["--expires", "1h"]);
    assert_keys(&created, &["code", "name", "url", "expires_at", "routes"]);
    assert_keys(
        &created["routes"][0],
        &["name", "target", "port", "protocol"],
    );
    let code = created["code"].as_str().unwrap().to_owned();
    assert_eq!(created["routes"].as_array().unwrap().len(), 4);

    // TUN joiner: the shared machine at its static address, every service on its port.
    let started = Instant::now();
    let (mut tun_join, ready) = join(&net, &joiner, "joiner", &code, &[]);
    eprintln!("join ready after {:?}", started.elapsed());
    assert_eq!(ready["mode"], "tun", "{ready}");
    assert_keys(
        &ready,
        &["mode", "machine_ip", "interface", "socks", "routes"],
    );
    assert_keys(&ready["routes"][0], &["name", "protocol", "address"]);
    let machine = ready["machine_ip"].as_str().unwrap().to_owned();
    assert!(machine.starts_with("172.16."), "{machine}");
    let j = &joiner.ns;
    assert_eq!(
        j.ok(
            "psql",
            &[
                "-h",
                &machine,
                "-U",
                "connect",
                "-d",
                "postgres",
                "-tAc",
                "select 42"
            ]
        )
        .trim(),
        "42"
    );
    assert_eq!(j.ok("redis-cli", &["-h", &machine, "ping"]).trim(), "PONG");
    let download = net.dir.join("download.bin");
    j.ok(
        "curl",
        &[
            "-sf",
            "-o",
            download.to_str().unwrap(),
            &format!("http://{machine}:8080/big.bin"),
        ],
    );
    assert_eq!(sha256_file(&download), digest, "50 MB download differs");
    assert_eq!(
        j.ok(
            "dig",
            &[
                &format!("@{machine}"),
                "-p",
                "5353",
                "demo.connect",
                "+short",
                "+time=2",
                "+tries=3"
            ]
        )
        .trim(),
        "10.9.8.7"
    );
    // A port that is not exposed is refused at once, not left hanging.
    let refused = Instant::now();
    let out = j.output(
        "curl",
        &["-sS", "-m", "10", &format!("http://{machine}:9999/")],
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(refused.elapsed() < Duration::from_secs(5));

    // User-space joiner: each route on a loopback address of the share's own.
    let (mut user_join, ready) = join(&net, &second, "second", &code, &["--no-tun"]);
    assert_eq!(ready["mode"], "userspace", "{ready}");
    assert!(ready["interface"].is_null());
    let (host, port) = split(&address_of(&ready, "redis"));
    assert!(host.starts_with("127."), "{host}");
    assert_eq!(
        second
            .ns
            .ok("redis-cli", &["-h", &host, "-p", &port, "ping"])
            .trim(),
        "PONG"
    );
    let (host, port) = split(&address_of(&ready, "postgres"));
    assert_eq!(
        second
            .ns
            .ok(
                "psql",
                &[
                    "-h",
                    &host,
                    "-p",
                    &port,
                    "-U",
                    "connect",
                    "-d",
                    "postgres",
                    "-tAc",
                    "select 42"
                ]
            )
            .trim(),
        "42"
    );
    let (host, port) = split(&address_of(&ready, "dns"));
    assert_eq!(
        second
            .ns
            .ok(
                "dig",
                &[
                    &format!("@{host}"),
                    "-p",
                    &port,
                    "demo.connect",
                    "+short",
                    "+time=2",
                    "+tries=3"
                ]
            )
            .trim(),
        "10.9.8.7"
    );

    // Its SOCKS5 proxy reaches the shared machine, and nothing else.
    let socks = ready["socks"]
        .as_str()
        .expect("user space join has a SOCKS proxy")
        .to_owned();
    let page = second.ns.ok(
        "curl",
        &[
            "-sf",
            "-m",
            "10",
            "--socks5",
            &socks,
            &format!("http://{machine}:8080/"),
        ],
    );
    assert!(page.contains("big.bin"), "{page}");
    let outside = second.ns.output(
        "curl",
        &[
            "-sS",
            "-m",
            "10",
            "--socks5",
            &socks,
            &format!("http://{}:{HUB_PORT}/healthz", Net::hub_ip(1)),
        ],
    );
    assert!(
        !outside.status.success(),
        "the SOCKS proxy let a connection out to another host"
    );
    // UDP ASSOCIATE: a DNS query to the machine's port 5353 through the proxy.
    let (socks_host, socks_port) = split(&socks);
    let answer = second.ns.ok(
        "python3",
        &[
            "-c",
            SOCKS_UDP_DNS,
            &socks_host,
            &socks_port,
            &machine,
            "5353",
        ],
    );
    assert_eq!(answer.trim(), "10.9.8.7", "DNS over SOCKS5 UDP");

    // The public URL: an outsider with plain curl, through the hub's reverse proxy.
    let outsider = &second.ns;
    let url = created["url"]
        .as_str()
        .expect("web is HTTP, so the share has a URL")
        .to_owned();
    let host = url
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let hub_at = format!("http://{}:{HUB_PORT}", Net::hub_ip(1));
    let public = net.dir.join("public.bin");
    outsider.ok(
        "curl",
        &[
            "-sf",
            "-H",
            &format!("Host: {host}"),
            "-o",
            public.to_str().unwrap(),
            &format!("{hub_at}/big.bin"),
        ],
    );
    assert_eq!(
        sha256_file(&public),
        digest,
        "50 MB through the public URL differs"
    );
    let unknown = Instant::now();
    let status = outsider.ok(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: no-such-share-0000.share.localhost",
            &format!("{hub_at}/"),
        ],
    );
    assert_eq!(status, "404");
    assert!(unknown.elapsed() < Duration::from_secs(2));

    // Join tracking: both joins, who and from where.
    let info: Value = serde_json::from_str(&connect_ok(
        &sharer.host.ns,
        &sharer.config,
        &["--json", "share", "--info", &code],
    ))
    .unwrap();
    assert_eq!(info["joins"].as_array().unwrap().len(), 2, "{info}");
    assert_eq!(info["state"], "active");
    assert_keys(
        &info,
        &["code", "name", "state", "routes", "joins", "http_log"],
    );
    assert_keys(&info["joins"][0], &["agent", "at", "from"]);
    let list: Value = serde_json::from_str(&connect_ok(
        &sharer.host.ns,
        &sharer.config,
        &["--json", "share", "--list"],
    ))
    .unwrap();
    assert_keys(
        &list["shares"][0],
        &["code", "name", "routes", "joined", "expires_at", "state"],
    );
    assert_eq!(list["shares"][0]["joined"], 2);
    let status: Value = serde_json::from_str(&connect_ok(
        &sharer.host.ns,
        &sharer.config,
        &["--json", "status"],
    ))
    .unwrap();
    assert_keys(&status, &["agent", "hub", "up", "peers"]);
    assert_eq!(status["up"], true);
    let peer = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["last_handshake"].is_string())
        .unwrap_or_else(|| panic!("no joined peer in {status}"));
    assert_keys(
        peer,
        &[
            "agent",
            "path",
            "endpoint",
            "rx_bytes",
            "tx_bytes",
            "last_handshake",
        ],
    );
    assert_eq!(peer["path"], "relayed");

    // Revoke cuts a live download and the joiners within 5 s.
    let partial = net.dir.join("partial.bin");
    let mut slow = net.spawn(
        j,
        "slow-download",
        Path::new("curl"),
        &[
            "-sS",
            "--limit-rate",
            "1M",
            "-o",
            partial.to_str().unwrap(),
            &format!("http://{machine}:8080/big.bin"),
        ],
        &[],
        false,
    );
    // The cut must interrupt a transfer that is really moving.
    eventually("download under way", Duration::from_secs(10), || {
        std::fs::metadata(&partial).is_ok_and(|m| m.len() > 256 * 1024)
    });
    connect_ok(
        &sharer.host.ns,
        &sharer.config,
        &["share", "--revoke", &code],
    );
    let revoked = Instant::now();
    let status = slow
        .wait_exit(Duration::from_secs(20))
        .expect("download survived the revoke");
    assert!(!status.success(), "download finished despite the revoke");
    let tun_status = tun_join
        .wait_exit(Duration::from_secs(5))
        .expect("TUN joiner still running 5 s after revoke");
    assert_eq!(tun_status.code(), Some(1));
    assert!(user_join.wait_exit(Duration::from_secs(5)).is_some());
    assert!(revoked.elapsed() < Duration::from_secs(15));
    // The TUN interface went with the joiner.
    let links = j.ok("ip", &["-o", "link"]);
    assert!(!links.contains("tun"), "interface left behind: {links}");
    // The public URL is gone with the share.
    let status = outsider.ok(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("Host: {host}"),
            &format!("{hub_at}/"),
        ],
    );
    assert_eq!(status, "404");
    // And the code is dead.
    let again = connect(
        j,
        net.dir.join("joiner/config.toml").to_str().unwrap(),
        &["join", &code],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .starts_with("[x] Share code not found, expired or revoked")
    );
}

#[test]
#[ignore = "needs root"]
fn a_share_survives_a_hub_sigkill_and_expiry_cuts_it() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let mut net = Net::new("b");
    let sharer = new_sharer(&mut net);
    let joiner = net.host("joiner");
    let hub_data = net.dir.join("hub");
    let mut hub = start_hub(&net, &hub_data);
    // A small app: GET / says hello, POST answers the sha256 of what it received.
    let app = net.dir.join("app.py");
    std::fs::write(&app, APP).unwrap();
    let _http = net.spawn(
        &sharer.host.ns,
        "http",
        Path::new("python3"),
        &[app.to_str().unwrap(), "8080"],
        &[],
        false,
    );
    eventually("app ready", Duration::from_secs(10), || {
        sharer
            .host
            .ns
            .output("curl", &["-sf", "http://127.0.0.1:8080/"])
            .status
            .success()
    });
    let mut agent = start_agent(&net, &sharer);
    connect_ok(
        &sharer.host.ns,
        &sharer.config,
        &["expose", "localhost:8080", "--name", "web"],
    );
    let created = share(
        &sharer,
        &["--expires", "40s", "--http-auth", "alice:s3cret"],
    );
    let code = created["code"].as_str().unwrap().to_owned();

    let key_command = |args: &[&str]| {
        let mut all = vec!["--data-dir", hub_data.to_str().unwrap(), "key"];
        all.extend_from_slice(args);
        net.hub.ok(binary("connect-coordinator"), &all)
    };
    let key = key_command(&["create", "--reusable"]);
    assert!(key.trim().starts_with("ck_"), "{key}");

    hub.signal("KILL");
    assert!(hub.wait_exit(Duration::from_secs(5)).is_some());
    drop(hub);
    let _hub = start_hub(&net, &hub_data);
    // The agent reconnects by itself (readiness: its status says the stream is back).
    eventually(
        "agent back on the restarted hub",
        Duration::from_secs(30),
        || {
            let output = connect(&sharer.host.ns, &sharer.config, &["--json", "status"]);
            serde_json::from_slice::<Value>(&output.stdout)
                .is_ok_and(|s| s["hub_connected"] == true)
        },
    );
    // Keys, agents and shares are all still there.
    assert!(
        key_command(&["list"]).contains("usable"),
        "enrollment key lost in the restart"
    );
    let list: Value = serde_json::from_str(&connect_ok(
        &sharer.host.ns,
        &sharer.config,
        &["--json", "share", "--list"],
    ))
    .unwrap();
    assert_eq!(
        list["shares"][0]["state"], "active",
        "share lost in the restart: {list}"
    );

    let (mut joined, ready) = join(&net, &joiner, "joiner", &code, &["--no-tun"]);
    let address = address_of(&ready, "web");
    eventually("page through the tunnel", Duration::from_secs(10), || {
        joiner
            .ns
            .output("curl", &["-sf", "-m", "3", &format!("http://{address}/")])
            .stdout
            .starts_with(b"hello from the shared machine")
    });

    // The public URL asks for the password, then carries a 50 MB upload intact.
    let url = created["url"].as_str().unwrap().to_owned();
    let host = url
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let public = format!("http://{}:{HUB_PORT}/", Net::hub_ip(1));
    let header = format!("Host: {host}");
    let status = joiner.ns.ok(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &header,
            &public,
        ],
    );
    assert_eq!(status, "401", "public URL served without the password");
    // After the restart the hub's own tunnel to the sharer is made afresh: wait until the
    // public path answers before loading it.
    eventually(
        "the public URL through the restarted hub",
        Duration::from_secs(20),
        || {
            joiner
                .ns
                .output(
                    "curl",
                    &[
                        "-sf",
                        "-m",
                        "5",
                        "-u",
                        "alice:s3cret",
                        "-H",
                        &header,
                        &public,
                    ],
                )
                .stdout
                .starts_with(b"hello from the shared machine")
        },
    );
    let upload = net.dir.join("upload.bin");
    run(
        "sh",
        &[
            "-c",
            &format!("head -c 52428800 /dev/urandom > {}", upload.display()),
        ],
    );
    let body = format!("@{}", upload.display());
    let answer = joiner.ns.ok(
        "curl",
        &[
            "-sf",
            "-u",
            "alice:s3cret",
            "-H",
            &header,
            "--data-binary",
            &body,
            &public,
        ],
    );
    assert_eq!(
        answer.trim(),
        sha256_file(&upload),
        "50 MB upload through the public URL differs"
    );
    // The hub writes its access log in batches, a moment after the requests.
    let mut info = Value::Null;
    eventually(
        "the upload in the access log",
        Duration::from_secs(5),
        || {
            info = serde_json::from_str(&connect_ok(
                &sharer.host.ns,
                &sharer.config,
                &["--json", "share", "--info", &code],
            ))
            .unwrap();
            info["http_log"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["method"] == "POST" && e["status"] == 200 && e["path"] == "/")
        },
    );

    // With the sharing agent stopped, the public URL answers 502 at once, never hangs.
    agent.signal("TERM");
    assert!(
        agent.wait_exit(Duration::from_secs(10)).is_some(),
        "agent ignored SIGTERM"
    );
    let asked = Instant::now();
    let status = joiner.ns.ok(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            "alice:s3cret",
            "-H",
            &header,
            &public,
        ],
    );
    assert_eq!(status, "502");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "502 took {:?}",
        asked.elapsed()
    );

    // Expiry, by the hub's timer, ends the join within 5 s of the deadline.
    let status = joined
        .wait_exit(Duration::from_secs(60))
        .expect("joiner still running after expiry");
    assert_eq!(status.code(), Some(1));
    let list: Value = serde_json::from_str(&connect_ok(
        &sharer.host.ns,
        &sharer.config,
        &["--json", "share", "--list"],
    ))
    .unwrap();
    assert_eq!(list["shares"][0]["state"], "expired", "{list}");
}

/// A SOCKS5 UDP ASSOCIATE client asking for demo.connect's A record; prints the address.
const SOCKS_UDP_DNS: &str = r#"
import socket, struct, sys
proxy, port, machine, dns_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
tcp = socket.create_connection((proxy, port), timeout=10)
tcp.sendall(b"\x05\x01\x00"); assert tcp.recv(2) == b"\x05\x00"
tcp.sendall(b"\x05\x03\x00\x01" + bytes(4) + bytes(2))
reply = tcp.recv(10); assert reply[1] == 0, reply
relay = (socket.inet_ntoa(reply[4:8]), struct.unpack(">H", reply[8:10])[0])
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p.encode() for p in "demo.connect".split(".")) + b"\x00" + struct.pack(">HH", 1, 1)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.settimeout(5)
header = b"\x00\x00\x00\x01" + socket.inet_aton(machine) + struct.pack(">H", dns_port)
data = b""
for _ in range(3):
    udp.sendto(header + query, relay)
    try:
        data, _ = udp.recvfrom(2048)
        break
    except socket.timeout:
        continue
print(socket.inet_ntoa(data[-4:]))
"#;

const APP: &str = r#"
import hashlib, http.server, sys
class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.reply(b"hello from the shared machine\n")
    def do_POST(self):
        digest, left = hashlib.sha256(), int(self.headers.get("Content-Length", 0))
        while left:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        self.reply(digest.hexdigest().encode() + b"\n")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
"#;

/// A hub on loopback with its data in `dir/hub`.
fn hub_in(dir: &Path, port: u16, extra: &[&str]) -> Proc {
    let data = dir.join("hub");
    let mut args = vec!["--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    loopback_hub(dir, &format!("hub-{port}"), port, &args)
}

/// Rewrites the hub's database with python3's sqlite3, as a hostile hub operator could.
fn tamper(dir: &Path, sql: &str) {
    let db = dir.join("hub/connect.db");
    let script = "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); n=c.execute(sys.argv[2]).rowcount; c.commit(); sys.exit(0 if n>0 else 1)";
    run("python3", &["-c", script, db.to_str().unwrap(), sql]);
}

/// The security model's two refusals, with a hub that swaps keys: the joiner refuses a
/// sharer key the code does not vouch for, and the sharer refuses a joiner key the code
/// does not vouch for. Runs on loopback in user space, so it needs no root.
#[test]
fn a_hub_that_swaps_keys_is_refused_by_both_sides() {
    let dir = std::env::temp_dir().join(format!("connect-e2e-swap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let hub_url = format!("http://127.0.0.1:{port}");
    let mut hub = hub_in(&dir, port, &["--open-registration"]);
    let echo_port = tcp_echo();
    let command = |who: &str, args: &[&str]| {
        let mut command = std::process::Command::new(binary("connect"));
        command.args([
            "--hub",
            &hub_url,
            "--config",
            dir.join(format!("{who}/config.toml")).to_str().unwrap(),
        ]);
        command.args(args);
        command
    };
    let mut agent = Proc::start(
        &dir,
        "agent",
        &mut command("alice", &["up", "--name", "alice"]),
        false,
    );
    eventually("agent up", Duration::from_secs(20), || {
        command("alice", &["status"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let target = format!("127.0.0.1:{echo_port}");
    assert!(
        command("alice", &["expose", &target, "--name", "echo"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let share: Value = serde_json::from_slice(
        &command("alice", &["--json", "share"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let code = share["code"].as_str().unwrap().to_owned();

    // 1. The hub hands joiners another key for the shared machine.
    hub.signal("KILL");
    hub.wait_exit(Duration::from_secs(5));
    let real = query(&dir, "SELECT public_key FROM agents WHERE name = 'alice'");
    let forged = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    tamper(
        &dir,
        &format!("UPDATE agents SET public_key = '{forged}' WHERE name = 'alice'"),
    );
    hub = hub_in(&dir, port, &["--open-registration"]);
    let output = command("bob", &["join", &code, "--no-tun"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("[x] The hub sent a key that the share code does not vouch for"),
        "{stderr}"
    );

    // 2. The hub lets in a key of its own choosing as a joiner: first an honest join,
    //    then the hub swaps that joiner's key and restarts so the sharer resyncs.
    hub.signal("KILL");
    hub.wait_exit(Duration::from_secs(5));
    tamper(
        &dir,
        &format!("UPDATE agents SET public_key = '{real}' WHERE name = 'alice'"),
    );
    hub = hub_in(&dir, port, &["--open-registration"]);
    let mut bob = Proc::start(
        &dir,
        "bob",
        &mut command("bob", &["--json", "join", &code, "--no-tun"]),
        true,
    );
    let ready = bob.json_line(Duration::from_secs(30));
    assert_eq!(ready["mode"], "userspace");
    hub.signal("KILL");
    hub.wait_exit(Duration::from_secs(5));
    tamper(&dir, &format!("UPDATE joins SET public_key = '{forged}'"));
    let _hub = hub_in(&dir, port, &["--open-registration"]);
    eventually(
        "the sharer refuses the swapped joiner",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(dir.join("agent.log"))
                .unwrap_or_default()
                .contains("Refused a joiner")
        },
    );
    let status: Value = serde_json::from_slice(
        &command("alice", &["--json", "status"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        status["peers"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );
    // connect down stops the running agent; status then says so with exit 1.
    let down = command("alice", &["down"]).output().unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(
        agent.wait_exit(Duration::from_secs(10)).is_some(),
        "agent still running after connect down"
    );
    assert_eq!(
        command("alice", &["status"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(1)
    );
    drop(bob);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One value from the hub's database.
fn query(dir: &Path, sql: &str) -> String {
    let db = dir.join("hub/connect.db");
    let script = "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])";
    String::from_utf8_lossy(&run("python3", &["-c", script, db.to_str().unwrap(), sql]).stdout)
        .trim()
        .to_owned()
}

#[test]
fn bad_input_gets_one_line_and_exit_1() {
    let dir = std::env::temp_dir().join(format!("connect-e2e-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let hub_url = format!("http://127.0.0.1:{port}");
    let mut hub = hub_in(&dir, port, &[]);
    let config = dir.join("agent/config.toml");
    let run = |args: &[&str]| {
        std::process::Command::new(binary("connect"))
            .args(["--hub", &hub_url, "--config", config.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let cases: &[(&[&str], &str)] = &[
        (
            &["join", "not-a-code"],
            "[x] Share code not found, expired or revoked",
        ),
        (
            &["join", "aaaa-bbbb-cccc-dddd"],
            "[x] Share code not found, expired or revoked",
        ),
        (
            &["share", "--expires", "2weeks"],
            "[x] Invalid expires format. Use: 1h, 4h, 24h, 7d, etc.",
        ),
        (&["share"], "[x] Agent not configured"),
        (
            &["expose", "localhost:5432", "--name", "pg"],
            "[x] Agent not configured",
        ),
        (&["expose", "nonsense", "--name", "pg"], "[x] "),
        (&["--bogus"], "[x] "),
        (
            &["share", "--info", "zz"],
            "[x] Share code not found, expired or revoked",
        ),
        (&["up"], "[x] "),
        (&["status"], ""),
    ];
    for (args, expected) in cases {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "connect {args:?}: {stderr}");
        assert!(stderr.starts_with(expected), "connect {args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked"),
            "connect {args:?} panicked: {stderr}"
        );
    }
    // A hub that is not there.
    let output = std::process::Command::new(binary("connect"))
        .args([
            "--hub",
            "http://127.0.0.1:1",
            "--config",
            config.to_str().unwrap(),
            "join",
            "aaaa-bbbb-cccc-dddd",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .starts_with("[x] Cannot connect to hub at http://127.0.0.1:1")
    );
    hub.signal("TERM");
    assert!(
        hub.wait_exit(Duration::from_secs(10)).is_some(),
        "hub ignored SIGTERM"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A WebSocket through the public URL: the hub bridges the upgrade byte for byte.
#[test]
fn a_websocket_echo_round_trips_through_the_public_url() {
    let dir = std::env::temp_dir().join(format!("connect-e2e-ws-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let hub_url = format!("http://127.0.0.1:{port}");
    let mut hub = hub_in(&dir, port, &["--open-registration"]);
    let ws_port = free_port();
    let _server = Proc::start(
        &dir,
        "ws",
        std::process::Command::new("/usr/bin/python3").args([
            "-c",
            WS_SERVER,
            &ws_port.to_string(),
        ]),
        false,
    );
    eventually("websocket server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", ws_port)).is_ok()
    });
    let command = |args: &[&str]| {
        let mut command = std::process::Command::new(binary("connect"));
        command.args([
            "--hub",
            &hub_url,
            "--config",
            dir.join("alice/config.toml").to_str().unwrap(),
        ]);
        command.args(args);
        command
    };
    let _agent = Proc::start(
        &dir,
        "agent",
        &mut command(&["up", "--name", "alice"]),
        false,
    );
    eventually("agent up", Duration::from_secs(20), || {
        command(&["status"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let target = format!("127.0.0.1:{ws_port}");
    assert!(
        command(&["expose", &target, "--name", "ws"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let share: Value = serde_json::from_slice(
        &command(&["--json", "share", "--http-port", &ws_port.to_string()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let url = share["url"].as_str().expect("a public URL").to_owned();
    // --disable-http: the same services, no public URL.
    let private: Value = serde_json::from_slice(
        &command(&["--json", "share", "--disable-http"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(private["url"].is_null(), "{private}");

    let host = url
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let echo = std::process::Command::new("/usr/bin/python3")
        .args(["-c", WS_CLIENT, &host, &port.to_string()])
        .output()
        .unwrap();
    assert!(
        echo.status.success(),
        "{}",
        String::from_utf8_lossy(&echo.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&echo.stdout).trim(),
        "ping through the tunnel"
    );

    // A joiner whose hub dies still stops on SIGTERM, and at once.
    let code = share["code"].as_str().unwrap();
    let mut joiner = Proc::start(
        &dir,
        "join",
        std::process::Command::new(binary("connect"))
            .args(["--hub", &hub_url, "--config"])
            .arg(dir.join("bob/config.toml"))
            .args(["--json", "join", code, "--no-tun"])
            .env("CONNECT_LOG", "warn"),
        true,
    );
    joiner.json_line(Duration::from_secs(30));
    hub.signal("KILL");
    hub.wait_exit(Duration::from_secs(10));
    eventually("the joiner notices", Duration::from_secs(10), || {
        joiner.log_text().contains("lost the hub")
    });
    joiner.signal("TERM");
    assert!(
        joiner.wait_exit(Duration::from_secs(5)).is_some(),
        "join ignored SIGTERM after its hub went away:\n{}",
        joiner.log_text()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
