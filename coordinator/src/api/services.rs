//! `connect expose`: the services an agent offers for its next shares.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use connect_api::{Route, ServiceList};

use super::{Agent, Body};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    Agent(agent): Agent,
) -> Result<Json<ServiceList>, ApiError> {
    Ok(Json(ServiceList {
        services: state.store.services(&agent.id).await?,
    }))
}

pub async fn add(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Body(route): Body<Route>,
) -> Result<(StatusCode, Json<Route>), ApiError> {
    validate_route(&route)?;
    if !state.store.insert_service(&agent.id, &route).await? {
        return Err(ApiError::Conflict(
            "a service with this name is already exposed",
        ));
    }
    Ok((StatusCode::CREATED, Json(route)))
}

pub async fn remove(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_service(&agent.id, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::ServiceNotFound)
    }
}

/// Names are what users type; targets are `HOST:PORT` the sharing machine resolves.
pub fn validate_route(route: &Route) -> Result<(), ApiError> {
    let name_ok = !route.name.is_empty()
        && route.name.len() <= 64
        && route
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(ApiError::Invalid(
            "service name must be 1 to 64 letters, digits, '-', '_' or '.'".into(),
        ));
    }
    if route.port == 0 {
        return Err(ApiError::Invalid("port must be 1 to 65535".into()));
    }
    let target_ok = route.target.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && host.len() <= 253 && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !target_ok
        || route
            .target
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::Invalid("target must be HOST:PORT".into()));
    }
    Ok(())
}
