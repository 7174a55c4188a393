//! The hub's web dashboard in a real browser (Debian's headless Chromium through
//! chromedriver): an agent's login link to its share's page with the join, the live peer
//! and the access log; Revoke cutting the joiner off; a waiting joiner approved from the
//! page; the admin creating and revoking an enrollment key. And what must fail: a login link used twice, a form without its CSRF
//! token, another agent's share. Every page is saved as a screenshot in
//! `target/tmp/dashboard/`. The hub, agents and services run on loopback; no root needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use connect_e2e::browser::Browser;
use connect_e2e::loopback::*;
use connect_e2e::*;
use serde_json::Value;

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

/// `connect dashboard --json --no-open`: the login link.
fn login_link(agent: &Agent) -> String {
    let out = agent.run(&["--json", "dashboard", "--no-open"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(link.as_object().map(|o| o.len()), Some(1), "{link}");
    link["url"].as_str().unwrap().to_owned()
}

/// The share's state as `share --list --json` gives it, by code.
fn state_of(agent: &Agent, code: &str) -> String {
    let out = agent.run(&["--json", "share", "--list"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list["shares"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"] == code)
        .map(|s| s["state"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{code} not in {list}"))
}

fn lookup_of(agent: &Agent, code: &str) -> String {
    let file = agent.config.parent().unwrap().join("shares.json");
    let shares: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    shares
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"] == code)
        .map(|s| s["lookup"].as_str().unwrap().to_owned())
        .unwrap()
}

/// What `POST path` with `body` from the page's own origin (its cookie included) answers.
async fn post_from_page(browser: &Browser, path: &str, body: &str) -> u64 {
    let script = format!(
        "return fetch({path:?}, {{method: 'POST', body: {body:?}, redirect: 'manual', \
         headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}}}).then(r => r.status);"
    );
    browser.eval(&script).await.as_u64().unwrap()
}

fn key_state(world: &World, id: &str) -> String {
    let out = Command::new(binary("connect-coordinator"))
        .args(["--data-dir", world.dir.join("hub").to_str().unwrap()])
        .args(["key", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    list.lines()
        .find(|l| l.starts_with(id))
        .and_then(|l| l.split_whitespace().nth(3))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{id} not in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_share_revokes_it_and_manages_keys_in_a_real_browser() {
    let world = World::new("dashboard", false, &[]);
    let shots = screenshots();
    let _ = std::fs::remove_dir_all(&shots);
    let alice = world.agent("alice");
    let bob = world.agent("bob");
    let (_app, app_port) = world.app("dash-app", false);
    alice.expose(app_port, "web");
    let share = alice.share(&["--name", "staging-env"]);
    let code = share["code"].as_str().unwrap().to_owned();
    let url = share["url"].as_str().unwrap().to_owned();
    let bobs = bob.share(&["--disable-http", "--name", "bobs-env"]);
    let bobs_lookup = lookup_of(&bob, bobs["code"].as_str().unwrap());

    // Bob joins Alice's share; visitors use its public URL (200s and a 404).
    let mut join = Proc::start(
        &world.dir,
        "bob-join",
        &mut bob.command(&["--json", "join", &code, "--no-tun"]),
        true,
    );
    join.json_line(Duration::from_secs(30));
    page(&world, &format!("{url}/hello"), &[]);
    for path in ["/", "/about", "/missing"] {
        world.curl(&["-o", "/dev/null", &format!("{url}{path}")]);
    }

    // Pages may not be framed and leak no referrer (a login link's token).
    let head = world.curl(&["-sI", &format!("{}/", world.hub_url)]);
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(head.contains("referrer-policy: no-referrer"), "{head}");

    // Alice signs in with her link and finds her share, not Bob's.
    let browser = Browser::start(&world.dir, "alice", &shots).await;
    let link = login_link(&alice);
    browser.goto(&link).await;
    browser.screenshot("login").await;
    browser.click("#sign-in").await;
    browser.wait_for_text("staging-env", false).await;
    let home = browser.text("main").await;
    assert!(
        !home.contains("bobs-env"),
        "another agent's share shown: {home}"
    );
    assert!(home.contains(&url), "public URL missing: {home}");
    browser.screenshot("shares").await;

    // The share's page: the join, the live peer (reported by Alice's agent every few
    // seconds) and the access log, newest first and filterable by status.
    browser.click("table.shares a").await;
    browser.wait_for_text("Live peers", false).await;
    let joins = browser.text("table.joins").await;
    assert!(joins.contains("bob"), "join missing: {joins}");
    // The live peers refresh in place (the page's script), without a reload.
    browser
        .wait_for_text_in("table.peers tbody", "bob", false)
        .await;
    let localised = browser
        .eval("const t = document.querySelector('time'); return t.textContent !== t.getAttribute('datetime');")
        .await;
    assert_eq!(
        localised,
        Value::Bool(true),
        "times not shown in the visitor's zone"
    );
    let log = browser.text("table.log").await;
    for path in ["/hello", "/about", "/missing"] {
        assert!(
            log.contains(path),
            "{path} missing from the access log: {log}"
        );
    }
    browser.screenshot("share").await;
    browser
        .eval("document.getElementById('status').value = '4xx'; return true;")
        .await;
    browser.click("form.filter button").await;
    browser.wait_for_text("Page 1", false).await;
    let filtered = browser.text("table.log").await;
    assert!(
        filtered.contains("/missing") && !filtered.contains("/hello"),
        "{filtered}"
    );
    browser.screenshot("share-4xx").await;

    // Readable at phone width: the page itself does not scroll sideways (tables do).
    browser.client.set_window_size(390, 844).await.unwrap();
    let overflow = browser
        .eval("return document.documentElement.scrollWidth - window.innerWidth;")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "page wider than the phone: {overflow}"
    );
    browser.screenshot("share-phone").await;
    browser.client.set_window_size(1280, 900).await.unwrap();

    // What must fail: a form without (or with a wrong) CSRF token, another agent's share,
    // the same login link again.
    let share_path = browser
        .client
        .current_url()
        .await
        .unwrap()
        .path()
        .to_owned();
    let revoke_path = format!("{share_path}/revoke");
    assert_eq!(post_from_page(&browser, &revoke_path, "").await, 403);
    assert_eq!(
        post_from_page(&browser, &revoke_path, "csrf=forged").await,
        403
    );
    assert_eq!(state_of(&alice, &code), "active");
    browser
        .goto(&format!("{}/shares/{bobs_lookup}", world.hub_url))
        .await;
    browser.wait_for_text("Not found", false).await;
    assert_eq!(
        post_from_page(&browser, &format!("/shares/{bobs_lookup}/revoke"), "csrf=x").await,
        403
    );
    let again = Browser::start(&world.dir, "again", &shots).await;
    again.goto(&link).await;
    again.click("#sign-in").await;
    again.wait_for_text("Link expired", false).await;
    again.screenshot("link-used-twice").await;
    again.close().await;

    // Revoke from the page: Bob's join is cut off within 5 s, as with `share --revoke`.
    browser
        .goto(&format!("{}{share_path}", world.hub_url))
        .await;
    browser.click("#revoke").await;
    let clicked = Instant::now();
    let status = join
        .wait_exit(Duration::from_secs(5))
        .expect("the joiner still runs 5 s after Revoke");
    assert!(!status.success());
    assert!(clicked.elapsed() < Duration::from_secs(5));
    browser.wait_for_text("Revoked", false).await;
    browser.screenshot("share-revoked").await;
    assert_eq!(state_of(&alice, &code), "revoked");
    assert_eq!(state_of(&bob, bobs["code"].as_str().unwrap()), "active");

    // A share made with --approve: its waiting joiner is on the page, and Approve lets it in.
    let gated = alice.share(&["--approve", "--disable-http", "--name", "gated"]);
    let gated_code = gated["code"].as_str().unwrap().to_owned();
    let mut waiting = Proc::start(
        &world.dir,
        "bob-waits",
        &mut bob.command(&["--json", "join", &gated_code, "--no-tun"]),
        true,
    );
    browser
        .goto(&format!(
            "{}/shares/{}",
            world.hub_url,
            lookup_of(&alice, &gated_code)
        ))
        .await;
    browser.wait_for_text("Waiting for approval", true).await;
    browser.screenshot("share-pending").await;
    browser.click("button[value=approve]").await;
    waiting.json_line(Duration::from_secs(20));

    // Sign out ends the session: its redirect lands on the signed-out page, and the page
    // stays signed out when opened again. (Opening it at once raced the sign-out's POST.)
    browser.click(".signout button").await;
    browser.wait_for_text("connect dashboard", false).await;
    browser.goto(&world.hub_url).await;
    browser.wait_for_text("connect dashboard", false).await;
    browser.close().await;

    // The admin: every share, hub health, an enrollment key created then revoked.
    let admin = Browser::start(&world.dir, "admin", &shots).await;
    let out = Command::new(binary("connect-coordinator"))
        .args(["--data-dir", world.dir.join("hub").to_str().unwrap()])
        .args(["--public-url", &world.hub_url, "admin-link"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin_link = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    admin.goto(&admin_link).await;
    admin.click("#sign-in").await;
    admin.wait_for_text("Enrollment keys", false).await;
    let health = admin.text("#health-facts").await;
    assert!(health.contains("SQLite, answering"), "{health}");
    admin.click("#create-key").await;
    admin.wait_for_text("New enrollment key", false).await;
    let key = admin.text("#new-key").await;
    assert!(key.starts_with("ck_"), "{key}");
    admin.screenshot("admin").await;
    let id = admin.text("table.keys tbody tr td").await;
    assert_eq!(key_state(&world, &id), "usable");
    admin.click(&format!("tr[id='{id}'] button.danger")).await;
    admin.wait_for_text("Key revoked", false).await;
    assert_eq!(key_state(&world, &id), "revoked");
    admin.goto(&world.hub_url).await;
    admin.wait_for_text("bobs-env", false).await;
    admin.screenshot("admin-shares").await;
    admin.close().await;
    eprintln!("screenshots in {}", shots.display());
}
