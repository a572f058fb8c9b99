//! HTTP helpers shared by the API tests: a demo-model state, one-shot requests through the
//! router, and problem+json checks.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use hoiclip::api::{AppState, ServeOptions, router};
use hoiclip::config::Settings;
use hoiclip::engine::EngineOptions;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::fixture;

/// The demo model with a fresh in-memory vocabulary, built and warmed up as
/// `hoiclip serve` builds it.
pub async fn state(options: ServeOptions) -> AppState {
    state_at(options, &super::test_db("state")).await
}

/// As [`state`], with the vocabulary in the database at `url`.
pub async fn state_at(options: ServeOptions, url: &str) -> AppState {
    let settings = Settings {
        api: options,
        ..super::settings_at(url)
    };
    hoiclip::app::build(&settings).await.unwrap().state
}

/// A state whose worker reports each batch on the receiver and then waits until the test
/// opens the gate (marked ready without a warm-up pass, which the gate would hold).
pub async fn held_state(
    options: ServeOptions,
    engine: EngineOptions,
) -> (AppState, super::Gate, std::sync::mpsc::Receiver<usize>) {
    let gate = super::Gate::closed();
    let (started, batches) = std::sync::mpsc::channel();
    let held_gate = gate.clone();
    let settings = Settings {
        api: options,
        engine,
        ..super::settings_at(&super::test_db("held"))
    };
    let service = super::demo_service_with(&settings, move |inner| super::Held {
        inner,
        gate: held_gate,
        started,
    })
    .await;
    let app = hoiclip::app::assemble(service, &settings);
    app.state
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    (app.state, gate, batches)
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

/// A multipart body of image files (field `image`) and text fields, in that order.
#[allow(dead_code)]
pub fn multipart_form(uri: &str, images: &[&[u8]], fields: &[(&str, &str)]) -> Request<Body> {
    let boundary = "XhoiclipformX";
    let mut body = Vec::new();
    for image in images {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(image);
        body.extend_from_slice(b"\r\n");
    }
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    raw(
        uri,
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
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
