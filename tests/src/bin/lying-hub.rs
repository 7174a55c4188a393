//! A hostile hub for the `lying_hub_*` end-to-end tests: an HTTP proxy in front of the
//! real hub's API that rewrites what passes (requests from agents and the answers and
//! events they get), and optionally a UDP forwarder in front of its relay that replays
//! every relay bind from an address of its own. Each `--lie` is one way a compromised hub
//! could try to widen, extend or hijack a share; the tests show agents refuse each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Lie {
    /// Joiners are told the share also has `secret` on `--secret-port`, and every port.
    WidenRoutes,
    /// The hub is asked to serve the public URL from `--secret-port` instead.
    HttpTarget,
    /// Joiners are told to log in as `--ssh-user`.
    SshUser,
    /// The hub is asked for a share 30 days long, and the sharer told it has one.
    ExtendExpiry,
    /// Joiners get another sharer key; sharers get other joiner keys.
    SwapKeys,
    /// `share_ended` events never reach agents.
    DropRevokes,
    /// Agents are sent to our relay forwarder, which replays each of their binds.
    ReplayBinds,
}

#[derive(Parser)]
struct Args {
    /// Where agents reach us: the API over TCP (and the relay over UDP, same port).
    #[arg(long)]
    listen: SocketAddr,
    /// The real hub's API.
    #[arg(long)]
    upstream: String,
    /// The real hub's relay (for `replay-binds`).
    #[arg(long)]
    relay: Option<SocketAddr>,
    /// Our address as agents reach it (for `replay-binds`: where the relay is said to be).
    #[arg(long)]
    public: Option<String>,
    #[arg(long = "lie", value_enum)]
    lies: Vec<Lie>,
    #[arg(long, default_value_t = 6380)]
    secret_port: u16,
    #[arg(long, default_value = "-oProxyCommand=touch /tmp/connect-pwned")]
    ssh_user: String,
    /// Appends every request (path and body) that agents send to this file.
    #[arg(long)]
    record: Option<std::path::PathBuf>,
}

/// A key no share code vouches for.
const FORGED_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

struct Liar {
    args: Args,
    client: reqwest::Client,
}

impl Liar {
    fn lies(&self, lie: Lie) -> bool {
        self.args.lies.contains(&lie)
    }

    /// An agent's request body, as we pass it on.
    fn request(&self, path: &str, body: &mut Value) {
        if path == "/v1/shares" {
            if self.lies(Lie::HttpTarget) {
                let secret = self.args.secret_port;
                if let Some(routes) = body["routes"].as_array_mut() {
                    routes.push(secret_route(secret));
                }
                body["http_port"] = json!(secret);
            }
            if self.lies(Lie::ExtendExpiry) {
                body["expires_in_secs"] = json!(30 * 86_400);
            }
        }
    }

    /// The hub's answer, as we pass it on.
    fn answer(&self, path: &str, body: &mut Value) {
        match path {
            "/v1/join" => {
                if self.lies(Lie::WidenRoutes) {
                    let secret = self.args.secret_port;
                    if let Some(routes) = body["routes"].as_array_mut() {
                        routes.push(secret_route(secret));
                    }
                    body["all_ports"] = json!("127.0.0.1");
                }
                if self.lies(Lie::SshUser) {
                    body["ssh_user"] = json!(self.args.ssh_user);
                }
                if self.lies(Lie::SwapKeys) {
                    body["sharer_public_key"] = json!(FORGED_KEY);
                }
                self.relay_here(body);
            }
            "/v1/shares" if self.lies(Lie::ExtendExpiry) => {
                body["expires_at"] = json!("2099-01-01T00:00:00Z");
            }
            "/v1/agents/me" => self.relay_here(body),
            _ => {}
        }
    }

    fn relay_here(&self, body: &mut Value) {
        if self.lies(Lie::ReplayBinds)
            && let Some(public) = &self.args.public
        {
            body["relay"] = json!(public);
        }
    }

    /// One event on an agent's stream: rewritten, or dropped (`false`).
    fn event(&self, event: &mut Value) -> bool {
        if self.lies(Lie::DropRevokes) && event["type"] == "share_ended" {
            return false;
        }
        if self.lies(Lie::SwapKeys) {
            if let Some(peers) = event["peers"].as_array_mut() {
                for peer in peers {
                    peer["public_key"] = json!(FORGED_KEY);
                }
            }
            if event["peer"].is_object() {
                event["peer"]["public_key"] = json!(FORGED_KEY);
            }
        }
        true
    }

