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

/// Failed key checks a client address may make: 10 a second, 20 at once. Beyond that,
/// 429 instead of 401/403, so keys cannot be guessed at full speed.
pub type FailureLimiter = governor::DefaultKeyedRateLimiter<IpAddr>;

pub fn failure_limiter() -> Arc<FailureLimiter> {
    let quota = governor::Quota::per_second(nonzero_ext::nonzero!(10u32))
        .allow_burst(nonzero_ext::nonzero!(20u32));
    let limiter = Arc::new(governor::RateLimiter::keyed(quota));
    forget_idle(Arc::downgrade(&limiter));
    limiter
}

/// What [`require`] checks: the keys, the scope and the failure limiter.
#[derive(Clone)]
pub struct Guard {
    pub keys: Arc<ApiKeys>,
    pub scope: Scope,
    pub failures: Arc<FailureLimiter>,
}

/// Middleware: refuses before the body is read; records the key for the rate limiter.
/// Refusals close the connection (the unread body would otherwise be parsed as the next
/// request), and say so.
pub async fn require(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let open = guard.scope == Scope::AdminWrites
        && matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        );
    if !open {
        match authorize(&guard.keys, guard.scope, request.headers()) {
            Ok(Some(id)) => {
                request.extensions_mut().insert(id);
            }
            Ok(None) => {}
            Err(e) => {
                let peer = request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip());
                let throttled = peer.is_some_and(|ip| guard.failures.check_key(&ip).is_err());
                let mut response = if throttled {
                    ApiError::RateLimited("too many failed API key checks; retry later".into())
                        .into_response()
                } else {
                    e.into_response()
                };
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
        }
    }
    next.run(request).await
}

/// Forgets idle entries of a keyed limiter once a minute, so a flood of keys or source
/// addresses cannot grow it without bound; stops when the limiter is dropped.
fn forget_idle<K, M>(
    limiter: std::sync::Weak<
        governor::RateLimiter<
            K,
            governor::state::keyed::DefaultKeyedStateStore<K>,
            governor::clock::DefaultClock,
            M,
        >,
    >,
) where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    M: governor::middleware::RateLimitingMiddleware<governor::clock::QuantaInstant>
        + Send
        + Sync
        + 'static,
{
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
            // Refused before the body was read: the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        other => {
            ApiError::BadRequest(format!("cannot rate-limit this request: {other}")).into_response()
        }
    }
}

/// The rate-limit layer type.
pub type RateLimitLayer = tower_governor::GovernorLayer<
    RateKey,
    governor::middleware::StateInformationMiddleware,
    axum::body::Body,
>;

/// The governor layer for `limit`, or None when limits are off.
pub fn rate_limit_layer(limit: RateLimit) -> Option<RateLimitLayer> {
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
    forget_idle(Arc::downgrade(config.limiter()));
    Some(tower_governor::GovernorLayer::new(config).error_handler(rate_limited))
}
