//! A hub, agents and a test web app on loopback, for the end-to-end tests that need no
//! root (public URLs, the dashboard): one hub per test on a free port, state in a
//! temporary folder kept with `CONNECT_E2E_KEEP`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::{Proc, binary, certificates, eventually, free_port, run};

/// A hub on loopback (TLS or not) and what its visitors and agents need.
pub struct World {
    pub dir: PathBuf,
    pub port: u16,
    pub hub_url: String,
    /// The test CA, for a TLS hub.
    pub ca: Option<String>,
    _hub: Proc,
}

impl World {
    pub fn new(tag: &str, tls: bool, extra: &[&str]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("connect-e2e-public-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let scheme = if tls { "https" } else { "http" };
        let hub_url = format!("{scheme}://localhost:{port}");
        let mut args = vec![
            "--open-registration".to_owned(),
            "--data-dir".to_owned(),
            dir.join("hub").to_str().unwrap().to_owned(),
            "--public-url".to_owned(),
            hub_url.clone(),
        ];
        let ca = tls.then(|| {
            certificates(&dir, "DNS:localhost,DNS:*.share.localhost");
            for (flag, file) in [("--tls-cert", "hub.pem"), ("--tls-key", "hub.key")] {
                args.push(flag.to_owned());
                args.push(dir.join(file).to_str().unwrap().to_owned());
            }
            dir.join("ca.pem").to_str().unwrap().to_owned()
        });
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let hub = Proc::start(
            &dir,
            "hub",
            Command::new(binary("connect-coordinator"))
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(&args),
            false,
        );
        let world = Self {
            dir,
            port,
            hub_url,
            ca,
            _hub: hub,
        };
        let health = format!("{}/healthz", world.hub_url);
        eventually("hub healthy", Duration::from_secs(20), || {
            world.curl(&["-f", &health]).status.success()
        });
        world
    }

    /// curl with the hub's names resolved to loopback and the test CA trusted.
    pub fn curl(&self, args: &[&str]) -> Output {
        let mut command = Command::new("curl");
        command
            .args(["-s", "-m", "20"])
            .args(["--resolve", &format!("*:{}:127.0.0.1", self.port)]);
        if let Some(ca) = &self.ca {
            command.args(["--cacert", ca]);
        }
        command.args(args).output().unwrap()
    }

    /// An agent named `name`, up and registered.
    pub fn agent(&self, name: &str) -> Agent {
        let agent = Agent {
            config: self.dir.join(name).join("config.toml"),
            hub_url: self.hub_url.clone(),
            ca: self.ca.clone(),
            up: None,
        };
        let up = Proc::start(
            &self.dir,
            &format!("{name}-up"),
            &mut agent.command(&["up", "--name", name]),
            false,
        );
        eventually(&format!("{name} up"), Duration::from_secs(20), || {
            agent
                .command(&["status"])
                .output()
                .unwrap()
                .status
                .success()
        });
        Agent {
            up: Some(up),
            ..agent
        }
    }

    /// Starts the test app (see [`APP`]) on a free port, HTTPS with a self-signed
    /// certificate when `https`; returns its port.
    pub fn app(&self, what: &str, https: bool) -> (Proc, u16) {
        let port = free_port();
        let markers = self.dir.join(what);
        std::fs::create_dir_all(&markers).unwrap();
        let mut command = Command::new("/usr/bin/python3");
        command.args(["-c", APP, &port.to_string(), markers.to_str().unwrap()]);
        if https {
            let (cert, key) = (markers.join("self.pem"), markers.join("self.key"));
            run(
                "openssl",
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    key.to_str().unwrap(),
                    "-out",
                    cert.to_str().unwrap(),
                ],
            );
            command.args([cert.to_str().unwrap(), key.to_str().unwrap()]);
        }
        let app = Proc::start(&self.dir, what, &mut command, false);
        eventually(
            &format!("{what} listening"),
            Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        (app, port)
    }

    pub fn marker(&self, app: &str, name: &str) -> bool {
        self.dir.join(app).join(name).exists()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::env::var_os("CONNECT_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub struct Agent {
    pub config: PathBuf,
    pub hub_url: String,
    pub ca: Option<String>,
    pub up: Option<Proc>,
}

impl Agent {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("connect"));
        command
            .args(["--hub", &self.hub_url, "--config"])
            .arg(&self.config)
            .args(args);
        if let Some(ca) = &self.ca {
            command.env("SSL_CERT_FILE", ca);
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `share --json ARGS`, which must succeed; its JSON.
    pub fn share(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json", "share"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "share {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn expose(&self, port: u16, name: &str) {
        let target = format!("127.0.0.1:{port}");
        let out = self.run(&["expose", &target, "--name", name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log(&self) -> String {
        self.up.as_ref().map(Proc::log_text).unwrap_or_default()
    }
}

/// The page at `url` once the share serves it (the sharer's tunnel may still be coming up).
pub fn page(world: &World, url: &str, extra: &[&str]) -> String {
    let mut body = String::new();
    eventually(&format!("{url} served"), Duration::from_secs(20), || {
        let mut args = vec!["-f"];
        args.extend_from_slice(extra);
        args.push(url);
        let out = world.curl(&args);
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    body
}

/// The sharing machine's test server, on 127.0.0.1:PORT (HTTPS with CERT KEY), leaving
/// marker files in MARKERS: GET / answers what it saw; GET /stream sends an endless body
/// (marker `closed` when the visitor's connection is gone); POST /upload reads a chunked
/// body (marker `first` at its first chunk) and answers `got=N`; GET /stall never answers
/// (marker `stalled`); GET /missing is a 404.
pub const APP: &str = r#"
import http.server, os, ssl, sys, time
port, markers = int(sys.argv[1]), sys.argv[2]
tls = len(sys.argv) > 4
def mark(name):
    open(os.path.join(markers, name), "w").close()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"s" * 16384)
                    self.wfile.flush()
                    time.sleep(0.02)
            except OSError:
                mark("closed")
                return
        if self.path == "/missing":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/stall":
            mark("stalled")
            time.sleep(60)
            return
        body = ("tls=%s path=%s proto=%s port=%d\n" % ("yes" if tls else "no", self.path,
                self.headers.get("X-Forwarded-Proto"), port)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        got = 0
        while True:
            size = int(self.rfile.readline().strip(), 16)
            if size == 0:
                self.rfile.readline()
                break
            got += len(self.rfile.read(size))
            self.rfile.readline()
            mark("first")
        body = ("got=%d\n" % got).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
if tls:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;
