//! HTTP helpers shared by the API tests: a demo-model state, one-shot requests through the
//! router, and problem+json checks.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use hoiclip::api::{AppState, ServeOptions, router};
use hoiclip::engine::{BatchPolicy, DetectorRunner, EngineOptions, Service};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::fixture;

/// The demo model with a fresh in-memory vocabulary, marked ready.
pub async fn state(options: ServeOptions) -> AppState {
    state_at(options, "sqlite::memory:").await
}

/// The demo model with its vocabulary in the database at `url`, marked ready.
pub async fn state_at(options: ServeOptions, url: &str) -> AppState {
    let (detector, classifiers) = super::demo_parts_at(url).await;
    let service = Arc::new(Service::start(
        detector,
        classifiers,
        EngineOptions::default(),
        "cpu",
        "flex",
    ));
    let state = AppState::new(service, options);
    state
        .0
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    state
}

/// A state whose worker reports each batch on the receiver and then waits until the test
/// opens the gate.
pub async fn held_state(
    options: ServeOptions,
    engine: EngineOptions,
) -> (AppState, super::Gate, std::sync::mpsc::Receiver<usize>) {
    let (detector, classifiers) = super::demo_parts().await;
    let gate = super::Gate::closed();
    let (started, batches) = std::sync::mpsc::channel();
    let held_gate = gate.clone();
    let service = Arc::new(Service::with_runner(
        detector,
        classifiers,
        engine,
        "cpu",
        "flex",
        move |d| super::Held {
            inner: DetectorRunner::new(d, BatchPolicy::SameSize),
            gate: held_gate,
            started,
        },
    ));
    let s = AppState::new(service, options);
    s.0.ready.store(true, std::sync::atomic::Ordering::Release);
    (s, gate, batches)
}

/// Sends one request through a fresh router; returns status, content type and body.
pub async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, content_type, body)
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

pub fn png() -> Vec<u8> {
    std::fs::read(fixture("hoiclip/img0.png")).unwrap()
}

pub fn raw(uri: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

pub fn post_json(uri: &str, value: serde_json::Value) -> Request<Body> {
    raw(uri, "application/json", value.to_string().into_bytes())
}

pub fn assert_problem(
    status: StatusCode,
    content_type: &str,
    body: &[u8],
    expected: StatusCode,
    kind: &str,
) {
    assert_eq!(status, expected, "{}", String::from_utf8_lossy(body));
    assert_eq!(content_type, "application/problem+json");
    let p = json(body);
    assert_eq!(p["type"], format!("urn:hoiclip:problem:{kind}"), "{p}");
    assert_eq!(p["status"], expected.as_u16());
    assert!(!p["detail"].as_str().unwrap().is_empty());
}

/// `GET uri` through a fresh router, its JSON body (whatever the status).
pub async fn get_json(state: &AppState, uri: &str) -> serde_json::Value {
    json(
        &send(state, Request::get(uri).body(Body::empty()).unwrap())
            .await
            .2,
    )
}
