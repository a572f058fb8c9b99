//! Regression tests for the defects hostile testing found (issue 11), through the router:
//! refused writes commit nothing, concurrent writers, auth before the body, rate limits,
//! validation gaps, metric labels, 405s, hidden internal errors and the decode budget.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::http::*;
use hoiclip::api::{ApiKeys, RateLimit, ServeOptions, router};
use hoiclip::model::clip::tokenizer::ClipTokenizer;
use http_body_util::BodyExt;
use tower::ServiceExt;

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// 64 Georgian letters: a legal name length (no compatibility folding applies), but far
/// more than 77 CLIP tokens once in "a photo of a person {ing}".
fn long_ing() -> String {
    let ing: String = (0..64)
        .map(|i| char::from_u32(0x10D0 + (i * 7 % 33)).unwrap())
        .collect();
    let tokens = ClipTokenizer::new()
        .unwrap()
        .encode_raw(&format!("a photo of a person {ing}"))
        .unwrap()
        .len();
    assert!(
        tokens + 2 > 77,
        "the test input must overflow CLIP's context: {tokens}"
    );
    ing
}

async fn vocabulary(s: &hoiclip::api::AppState) -> serde_json::Value {
    get_json(s, "/vocabulary").await
}

#[tokio::test]
async fn a_refused_verb_or_import_commits_nothing_and_later_writes_work() {
    let s = state(ServeOptions::default()).await;
    let before = vocabulary(&s).await;
    // A verb without objects: only its own row's prompt is too long.
    let (status, ct, body) = send(
        &s,
        post_json(
            "/verbs",
            serde_json::json!({"name": "ponder", "ing": long_ing()}),
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
    // The same through a pack import.
    let pack = serde_json::json!({
        "name": "mathpack",
        "verbs": [{"name": "ponder", "ing": long_ing()}],
        "objects": [],
        "interactions": [],
    });
    let (status, ct, body) = send(&s, post_json("/packs/import", pack)).await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    );
    let after = vocabulary(&s).await;
    assert_eq!(before, after, "a refused write changed the vocabulary");
    let verbs = json(&send(&s, get("/verbs")).await.2);
    assert!(
        !verbs
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "ponder")
    );
    let packs = json(&send(&s, get("/packs")).await.2);
    assert!(
        !packs
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "mathpack")
    );

    // The server is not bricked: the next valid write lands and is detectable.
    let (status, _, body) = send(
        &s,
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
    let v = vocabulary(&s).await;
    assert_eq!(v["version"], v["classifier_version"]);
    let (status, _, body) = send(&s, raw("/detect?verbs=juggle", "image/png", png())).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(send(&s, get("/health/ready")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_database_row_that_cannot_be_embedded_is_skipped_and_reported_not_fatal() {
    let url = common::temp_db("unusable-row");
    {
        let s = state_at(ServeOptions::default(), &url).await;
        // As if written by an older release or another tokenizer: bypass validation.
        sqlx::query("INSERT INTO verbs (name, ing, origin) VALUES ('ponder', $1, 'user')")
            .bind(long_ing())
            .execute(s.service.store().pool())
            .await
            .unwrap();
        sqlx::query("UPDATE vocabulary_version SET version = version + 1")
            .execute(s.service.store().pool())
            .await
            .unwrap();
    }
    // A fresh server on that database starts, serves, and names the skipped row.
    let s = state_at(ServeOptions::default(), &url).await;
    let v = vocabulary(&s).await;
    let skipped = v["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{v}");
    assert!(skipped[0].as_str().unwrap().contains("ponder"), "{v}");
    assert_eq!(
        send(&s, raw("/detect", "image/png", png())).await.0,
        StatusCode::OK
    );
    let (status, _, _) = send(
        &s,
        post_json("/objects", serde_json::json!({"name": "unicycle"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_get_500() {
    let url = common::temp_db("concurrent-writers");
    let s = state_at(ServeOptions::default(), &url).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let created = send(
                &s,
                post_json("/objects", serde_json::json!({"name": format!("thing{i}")})),
            )
            .await;
            let id = json(&created.2)["object"]["id"].as_i64();
            let deleted = match id {
                Some(id) => {
                    let r = Request::delete(format!("/objects/{id}"))
                        .body(Body::empty())
                        .unwrap();
                    Some(send(&s, r).await)
                }
                None => None,
            };
            (created, deleted)
        }));
    }
    for t in tasks {
        let (created, deleted) = t.await.unwrap();
        assert_eq!(
            created.0,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&created.2)
        );
        let deleted = deleted.unwrap();
        assert_eq!(
            deleted.0,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&deleted.2)
        );
    }
    let v = vocabulary(&s).await;
    assert_eq!(v["version"], v["classifier_version"]);
}

#[tokio::test]
async fn internal_errors_hide_their_cause_and_name_the_request_id() {
    let s = state(ServeOptions::default()).await;
    s.service.store().pool().close().await;
    let with_id = |uri: &str, id: &str| {
        router(s.clone()).oneshot(
            Request::get(uri)
                .header("x-request-id", id)
                .body(Body::empty())
                .unwrap(),
        )
    };
    let response = with_id("/verbs", "req-42").await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers().get("x-request-id").unwrap(), "req-42");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let p = json(&body);
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("req-42"), "{detail}");
    assert!(
        !detail.to_lowercase().contains("pool") && !detail.contains("sqlx"),
        "{detail}"
    );
    // A made-up id is replaced, not echoed into logs.
    let response = with_id("/health/live", "bad id; drop table").await.unwrap();
    let id = response
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(!id.contains("bad"), "{id}");
}

