//! `/healthz`, `/metrics` (Prometheus text) and `/v1/netcheck`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use std::net::SocketAddr;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::response::IntoResponse;

use connect_api::NetcheckInfo;

use crate::client::ClientAddr;
use crate::error::ApiError;
use crate::state::AppState;

/// 200 when the hub can serve: the database answers.
pub async fn healthz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state
        .store
        .agent_count()
        .await
        .map_err(|_| ApiError::Unavailable("database unreachable"))?;
    Ok("ok\n")
}

/// Where netcheck probes go; open to anyone, like the ports themselves.
pub async fn netcheck(State(state): State<AppState>) -> Json<NetcheckInfo> {
    Json(NetcheckInfo {
        relay: state.settings.relay.clone(),
        probe: state.settings.probe.clone(),
    })
}

/// Who may read `/metrics`: what the hub does is no business of the internet. With
/// `--metrics-token`, whoever sends it as a bearer token; without, this host only.
fn may_read_metrics(state: &AppState, client: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    match &state.settings.metrics_token {
        Some(token) => headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| {
                crate::secrets::hash_secret(given) == crate::secrets::hash_secret(token)
            }),
        None => client.is_some_and(|addr| addr.ip().is_loopback()),
    }
}

pub async fn metrics(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if !may_read_metrics(&state, client, &headers) {
        return Err(ApiError::NotFound("not found"));
    }
    let m = &state.metrics;
    let mut out = String::new();
    let mut line = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    line(
        "connect_active_shares",
        "gauge",
        "Shares that can be joined now.",
        state.store.active_share_count().await?.unsigned_abs(),
    );
    line(
        "connect_agents",
        "gauge",
        "Registered agents.",
        state.store.agent_count().await?.unsigned_abs(),
    );
    let counter = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    line(
        "connect_shares_created_total",
        "counter",
        "Shares created.",
        counter(&m.shares_created),
    );
    line(
        "connect_joins_total",
        "counter",
        "Successful joins.",
        counter(&m.joins),
    );
    line(
        "connect_relay_packets_total",
        "counter",
        "Datagrams relayed.",
        counter(&m.relay_packets),
    );
    line(
        "connect_relay_bytes_total",
        "counter",
        "Bytes relayed.",
        counter(&m.relay_bytes),
    );
    line(
        "connect_relay_dropped_total",
        "counter",
        "Datagrams the relay refused.",
        counter(&m.relay_dropped),
    );
    line(
        "connect_proxy_requests_total",
        "counter",
        "Public HTTP requests proxied.",
        counter(&m.proxy_requests),
    );
    line(
        "connect_access_log_dropped_total",
        "counter",
        "Access-log rows dropped because the database fell behind.",
        counter(&m.access_log_dropped),
    );
    line(
        "connect_access_log_over_rate_total",
        "counter",
        "Public requests not logged: their share had logged its most for that second.",
        counter(&m.access_log_over_rate),
    );
    line(
        "connect_errors_total",
        "counter",
        "API requests that failed.",
        counter(&m.errors),
    );
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
