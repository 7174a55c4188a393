//! Public HTTP shares: a request whose `Host` is `NAME.DOMAIN` goes through hyper to the
//! sharing machine over the hub's own WireGuard peer. Unknown, expired or revoked names get
//! 404 at once; a sharing agent that is offline or does not answer gets 502 at once.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{
    CONNECTION, CONTENT_TYPE, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, UPGRADE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

use crate::access_log::Entry;
use crate::client::{Tls, client_addr};
use crate::metrics::Metrics;
use crate::public_url::share_name;
use crate::state::AppState;

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>\n"
    );
    (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// The share a request is for, by its `Host`: its name, and the host lowercased.
pub fn share_of(state: &AppState, request: &Request) -> Option<(String, String)> {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let name = share_name(&host, &state.settings.domain)?;
    Some((name, host))
}

/// Answers a request for the public share `name` at `host`.
pub async fn proxy(state: &AppState, name: &str, host: &str, mut request: Request) -> Response {
    Metrics::add(&state.metrics.proxy_requests, 1);
    let Some(share) = state
        .public
        .get(name)
        .filter(|share| share.row.expires_at > state.now_ms())
    else {
        return page(
            StatusCode::NOT_FOUND,
            "Share not found",
            "This share does not exist, has expired or was revoked.",
        );
    };
    if let Some(stored) = &share.row.http_auth {
        let header = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let from = client_addr(request.extensions()).map(|addr| addr.ip());
        match state
            .passwords
            .check(&state.limits, from, stored, header)
            .await
        {
            Ok(true) => {}
            Ok(false) => return password_required(),
            Err(_) => {
                return page(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many tries",
                    "Too many passwords were tried from here. Wait a minute and try again.",
                );
            }
        }
    }
    let (Some(upstream), Some(target)) = (state.upstream.clone(), share.target.as_ref()) else {
        return offline();
    };
    if !state.events.is_connected(&share.row.agent_id) {
        return offline();
    }
    let client = client_addr(request.extensions());
    forwarded_headers(&mut request, client, host);
    // A WebSocket (or any Upgrade) continues as raw bytes once both sides agree.
    let downstream = request
        .headers()
        .contains_key(axum::http::header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut request));
    let mut log = state.access_log.start(
        &share.lookup,
        &share.log_allowance,
        state.clock.now(),
        &request,
        client,
    );
    match upstream.send(target, request).await {
        Ok(mut response) => {
            log.set_status(response.status().as_u16());
            if response.status() == StatusCode::SWITCHING_PROTOCOLS
                && let Some(downstream) = downstream
            {
                let upstream = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    if let (Ok(down), Ok(up)) = (downstream.await, upstream.await) {
                        let _ = tokio::io::copy_bidirectional(
                            &mut TokioIo::new(down),
                            &mut TokioIo::new(up),
                        )
                        .await;
                    }
                });
            }
            response.map(|body| Body::new(Counted { inner: body, log }))
        }
        Err(err) => {
            tracing::debug!(%err, share = name, "upstream request failed");
            offline()
        }
    }
}

fn password_required() -> Response {
    let mut response = page(
        StatusCode::UNAUTHORIZED,
        "Password required",
        "This share asks for a user name and password.",
    );
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"connect share\""),
    );
    response
}

fn offline() -> Response {
    page(
        StatusCode::BAD_GATEWAY,
        "Sharing machine offline",
        "The machine sharing this page is not reachable right now.",
    )
}

/// A response body that counts what it streams for the access log.
struct Counted {
    inner: hyper::body::Incoming,
    log: Entry,
}

impl hyper::body::Body for Counted {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.log.add_bytes(data.len());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// What the sharing machine's server is told of the request: the hub is the edge, so the
/// client's own `X-Forwarded-*` claims are replaced, not extended, and headers meant for
/// one hop do not go on (an upgrade keeps `Connection: upgrade` and its `Upgrade`).
fn forwarded_headers(request: &mut Request, client: Option<SocketAddr>, host: &str) {
    let proto = if request.extensions().get::<Tls>().is_some() {
        "https"
    } else {
        "http"
    };
    let headers = request.headers_mut();
    drop_hop_by_hop(headers);
    headers.remove("x-forwarded-for");
    if let Some(client) = client
        && let Ok(value) = HeaderValue::from_str(&client.ip().to_string())
    {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    if let Ok(value) = HeaderValue::from_str(host) {
        // An HTTP/2 visitor names the host in `:authority`, not `Host`; HTTP/1.1 needs it.
        if !headers.contains_key(HOST) {
            headers.insert(HOST, value.clone());
        }
        headers.insert("x-forwarded-host", value);
    }
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1 and those `Connection` names.
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let upgrade = headers.get(UPGRADE).cloned();
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TE,
        TRAILER,
        UPGRADE,
    ] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(name);
    }
    if let Some(upgrade) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_cannot_pick_forwarded_headers_or_hop_by_hop_ones() {
        let mut request = Request::builder()
            .header("x-forwarded-for", "10.9.9.9")
            .header("x-forwarded-proto", "https")
            .header(CONNECTION, "close, X-Secret")
            .header("x-secret", "passed along")
            .header("keep-alive", "timeout=5")
            .header(TE, "trailers")
            .header("x-app", "kept")
            .body(Body::empty())
            .unwrap_or_default();
        let client = SocketAddr::from(([203, 0, 113, 7], 50000));
        forwarded_headers(&mut request, Some(client), "n.share.test");
        let headers = request.headers();
        assert_eq!(headers["x-forwarded-for"], "203.0.113.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "n.share.test");
        assert_eq!(headers["x-app"], "kept");
        for gone in ["x-secret", "keep-alive", "te", "connection", "upgrade"] {
            assert!(!headers.contains_key(gone), "{gone} was passed on");
        }
    }

    #[test]
    fn an_upgrade_keeps_what_the_far_side_needs() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        drop_hop_by_hop(&mut headers);
        assert_eq!(headers[CONNECTION], "upgrade");
        assert_eq!(headers[UPGRADE], "websocket");
    }
}
