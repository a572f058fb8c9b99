//! Every failure a client can see, mapped to HTTP in this one place as RFC 9457
//! `application/problem+json` with a stable `type` per kind.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::classifier::ClassifierError;
use crate::engine::{EngineError, RebuildError};
use crate::vision::VisionError;
use crate::vocab::store::VocabError;

/// RFC 9457 problem details.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the error kind, e.g. `urn:hoiclip:problem:invalid-image`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidImage(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Protected(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A transient condition (e.g. the database busy): 503 with Retry-After.
    #[error("{0}")]
    TryLater(String),
    #[error("{0}")]
    Unavailable(String),
    /// The vocabulary database cannot be reached: 503 with Retry-After.
    #[error("{0}")]
    StoreUnavailable(String),
    /// This replica has not yet reached the vocabulary version the client asked for:
    /// 503 with Retry-After.
    #[error("{0}")]
    StaleVocabulary(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The same error about one item of a request (e.g. `images[2]`): a client error's
    /// detail starts with the item's name; other errors are left as they are.
    pub fn for_item(self, item: &str) -> Self {
        let named = |detail: String| format!("{item}: {detail}");
        match self {
            ApiError::BadRequest(d) => ApiError::BadRequest(named(d)),
            ApiError::InvalidImage(d) => ApiError::InvalidImage(named(d)),
            ApiError::PayloadTooLarge(d) => ApiError::PayloadTooLarge(named(d)),
            ApiError::UnsupportedMediaType(d) => ApiError::UnsupportedMediaType(named(d)),
            ApiError::Unprocessable(d) => ApiError::Unprocessable(named(d)),
            other => other,
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::InvalidImage(_) => {
                (StatusCode::BAD_REQUEST, "invalid-image", "Invalid image")
            }
            ApiError::Unauthorized(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", "Missing API key")
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Wrong API key"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::Protected(_) => (
                StatusCode::CONFLICT,
                "seed-entry",
                "Seed entries cannot be changed",
            ),
            ApiError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-failed",
                "Validation failed",
            ),
            ApiError::Busy(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "queue-full",
                "Too many requests",
            ),
            ApiError::RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Rate limit exceeded",
            ),
            ApiError::RequestTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request body too slow",
            ),
            ApiError::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::TryLater(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            ApiError::StoreUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "vocabulary-unavailable",
                "Vocabulary database unavailable",
            ),
            ApiError::StaleVocabulary(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "stale-vocabulary",
                "Vocabulary version not reached yet",
            ),
            ApiError::Timeout(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Request timed out",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title) = self.parts();
        let request_id = super::context::current_request_id();
        // Internal causes (database errors, panics) go to the log under the request id;
        // the client gets the id, never the raw text.
        let detail = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(request_id = %request_id, error = %cause, "request failed");
                format!(
                    "internal error; the server log has the cause under request id {request_id}"
                )
            }
            other => {
                if status.is_server_error() {
                    tracing::warn!(request_id = %request_id, error = %other, "request refused");
                }
                other.to_string()
            }
        };
        let problem = Problem {
            kind: format!("urn:hoiclip:problem:{kind}"),
            title: title.into(),
            status: status.as_u16(),
            detail,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        // Answered before the body was read (or while it still streams in): the rest of
        // it would be parsed as the next request, so the connection closes, and says so.
        if matches!(
            self,
            ApiError::PayloadTooLarge(_) | ApiError::Busy(_) | ApiError::RequestTimeout(_)
        ) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS
            || matches!(
                self,
                ApiError::TryLater(_)
                    | ApiError::StoreUnavailable(_)
                    | ApiError::StaleVocabulary(_)
            )
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<VisionError> for ApiError {
    fn from(e: VisionError) -> Self {
        match e {
            VisionError::UnsupportedFormat => ApiError::UnsupportedMediaType(e.to_string()),
            VisionError::TooLarge { .. } | VisionError::TooMuchMemory(_) => {
                ApiError::PayloadTooLarge(e.to_string())
            }
            VisionError::Empty | VisionError::Corrupt(_) | VisionError::ExtremeAspect { .. } => {
                ApiError::InvalidImage(e.to_string())
            }
        }
    }
}

impl From<VocabError> for ApiError {
    fn from(e: VocabError) -> Self {
        match e {
            VocabError::Invalid { .. } | VocabError::PromptTooLong { .. } | VocabError::Pack(_) => {
                ApiError::Unprocessable(e.to_string())
            }
            VocabError::Duplicate { .. } | VocabError::Mismatch { .. } => {
                ApiError::Conflict(e.to_string())
            }
            VocabError::SeedPack { .. } => ApiError::Protected(e.to_string()),
            VocabError::Busy => ApiError::TryLater(e.to_string()),
            VocabError::Unavailable(_) => {
                ApiError::StoreUnavailable(format!("{e}; nothing was changed, retry shortly"))
            }
            VocabError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            VocabError::SeedEntry { .. } => ApiError::Protected(e.to_string()),
            VocabError::Database(_) | VocabError::Migration(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ClassifierError> for ApiError {
    fn from(e: ClassifierError) -> Self {
        match e {
            ClassifierError::Vocab(v) => v.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::engine::examples::ExampleError> for ApiError {
    fn from(e: crate::engine::examples::ExampleError) -> Self {
        use crate::engine::examples::ExampleError;
        match e {
            ExampleError::Vocab(v) => v.into(),
            ExampleError::Engine(e) => e.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::QueueFull(_) => ApiError::Busy(e.to_string()),
            EngineError::DeadlineExceeded => ApiError::Timeout(e.to_string()),
            EngineError::Stopped => ApiError::Unavailable(e.to_string()),
            EngineError::Failed(_) | EngineError::Unsupported(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<crate::engine::DetectError> for ApiError {
    fn from(e: crate::engine::DetectError) -> Self {
        use crate::engine::DetectError;
        match e {
            DetectError::Invalid(m) => ApiError::Unprocessable(m),
            DetectError::NotReady => ApiError::Unavailable(e.to_string()),
            DetectError::StaleVocabulary(m) => ApiError::StaleVocabulary(m),
            DetectError::Image(v) => v.into(),
            DetectError::Engine(e) => e.into(),
        }
    }
}

impl From<RebuildError> for ApiError {
    fn from(e: RebuildError) -> Self {
        match e {
            RebuildError::Classifier(c) => c.into(),
            RebuildError::Engine(e) => e.into(),
        }
    }
}
