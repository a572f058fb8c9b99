//! API keys, checked as a layer before any body is read, and per-key rate limits.
//!
//! Two scopes: `detect` (POST /detect) and `admin` (vocabulary writes; an admin key also
//! passes the detect check). A scope with no keys configured is open. Keys are compared in
//! constant time; the matched key's label goes into the request extensions so the rate
//! limiter counts per key (per peer address when no key is needed).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tower_governor::GovernorError;
use tower_governor::key_extractor::KeyExtractor;

use super::error::ApiError;

/// The keys of each scope (several per scope, so keys can be rotated).
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    pub detect: Vec<String>,
    pub admin: Vec<String>,
}

/// What a request must present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Detect,
    /// Writes need an admin key; reads (GET/HEAD) stay open.
    AdminWrites,
}

/// The identity rate limits count against: a key's label, or nothing (then the peer).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(pub String);

/// The key a request presents: a non-empty `X-API-Key`, else `Authorization: Bearer`
/// (scheme case-insensitive, RFC 9110). An empty `X-API-Key` does not hide a Bearer key.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let api_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty());
    api_key.or_else(|| {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    })
}

/// Index of the key in `keys` equal to `given`, compared in constant time (every key is
/// compared, so timing does not tell which one matched or how much of it).
fn find_key(keys: &[String], given: &str) -> Option<usize> {
    let mut found = None;
    for (i, k) in keys.iter().enumerate() {
        if bool::from(k.as_bytes().ct_eq(given.as_bytes())) {
            found = Some(i);
        }
    }
    found
}

/// Checks the headers against a scope; on success returns the identity to rate-limit.
pub fn authorize(
    keys: &ApiKeys,
    scope: Scope,
    headers: &HeaderMap,
) -> Result<Option<KeyId>, ApiError> {
    let (needed, label): (&[String], &str) = match scope {
        Scope::Detect if keys.detect.is_empty() => return Ok(None),
        Scope::Detect => (&keys.detect, "detect"),
        Scope::AdminWrites if keys.admin.is_empty() => return Ok(None),
        Scope::AdminWrites => (&keys.admin, "admin"),
    };
    let Some(given) = presented_key(headers) else {
        return Err(ApiError::Unauthorized(
            "this endpoint needs an API key (X-API-Key or Authorization: Bearer)".into(),
        ));
    };
    if let Some(i) = find_key(needed, given) {
        return Ok(Some(KeyId(format!("{label}-{i}"))));
    }
    // An admin key is good for detection too.
    if scope == Scope::Detect
        && let Some(i) = find_key(&keys.admin, given)
    {
        return Ok(Some(KeyId(format!("admin-{i}"))));
    }
    Err(ApiError::Forbidden(
        "the API key is not valid for this endpoint".into(),
    ))
}

/// Middleware: refuses before the body is read; records the key for the rate limiter.
pub async fn require(
    State((keys, scope)): State<(Arc<ApiKeys>, Scope)>,
    mut request: Request,
    next: Next,
) -> Response {
    let open = scope == Scope::AdminWrites
        && matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        );
    if !open {
        match authorize(&keys, scope, request.headers()) {
            Ok(Some(id)) => {
                request.extensions_mut().insert(id);
            }
            Ok(None) => {}
            Err(e) => return e.into_response(),
        }
    }
    next.run(request).await
}

/// Rate-limit key: the API key's label when one was checked, else the peer address.
#[derive(Debug, Clone, Copy)]
pub struct RateKey;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKeyValue {
    Key(String),
    Peer(IpAddr),
    Unknown,
}

impl KeyExtractor for RateKey {
    type Key = RateKeyValue;

    fn extract<T>(&self, req: &axum::http::Request<T>) -> Result<Self::Key, GovernorError> {
        if let Some(KeyId(id)) = req.extensions().get::<KeyId>() {
            return Ok(RateKeyValue::Key(id.clone()));
        }
        Ok(req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| RateKeyValue::Peer(c.0.ip()))
            .unwrap_or(RateKeyValue::Unknown))
    }
}

/// Sustained requests per second and burst per key; `per_second == 0` turns limits off.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 50,
            burst: 100,
        }
    }
}

/// A rate-limited request: problem+json 429 with the limiter's headers (Retry-After,
/// x-ratelimit-*).
pub fn rate_limited(error: GovernorError) -> Response {
    match error {
        GovernorError::TooManyRequests { wait_time, headers } => {
            let mut response =
                ApiError::RateLimited(format!("rate limit exceeded; retry in {wait_time} s"))
                    .into_response();
            if let Some(headers) = headers {
                response.headers_mut().extend(headers);
            }
            if let Ok(v) = HeaderValue::from_str(&wait_time.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
        other => {
            ApiError::BadRequest(format!("cannot rate-limit this request: {other}")).into_response()
        }
    }
}

/// The governor layer for `limit`, or None when limits are off.
pub fn rate_limit_layer(
    limit: RateLimit,
) -> Option<
    tower_governor::GovernorLayer<
        RateKey,
        governor::middleware::StateInformationMiddleware,
        axum::body::Body,
    >,
> {
    if limit.per_second == 0 {
        return None;
    }
    let period = Duration::from_secs(1) / limit.per_second;
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .period(period)
        .burst_size(limit.burst.max(1))
        .key_extractor(RateKey)
        .use_headers()
        .finish()?;
    let config = Arc::new(config);
    // The keyed store grows with every peer seen; forget idle ones once a minute so a
    // flood of source addresses cannot grow it without bound.
    let limiter = Arc::downgrade(config.limiter());
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(60));
            let Some(limiter) = limiter.upgrade() else {
                return;
            };
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    });
    Some(tower_governor::GovernorLayer::new(config).error_handler(rate_limited))
}
