//! The harness of the end-to-end tests, after the kernel's WireGuard `netns.sh`: network
//! namespaces with unique names, veth links, real processes, and RAII guards that delete
//! what they made by name and stop what they started by PID. Readiness is polled (health
//! endpoints, exit codes, a JSON line), never slept for.
//!
//! Topology: a `hub` namespace is the "internet"; every other host has its own namespace
//! and one veth link to the hub namespace, with the hub as its default gateway. The hub
//! does not forward, so hosts reach each other only through the relay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod cluster;
pub mod loopback;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs a command and panics with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The workspace's built binaries (`target/<profile>/`), next to this test's `deps/`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built; run cargo build --workspace first",
        path.display()
    );
    path
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// One network namespace; deleted by name on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Self {
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Self { name }
    }

    /// A command inside this namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    pub fn output(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .expect("cannot run ip netns exec")
    }

    pub fn ok(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
        let program = program.as_ref().to_owned();
        let output = self.output(&program, args);
        assert!(
            output.status.success(),
            "{:?} {args:?} in {} failed: {}{}",
            program,
            self.name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A process started by a test; stopped by PID (SIGTERM, then SIGKILL) on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub what: String,
}

impl Proc {
    /// Starts `command` with its output in `dir/WHAT.log` (stdout piped instead when
    /// `pipe_stdout`, for [`Proc::json_line`]).
    pub fn start(dir: &Path, what: &str, command: &mut Command, pipe_stdout: bool) -> Self {
        let log = dir.join(format!("{what}.log"));
        let file = std::fs::File::create(&log).unwrap();
        command
            .stderr(file.try_clone().unwrap())
            .stdin(Stdio::null());
        if pipe_stdout {
            command.stdout(Stdio::piped());
        } else {
            command.stdout(file);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {what}: {err}"));
        Proc {
            child,
            log,
            what: what.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status();
    }

    /// Waits for exit up to `limit`; `None` if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reads stdout lines until one parses as JSON; panics after `limit`.
    pub fn json_line(&mut self, limit: Duration) -> serde_json::Value {
        let stdout = self.child.stdout.take().expect("stdout not piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(value);
                    return;
                }
            }
        });
        rx.recv_timeout(limit).unwrap_or_else(|_| {
            panic!(
                "{} printed no JSON line in {limit:?}; log:\n{}",
                self.what,
                self.log_text()
            )
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("TERM");
            if self.wait_exit(Duration::from_secs(3)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Polls `check` until it holds; panics with `what` after `limit`.
pub fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The test network: a hub namespace and hosts hanging off it.
pub struct Net {
    prefix: String,
    pub hub: Netns,
    pub dir: PathBuf,
    hosts: u8,
    /// NAT routers made by [`Net::behind_nat`], kept for the life of the network.
    routers: Vec<Host>,
}

pub struct Host {
    pub ns: Netns,
    pub ip: String,
}

impl Net {
    pub fn new(tag: &str) -> Self {
        let prefix = format!("c{}{tag}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("connect-e2e-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let hub = Netns::new(format!("{prefix}-hub"));
        Self {
            prefix,
            hub,
            dir,
            hosts: 0,
            routers: Vec::new(),
        }
    }

    /// A host in its own namespace, on 10.77.N.2/24 with the hub at 10.77.N.1.
    pub fn host(&mut self, role: &str) -> Host {
        self.hosts += 1;
        let n = self.hosts;
        let ns = Netns::new(format!("{}-{role}", self.prefix));
        wire(
            &self.hub,
            &format!("{}h{n}", self.prefix),
            &ns,
            &format!("{}x{n}", self.prefix),
            &format!("10.77.{n}"),
        );
        Host {
            ns,
            ip: format!("10.77.{n}.2"),
        }
    }

    /// A host on a private LAN (192.168.N.2/24) behind a NAT router of its own (masquerade
    /// out, nothing unsolicited in), the router being an ordinary host of this network.
    /// The hub's namespace then forwards between its links, so it plays the internet too:
    /// NATed hosts reach each other only as the routers' masquerading lets them.
    pub fn behind_nat(&mut self, role: &str) -> Host {
        let router = self.host(&format!("{role}nat"));
        let n = self.hosts;
        let ns = Netns::new(format!("{}-{role}", self.prefix));
        wire(
            &router.ns,
            &format!("{}r{n}", self.prefix),
            &ns,
            &format!("{}l{n}", self.prefix),
            &format!("192.168.{n}"),
        );
        self.make_router(router);
        Host {
            ns,
            ip: format!("192.168.{n}.2"),
        }
    }

    /// Hosts on one private LAN (192.168.N.2, .3, … on a bridge) behind one NAT router
    /// (as [`Net::behind_nat`]) that does not hairpin: a LAN host sending to the router's
    /// public address reaches nobody, as on most home routers.
    pub fn behind_one_nat(&mut self, role: &str, hosts: &[&str]) -> Vec<Host> {
        let router = self.host(&format!("{role}nat"));
        let n = self.hosts;
        let lan = format!("{}br{n}", self.prefix);
        let r = &router.ns;
        r.ok("ip", &["link", "add", &lan, "type", "bridge"]);
        r.ok(
            "ip",
            &["addr", "add", &format!("192.168.{n}.1/24"), "dev", &lan],
        );
        r.ok("ip", &["link", "set", &lan, "up"]);
        let mut out = Vec::new();
        for (i, name) in hosts.iter().enumerate() {
            let ns = Netns::new(format!("{}-{name}", self.prefix));
            let (a, b) = (
                format!("{}b{n}{i}", self.prefix),
                format!("{}c{n}{i}", self.prefix),
            );
            let ip = format!("192.168.{n}.{}", i + 2);
            run(
                "ip",
                &["link", "add", &a, "type", "veth", "peer", "name", &b],
            );
            run("ip", &["link", "set", &a, "netns", &r.name]);
            run("ip", &["link", "set", &b, "netns", &ns.name]);
            r.ok("ip", &["link", "set", &a, "master", &lan, "up"]);
            ns.ok("ip", &["addr", "add", &format!("{ip}/24"), "dev", &b]);
            ns.ok("ip", &["link", "set", &b, "up"]);
            ns.ok(
                "ip",
                &["route", "add", "default", "via", &format!("192.168.{n}.1")],
            );
            out.push(Host { ns, ip });
        }
        let public = router.ip.clone();
        self.make_router(router);
        // No hairpin: what the LAN sends to the router's own public address goes nowhere.
        self.router(role).ok(
            "nft",
            &[
                "add", "rule", "ip", "filter", "input", "iifname", &lan, "ip", "daddr", &public,
                "drop",
            ],
        );
        out
    }

    /// Makes `router` (an ordinary host of this network) masquerade what leaves by its
    /// uplink and, like a home router, refuse anything unsolicited from outside.
    fn make_router(&mut self, router: Host) {
        let n = router.ip.split('.').nth(2).unwrap().to_owned();
        let uplink = format!("{}x{n}", self.prefix);
        let r = &router.ns;
        r.ok("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        r.ok("nft", &["add", "table", "ip", "nat"]);
        r.ok(
            "nft",
            &[
                "add",
                "chain",
                "ip",
                "nat",
                "post",
                "{ type nat hook postrouting priority 100 ; }",
            ],
        );
        masquerade(r, &uplink, &[]);
        // Like a home router, nothing unsolicited reaches the router itself from outside.
        // (Without it, Linux keeps state for a peer's first probe that then clashes with
        // our own mapping toward that peer, and hole punching through both NATs fails.)
        r.ok("nft", &["add", "table", "ip", "filter"]);
        r.ok(
            "nft",
            &[
                "add",
                "chain",
                "ip",
                "filter",
                "input",
                "{ type filter hook input priority 0 ; }",
            ],
        );
        r.ok(
            "nft",
            &[
                "add", "rule", "ip", "filter", "input", "iifname", &uplink, "ct", "state", "new",
                "drop",
            ],
        );
        self.hub.ok("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        self.routers.push(router);
    }

    /// Makes the router of the host [`Net::behind_nat`] made for `role` drop every UDP
    /// datagram its LAN sends out, as corporate and hotel firewalls do; TCP still passes.
    pub fn block_udp(&self, role: &str) {
        let rule = [
            "add",
            "rule",
            "ip",
            "connect_block",
            "out",
            "meta",
            "l4proto",
            "udp",
            "drop",
        ];
        self.forward_filter(role, "").ok("nft", &rule);
    }

    /// A forward chain (`connect_block out`, with `policy`) on `role`'s router, which
    /// [`Net::unblock_udp`] deletes.
    fn forward_filter(&self, role: &str, policy: &str) -> &Netns {
        let router = self.router(role);
        let chain = format!("{{ type filter hook forward priority -10 ; {policy} }}");
        router.ok("nft", &["add", "table", "ip", "connect_block"]);
        router.ok(
            "nft",
            &["add", "chain", "ip", "connect_block", "out", &chain],
        );
        router
    }

    /// Takes the home router's input firewall off `role`'s router: unsolicited packets then
    /// reach the router itself, as on a bare Linux masquerade box (where conntrack keeps
    /// state for them).
    pub fn open_router_input(&self, role: &str) {
        self.router(role)
            .ok("nft", &["delete", "table", "ip", "filter"]);
    }

    /// Makes `role`'s router forward nothing at all: what its LAN reaches is the router
    /// itself (a proxy running there, say).
    pub fn block_all(&self, role: &str) {
        self.forward_filter(role, "policy drop ;");
    }

    /// Makes `role`'s router pick a random public port for each new mapping, as
    /// carrier-grade and some enterprise NATs do: a port kept for one destination is not
    /// the one another sees (an endpoint-dependent NAT).
    pub fn randomise_nat_ports(&self, role: &str) {
        let router = self.router_host(role);
        // The router's uplink is `{prefix}x{N}` for its address 10.77.N.2.
        let n = router.ip.split('.').nth(2).unwrap();
        let uplink = format!("{}x{n}", self.prefix);
        router
            .ns
            .ok("nft", &["flush", "chain", "ip", "nat", "post"]);
        masquerade(&router.ns, &uplink, &["fully-random"]);
    }

    /// Lets UDP through `role`'s router again (undoes [`Net::block_udp`]).
    pub fn unblock_udp(&self, role: &str) {
        self.router(role)
            .ok("nft", &["delete", "table", "ip", "connect_block"]);
    }

    /// The router [`Net::behind_nat`] made for `role`.
    pub fn router(&self, role: &str) -> &Netns {
        &self.router_host(role).ns
    }

    fn router_host(&self, role: &str) -> &Host {
        let name = format!("{}-{role}nat", self.prefix);
        self.routers
            .iter()
            .find(|router| router.ns.name == name)
            .unwrap_or_else(|| panic!("no router for {role}"))
    }

    /// A host on an IPv6-only link (fd00:77:N::2/64, the hub namespace at fd00:77:N::1,
    /// routing between its links): no IPv4 address but loopback's.
    pub fn host_v6(&mut self, role: &str) -> Host {
        self.hosts += 1;
        let n = self.hosts;
        let ns = Netns::new(format!("{}-{role}", self.prefix));
        let (a, b) = (
            format!("{}h{n}", self.prefix),
            format!("{}x{n}", self.prefix),
        );
        run(
            "ip",
            &["link", "add", &a, "type", "veth", "peer", "name", &b],
        );
        run("ip", &["link", "set", &a, "netns", &self.hub.name]);
        run("ip", &["link", "set", &b, "netns", &ns.name]);
        let hub = format!("fd00:77:{n}::1");
        let (upper, lower) = (format!("{hub}/64"), format!("fd00:77:{n}::2/64"));
        self.hub
            .ok("ip", &["-6", "addr", "add", &upper, "dev", &a, "nodad"]);
        self.hub.ok("ip", &["link", "set", &a, "up"]);
        ns.ok("ip", &["-6", "addr", "add", &lower, "dev", &b, "nodad"]);
        ns.ok("ip", &["link", "set", &b, "up"]);
        ns.ok("ip", &["-6", "route", "add", "default", "via", &hub]);
        self.hub
            .ok("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
        Host {
            ns,
            ip: format!("fd00:77:{n}::2"),
        }
    }

    /// The hub's address as seen from host `n` (each link has its own).
    pub fn hub_ip(n: u8) -> String {
        format!("10.77.{n}.1")
    }

    /// Starts `program args` in `ns` with output to a log file.
    pub fn spawn(
        &self,
        ns: &Netns,
        what: &str,
        program: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        pipe_stdout: bool,
    ) -> Proc {
        let mut command = ns.command(program);
        command.args(args);
        for (k, v) in envs {
            command.env(k, v);
        }
        Proc::start(&self.dir, what, &mut command, pipe_stdout)
    }
}

/// Masquerades what leaves `router` by `uplink` (with nft's `masquerade` options `extra`).
fn masquerade(router: &Netns, uplink: &str, extra: &[&str]) {
    let mut rule = vec![
        "add",
        "rule",
        "ip",
        "nat",
        "post",
        "oifname",
        uplink,
        "masquerade",
    ];
    rule.extend_from_slice(extra);
    router.ok("nft", &rule);
}

/// A veth pair from `upper` (end `a`, SUBNET.1/24) to `lower` (end `b`, SUBNET.2/24), both
/// up, with `lower`'s default route through `upper`.
fn wire(upper: &Netns, a: &str, lower: &Netns, b: &str, subnet: &str) {
    run("ip", &["link", "add", a, "type", "veth", "peer", "name", b]);
    run("ip", &["link", "set", a, "netns", &upper.name]);
    run("ip", &["link", "set", b, "netns", &lower.name]);
    upper.ok("ip", &["addr", "add", &format!("{subnet}.1/24"), "dev", a]);
    upper.ok("ip", &["link", "set", a, "up"]);
    lower.ok("ip", &["addr", "add", &format!("{subnet}.2/24"), "dev", b]);
    lower.ok("ip", &["link", "set", b, "up"]);
    lower.ok(
        "ip",
        &["route", "add", "default", "via", &format!("{subnet}.1")],
    );
}

impl Drop for Net {
    fn drop(&mut self) {
        // Namespaces go with their guards; veth ends vanish with them.
        if std::env::var_os("CONNECT_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A throwaway CA (`ca.pem`) and a certificate from it for `san` (`hub.pem`, `hub.key`)
/// in `dir`; `san` as openssl writes it, e.g. `DNS:localhost,IP:10.77.1.1`.
pub fn certificates(dir: &Path, san: &str) {
    let at = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = ["-x509", "-days", "1", "-subj", "/CN=connect test CA"];
    let (ca_key, ca_pem) = (at("ca.key"), at("ca.pem"));
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(ca);
    args.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    run("openssl", &args);
    let (key, csr) = (at("hub.key"), at("hub.csr"));
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-subj",
        "/CN=connect test hub",
        "-keyout",
        &key,
        "-out",
        &csr,
    ]);
    run("openssl", &args);
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\n"),
    )
    .unwrap();
    let (ext, pem) = (at("ext.cnf"), at("hub.pem"));
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
}

/// A TCP echo server on loopback for the life of the test process; returns its port.
pub fn tcp_echo() -> u16 {
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
            });
        }
    });
    port
}

/// A free loopback port, for processes that need no namespace.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A hub on loopback (no namespace needed) with `args` added, logging to
/// `dir/NAME.log`; healthy when this returns.
pub fn loopback_hub(dir: &Path, name: &str, port: u16, args: &[&str]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let child = Command::new(binary("connect-coordinator"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let hub = Proc {
        child,
        log,
        what: name.to_owned(),
    };
    eventually(&format!("{name} healthy"), Duration::from_secs(20), || {
        Command::new("curl")
            .args([
                "-sf",
                "-m",
                "1",
                &format!("http://127.0.0.1:{port}/healthz"),
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    hub
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A WebSocket echo server (Debian's python3-websockets) on 127.0.0.1:PORT.
pub const WS_SERVER: &str = r#"
import asyncio, sys, websockets
async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)
async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1])):
        await asyncio.Future()
asyncio.run(main())
"#;

/// Connects to ws://HOST:PORT/ on 127.0.0.1:PORT (so Host names the share), or to
/// wss://… trusting the CA file given third, sends a message, prints the echo.
pub const WS_CLIENT: &str = r#"
import asyncio, ssl, sys, websockets
async def main():
    tls = {}
    if len(sys.argv) > 3:
        tls = {"ssl": ssl.create_default_context(cafile=sys.argv[3]), "server_hostname": sys.argv[1]}
    uri = f"{'wss' if tls else 'ws'}://{sys.argv[1]}:{sys.argv[2]}/"
    async with websockets.connect(uri, host="127.0.0.1", port=int(sys.argv[2]), open_timeout=10, **tls) as ws:
        await ws.send("ping through the tunnel")
        print(await asyncio.wait_for(ws.recv(), 10))
asyncio.run(main())
"#;
