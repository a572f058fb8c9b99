//! axum's `Json`, `Path` and `Query` with their rejections turned into [`ApiError`], so a
//! malformed body, id or query string gets problem+json like every other error (axum's
//! own rejections are plain text).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;

/// A JSON body.
pub struct ApiJson<T>(pub T);

/// Path parameters.
pub struct ApiPath<T>(pub T);

/// Query-string parameters.
pub struct ApiQuery<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::UnsupportedMediaType(r.body_text())
            }
            JsonRejection::JsonDataError(_) => ApiError::Unprocessable(r.body_text()),
            other => match other.status() {
                axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::PayloadTooLarge(other.body_text())
                }
                _ => ApiError::BadRequest(other.body_text()),
            },
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    /// The body must arrive within the body timeout (408 otherwise): a slow writer may
    /// not hold a connection and a database-bound handler open.
    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let axum::Json(value) =
            within_body_timeout(state, axum::Json::<T>::from_request(request, state)).await??;
        Ok(Self(value))
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Runs a body read under the server's body timeout; too slow a body is a 408.
pub async fn within_body_timeout<F: std::future::Future>(
    state: &AppState,
    read: F,
) -> Result<F::Output, ApiError> {
    let limit = state.options.body_timeout;
    tokio::time::timeout(limit, read).await.map_err(|_| {
        ApiError::RequestTimeout(format!(
            "the request body was not received within {} s",
            limit.as_secs()
        ))
    })
}
