//! The one error type of the HTTP API and its one JSON shape.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use connect_api::{ErrorBody, ErrorDetail};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{0}")]
    Gone(&'static str),
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("request body too large")]
    TooLarge,
    #[error("internal error")]
    Internal(#[from] StoreError),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, Option<&'static str>) {
        match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                Some("run `connect up` to register this agent"),
            ),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request", None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            ApiError::Gone(_) => (StatusCode::GONE, "gone", None),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, hint) = self.parts();
        if let ApiError::Internal(err) = &self {
            // Details stay in the log; the client learns only that it failed.
            tracing::error!(%err, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
                hint: hint.map(str::to_owned),
            },
        };
        (status, Json(body)).into_response()
    }
}

/// Renders any status (extractor rejections, 404 of unknown routes, body limits) in the
/// one error shape, so clients parse a single format.
pub fn error_body(status: StatusCode, message: String) -> Response {
    let code = match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::BAD_REQUEST
        | StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        _ if status.is_server_error() => "internal",
        _ => "error",
    };
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message,
            hint: None,
        },
    };
    (status, Json(body)).into_response()
}
