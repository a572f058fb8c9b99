//! Several replicas, one vocabulary: two servers (each with its own store connections,
//! follower, engine and classifier set) on the same database. On SQLite (a shared file)
//! changes travel by polling the version; with `HOICLIP_TEST_POSTGRES_URL` set the same
//! tests run on Postgres, where they travel by LISTEN/NOTIFY.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::http::*;
use hoiclip::api::{AppState, ServeOptions};
use hoiclip::vocab::store::NewVerb;

/// A replica on the database at `url`, polling every `poll` (the LISTEN fallback).
async fn replica(url: &str, poll: Duration, wait: Duration) -> AppState {
    let settings = hoiclip::config::Settings {
        api: ServeOptions {
            vocabulary_wait: wait,
            ..ServeOptions::default()
        },
        vocabulary_poll: poll,
        ..common::settings_at(url)
    };
    hoiclip::app::build(&settings).await.unwrap().state
}

async fn add_juggle(a: &AppState) -> i64 {
    let (status, _, body) = send(
        a,
        post_json(
            "/verbs",
            serde_json::json!({"name": "juggle", "ing": "juggling", "objects": ["orange", "apple"]}),
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    json(&body)["vocabulary_version"].as_i64().unwrap()
}

#[tokio::test]
async fn a_verb_added_on_one_replica_is_scored_on_the_other_when_the_client_names_its_version() {
    let url = common::temp_db("read-your-writes");
    // A poll far longer than the test: only the request's own wait can bring the change.
    let a = replica(&url, Duration::from_secs(3600), Duration::from_secs(5)).await;
    let b = replica(&url, Duration::from_secs(3600), Duration::from_secs(5)).await;
    let engine = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(get_json(&b, "/info").await["database"], engine);
    let version = add_juggle(&a).await;

    let started = Instant::now();
    let (status, _, body) = send(
        &b,
        raw(
            &format!("/detect?verbs=juggle&min_vocabulary_version={version}"),
            "image/png",
            png(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v = json(&body);
    assert!(v["vocabulary_version"].as_i64().unwrap() >= version, "{v}");
    let triplets = v["triplets"].as_array().unwrap();
    assert!(!triplets.is_empty(), "{v}");
    assert!(triplets.iter().all(|t| t["verb"] == "juggle"), "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // The same in a JSON body, and on the batch endpoint.
    use base64::Engine;
    let image = base64::engine::general_purpose::STANDARD.encode(png());
    let (status, _, body) = send(
        &b,
        post_json(
            "/detect/batch",
            serde_json::json!({"images": [image], "verbs": "juggle", "min_vocabulary_version": version}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

fn assert_stale((status, ct, body): (StatusCode, String, Vec<u8>)) {
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "stale-vocabulary",
    );
}

#[tokio::test]
async fn a_replica_that_cannot_reach_the_version_asked_for_answers_503_stale_vocabulary() {
    let url = common::temp_db("stale");
    let b = replica(&url, Duration::from_millis(50), Duration::from_millis(300)).await;
    let have = get_json(&b, "/vocabulary").await["version"]
        .as_i64()
        .unwrap();
    let started = Instant::now();
    let request = raw(
        &format!("/detect?min_vocabulary_version={}", have + 100),
        "image/png",
        png(),
    );
    let response = tower::ServiceExt::oneshot(hoiclip::api::router(b.clone()), request)
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, ct, body) = {
        let status = response.status();
        let ct = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, ct, body)
    };
    assert_stale((status, ct, body));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
    // Query and body both name a version: the newer one is asked for, whichever carries
    // it (a JSON body and a multipart field alike).
    use base64::Engine;
    let image = base64::engine::general_purpose::STANDARD.encode(png());
    let newer = have + 100;
    for request in [
        post_json(
            &format!("/detect?min_vocabulary_version={newer}"),
            serde_json::json!({"image": image, "min_vocabulary_version": have}),
        ),
        multipart_form(
            &format!("/detect?min_vocabulary_version={have}"),
            &[&png()],
            &[("min_vocabulary_version", &newer.to_string())],
        ),
    ] {
        assert_stale(send(&b, request).await);
    }
    let (status, _, body) = send(
        &b,
        multipart_form(
            "/detect",
            &[&png()],
            &[("min_vocabulary_version", &have.to_string())],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    // A negative version is a client error, not a wait.
    let (status, ct, body) = send(
        &b,
        raw("/detect?min_vocabulary_version=-1", "image/png", png()),
    )
    .await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    );
}

#[tokio::test]
async fn writes_reach_the_other_replica_without_any_request_asking() {
    let url = common::temp_db("propagation");
    let a = replica(&url, Duration::from_millis(200), Duration::from_secs(2)).await;
    let b = replica(&url, Duration::from_millis(200), Duration::from_secs(2)).await;
    let version = add_juggle(&a).await;
    let started = Instant::now();
    loop {
        let v = get_json(&b, "/vocabulary").await;
        if v["classifier_version"].as_i64() == Some(version) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "replica B never caught up: {v}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A removal travels too: B stops accepting the verb.
    let id = get_json(&b, "/verbs")
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "juggle")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, _, body) = send(
        &a,
        axum::http::Request::delete(format!("/verbs/{id}"))
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let removed = json(&body)["vocabulary_version"].as_i64().unwrap();
    let (status, ct, body) = send(
        &b,
        raw(
            &format!("/detect?verbs=juggle&min_vocabulary_version={removed}"),
            "image/png",
            png(),
        ),
    )
    .await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    );
}

#[tokio::test]
async fn a_replica_takes_embeddings_another_computed_from_the_shared_cache() {
    let url = common::temp_db("shared-cache");
    let (a, sets_a) = common::demo_service_and_sets(&url).await;
    let (b, sets_b) = common::demo_service_and_sets(&url).await;
    // B started on a vocabulary A had embedded already.
    assert_eq!(b.classifiers().text_passes().1, 0);
    // B hears of the change only when told below: A has embedded the new prompts by then
    // (a replica told at once embeds what is not cached yet, in parallel with the writer).
    b.stop_following();
    let (_, _, version) = a
        .store()
        .add_verb(NewVerb {
            name: "juggle".into(),
            ing: "juggling".into(),
            objects: vec!["orange".into(), "apple".into()],
            prompts: vec![],
            pack: None,
        })
        .await
        .unwrap();
    let before = a.classifiers().text_passes().1;
    a.classifiers().refresh().await.unwrap();
    assert!(
        a.classifiers().text_passes().1 > before,
        "A embeds the new prompts"
    );
    let set = b.classifiers().refresh().await.unwrap();
    assert_eq!(set.version, version);
    assert_eq!(
        b.classifiers().text_passes(),
        (0, 0),
        "B ran the text tower for prompts A had cached"
    );
    // The two replicas score with the same rows.
    let sa = sets_a.get(&a.classifiers().current().unwrap()).unwrap();
    let sb = sets_b.get(&set).unwrap();
    assert_eq!(sa.rows.len(), sb.rows.len());
    let diff = common::max_abs_diff(
        sa.classifier.hoi_weight.clone(),
        sb.classifier.hoi_weight.clone(),
    );
    assert_eq!(diff, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_replicas_get_one_version_each_and_one_winner_per_name() {
    let url = common::temp_db("concurrent-replicas");
    let a = replica(&url, Duration::from_millis(200), Duration::from_secs(5)).await;
    let b = replica(&url, Duration::from_millis(200), Duration::from_secs(5)).await;
    let start = get_json(&a, "/vocabulary").await["version"]
        .as_i64()
        .unwrap();
    // Distinct names, half through each replica, all at once: every one commits, each
    // with its own next version.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            send(
                &s,
                post_json(
                    "/objects",
                    serde_json::json!({"name": format!("widget {i}")}),
                ),
            )
            .await
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        versions.push(json(&body)["vocabulary_version"].as_i64().unwrap());
    }
    versions.sort();
    assert_eq!(versions, ((start + 1)..=(start + 8)).collect::<Vec<_>>());
    // One name, four writers on two replicas: one 201, the others 409, one version used.
    let mut tasks = Vec::new();
    for i in 0..4 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            send(
                &s,
                post_json("/objects", serde_json::json!({"name": "gizmo"})),
            )
            .await
            .0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        vec![
            StatusCode::CREATED,
            StatusCode::CONFLICT,
            StatusCode::CONFLICT,
            StatusCode::CONFLICT
        ]
    );
    let v = get_json(&b, "/vocabulary").await;
    assert_eq!(v["version"], start + 9, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_an_empty_database_both_come_up() {
    let url = common::temp_db("start-together");
    let (a, b) = tokio::join!(
        replica(&url, Duration::from_millis(200), Duration::from_secs(2)),
        replica(&url, Duration::from_millis(200), Duration::from_secs(2))
    );
    let (va, vb) = (
        get_json(&a, "/vocabulary").await,
        get_json(&b, "/vocabulary").await,
    );
    // Seeded once (HICO-DET and V-COCO: two versions), whoever came first.
    assert_eq!(va["version"], 2, "{va}");
    assert_eq!(va["interactions"], vb["interactions"]);
    assert_eq!(va["classifier_version"], 2);
    assert_eq!(vb["classifier_version"], 2);
}