    /// Server-sent events, rewritten one whole event (`data: …` and a blank line) at a time.
    fn events(&self, pending: &mut String) -> String {
        let mut out = String::new();
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            let Some(data) = block.strip_prefix("data: ") else {
                out.push_str(&block);
                continue;
            };
            match serde_json::from_str::<Value>(data.trim()) {
                Ok(mut event) => {
                    if self.event(&mut event) {
                        out.push_str(&format!("data: {event}\n\n"));
                    }
                }
                Err(_) => out.push_str(&block),
            }
        }
        out
    }
}

/// A route to the sharing machine's unshared service.
fn secret_route(port: u16) -> Value {
    json!({"name": "secret", "target": format!("localhost:{port}"), "port": port, "protocol": "tcp"})
}

async fn proxy(State(liar): State<Arc<Liar>>, request: Request) -> Response {
    match forward(&liar, request).await {
        Ok(response) => response,
        Err(err) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(err))
            .unwrap(),
    }
}

async fn forward(liar: &Arc<Liar>, request: Request) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let target = format!(
        "{}{}",
        liar.args.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(record) = &liar.args.record {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(record)
            .map_err(|e| e.to_string())?;
        let _ = writeln!(file, "{} {}", parts.uri, String::from_utf8_lossy(&bytes));
    }
    if let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) {
        liar.request(&path, &mut value);
        bytes = Bytes::from(value.to_string());
    }
    let mut upstream = liar
        .client
        .request(parts.method, target)
        .headers(pass(&parts.headers))
        .body(bytes)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = upstream.status();
    let headers = pass(upstream.headers());
    let streaming = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        response = response.header(name, value);
    }
    if streaming {
        let liar = liar.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        tokio::spawn(async move {
            let mut pending = String::new();
            while let Ok(Some(chunk)) = upstream.chunk().await {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                let out = liar.events(&mut pending);
                if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                    return;
                }
            }
        });
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        return response
            .body(Body::from_stream(body))
            .map_err(|e| e.to_string());
    }
    let mut bytes = upstream.bytes().await.map_err(|e| e.to_string())?;
    if let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) {
        liar.answer(&path, &mut value);
        bytes = Bytes::from(value.to_string());
    }
    response
        .header("content-length", HeaderValue::from(bytes.len()))
        .body(Body::from(bytes))
        .map_err(|e| e.to_string())
}

/// The headers worth passing on: who is asking, and what the body is.
fn pass(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in ["authorization", "content-type", "accept", "cache-control"] {
        if let Some(value) = headers.get(name) {
            out.insert(name, value.clone());
        }
    }
    out
}

/// The relay forwarder: each agent's datagrams go on from a socket of its own (so the
/// relay sees one address per agent and answers reach the right one), and every bind is
/// sent again shortly after from `thief`, an address that forwards nothing back. A relay
/// that took the replay would send that agent's traffic into the void.
async fn replay_binds(listen: SocketAddr, relay: SocketAddr) {
    let front = Arc::new(UdpSocket::bind(listen).await.expect("relay front"));
    let thief = Arc::new(UdpSocket::bind("0.0.0.0:0").await.expect("thief"));
    let mut agents: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((len, from)) = front.recv_from(&mut buf).await else {
            continue;
        };
        let datagram = buf[..len].to_vec();
        let socket = match agents.get(&from) {
            Some(socket) => socket.clone(),
            None => {
                let socket = Arc::new(UdpSocket::bind("0.0.0.0:0").await.expect("agent side"));
                let (back, front) = (socket.clone(), front.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    while let Ok(len) = back.recv(&mut buf).await {
                        let _ = front.send_to(&buf[..len], from).await;
                    }
                });
                let _ = socket.connect(relay).await;
                agents.insert(from, socket.clone());
                socket
            }
        };
        let _ = socket.send(&datagram).await;
        if matches!(
            connect_netstack::relay::parse(&datagram),
            Some(connect_netstack::relay::Frame::Bind { .. })
        ) {
            let thief = thief.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = thief.send_to(&datagram, relay).await;
            });
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    if args.lies.contains(&Lie::ReplayBinds)
        && let (Some(relay), Some(public)) = (args.relay, &args.public)
    {
        // On the address agents send to, so answers come from where they expect them.
        let front = public.parse().expect("--public is IP:PORT");
        tokio::spawn(replay_binds(front, relay));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .expect("listen");
    let liar = Arc::new(Liar {
        args,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(3600))
            .build()
            .expect("client"),
    });
    let app = axum::Router::new().fallback(proxy).with_state(liar);
    println!("{}", json!({"ready": true}));
    axum::serve(listener, app).await.expect("serve");
}
