//! Response headers every answer carries: `nosniff` on all of them (a JSON or problem
//! answer must never be read as HTML), and on the Swagger UI under `/docs`, which shares
//! the web page's origin (where the page keeps the API key), no framing by other sites.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// Middleware: the headers above, without replacing any a handler set itself (the web
/// page sets its own, stricter policy).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let docs = request.uri().path().starts_with("/docs");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    if docs {
        headers
            .entry(header::X_FRAME_OPTIONS)
            .or_insert(HeaderValue::from_static("DENY"));
        // Only framing is restricted: the Swagger UI bundle's script and style needs are
        // not pinned down by a test here, and a policy that broke the page would be worse.
        headers
            .entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(
                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ));
    }
    response
}
