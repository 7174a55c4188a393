//! Who may join, decided by the sharer: `share --max-joins N` (the code stops working after
//! N joiners) and `share --approve` (each joiner waits until the sharer approves it, from
//! the dashboard or with `--approve-join`, or refuses it with `--deny-join`). The hub,
//! agents and services run on loopback; no root needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use connect_e2e::loopback::*;
use connect_e2e::*;
use serde_json::Value;

fn joiner(world: &World, name: &str, code: &str) -> Proc {
    let config = world.dir.join(name).join("config.toml");
    Proc::start(
        &world.dir,
        name,
        std::process::Command::new(binary("connect"))
            .args(["--hub", &world.hub_url, "--config"])
            .arg(&config)
            .args(["--json", "join", code, "--no-tun"]),
        true,
    )
}

#[test]
fn max_joins_lets_n_joiners_in_and_refuses_the_next() {
    let world = World::new("max-joins", false, &[]);
    let alice = world.agent("alice");
    let (_app, port) = world.app("mj-app", false);
    alice.expose(port, "web");
    let share = alice.share(&["--max-joins", "1"]);
    let code = share["code"].as_str().unwrap();
    let mut first = joiner(&world, "first", code);
    first.json_line(Duration::from_secs(30));
    let mut second = joiner(&world, "second", code);
    let status = second
        .wait_exit(Duration::from_secs(20))
        .expect("second joiner still running");
    assert_eq!(status.code(), Some(1));
    assert!(
        second
            .log_text()
            .contains("[x] This share code has been used by as many joiners"),
        "{}",
        second.log_text()
    );
    // Bad input is one line and exit 1.
    let out = alice.run(&["share", "--max-joins", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("[x] "));
}

#[test]
fn approve_lets_a_joiner_in_only_when_the_sharer_says_so() {
    let world = World::new("approve", false, &[]);
    let alice = world.agent("alice");
    let (_app, port) = world.app("ap-app", false);
    alice.expose(port, "web");
    let share = alice.share(&["--approve"]);
    let code = share["code"].as_str().unwrap().to_owned();

    // The first joiner waits, shown as pending by the agent; `--approve-join` lets it in.
    let mut waiting = joiner(&world, "waiting", &code);
    let mut name = String::new();
    eventually(
        "the agent shows the waiting joiner",
        Duration::from_secs(20),
        || {
            let log = alice.log();
            name = log
                .lines()
                .find_map(|l| l.strip_prefix("==> connect: ")?.split_once(" asks to join"))
                .map(|(who, _)| who.to_owned())
                .unwrap_or_default();
            !name.is_empty()
        },
    );
    assert!(
        waiting.wait_exit(Duration::from_secs(2)).is_none(),
        "let in unapproved"
    );
    let out = alice.run(&["share", "--approve-join", &code, "somebody-else"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "approved a joiner that is not waiting"
    );
    let out = alice.run(&["--json", "share", "--approve-join", &code, &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decided: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decided["decision"], "approved");
    waiting.json_line(Duration::from_secs(20));

    // The next one is refused: it hears so and stops waiting.
    let mut refused = joiner(&world, "refused", &code);
    eventually("the second joiner waits", Duration::from_secs(20), || {
        alice.log().matches(" asks to join").count() == 2
    });
    let out = alice.run(&["share", "--deny-join", &code, &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = refused
        .wait_exit(Duration::from_secs(10))
        .expect("denied joiner still waiting");
    assert_eq!(status.code(), Some(1));
    assert!(
        refused
            .log_text()
            .contains("[x] The sharer denied this join"),
        "{}",
        refused.log_text()
    );
    // The approved joiner is still in.
    assert!(waiting.wait_exit(Duration::from_millis(100)).is_none());
}
