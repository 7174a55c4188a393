//! `share --ssh` and `join --ssh` with Debian's OpenSSH server on the sharer and the
//! system `ssh` on the joiners, in network namespaces. Needs root (namespaces, TUN,
//! sshd); scripts/test.sh runs it as root in CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use connect_e2e::cluster::*;
use connect_e2e::*;
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";
/// Other people's lines, which must survive every share byte for byte.
const OTHER_KEYS: &str = "# team keys, hand-written\n\
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNvbWVvbmUgZWxzZSBrZXkgZm9yIHRlc3RpbmcK bob@laptop\n\
\n\
no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFub3RoZXIgb25lIGZvciB0ZXN0aW5nIHRoaXMK ci\n";

/// `connect ARGS` in `ns` with a home of its own (so the sharer's `authorized_keys` is the
/// test's, never root's) and a time limit.
fn connect_in(
    ns: &Netns,
    home: &Path,
    config: &str,
    envs: &[(&str, &str)],
    args: &[&str],
) -> Output {
    let hub = format!("http://{}:7070", Net::hub_ip(1));
    let mut command = ns.command("timeout");
    command
        .arg("60")
        .arg(binary("connect"))
        .args(["--hub", &hub, "--config", config])
        .args(args)
        .env("HOME", home);
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// sshd on the sharer's loopback, port 22, trusting only the test's `authorized_keys`.
fn start_sshd(net: &Net, ns: &Netns, authorized_keys: &Path) -> Proc {
    let dir = net.dir.join("sshd");
    std::fs::create_dir_all(&dir).unwrap();
    let host_key = dir.join("host_key");
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            host_key.to_str().unwrap(),
        ],
    );
    // sshd's privilege-separation directory; Debian's package normally makes it.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let authorized = format!("AuthorizedKeysFile={}", authorized_keys.display());
    let sshd = net.spawn(
        ns,
        "sshd",
        Path::new("/usr/sbin/sshd"),
        &[
            "-D",
            "-e",
            "-f",
            "/dev/null",
            "-h",
            host_key.to_str().unwrap(),
            "-o",
            "ListenAddress=127.0.0.1:22",
            "-o",
            &authorized,
            "-o",
            "StrictModes=no",
            "-o",
            "UsePAM=no",
            "-o",
            "PidFile=none",
            "-o",
            "PermitRootLogin=prohibit-password",
        ],
        &[],
        false,
    );
    eventually("sshd listening", Duration::from_secs(10), || {
        ns.output("bash", &["-c", "exec 3<>/dev/tcp/127.0.0.1/22"])
            .status
            .success()
    });
    sshd
}

struct Setup {
    net: Net,
    sharer: Sharer,
    home: PathBuf,
    authorized_keys: PathBuf,
    password_file: PathBuf,
}

