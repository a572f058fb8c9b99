//! Postgres stops for a few seconds while two replicas serve: detections keep being
//! answered from the classifier in memory, writes answer 503 `vocabulary-unavailable`
//! (and leave nothing behind), readiness says `degraded`, and everything recovers by
//! itself when the server is back. Needs the server `.ci/postgres.sh` runs (it stops and
//! starts it) and `HOICLIP_TEST_POSTGRES_URL`; skipped without them. Alone in its test
//! binary: cargo runs binaries one at a time, so no other test sees the outage.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::http::*;
use hoiclip::api::{AppState, ServeOptions};

async fn replica(url: &str) -> AppState {
    let settings = hoiclip::config::Settings {
        api: ServeOptions {
            vocabulary_wait: Duration::from_secs(2),
            ..ServeOptions::default()
        },
        vocabulary_poll: Duration::from_millis(200),
        ..common::settings_at(url)
    };
    hoiclip::app::build(&settings).await.unwrap().state
}

fn postgres(action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/postgres.sh");
    let status = std::process::Command::new("bash")
        .args([script, action])
        .status()
        .unwrap();
    assert!(status.success(), "postgres.sh {action} failed");
}

async fn detect(s: &AppState, min_version: i64) -> (StatusCode, serde_json::Value) {
    let (status, _, body) = send(
        s,
        raw(
            &format!("/detect?verbs=juggle&min_vocabulary_version={min_version}"),
            "image/png",
            png(),
        ),
    )
    .await;
    (status, json(&body))
}

async fn add_object(s: &AppState, name: &str) -> (StatusCode, String, Vec<u8>) {
    send(s, post_json("/objects", serde_json::json!({"name": name}))).await
}

async fn object_names(s: &AppState) -> Vec<String> {
    get_json(s, "/objects")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_ride_out_a_postgres_outage_and_recover_by_themselves() {
    let Some(url) = common::fresh_postgres("outage") else {
        eprintln!(
            "skipped: set {} to run against Postgres",
            common::POSTGRES_ENV
        );
        return;
    };
    let a = replica(&url).await;
    let b = replica(&url).await;
    let (status, _, body) = send(
        &a,
        post_json(
            "/verbs",
            serde_json::json!({"name": "juggle", "ing": "juggling", "objects": ["orange"]}),
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let v1 = json(&body)["vocabulary_version"].as_i64().unwrap();
    assert_eq!(detect(&b, v1).await.0, StatusCode::OK);

    // A write racing the outage: committed or refused, it is answered within about one
    // connection timeout (3 s), not held until the database returns.
    let racing = tokio::spawn({
        let a = a.clone();
        async move {
            let started = Instant::now();
            let (status, _, body) = add_object(&a, "kazoo").await;
            (status, body, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    postgres("pause");
    let outage = Instant::now();
    let (status, body, took) = racing.await.unwrap();
    assert!(
        took < Duration::from_secs(5),
        "a write caught by the outage took {took:?}"
    );
    let kazoo = match status {
        StatusCode::CREATED => true,
        StatusCode::SERVICE_UNAVAILABLE => false,
        other => panic!("{other}: {}", String::from_utf8_lossy(&body)),
    };
    let last = if kazoo {
        json(&body)["vocabulary_version"].as_i64().unwrap()
    } else {
        v1
    };

    // Detections: answered from memory, on both replicas.
    for s in [&a, &b] {
        let (status, v) = detect(s, v1).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let served = v["vocabulary_version"].as_i64().unwrap();
        assert!((v1..=last).contains(&served), "{v}");
        assert!(!v["triplets"].as_array().unwrap().is_empty());
    }
    // Writes: a prompt 503 with Retry-After, never a 500.
    let started = Instant::now();
    let request = post_json("/objects", serde_json::json!({"name": "zither"}));
    let response = tower::ServiceExt::oneshot(hoiclip::api::router(a.clone()), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        json(&body)["type"],
        "urn:hoiclip:problem:vocabulary-unavailable",
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a refused write took {:?}",
        started.elapsed()
    );
    let (status, ct, body) = add_object(&b, "theremin").await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "vocabulary-unavailable",
    );
    // Readiness: still taking detections, and says why it is degraded.
    let mut ready = serde_json::Value::Null;
    while outage.elapsed() < Duration::from_secs(8) {
        ready = get_json(&a, "/health/ready").await;
        if ready["status"] == "degraded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(
        ready["detail"].as_str().unwrap().contains("unavailable"),
        "{ready}"
    );
    assert_eq!(get_json(&a, "/health/live").await["status"], "live");

    tokio::time::sleep(Duration::from_secs(2)).await;
    postgres("resume");
    let back = Instant::now();

    // Writes work again without a restart (the pool reconnects).
    let v2 = loop {
        let (status, _, body) = add_object(&a, "unicycle").await;
        if status == StatusCode::CREATED {
            break json(&body)["vocabulary_version"].as_i64().unwrap();
        }
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "writes never recovered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(v2, last + 1, "a refused write bumped the version");
    // The writes refused during the outage left nothing behind.
    let names = object_names(&a).await;
    assert!(names.contains(&"unicycle".to_string()));
    assert_eq!(names.contains(&"kazoo".to_string()), kazoo);
    assert!(!names.contains(&"zither".to_string()) && !names.contains(&"theremin".to_string()));
    // B hears of the new write (its listener reconnected, or its poll found it).
    let started = Instant::now();
    loop {
        let v = get_json(&b, "/vocabulary").await;
        if v["classifier_version"].as_i64() == Some(v2) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "B never caught up: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And its announcements flow again: a write on B reaches A without a poll's delay
    // being needed (either way it must arrive).
    let (status, _, body) = add_object(&b, "zither").await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let v3 = json(&body)["vocabulary_version"].as_i64().unwrap();
    assert_eq!(detect(&a, v3).await.0, StatusCode::OK);
    // Readiness is back to plain ready.
    let started = Instant::now();
    loop {
        let ready = get_json(&a, "/health/ready").await;
        if ready["status"] == "ready" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
