//! The hub with a TLS certificate for itself and `*.DOMAIN`: agents talk to it over
//! HTTPS, and a public share is served over HTTPS by name (SNI), with
//! `X-Forwarded-Proto: https`. On loopback; no root needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use connect_e2e::*;
use serde_json::Value;

#[test]
fn a_public_share_is_served_over_tls_by_name() {
    let dir = std::env::temp_dir().join(format!("connect-e2e-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir, "DNS:localhost,DNS:*.share.localhost");
    let ca = dir.join("ca.pem").to_str().unwrap().to_owned();
    let port = free_port();
    let hub_url = format!("https://localhost:{port}");
    let _hub = Proc::start(
        &dir,
        "hub",
        Command::new(binary("connect-coordinator"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--open-registration",
            ])
            .args(["--data-dir", dir.join("hub").to_str().unwrap()])
            .args(["--public-url", &hub_url])
            .args(["--tls-cert", dir.join("hub.pem").to_str().unwrap()])
            .args(["--tls-key", dir.join("hub.key").to_str().unwrap()]),
        false,
    );
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["-s", "-m", "10", "--cacert", &ca])
            .args(["--resolve", &format!("*:{port}:127.0.0.1")])
            .args(args)
            .output()
            .unwrap()
    };
    eventually("hub healthy over TLS", Duration::from_secs(20), || {
        curl(&["-f", &format!("{hub_url}/healthz")])
            .status
            .success()
    });
    // Plain HTTP to a TLS port is not served.
    let plain = Command::new("curl")
        .args(["-s", "-m", "5", &format!("http://127.0.0.1:{port}/healthz")])
        .output()
        .unwrap();
    assert!(!plain.status.success() || plain.stdout.is_empty());

    // A service that shows the X-Forwarded-Proto it received.
    let app_port = free_port();
    let _app = Proc::start(
        &dir,
        "app",
        Command::new("/usr/bin/python3").args(["-c", ECHO_PROTO, &app_port.to_string()]),
        false,
    );
    eventually("app listening", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", app_port)).is_ok()
    });
    // The agent trusts the test CA the way every rustls-native-certs client does.
    let command = |args: &[&str]| {
        let mut command = Command::new(binary("connect"));
        command
            .args(["--hub", &hub_url, "--config"])
            .arg(dir.join("alice/config.toml"))
            .args(args)
            .env("SSL_CERT_FILE", &ca);
        command
    };
    let _agent = Proc::start(
        &dir,
        "agent",
        &mut command(&["up", "--name", "alice"]),
        false,
    );
    eventually("agent up over TLS", Duration::from_secs(20), || {
        command(&["status"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let target = format!("127.0.0.1:{app_port}");
    assert!(
        command(&["expose", &target, "--name", "web"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let share: Value =
        serde_json::from_slice(&command(&["--json", "share"]).output().unwrap().stdout).unwrap();
    let url = share["url"].as_str().expect("a public URL").to_owned();
    assert!(
        url.starts_with("https://") && url.ends_with(&format!(".share.localhost:{port}")),
        "{url}"
    );

    let mut page = Vec::new();
    eventually("the share's page over TLS", Duration::from_secs(20), || {
        let out = curl(&["-f", &url]);
        page = out.stdout;
        out.status.success()
    });
    assert_eq!(String::from_utf8_lossy(&page).trim(), "proto=https");
    // An unknown name under the certificate's wildcard: 404 over TLS, at once.
    let missing = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://nobody-here-0000.share.localhost:{port}/"),
    ]);
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");
    // Headers past the hub's limit are refused, not buffered.
    let big = format!("X-Big: {}", "a".repeat(70_000));
    let refused = |version| {
        curl(&[
            version,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &big,
            &url,
        ])
    };
    assert_eq!(String::from_utf8_lossy(&refused("--http1.1").stdout), "431");
    // HTTP/2 (ALPN h2) has its own limit: the stream is refused, not answered.
    assert_ne!(String::from_utf8_lossy(&refused("--http2").stdout), "200");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Answers every GET with the X-Forwarded-Proto header it saw.
const ECHO_PROTO: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("proto=%s\n" % self.headers.get("X-Forwarded-Proto")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;
