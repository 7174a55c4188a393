//! The one error type of the HTTP API and its one JSON shape.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use connect_api::{ErrorBody, ErrorCode, ErrorDetail};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("share code not found, expired or revoked")]
    ShareNotFound,
    #[error("share already ended")]
    ShareEnded,
    #[error("no service with this name")]
    ServiceNotFound,
    #[error("SSH is not offered here (the sharer did not use --ssh)")]
    NoSsh,
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
    #[error("too many requests; try again in a minute")]
    RateLimited,
    #[error("Public name {0} is taken")]
    NameTaken(String),
    #[error("internal error")]
    Internal(#[from] StoreError),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, ErrorCode, Option<&'static str>) {
        match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                Some("run `connect up` to register this agent"),
            ),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden, None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound, None),
            ApiError::ShareNotFound => (StatusCode::NOT_FOUND, ErrorCode::ShareNotFound, None),
            ApiError::ShareEnded => (StatusCode::GONE, ErrorCode::ShareEnded, None),
            ApiError::ServiceNotFound => (StatusCode::NOT_FOUND, ErrorCode::ServiceNotFound, None),
            ApiError::NoSsh => (StatusCode::NOT_FOUND, ErrorCode::NoSsh, None),
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict, None),
            ApiError::Gone(_) => (StatusCode::GONE, ErrorCode::Gone, None),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                None,
            ),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, None),
            ApiError::RateLimited => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, None),
            ApiError::NameTaken(_) => (
                StatusCode::CONFLICT,
                ErrorCode::NameTaken,
                Some("pick another --public-name, or leave it out for a random one"),
            ),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, None),
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
                code,
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
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::BAD_REQUEST
        | StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidRequest,
        _ if status.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::Error,
    };
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message,
            hint: None,
        },
    };
    (status, Json(body)).into_response()
}
