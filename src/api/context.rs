//! Per-request context: a request id (taken from `X-Request-Id` when sane, else made
//! here) that errors and logs carry, and the whole-request deadline that answers
//! problem+json instead of a bare 503.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled ("-" outside a request).
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| "-".into())
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh request id (also for answers given outside the router).
pub fn new_id() -> String {
    // A per-process random prefix keeps ids from two runs (or replicas) apart in logs.
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(rand::random::<u32>);
    format!(
        "{prefix:08x}-{:06}",
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// A client's id is kept only if it is short and printable (it ends up in logs).
fn sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Middleware: sets the request id for everything below and echoes it in the response.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_string)
        .unwrap_or_else(new_id);
    if let Ok(v) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID_HEADER, v.clone());
        let mut response = REQUEST_ID.scope(id, next.run(request)).await;
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
        return response;
    }
    REQUEST_ID.scope(id, next.run(request)).await
}

/// Middleware: a body whose declared length (`Content-Length`) is over `max` bytes is
/// refused with 413 before any of it is read. The body extractors' own limit counts only
/// what has arrived, and reading is what makes the server send `100 Continue`: without
/// this, a client announcing 100 MB was invited to send it and refused 16 MB later.
pub async fn declared_length(State(max): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = declared.filter(|&n| n > max as u64) {
        return ApiError::PayloadTooLarge(format!(
            "the body declares {length} bytes; at most {max} are accepted"
        ))
        .into_response();
    }
    next.run(request).await
}

/// Middleware: the backstop deadline for the whole request (each phase has its own,
/// shorter limit; this one catches anything they miss) as problem+json 503 `timeout`.
pub async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(format!(
            "the request was not answered within {} s",
            limit.as_secs()
        ))
        .into_response(),
    }
}
