//! `connect expose`: the services an agent offers for its next shares.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use connect_api::{Route, ServiceList};

use super::{Agent, Body};
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::validate_route;

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