impl Setup {
    fn share(&self, extra: &[&str]) -> Value {
        let mut args = vec!["--json", "share", "--name", "ssh-env"];
        args.extend_from_slice(extra);
        let out = connect_in(
            &self.sharer.host.ns,
            &self.home,
            &self.sharer.config,
            &[],
            &args,
        );
        assert!(out.status.success(), "share failed: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn ssh_share(&self, extra: &[&str]) -> String {
        let file = self.password_file.to_str().unwrap().to_owned();
        let mut args = vec!["--ssh", "--ssh-password-file", file.as_str()];
        args.extend_from_slice(extra);
        let created = self.share(&args);
        assert!(
            created["routes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "ssh" && r["port"] == 22),
            "no ssh route in {created}"
        );
        created["code"].as_str().unwrap().to_owned()
    }

    /// `connect join [--no-tun] --ssh CODE -- echo ssh-ok` on `host`.
    fn ssh_join(&self, host: &Host, code: &str, password: &str, userspace: bool) -> Output {
        let config = self.net.dir.join(format!("{}-{code}/config.toml", host.ip));
        let mut args = vec!["join", code, "--ssh"];
        if userspace {
            args.push("--no-tun");
        }
        args.extend_from_slice(&["--", "echo", "ssh-ok"]);
        connect_in(
            &host.ns,
            &self.home,
            config.to_str().unwrap(),
            &[("CONNECT_SSH_PASSWORD", password)],
            &args,
        )
    }

    fn authorized(&self) -> String {
        std::fs::read_to_string(&self.authorized_keys).unwrap()
    }

    fn revoke(&self, code: &str) {
        let out = connect_in(
            &self.sharer.host.ns,
            &self.home,
            &self.sharer.config,
            &[],
            &["share", "--revoke", code],
        );
        assert!(out.status.success(), "revoke failed: {}", text(&out));
    }
}

#[test]
#[ignore = "needs root"]
fn ssh_through_a_share_with_tun_and_userspace_joiners() {
    assert!(is_root(), "run as root (scripts/test.sh does in CI)");
    let mut net = Net::new("s");
    let sharer = new_sharer(&mut net);
    let joiner = net.host("joiner");
    let home = net.dir.join("home");
    let authorized_keys = home.join(".ssh/authorized_keys");
    std::fs::create_dir_all(authorized_keys.parent().unwrap()).unwrap();
    std::fs::write(&authorized_keys, OTHER_KEYS).unwrap();
    let password_file = net.dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let _hub = start_hub(&net, &net.dir.join("hub"));
    let _sshd = start_sshd(&net, &sharer.host.ns, &authorized_keys);
    let _agent = start_agent(&net, &sharer);
    let setup = Setup {
        net,
        sharer,
        home,
        authorized_keys,
        password_file,
    };

    // A share without --ssh does not open port 22, even with every port shared.
    let plain = setup.share(&["--all-ports"]);
    let plain_code = plain["code"].as_str().unwrap();
    let config = setup.net.dir.join("plain/config.toml");
    let (mut plain_join, ready) = {
        let hub = format!("http://{}:7070", Net::hub_ip(1));
        let args = [
            "--hub",
            hub.as_str(),
            "--config",
            config.to_str().unwrap(),
            "--json",
            "join",
            plain_code,
        ];
        let mut proc = setup.net.spawn(
            &joiner.ns,
            "plain-join",
            &binary("connect"),
            &args,
            &[],
            true,
        );
        let ready = proc.json_line(Duration::from_secs(30));
        (proc, ready)
    };
    let machine = ready["machine_ip"].as_str().unwrap().to_owned();
    let probe = |port: u16| {
        joiner
            .ns
            .output(
                "timeout",
                &[
                    "5",
                    "bash",
                    "-c",
                    &format!("exec 3<>/dev/tcp/{machine}/{port}"),
                ],
            )
            .status
            .success()
    };
    assert!(!probe(22), "port 22 reachable on a share without --ssh");
    setup.revoke(plain_code);
    // Its interface must be gone before the next share reuses the address block.
    assert!(plain_join.wait_exit(Duration::from_secs(15)).is_some());

    // --ssh: the key is in authorized_keys beside the other lines, and both kinds of
    // joiner get a shell with it.
    let code = setup.ssh_share(&[]);
    let with_key = setup.authorized();
    assert!(with_key.starts_with(OTHER_KEYS), "{with_key}");
    assert_eq!(with_key.lines().count(), OTHER_KEYS.lines().count() + 1);
    assert!(with_key.contains("ssh-ed25519 "));
    for userspace in [false, true] {
        let out = setup.ssh_join(&joiner, &code, PASSWORD, userspace);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ssh-ok"),
            "join --ssh (userspace: {userspace}) failed: {}",
            text(&out)
        );
    }

    // A wrong password: one clear line (and a hint), exit 1, no ssh run.
    let out = setup.ssh_join(&joiner, &code, "not the password", false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().find(|l| l.starts_with("[x] ")).unwrap_or("");
    assert!(first.contains("Wrong password"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ssh-ok"));

    // Revoke: the marker line is gone, every other byte as it was.
    setup.revoke(&code);
    assert_eq!(setup.authorized(), OTHER_KEYS);

    // --ssh-once: the first session gets in, the key leaves authorized_keys as it
    // starts, and the hub refuses a second download.
    let once = setup.ssh_share(&["--ssh-once"]);
    assert_ne!(setup.authorized(), OTHER_KEYS);
    let out = setup.ssh_join(&joiner, &once, PASSWORD, false);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ssh-ok"),
        "first --ssh-once join failed: {}",
        text(&out)
    );
    assert_eq!(
        setup.authorized(),
        OTHER_KEYS,
        "one-time key still installed"
    );
    let out = setup.ssh_join(&joiner, &once, PASSWORD, true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already used"),
        "{}",
        text(&out)
    );
    setup.revoke(&once);
    assert_eq!(setup.authorized(), OTHER_KEYS);
}
