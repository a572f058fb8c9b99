//! A vocabulary write's answer says what was stored: a committed write is answered as
//! committed even when the classifier rebuild it starts outlasts the request deadline
//! (with the classifier version that serves, so a client knows whether to wait), and a
//! retried import that finds its own pack stored is answered as the first was.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::http::*;
use hoiclip::api::ServeOptions;
use hoiclip::config::Settings;

/// A runner whose text passes wait at a gate (detections and set builds go through).
struct TextGate<R> {
    inner: R,
    gate: common::Gate,
}

impl<R: hoiclip::engine::Runner> hoiclip::engine::Runner for TextGate<R> {
    fn run(
        &mut self,
        batch: &[hoiclip::engine::Request],
    ) -> Vec<Result<hoiclip::detector::ImageDetections, hoiclip::engine::EngineError>> {
        self.inner.run(batch)
    }

    fn embed_text(
        &mut self,
        ids: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>, hoiclip::engine::EngineError> {
        self.gate.pass();
        self.inner.embed_text(ids)
    }

    fn install(
        &mut self,
        source: hoiclip::engine::SetSource,
    ) -> Result<hoiclip::engine::ClassifierHandle, hoiclip::classifier::ClassifierError> {
        self.inner.install(source)
    }
}

fn get(uri: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::get(uri)
        .body(axum::body::Body::empty())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_rebuild_outlasts_the_deadline_is_answered_as_committed() {
    let gate = common::Gate::closed();
    gate.open();
    let timeout = Duration::from_secs(2);
    let settings = Settings {
        api: ServeOptions {
            request_timeout: timeout,
            ..ServeOptions::default()
        },
        ..common::settings_at(&common::test_db("write-wait"))
    };
    let service = common::demo_service_with(&settings, {
        let gate = gate.clone();
        move |inner| TextGate { inner, gate }
    })
    .await;
    let state = hoiclip::app::assemble(service, &settings).state;
    state
        .ready
        .store(true, std::sync::atomic::Ordering::Release);

    let juggle = || {
        post_json(
            "/verbs",
            serde_json::json!({"name": "juggle", "ing": "juggling", "objects": ["orange"]}),
        )
    };
    // The new prompts' text pass waits at the gate: the rebuild cannot finish in time.
    gate.close();
    let start = Instant::now();
    let (status, _, body) = send(&state, juggle()).await;
    let took = start.elapsed();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        took < timeout,
        "answered after {took:?}, the deadline is {timeout:?}"
    );
    let answer = json(&body);
    let version = answer["vocabulary_version"].as_i64().unwrap();
    let serving = answer["classifier_version"].as_i64().unwrap();
    assert!(serving < version, "{answer}");

    // The write was committed: a retry is a conflict, the vocabulary has it, and the
    // classifier catches up once the text pass may run.
    let (status, _, _) = send(&state, juggle()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    gate.open();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, body) = send(&state, get("/vocabulary")).await;
        let vocabulary = json(&body);
        assert_eq!(vocabulary["version"].as_i64(), Some(version));
        if vocabulary["classifier_version"].as_i64() == Some(version) {
            break;
        }
        assert!(
            Instant::now() < until,
            "the classifier never caught up: {vocabulary}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_import_is_answered_as_the_first_and_another_pack_of_its_name_conflicts() {
    let state = state(ServeOptions::default()).await;
    let pack = serde_json::json!({
        "name": "circus",
        "verbs": [{"name": "juggle", "ing": "juggling"}],
        "objects": [{"name": "club", "prompt": "a photo of a juggling club"}],
        "interactions": [
            {"verb": "juggle", "object": "club", "prompt": "a photo of a person juggling clubs"},
            {"verb": "juggle", "object": null, "prompt": "a photo of a person juggling"}
        ]
    });
    let (status, _, first) = send(&state, post_json("/packs/import", pack.clone())).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&first)
    );
    let first = json(&first);
    assert_eq!(
        first["classifier_version"], first["vocabulary_version"],
        "{first}"
    );

    // The same pack again, its entries in another order.
    let mut again = pack.clone();
    again["interactions"].as_array_mut().unwrap().reverse();
    let (status, _, second) = send(&state, post_json("/packs/import", again)).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&second)
    );
    assert_eq!(
        json(&second)["vocabulary_version"],
        first["vocabulary_version"]
    );

    // A pack that names a stored verb in another spelling reuses it; its retry is still
    // recognised as the same pack.
    let spelled = serde_json::json!({
        "name": "rides",
        "verbs": [{"name": "RIDE", "ing": "riding"}],
        "objects": [],
        "interactions": [{"verb": "Ride", "object": null, "prompt": "a photo of a person riding along"}]
    });
    let (status, _, body) = send(&state, post_json("/packs/import", spelled.clone())).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let version = json(&body)["vocabulary_version"].clone();
    let (status, _, body) = send(&state, post_json("/packs/import", spelled)).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(json(&body)["vocabulary_version"], version);

    // Another pack under the same name is still a conflict, and changes nothing.
    let mut other = pack.clone();
    other["interactions"][1]["prompt"] = "a photo of a person juggling at a circus".into();
    let (status, ct, body) = send(&state, post_json("/packs/import", other)).await;
    assert_problem(status, &ct, &body, StatusCode::CONFLICT, "conflict");
    let (_, _, body) = send(&state, get("/vocabulary")).await;
    assert_eq!(json(&body)["version"], version);
}
