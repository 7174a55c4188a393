//! The HTTP API: one file per resource, routes beside their handlers, and the two
//! extractors every handler leans on (the authenticated agent and JSON bodies that fail
//! in the one error shape).

mod agents;
mod dashboard;
pub mod join;
mod ops;
mod relay;
mod services;
mod shares;
mod ssh;
mod stream;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use connect_api::routes;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, error_body};
use crate::secrets::hash_secret;
use crate::state::AppState;
use crate::store::AgentRow;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(routes::HEALTHZ, get(ops::healthz))
        .route(routes::METRICS, get(ops::metrics))
        .route(routes::NETCHECK, get(ops::netcheck))
        .route(routes::AGENTS, post(agents::register))
        .route(routes::ME, get(agents::me))
        .route(routes::SERVICES, get(services::list).post(services::add))
        .route(routes::SERVICE, delete(services::remove))
        .route(routes::SHARES, get(shares::list).post(shares::create))
        .route(routes::SHARE, get(shares::info))
        .route(routes::SHARE_REVOKE, post(shares::revoke))
        .route(routes::SHARE_SSH_KEY, get(ssh::key))
        .route(routes::JOIN, post(join::join))
        .route(routes::STREAM, get(stream::stream))
        .route(routes::RELAY, get(relay::open))
        .route(routes::DASHBOARD_LINK, post(dashboard::link))
        .route(routes::PEERS, put(dashboard::report))
        .route(routes::DECISIONS, post(dashboard::decision))
        .fallback(|| async { ApiError::NotFound("no such route") })
}

/// Turns any error response that is not already our JSON shape (405s, body limits)
/// into it.
pub async fn uniform_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let message = status.canonical_reason().unwrap_or("error").to_owned();
        return error_body(status, message);
    }
    response
}

/// The agent a request's bearer token belongs to.
pub struct Agent(pub AgentRow);

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        state
            .store
            .agent_by_token_hash(&hash_secret(token.trim()))
            .await?
            .map(Agent)
            .ok_or(ApiError::Unauthorized)
    }
}

/// A JSON body whose rejection is our error shape.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::TooLarge)
            }
            Err(rejection) => Err(ApiError::Invalid(rejection.body_text())),
        }
    }
}
