//! Public URLs end to end: HTTP/2 to visitors of a TLS hub, an HTTPS upstream with a
//! self-signed certificate (`share --https-port`), chosen names (`share --public-name`),
//! bodies that stream both ways, a visitor that leaves mid-download, and an upstream that
//! stops answering. The hub, the agents and the services run on loopback; no root needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use connect_e2e::loopback::*;
use connect_e2e::*;

#[test]
fn a_tls_hub_speaks_http2_to_visitors_and_tls_to_an_https_upstream() {
    let world = World::new("h2", true, &[]);
    let alice = world.agent("alice");
    let (_app, app_port) = world.app("tls-app", true);
    alice.expose(app_port, "web");
    let port = app_port.to_string();
    let share = alice.share(&["--https-port", &port, "--public-name", "secure-shop"]);
    let url = share["url"].as_str().unwrap().to_owned();
    assert_eq!(
        url,
        format!("https://secure-shop.share.localhost:{}", world.port)
    );

    // The upstream's own words: it was reached over TLS, and the visitor over HTTPS.
    let body = page(&world, &format!("{url}/hello"), &["--http2"]);
    assert_eq!(
        body.trim(),
        format!("tls=yes path=/hello proto=https port={app_port}"),
        "{}",
        alice.log()
    );
    let version = |flag: &str| {
        let out = world.curl(&[flag, "-o", "/dev/null", "-w", "%{http_version}", &url]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(version("--http2"), "2", "ALPN h2 offered and taken");
    assert_eq!(version("--http1.1"), "1.1", "HTTP/1.1 still offered");
    // WebSockets keep working on the TLS hub (on HTTP/1.1, which the hub leaves them).
    let ws_port = free_port();
    let _ws = Proc::start(
        &world.dir,
        "ws-server",
        Command::new("/usr/bin/python3").args(["-c", WS_SERVER, &ws_port.to_string()]),
        false,
    );
    eventually("websocket server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", ws_port)).is_ok()
    });
    alice.expose(ws_port, "ws");
    let ws = alice.share(&["--http-port", &ws_port.to_string()]);
    let ws_host = ws["url"].as_str().unwrap().trim_start_matches("https://");
    let ws_host = ws_host.split(':').next().unwrap().to_owned();
    let ca = world.ca.clone().unwrap();
    let mut echo = String::new();
    eventually("a WebSocket echo over wss", Duration::from_secs(20), || {
        let out = Command::new("/usr/bin/python3")
            .args(["-c", WS_CLIENT, &ws_host, &world.port.to_string(), &ca])
            .output()
            .unwrap();
        echo = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    assert_eq!(echo.trim(), "ping through the tunnel");
    // A plain-HTTP upstream answers nothing useful to TLS: an --https-port that is not
    // HTTPS gets the visitor 502, not a hang.
    let (_plain, plain_port) = world.app("plain-app", false);
    alice.expose(plain_port, "plain");
    let plain = alice.share(&["--https-port", &plain_port.to_string()]);
    let plain_url = plain["url"].as_str().unwrap();
    let out = world.curl(&["-o", "/dev/null", "-w", "%{http_code}", plain_url]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "502");
}

#[test]
fn a_public_name_is_refused_while_taken_and_free_once_its_share_ends() {
    let world = World::new("names", false, &[]);
    let alice = world.agent("alice");
    let bob = world.agent("bob");
    let (_a, a_port) = world.app("alice-app", false);
    let (_b, b_port) = world.app("bob-app", false);
    alice.expose(a_port, "web");
    bob.expose(b_port, "web");

    let first = alice.share(&["--public-name", "Demo"]);
    let url = first["url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("http://demo.share.localhost:{}", world.port));
    assert!(page(&world, &format!("{url}/a"), &[]).contains("path=/a"));

    let taken = bob.run(&["share", "--public-name", "demo"]);
    let stderr = String::from_utf8_lossy(&taken.stderr);
    assert_eq!(taken.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().next(),
        Some("[x] Public name demo is taken"),
        "{stderr}"
    );
    for bad in ["-demo", "de_mo", "a.b", &"x".repeat(64)] {
        let out = bob.run(&["share", "--public-name", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {stderr}");
        assert!(stderr.starts_with("[x] "), "{bad}: {stderr}");
        assert_eq!(stderr.matches("[x]").count(), 1, "{stderr}");
    }

    // Ended, the name is free: bob takes it and the URL now reaches bob's machine.
    let code = first["code"].as_str().unwrap();
    assert!(alice.run(&["share", "--revoke", code]).status.success());
    let second = bob.share(&["--public-name", "demo"]);
    assert_eq!(second["url"].as_str(), Some(url.as_str()));
    let mut body = String::new();
    eventually("the name reaches bob", Duration::from_secs(20), || {
        body = String::from_utf8_lossy(&world.curl(&[&format!("{url}/b")]).stdout).into_owned();
        body.contains(&format!("port={b_port}"))
    });
}

#[test]
fn a_visitor_that_leaves_mid_download_frees_the_tunnel_connection() {
    let world = World::new("leave", false, &[]);
    let alice = world.agent("alice");
    let (_app, app_port) = world.app("stream-app", false);
    alice.expose(app_port, "web");
    let url = alice.share(&[])["url"].as_str().unwrap().to_owned();
    page(&world, &url, &[]);

    // An endless body, a chunk every 20 ms: the visitor gets it as it comes (streamed,
    // not buffered whole), then hangs up after 2 s.
    let out = world.curl(&[
        "-m",
        "2",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &format!("{url}/stream"),
    ]);
    let got: u64 = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    assert!(
        got > 16 * 1024,
        "the download streamed only {got} bytes in 2 s"
    );
    let left = Instant::now();
    eventually(
        "the sharing machine's server sees the connection closed",
        Duration::from_secs(5),
        || world.marker("stream-app", "closed"),
    );
    eprintln!(
        "upstream closed {:?} after the visitor left",
        left.elapsed()
    );
}

#[test]
fn a_slow_upload_reaches_the_sharer_before_it_ends() {
    let world = World::new("upload", false, &[]);
    let alice = world.agent("alice");
    let (_app, app_port) = world.app("upload-app", false);
    alice.expose(app_port, "web");
    let url = alice.share(&[])["url"].as_str().unwrap().to_owned();
    page(&world, &url, &[]);
    let host = url.trim_start_matches("http://").to_owned();

    let mut visitor = std::net::TcpStream::connect(("127.0.0.1", world.port)).unwrap();
    visitor
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        visitor,
        "POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'u'; 64 * 1024];
    write!(visitor, "{:x}\r\n", chunk.len()).unwrap();
    visitor.write_all(&chunk).unwrap();
    visitor.write_all(b"\r\n").unwrap();
    // The body is not over, yet its first part is already on the sharing machine.
    eventually(
        "the first chunk at the upstream before the upload ends",
        Duration::from_secs(10),
        || world.marker("upload-app", "first"),
    );
    write!(visitor, "{:x}\r\n", chunk.len()).unwrap();
    visitor.write_all(&chunk).unwrap();
    visitor.write_all(b"\r\n0\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("got=") {
        let n = visitor.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&format!("got={}", 2 * chunk.len())),
        "{answer}"
    );
}

#[test]
fn an_upstream_that_stalls_gets_the_visitor_a_502_within_the_proxy_timeout() {
    let world = World::new("stall", false, &["--proxy-timeout", "3s"]);
    let alice = world.agent("alice");
    let (_app, app_port) = world.app("stall-app", false);
    alice.expose(app_port, "web");
    let url = alice.share(&[])["url"].as_str().unwrap().to_owned();
    page(&world, &url, &[]);

    let started = Instant::now();
    let out = world.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{url}/stall"),
    ]);
    let took = started.elapsed();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "502");
    assert!(
        world.marker("stall-app", "stalled"),
        "the request reached the upstream"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "502 after {took:?}, with --proxy-timeout 3s"
    );
    // The share still serves the next visitor.
    assert!(page(&world, &format!("{url}/after"), &[]).contains("path=/after"));
}
