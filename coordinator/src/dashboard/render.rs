//! The dashboard's one error shape, [`Problem`] (an HTML page with the right status, never
//! the API's JSON), and how any page becomes a response.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::views::Nav;
use crate::error::ApiError;
use crate::store::StoreError;

/// Why a dashboard request failed, as a page.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("not signed in")]
    SignedOut,
    #[error("not found")]
    NotFound,
    #[error("the form's CSRF token is missing or wrong")]
    Csrf,
    #[error("the login link was used already or has expired")]
    LinkUsed,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ApiError> for Problem {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::ShareNotFound | ApiError::NotFound(_) => Problem::NotFound,
            ApiError::ShareEnded => Problem::Conflict("This share has already ended.".into()),
            ApiError::Internal(err) => Problem::Store(err),
            other @ (ApiError::Unauthorized
            | ApiError::Forbidden(_)
            | ApiError::ServiceNotFound
            | ApiError::NoSsh
            | ApiError::Invalid(_)
            | ApiError::Conflict(_)
            | ApiError::Gone(_)
            | ApiError::Unavailable(_)
            | ApiError::TooLarge
            | ApiError::RateLimited
            | ApiError::NameTaken(_)) => Problem::Conflict(other.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    nav: Option<Nav>,
    title: &'a str,
    text: &'a str,
    hint: Option<&'a str>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let (status, title, text, hint) = match &self {
            Problem::SignedOut => (
                StatusCode::UNAUTHORIZED,
                "Sign in",
                "Open a login link to see the dashboard. On the machine that shares, run:",
                Some("connect dashboard"),
            ),
            Problem::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or it is not yours to see.",
                None,
            ),
            Problem::Csrf => (
                StatusCode::FORBIDDEN,
                "Refused",
                "This form did not come from your dashboard session (its CSRF token is missing or wrong). Nothing was changed.",
                None,
            ),
            Problem::LinkUsed => (
                StatusCode::GONE,
                "Link expired",
                "This login link was used already or has expired. Ask for a new one:",
                Some("connect dashboard"),
            ),
            Problem::Conflict(text) => (StatusCode::CONFLICT, "Not done", text.as_str(), None),
            Problem::Store(err) => {
                tracing::error!(%err, "dashboard");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Hub error",
                    "The hub could not read its database. Try again in a moment.",
                    None,
                )
            }
        };
        let page = MessagePage {
            nav: None,
            title,
            text,
            hint,
        };
        (status, render(&page)).into_response()
    }
}

/// A template as a response; one that fails to render is a 500, logged.
pub fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(%err, "cannot render a dashboard page");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
