//! A hub, a sharing agent and joiners in the namespaces of a [`Net`]: what most
//! end-to-end tests start with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::{Host, Net, Netns, Proc, binary, eventually, run, sha256_file};

pub const HUB_PORT: u16 = 7070;

pub struct Sharer {
    pub host: Host,
    pub config: String,
}

impl Sharer {
    /// The sharing agent on `host`, its config in `net.dir/sharer/`.
    pub fn on(net: &Net, host: Host) -> Self {
        let config = net.dir.join("sharer/config.toml");
        Self {
            host,
            config: config.to_str().unwrap().to_owned(),
        }
    }
}

/// The contract's `--json` shapes: these keys, whatever else.
pub fn assert_keys(value: &Value, keys: &[&str]) {
    for key in keys {
        assert!(value.get(key).is_some(), "{key:?} missing from {value}");
    }
}

/// Starts the hub in the hub namespace and waits for /healthz.
pub fn start_hub(net: &Net, data: &Path) -> Proc {
    let data = data.to_str().unwrap().to_owned();
    let hub = net.spawn(
        &net.hub,
        "hub",
        &binary("connect-coordinator"),
        &[
            "--listen",
            &format!("0.0.0.0:{HUB_PORT}"),
            "--insecure",
            "--open-registration",
            "--data-dir",
            &data,
            "--public-url",
            &format!("http://{}:{HUB_PORT}", Net::hub_ip(1)),
        ],
        &[],
        false,
    );
    let url = format!("http://127.0.0.1:{HUB_PORT}/healthz");
    eventually("hub healthy", Duration::from_secs(20), || {
        net.hub
            .output("curl", &["-sf", "-m", "1", &url])
            .status
            .success()
    });
    hub
}

pub fn hub_url() -> String {
    format!("http://{}:{HUB_PORT}", Net::hub_ip(1))
}

pub fn connect(ns: &Netns, config: &str, args: &[&str]) -> std::process::Output {
    let hub = hub_url();
    let mut all = vec!["--hub", hub.as_str(), "--config", config];
    all.extend_from_slice(args);
    ns.output(binary("connect"), &all)
}

pub fn connect_ok(ns: &Netns, config: &str, args: &[&str]) -> String {
    succeeded(&connect(ns, config, args), args)
}

/// The stdout of `connect ARGS`, which must have succeeded.
fn succeeded(output: &std::process::Output, args: &[&str]) -> String {
    assert!(
        output.status.success(),
        "connect {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn start_agent(net: &Net, sharer: &Sharer) -> Proc {
    let agent = net.spawn(
        &sharer.host.ns,
        "agent",
        &binary("connect"),
        &[
            "--hub",
            &hub_url(),
            "--config",
            &sharer.config,
            "up",
            "--name",
            "alice",
        ],
        &[],
        false,
    );
    eventually("agent up", Duration::from_secs(20), || {
        connect(&sharer.host.ns, &sharer.config, &["status"])
            .status
            .success()
    });
    agent
}

pub fn join(net: &Net, host: &Host, what: &str, code: &str, extra: &[&str]) -> (Proc, Value) {
    let config = net.dir.join(format!("{what}/config.toml"));
    let config = config.to_str().unwrap();
    let hub = hub_url();
    let mut args = vec![
        "--hub",
        hub.as_str(),
        "--config",
        config,
        "--json",
        "join",
        code,
    ];
    args.extend_from_slice(extra);
    let mut proc = net.spawn(&host.ns, what, &binary("connect"), &args, &[], true);
    let ready = proc.json_line(Duration::from_secs(30));
    (proc, ready)
}

pub fn address_of(ready: &Value, name: &str) -> String {
    ready["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {ready}"))["address"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn split(address: &str) -> (String, String) {
    let (host, port) = address.rsplit_once(':').unwrap();
    (host.to_owned(), port.to_owned())
}

pub fn new_sharer(net: &mut Net) -> Sharer {
    let host = net.host("sharer");
    let config = net
        .dir
        .join("sharer/config.toml")
        .to_str()
        .unwrap()
        .to_owned();
    Sharer { host, config }
}

/// `size` random bytes as `net.dir/www/NAME`, served by python's http.server on the
/// namespace's 127.0.0.1:8080; returns the server, once it answers, and the file's sha256.
pub fn serve_random_file(net: &Net, ns: &Netns, name: &str, size: usize) -> (Proc, String) {
    let www = net.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let file = www.join(name);
    run(
        "sh",
        &[
            "-c",
            &format!("head -c {size} /dev/urandom > {}", file.display()),
        ],
    );
    let server = net.spawn(
        ns,
        "http",
        Path::new("python3"),
        &[
            "-m",
            "http.server",
            "8080",
            "--bind",
            "127.0.0.1",
            "--directory",
            www.to_str().unwrap(),
        ],
        &[],
        false,
    );
    eventually("http server up", Duration::from_secs(20), || {
        ns.output(
            "curl",
            &["-sf", "-o", "/dev/null", "http://127.0.0.1:8080/"],
        )
        .status
        .success()
    });
    (server, sha256_file(&file))
}

/// Exposes the sharer's `localhost:8080` as `web` and shares it; the code.
pub fn share_web(sharer: &Sharer) -> String {
    connect_ok(
        &sharer.host.ns,
        &sharer.config,
        &["expose", "localhost:8080", "--name", "web"],
    );
    let created: Value = serde_json::from_str(&connect_ok(
        &sharer.host.ns,
        &sharer.config,
        &["--json", "share"],
    ))
    .unwrap();
    created["code"].as_str().unwrap().to_owned()
}

/// The sharer's view of its joiners (not the hub's own peer): (path, endpoint) of each.
pub fn joiner_paths(sharer: &Sharer) -> Vec<(String, String)> {
    let status: Value = serde_json::from_str(&connect_ok(
        &sharer.host.ns,
        &sharer.config,
        &["--json", "status"],
    ))
    .unwrap();
    status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["agent"] != "hub (public URLs)")
        .map(|p| {
            (
                p["path"].as_str().unwrap_or_default().to_owned(),
                p["endpoint"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A machine running `connect` against a hub of its own choosing, with environment
/// variables of its own (an HTTP proxy, a CA): for tests whose hub is not the plain one
/// of [`start_hub`].
pub struct Machine {
    pub host: Host,
    pub config: PathBuf,
    pub hub: String,
    pub env: Vec<(String, String)>,
}

impl Machine {
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["--hub", self.hub.as_str(), "--config"];
        all.push(self.config.to_str().unwrap());
        all.extend_from_slice(args);
        all
    }

    pub fn connect(&self, args: &[&str]) -> std::process::Output {
        let mut command = self.host.ns.command(binary("connect"));
        command.args(self.args(args));
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command.output().unwrap()
    }

    pub fn connect_ok(&self, args: &[&str]) -> String {
        succeeded(&self.connect(args), args)
    }

    /// Starts `connect ARGS` (`up`, `join`…) with output to `WHAT.log`.
    pub fn spawn(&self, net: &Net, what: &str, args: &[&str], pipe_stdout: bool) -> Proc {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let args = self.args(args);
        net.spawn(
            &self.host.ns,
            what,
            &binary("connect"),
            &args,
            &env,
            pipe_stdout,
        )
    }
}