fn keyed() -> ServeOptions {
    ServeOptions {
        keys: ApiKeys {
            detect: vec!["det-key".into()],
            admin: vec!["admin-key".into()],
        },
        ..ServeOptions::default()
    }
}

/// A body that never arrives: a handler that waits for it hangs the test.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

fn endless_body() -> Body {
    Body::new(Endless)
}

#[tokio::test]
async fn auth_is_checked_before_the_body_is_read_and_accepts_rfc_spellings() {
    let s = state(keyed()).await;
    // No key: refused at once, the endless body is never read.
    for (uri, content_type) in [
        ("/detect", "image/png"),
        ("/packs/import", "application/json"),
    ] {
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(endless_body())
            .unwrap();
        let response =
            tokio::time::timeout(Duration::from_secs(5), router(s.clone()).oneshot(request))
                .await
                .unwrap_or_else(|_| panic!("the key check of {uri} waited for the body"))
                .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{uri}");
    }

    // The scheme is case-insensitive; an empty X-API-Key does not hide a valid Bearer.
    for (name, value) in [
        ("authorization", "bearer det-key"),
        ("authorization", "BEARER det-key"),
    ] {
        let r = Request::post("/detect")
            .header(header::CONTENT_TYPE, "image/png")
            .header(name, value)
            .body(Body::from(png()))
            .unwrap();
        assert_eq!(send(&s, r).await.0, StatusCode::OK, "{value}");
    }
    let r = Request::post("/detect")
        .header(header::CONTENT_TYPE, "image/png")
        .header("x-api-key", "")
        .header(header::AUTHORIZATION, "Bearer det-key")
        .body(Body::from(png()))
        .unwrap();
    assert_eq!(send(&s, r).await.0, StatusCode::OK);
    // The admin key is good for detection; the detect key is not good for writes.
    let r = Request::post("/detect")
        .header(header::CONTENT_TYPE, "image/png")
        .header("x-api-key", "admin-key")
        .body(Body::from(png()))
        .unwrap();
    assert_eq!(send(&s, r).await.0, StatusCode::OK);
    let r = Request::post("/objects")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-api-key", "det-key")
        .body(Body::from(r#"{"name": "unicycle"}"#))
        .unwrap();
    let (status, ct, body) = send(&s, r).await;
    assert_problem(status, &ct, &body, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn rate_limits_count_per_key_with_headers() {
    let s = state(ServeOptions {
        keys: ApiKeys {
            detect: vec!["k1".into(), "k2".into()],
            admin: vec![],
        },
        rate_limit: RateLimit {
            per_second: 1,
            burst: 2,
        },
        ..ServeOptions::default()
    })
    .await;
    let app = router(s.clone());
    let read = |key: &str| {
        Request::get("/verbs/1")
            .header("x-api-key", key)
            .body(Body::empty())
            .unwrap()
    };
    let detect = |key: &str| {
        Request::post("/detect")
            .header("x-api-key", key)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::empty())
            .unwrap()
    };
    // Two pass (415: wrong content type, but not limited), the third is limited.
    for _ in 0..2 {
        let r = app.clone().oneshot(detect("k1")).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(r.headers().contains_key("x-ratelimit-remaining"));
    }
    let r = app.clone().oneshot(detect("k1")).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(json(&body)["type"], "urn:hoiclip:problem:rate-limited");
    // Another key has its own budget.
    let r = app.clone().oneshot(detect("k2")).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Reads are limited per client too (no key needed: counted per peer).
    let mut limited = false;
    for _ in 0..4 {
        limited |= app.clone().oneshot(read("k2")).await.unwrap().status()
            == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited);
}

#[tokio::test]
async fn validation_gaps_are_closed() {
    let s = state(ServeOptions::default()).await;
    let before = vocabulary(&s).await;
    for (uri, body, status, kind) in [
        (
            "/verbs",
            serde_json::json!({"name": "\u{200b}", "ing": "pondering"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            "/objects",
            serde_json::json!({"name": "\u{200b}\u{200d}"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            "/verbs",
            serde_json::json!({"name": "hold,carry", "ing": "holding"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            "/objects",
            serde_json::json!({"name": "ball", "prompt": "a photo of a ball <|endoftext|> and more"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            "/verbs",
            serde_json::json!({"name": "juggle", "ing": "juggling", "objects": ["orange"], "pack": "hico-det"}),
            StatusCode::CONFLICT,
            "seed-entry",
        ),
        (
            "/interactions",
            serde_json::json!({"verb": "ride", "object": "orange", "pack": "hico-det"}),
            StatusCode::CONFLICT,
            "seed-entry",
        ),
    ] {
        let (st, ct, b) = send(&s, post_json(uri, body.clone())).await;
        assert_problem(st, &ct, &b, status, kind);
    }
    assert_eq!(before, vocabulary(&s).await);

    // An import may not silently keep an existing verb's different `ing`.
    let pack = serde_json::json!({
        "name": "other",
        "verbs": [{"name": "ride", "ing": "driving"}],
        "objects": [{"name": "horse", "prompt": "a photo of a horse"}],
        "interactions": [{"verb": "ride", "object": "horse", "prompt": "a photo of a person driving a horse"}],
    });
    let (st, ct, b) = send(&s, post_json("/packs/import", pack)).await;
    assert_problem(st, &ct, &b, StatusCode::CONFLICT, "conflict");
    assert_eq!(before, vocabulary(&s).await);

    // Detection options that parse but mean nothing.
    for uri in [
        "/detect?verbs=",
        "/detect?verbs=,%20,",
        "/detect?score_threshold=NaN",
        "/detect?score_threshold=-1",
        "/detect?top_k=0",
        "/detect?pack=",
    ] {
        let (st, ct, b) = send(&s, raw(uri, "image/png", png())).await;
        assert_problem(
            st,
            &ct,
            &b,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        );
    }
}

#[tokio::test]
async fn base64_wrapped_at_76_columns_is_accepted() {
    use base64::Engine;
    let s = state(ServeOptions::default()).await;
    let encoded = base64::engine::general_purpose::STANDARD.encode(png());
    let wrapped: Vec<String> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let body = serde_json::json!({"image": wrapped.join("\n") + "\n", "top_k": 3});
    let (status, _, body) = send(&s, post_json("/detect", body)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn made_up_methods_share_one_metric_label_and_get_405_problem_json() {
    let s = state(ServeOptions::default()).await;
    for i in 0..20 {
        let method = axum::http::Method::from_bytes(format!("FROB{i}").as_bytes()).unwrap();
        let r = Request::builder()
            .method(method)
            .uri("/verbs")
            .body(Body::empty())
            .unwrap();
        let (status, ct, body) = send(&s, r).await;
        assert_problem(
            status,
            &ct,
            &body,
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        );
    }
    let r = Request::put("/verbs").body(Body::empty()).unwrap();
    let (status, ct, body) = send(&s, r).await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    );
    let metrics = String::from_utf8(send(&s, get("/metrics")).await.2).unwrap();
    assert!(!metrics.contains("FROB"), "made-up methods became labels");
    assert!(metrics.contains("method=\"other\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decodes_wait_for_room_in_the_pixel_budget() {
    let s = state(ServeOptions {
        request_timeout: Duration::from_millis(800),
        ..ServeOptions::default()
    })
    .await;
    // Hold the whole budget, as concurrent large decodes would.
    let all = s.decode_budget.available_permits() as u32;
    let held = s
        .decode_budget
        .clone()
        .acquire_many_owned(all)
        .await
        .unwrap();
    let (status, ct, body) = send(&s, raw("/detect", "image/png", png())).await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
    );
    // Room given back: the same image decodes, and its pixels are returned afterwards
    // (a server with the default deadline, so a loaded test machine cannot time it out).
    drop(held);
    let s = state(ServeOptions::default()).await;
    let all = s.decode_budget.available_permits() as u32;
    let held = s
        .decode_budget
        .clone()
        .acquire_many_owned(all)
        .await
        .unwrap();
    let waiting = {
        let s = s.clone();
        tokio::spawn(async move { send(&s, raw("/detect", "image/png", png())).await.0 })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "a decode ran without room in the budget"
    );
    drop(held);
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);
    assert_eq!(s.decode_budget.available_permits() as u32, all);
}

#[tokio::test]
async fn every_spelling_of_a_special_token_and_oversized_prompts_are_refused() {
    let s = state(ServeOptions::default()).await;
    let before = vocabulary(&s).await;
    let refused = |prompt: String| {
        let s = s.clone();
        async move {
            let (status, ct, body) = send(
                &s,
                post_json(
                    "/objects",
                    serde_json::json!({"name": "cat2", "prompt": prompt}),
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
            body
        }
    };
    for prompt in [
        "a photo of a cat &lt;|endoftext|&gt; with a hat",
        "a photo of a cat &#60;|endoftext|&#62; with a hat",
        "a photo of a cat &amp;lt;|endoftext|&amp;gt; with a hat",
        "a photo of a cat ＜｜endoftext｜＞ with a hat",
        "a photo of a cat <|endof\u{feff}text|> with a hat",
        "<|startoftext|> a photo of a cat",
    ] {
        refused(prompt.to_string()).await;
    }
    // A huge prompt is refused by its length, at once, and not echoed back.
    let started = std::time::Instant::now();
    let body = refused("ab cd ".repeat(300_000)).await;
    assert!(
        body.len() < 2_000,
        "the answer echoes the prompt: {} bytes",
        body.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A prompt a little over 77 tokens is quoted, shortened.
    let (status, _, body) = send(
        &s,
        post_json(
            "/objects",
            serde_json::json!({"name": "long", "prompt": "a photo of a very ".repeat(20)}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(json(&body)["detail"].as_str().unwrap().contains("..."));
    assert_eq!(before, vocabulary(&s).await);
}

#[tokio::test]
async fn look_alike_names_are_refused() {
    let s = state(ServeOptions::default()).await;
    let before = vocabulary(&s).await;
    for (name, status, kind) in [
        ("ｒｉｄｅ", StatusCode::CONFLICT, "conflict"),
        ("Ride", StatusCode::CONFLICT, "conflict"),
        ("RIDE", StatusCode::CONFLICT, "conflict"),
        (
            "ride\u{200b}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            "\u{202e}edir",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
    ] {
        let (st, ct, body) = send(
            &s,
            post_json(
                "/verbs",
                serde_json::json!({"name": name, "ing": "riding", "objects": ["horse"]}),
            ),
        )
        .await;
        assert_problem(st, &ct, &body, status, kind);
    }
    let (st, ct, body) = send(
        &s,
        post_json("/objects", serde_json::json!({"name": "Horse"})),
    )
    .await;
    assert_problem(st, &ct, &body, StatusCode::CONFLICT, "conflict");
    assert_eq!(before, vocabulary(&s).await);
}

#[tokio::test]
async fn failed_key_checks_are_throttled_per_client_and_close_the_connection() {
    let s = state(keyed()).await;
    let app = router(s.clone());
    let peer: std::net::SocketAddr = "192.0.2.7:4000".parse().unwrap();
    let attempt = |key: &str| {
        let mut r = Request::post("/detect")
            .header(header::CONTENT_TYPE, "image/png")
            .header("x-api-key", key)
            .body(Body::from(png()))
            .unwrap();
        r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        r
    };
    let mut statuses = Vec::new();
    for i in 0..40 {
        let r = app
            .clone()
            .oneshot(attempt(&format!("guess-{i}")))
            .await
            .unwrap();
        assert_eq!(r.headers().get(header::CONNECTION).unwrap(), "close");
        statuses.push(r.status());
    }
    assert_eq!(statuses[0], StatusCode::FORBIDDEN);
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "40 wrong keys in a burst were never throttled"
    );
}

#[tokio::test]
async fn a_key_has_one_rate_across_detection_and_vocabulary_routes() {
    let s = state(ServeOptions {
        keys: ApiKeys {
            detect: vec!["det".into()],
            admin: vec!["adm".into()],
        },
        rate_limit: RateLimit {
            per_second: 1,
            burst: 2,
        },
        ..ServeOptions::default()
    })
    .await;
    let app = router(s.clone());
    let with_key = |r: axum::http::request::Builder| {
        r.header("x-api-key", "adm")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..2 {
        let r = app
            .clone()
            .oneshot(with_key(Request::post("/detect")))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let r = app
        .clone()
        .oneshot(with_key(Request::post("/verbs")))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the admin key got a second budget"
    );
}

#[tokio::test]
async fn readiness_reports_a_failed_rebuild_and_recovers_when_it_succeeds() {
    let s = state(ServeOptions::default()).await;
    let pool = s.service.store().pool().clone();
    // Break what a rebuild needs (the embedding cache) but not what a write needs.
    sqlx::query("ALTER TABLE text_embeddings RENAME TO text_embeddings_away")
        .execute(&pool)
        .await
        .unwrap();
    let (status, _, body) = send(
        &s,
        post_json("/objects", serde_json::json!({"name": "unicycle"})),
    )
    .await;
    // The write was validated and committed: it stands, and says so.
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, ct, body) = send(&s, get("/health/ready")).await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    let v = vocabulary(&s).await;
    assert_ne!(v["version"], v["classifier_version"], "{v}");
    // Repaired: the readiness probe's retry rebuilds, and the object is in the set.
    sqlx::query("ALTER TABLE text_embeddings_away RENAME TO text_embeddings")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(send(&s, get("/health/ready")).await.0, StatusCode::OK);
    let v = vocabulary(&s).await;
    assert_eq!(v["version"], v["classifier_version"], "{v}");
}
