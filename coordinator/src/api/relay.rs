//! `GET /v1/relay`: an agent whose network drops UDP upgrades this request to a relay
//! stream (see `relay_stream`). The token says who may open one; what it carries is
//! checked frame by frame by the relay, as on UDP.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, UPGRADE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use connect_netstack::relay;
use hyper_util::rt::TokioIo;

use super::Agent;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn open(
    State(state): State<AppState>,
    Agent(agent): Agent,
    mut request: Request,
) -> Result<Response, ApiError> {
    let asked = request
        .headers()
        .get(UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case(relay::STREAM_UPGRADE));
    if !asked {
        return Err(ApiError::Invalid(format!(
            "this route only upgrades to {}",
            relay::STREAM_UPGRADE
        )));
    }
    let upgrade = hyper::upgrade::on(&mut request);
    let streams = state.relay_streams.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                tracing::debug!(agent = %agent.name, "relay stream");
                streams.serve(TokioIo::new(upgraded)).await;
            }
            Err(err) => tracing::debug!(%err, "relay stream upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static(relay::STREAM_UPGRADE));
    Ok(response)
}
