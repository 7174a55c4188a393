//! Public HTTP shares: a request whose `Host` is `NAME.DOMAIN` goes through hyper to the
//! sharing machine over the hub's own WireGuard peer. Unknown, expired or revoked names get
//! 404 at once; a sharing agent that is offline or does not answer gets 502 at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use connect_api::ShareState;
use hyper_util::rt::TokioIo;

use crate::addresses::machine_ip;
use crate::api::join::client_addr;
use crate::state::{AppState, Metrics};

/// How long a public request waits for the tunnel to the sharing machine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The share name in a `Host` header of `NAME.DOMAIN[:PORT]`, if it is one.
pub fn share_name<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = host.strip_suffix(domain)?.strip_suffix('.')?;
    (!name.is_empty() && !name.contains('.')).then_some(name)
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>\n"
    );
    (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// Middleware in front of the API: share hosts are proxied, everything else passes.
pub async fn route(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let Some(name) = share_name(&host, &state.settings.domain).map(str::to_owned) else {
        return next.run(request).await;
    };
    Metrics::add(&state.metrics.proxy_requests, 1);
    proxy(state, &name, &host, request).await
}

async fn proxy(state: AppState, name: &str, host: &str, mut request: Request) -> Response {
    let not_found = || {
        page(
            StatusCode::NOT_FOUND,
            "Share not found",
            "This share does not exist, has expired or was revoked.",
        )
    };
    let share = match state.store.share_by_public_name(name).await {
        Ok(Some(share))
            if share.state_at(state.now_ms()) == ShareState::Active
                && share.http_port.is_some() =>
        {
            share
        }
        Ok(_) => return not_found(),
        Err(err) => {
            tracing::error!(%err, "share lookup failed");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The hub cannot reach its database.",
            );
        }
    };
    let offline = || {
        page(
            StatusCode::BAD_GATEWAY,
            "Sharing machine offline",
            "The machine sharing this page is not reachable right now.",
        )
    };
    let Some(hub) = state.hub_peer.clone() else {
        return offline();
    };
    if !state.subscribers.is_connected(&share.agent_id) {
        return offline();
    }
    let port = share.http_port.unwrap_or(80);
    let stream =
        match tokio::time::timeout(CONNECT_TIMEOUT, hub.connect(machine_ip(share.block), port))
            .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::debug!(%err, share = name, "tunnel connection refused");
                return offline();
            }
            Err(_) => return offline(),
        };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(_) => return offline(),
        };
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let client = client_addr(request.extensions());
    forwarded_headers(&mut request, client, host);
    match sender.send_request(request).await {
        Ok(response) => response.map(Body::new),
        Err(err) => {
            tracing::debug!(%err, share = name, "upstream request failed");
            offline()
        }
    }
}

fn forwarded_headers(request: &mut Request, client: Option<SocketAddr>, host: &str) {
    let headers = request.headers_mut();
    if let Some(client) = client {
        let ip = client.ip().to_string();
        let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(previous) => format!("{previous}, {ip}"),
            None => ip,
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert("x-forwarded-for", value);
        }
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Ok(value) = HeaderValue::from_str(host) {
        headers.insert("x-forwarded-host", value);
    }
}

/// Keeps the hub peer in line with the live public shares after a change.
pub fn resync(state: &AppState) {
    if let Some(hub) = state.hub_peer.clone() {
        let store = state.store.clone();
        tokio::spawn(async move {
            if let Err(err) = hub.sync(&store).await {
                tracing::error!(%err, "cannot update the hub's tunnel peers");
            }
        });
    }
}

pub type Shared = Arc<crate::hub_peer::HubPeer>;

#[cfg(test)]
mod tests {
    use super::share_name;

    #[test]
    fn share_hosts_are_recognised() {
        assert_eq!(
            share_name("frosty-weasel-0857.share.localhost", "share.localhost"),
            Some("frosty-weasel-0857")
        );
        assert_eq!(
            share_name("frosty-weasel-0857.share.localhost:7070", "share.localhost"),
            Some("frosty-weasel-0857")
        );
        assert_eq!(share_name("share.localhost", "share.localhost"), None);
        assert_eq!(share_name("a.b.share.localhost", "share.localhost"), None);
        assert_eq!(share_name("hub.example.com", "share.localhost"), None);
        assert_eq!(share_name("evilshare.localhost", "share.localhost"), None);
    }
}
