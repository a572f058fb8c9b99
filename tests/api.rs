//! The REST API over tower's `oneshot`: every endpoint, every error status, the
//! add-verb-then-detect flow, auth, the queue limit, and the committed OpenAPI document.

mod common;

use common::http::*;

use std::io::Cursor;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use hoiclip::api::{AppState, ServeOptions, router};
use std::time::Duration;

use hoiclip::engine::EngineOptions;
use hoiclip::vocab::Pack;
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn send_owned(state: AppState, request: Request<Body>) -> StatusCode {
    send(&state, request).await.0
}

fn thin_png() -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image::RgbImage::new(1, 100)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn multipart(field: &str, bytes: &[u8]) -> Request<Body> {
    let boundary = "XhoiclipX";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    raw(
        "/detect?top_k=5",
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
}

#[tokio::test]
async fn multipart_option_fields_are_honoured_and_checked_like_the_query() {
    let s = state(ServeOptions::default()).await;
    let image = png();
    let triplets = |body: &[u8]| json(body)["triplets"].as_array().unwrap().len();
    // A field overrides the query, on /detect and /detect/batch.
    let (status, _, body) = send(
        &s,
        multipart_form("/detect?top_k=5", &[&image], &[("top_k", "2")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(triplets(&body), 2);
    let (status, _, body) = send(
        &s,
        multipart_form(
            "/detect/batch?top_k=5",
            &[&image, &image],
            &[("top_k", "3")],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    for result in json(&body)["results"].as_array().unwrap() {
        assert_eq!(result["triplets"].as_array().unwrap().len(), 3);
    }
    // Unknown fields are ignored, as unknown query parameters are.
    let (status, _, body) = send(
        &s,
        multipart_form("/detect", &[&image], &[("top_k", "1"), ("note", "hi")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(triplets(&body), 1);
    // Bad values are refused as they are in a query string.
    for (fields, expected, kind) in [
        (
            vec![("top_k", "many")],
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            vec![("top_k", "1"), ("top_k", "2")],
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            vec![("top_k", "0")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            vec![("verbs", " , ")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            vec![("render", "yes")],
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
    ] {
        let (status, ct, body) = send(&s, multipart_form("/detect", &[&image], &fields)).await;
        assert_problem(status, &ct, &body, expected, kind);
    }
    // `render` in a field draws, as it does in the query.
    let (status, ct, _) = send(
        &s,
        multipart_form("/detect", &[&image], &[("render", "true")]),
    )
    .await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "image/png"));
}

#[tokio::test]
async fn detect_accepts_multipart_raw_and_base64_json() {
    let s = state(ServeOptions::default()).await;
    let (status, ct, body) = send(&s, multipart("image", &png())).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(ct, "application/json");
    let v = json(&body);
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(90), Some(60))
    );
    assert_eq!(v["model"]["trained"], false);
    assert_eq!(v["triplets"].as_array().unwrap().len(), 5);
    assert!(v["vocabulary_version"].as_i64().unwrap() >= 1);
    let t = &v["triplets"][0];
    assert!(t["human"]["box"].as_array().unwrap().len() == 4 && t["object"]["label"].is_string());

    let (status, _, body) = send(&s, raw("/detect?top_k=2", "image/png", png())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["triplets"].as_array().unwrap().len(), 2);

    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(png());
    let (status, _, body) = send(
        &s,
        post_json(
            "/detect",
            serde_json::json!({"image": b64, "top_k": 3, "training_free_enhancement": true}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["triplets"].as_array().unwrap().len(), 3);

    let (status, ct, body) = send(&s, raw("/detect?render=true&top_k=3", "image/png", png())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "image/png");
    assert_eq!(image::load_from_memory(&body).unwrap().width(), 90);
}

#[tokio::test]
async fn detect_errors_are_problem_json_with_the_right_status() {
    let options = ServeOptions {
        max_body_bytes: 200_000,
        ..ServeOptions::default()
    };
    let s = state(options).await;
    let jpeg = {
        let img =
            image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 3, y as u8 * 3, 50]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    };
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            raw("/detect", "text/plain", b"hello".to_vec()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            raw("/detect", "image/png", Vec::new()),
            StatusCode::BAD_REQUEST,
            "invalid-image",
        ),
        (
            raw("/detect", "image/jpeg", jpeg[..jpeg.len() / 2].to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid-image",
        ),
        (
            // A 1x100 strip: more than 64:1, it would resize to nothing.
            raw("/detect", "image/png", thin_png()),
            StatusCode::BAD_REQUEST,
            "invalid-image",
        ),
        (
            // A GIF is accepted; a cut-off one is an undecodable image.
            raw("/detect", "image/gif", b"GIF89a\x01\x00\x01\x00".to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid-image",
        ),
        (
            raw(
                "/detect",
                "image/x-portable-pixmap",
                b"P6\n1 1\n255\n\0\0\0".to_vec(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            raw("/detect", "image/png", vec![7u8; 300_000]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
        ),
        (
            multipart("image", &vec![7u8; 300_000]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
        ),
        (
            multipart("photo", &png()),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            raw(
                "/detect",
                "multipart/form-data; boundary=x",
                b"garbage".to_vec(),
            ),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            post_json("/detect", serde_json::json!({"image": "%%% not base64"})),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            raw("/detect", "application/json", b"{not json".to_vec()),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            raw("/detect?verbs=teleport", "image/png", png()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            raw("/detect?pack=nope", "image/png", png()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            Request::get("/no/such/route").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
    ];
    for (request, expected, kind) in cases {
        let (status, ct, body) = send(&s, request).await;
        assert_problem(status, &ct, &body, expected, kind);
    }
    // A decompression bomb: a valid PNG header claiming 50000 x 50000 pixels.
    let bomb = common::png_claiming(50_000, 50_000);
    let (status, ct, body) = send(&s, raw("/detect", "image/png", bomb)).await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
    );
}

#[tokio::test]
async fn a_registered_verb_is_detectable_in_the_next_request_and_can_be_deleted() {
    let s = state(ServeOptions::default()).await;
    let (status, _, body) = send(&s, post_json("/verbs", serde_json::json!({"name": "juggle", "ing": "juggling", "objects": ["orange", "apple"]}))).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let created = json(&body);
    assert_eq!(created["interactions"].as_array().unwrap().len(), 2);
    let id = created["verb"]["id"].as_i64().unwrap();
    let version = created["vocabulary_version"].as_i64().unwrap();

    let (status, _, body) = send(&s, raw("/detect?verbs=juggle", "image/png", png())).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["vocabulary_version"], version);
    let triplets = v["triplets"].as_array().unwrap();
    assert!(!triplets.is_empty());
    assert!(triplets.iter().all(|t| t["verb"] == "juggle"));

    let (status, _, body) = send(
        &s,
        Request::get(format!("/verbs/{id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, json(&body)["origin"].as_str()),
        (StatusCode::OK, Some("user"))
    );
    let (status, _, body) =
        send(&s, Request::get("/vocabulary").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["classifier_version"], version);

    let (status, _, _) = send(
        &s,
        Request::delete(format!("/verbs/{id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, ct, body) = send(&s, raw("/detect?verbs=juggle", "image/png", png())).await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    );
}

#[tokio::test]
async fn vocabulary_errors() {
    let s = state(ServeOptions::default()).await;
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            post_json(
                "/verbs",
                serde_json::json!({"name": "ride", "ing": "riding", "objects": ["horse"]}),
            ),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            post_json(
                "/verbs",
                serde_json::json!({"name": "zap", "ing": "zapping", "objects": ["unicorn"]}),
            ),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            post_json("/verbs", serde_json::json!({"name": "", "ing": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            post_json("/objects", serde_json::json!({"name": "kite"})),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            post_json(
                "/interactions",
                serde_json::json!({"verb": "nope", "object": "kite"}),
            ),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            Request::delete("/verbs/1").body(Body::empty()).unwrap(),
            StatusCode::CONFLICT,
            "seed-entry",
        ),
        (
            Request::delete("/objects/99999")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            Request::get("/interactions/99999")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            Request::get("/packs/nope/export")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
    ];
    for (request, expected, kind) in cases {
        let (status, ct, body) = send(&s, request).await;
        assert_problem(status, &ct, &body, expected, kind);
    }
    // Garbage the extractors reject gets problem+json too, not axum's plain text.
    let garbage: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            raw("/verbs", "application/json", b"{".to_vec()),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            post_json("/verbs", serde_json::json!({"name": 7, "ing": []})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            raw("/objects", "text/plain", br#"{"name":"x"}"#.to_vec()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            post_json("/packs/import", serde_json::json!({"name": "p"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            Request::get("/verbs/abc").body(Body::empty()).unwrap(),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            Request::delete("/interactions/1.5")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            raw("/detect?top_k=abc", "image/png", png()),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            raw("/detect?score_threshold=high", "image/png", png()),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
    ];
    for (request, expected, kind) in garbage {
        let (status, ct, body) = send(&s, request).await;
        assert_problem(status, &ct, &body, expected, kind);
    }
    let (status, _, body) = send(
        &s,
        Request::get("/interactions?pack=hico-det")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, json(&body).as_array().unwrap().len()),
        (StatusCode::OK, 600)
    );
}

#[tokio::test]
async fn keys_guard_detection_and_vocabulary_writes_but_not_health() {
    let options = ServeOptions {
        keys: hoiclip::api::ApiKeys {
            detect: vec!["det-key".into()],
            admin: vec!["admin-key".into()],
        },
        ..ServeOptions::default()
    };
    let s = state(options).await;
    let (status, ct, body) = send(&s, raw("/detect", "image/png", png())).await;
    assert_problem(status, &ct, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let wrong = Request::post("/detect")
        .header(header::CONTENT_TYPE, "image/png")
        .header("x-api-key", "nope")
        .body(Body::from(png()))
        .unwrap();
    let (status, ct, body) = send(&s, wrong).await;
    assert_problem(status, &ct, &body, StatusCode::FORBIDDEN, "forbidden");
    let right = Request::post("/detect")
        .header(header::CONTENT_TYPE, "image/png")
        .header(header::AUTHORIZATION, "Bearer det-key")
        .body(Body::from(png()))
        .unwrap();
    assert_eq!(send(&s, right).await.0, StatusCode::OK);
    let (status, ct, body) = send(
        &s,
        post_json("/objects", serde_json::json!({"name": "unicycle"})),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let admin = Request::post("/objects")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-api-key", "admin-key")
        .body(Body::from(
            serde_json::json!({"name": "unicycle"}).to_string(),
        ))
        .unwrap();
    assert_eq!(send(&s, admin).await.0, StatusCode::CREATED);
    assert_eq!(
        send(
            &s,
            Request::get("/health/live").body(Body::empty()).unwrap()
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        send(&s, Request::get("/verbs").body(Body::empty()).unwrap())
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_gets_503_timeout() {
    let (s, gate, batches) = held_state(
        ServeOptions {
            request_timeout: Duration::from_millis(300),
            ..ServeOptions::default()
        },
        EngineOptions {
            max_batch_size: 1,
            ..EngineOptions::default()
        },
    )
    .await;
    let (status, ct, body) = send(&s, raw("/detect", "image/png", png())).await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
    );
    batches.recv_timeout(Duration::from_secs(60)).unwrap();
    gate.open();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_429_at_once_and_readiness_follows_the_flag() {
    let (s, gate, batches) = held_state(
        ServeOptions::default(),
        EngineOptions {
            max_queue: 1,
            max_batch_size: 1,
            ..EngineOptions::default()
        },
    )
    .await;
    // One request runs (held by the gate), one waits in the queue: the queue is full.
    let running = tokio::spawn(send_owned(s.clone(), raw("/detect", "image/png", png())));
    batches.recv_timeout(Duration::from_secs(60)).unwrap();
    let waiting = tokio::spawn(send_owned(s.clone(), raw("/detect", "image/png", png())));
    while s.service.engine().queue_depth() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let response = router(s.clone())
        .oneshot(raw("/detect", "image/png", png()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(json(&body)["type"], "urn:hoiclip:problem:queue-full");
    gate.open();
    assert_eq!(running.await.unwrap(), StatusCode::OK);
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);
    // Places are given back, also by a request that fails after admission.
    let (status, ..) = send(&s, raw("/detect", "image/png", b"not an image".to_vec())).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(s.service.engine().queue_depth(), 0);
    assert_eq!(
        send(&s, raw("/detect", "image/png", png())).await.0,
        StatusCode::OK
    );

    assert_eq!(
        send(
            &s,
            Request::get("/health/ready").body(Body::empty()).unwrap()
        )
        .await
        .0,
        StatusCode::OK
    );
    s.ready.store(false, std::sync::atomic::Ordering::Release);
    let (status, ct, body) = send(
        &s,
        Request::get("/health/ready").body(Body::empty()).unwrap(),
    )
    .await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    let (status, _, body) = send(&s, Request::get("/info").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["model"]["name"], "hoiclip-demo");
}

#[tokio::test]
async fn packs_round_trip_over_http() {
    let s = state(ServeOptions::default()).await;
    send(&s, post_json("/verbs", serde_json::json!({"name": "juggle", "ing": "juggling", "objects": ["orange"], "pack": "circus"}))).await;
    let (status, _, body) = send(
        &s,
        Request::get("/packs/circus/export")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut export = json(&body);
    export["name"] = "circus2".into();
    let (status, _, first) = send(&s, post_json("/packs/import", export.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    // The same pack again is a retry, answered as the first; another one of the name is not.
    let (status, _, again) = send(&s, post_json("/packs/import", export.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        json(&again)["vocabulary_version"],
        json(&first)["vocabulary_version"]
    );
    let mut other = export;
    other["interactions"][0]["prompt"] =
        "a photo of a person juggling an orange at a circus".into();
    let (status, ct, body) = send(&s, post_json("/packs/import", other)).await;
    assert_problem(status, &ct, &body, StatusCode::CONFLICT, "conflict");
    let (_, _, body) = send(&s, Request::get("/packs").body(Body::empty()).unwrap()).await;
    let names: Vec<String> = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"circus".to_string()) && names.contains(&"circus2".to_string()));
}

#[test]
fn committed_openapi_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let current = hoiclip::api::openapi_json();
    assert!(
        committed.trim() == current.trim(),
        "openapi/openapi.json is stale: run `cargo run --release -- openapi > openapi/openapi.json`"
    );
    let doc: serde_json::Value = serde_json::from_str(&current).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for route in [
        "/detect",
        "/verbs",
        "/verbs/{id}",
        "/objects",
        "/interactions",
        "/packs",
        "/packs/import",
        "/vocabulary",
        "/health/ready",
        "/info",
    ] {
        assert!(
            doc["paths"].get(route).is_some(),
            "{route} missing from the spec"
        );
    }
}

#[tokio::test]
async fn other_seed_packs_are_scored_only_when_asked_for() {
    let s = state(ServeOptions::default()).await;
    s.service.store().seed(&Pack::v_coco()).await.unwrap();
    s.service.refresh().await.unwrap();
    let (_, _, body) = send(&s, raw("/detect?top_k=100", "image/png", png())).await;
    let v = json(&body);
    let hico: Vec<String> = Pack::hico_det()
        .interactions
        .iter()
        .map(|i| i.prompt.clone())
        .collect();
    assert!(
        v["triplets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| hico.contains(&t["interaction"].as_str().unwrap().to_string()))
    );
    let (status, _, body) = send(&s, raw("/detect?pack=v-coco&top_k=5", "image/png", png())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["triplets"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let s = state(ServeOptions::default()).await;
    send(&s, raw("/detect?top_k=1", "image/png", png())).await;
    send(&s, raw("/detect", "text/plain", b"x".to_vec())).await;
    let (status, ct, body) = send(&s, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/plain"));
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(
            "hoiclip_http_requests_total{route=\"/detect\",method=\"POST\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(text.contains("status=\"415\""), "{text}");
    assert!(text.contains("hoiclip_inference_seconds"), "{text}");
    assert!(
        text.contains("hoiclip_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("hoiclip_classifier_version"), "{text}");
    // Engine metrics; batch sizes are counted in images, not seconds.
    for name in [
        "hoiclip_queue_wait_seconds",
        "hoiclip_forward_seconds",
        "hoiclip_detect_queue_depth",
    ] {
        assert!(text.contains(name), "{name} missing: {text}");
    }
    assert!(
        text.contains("hoiclip_batch_size_bucket{le=\"1\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn remaining_vocabulary_routes_and_docs_answer() {
    let s = state(ServeOptions::default()).await;
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    let (status, _, body) = send(&s, get("/objects")).await;
    assert_eq!(
        (status, json(&body).as_array().unwrap().len()),
        (StatusCode::OK, 80)
    );
    let (status, _, body) = send(
        &s,
        post_json("/objects", serde_json::json!({"name": "unicycle"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let object_id = json(&body)["object"]["id"].as_i64().unwrap();
    // The official template picks a/an by the first letter, as the HICO-DET prompts do.
    let (status, _, body) = send(&s, get(&format!("/objects/{object_id}"))).await;
    assert_eq!(
        (status, json(&body)["prompt"].as_str()),
        (StatusCode::OK, Some("a photo of an unicycle"))
    );
    let (status, _, body) = send(
        &s,
        post_json(
            "/interactions",
            serde_json::json!({"verb": "ride", "object": "unicycle"}),
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let created = json(&body);
    let interaction_id = created["interaction"]["id"].as_i64().unwrap();
    assert_eq!(
        created["interaction"]["prompt"],
        "a photo of a person riding an unicycle"
    );
    let (status, _, body) = send(&s, get(&format!("/interactions/{interaction_id}"))).await;
    assert_eq!(
        (status, json(&body)["pack"].as_str()),
        (StatusCode::OK, Some("user"))
    );
    let (status, _, _) = send(
        &s,
        Request::delete(format!("/interactions/{interaction_id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(
        &s,
        Request::delete(format!("/objects/{object_id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&s, get(&format!("/objects/{object_id}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The seed verbs of both packs (as `hoiclip serve` seeds them), one row per name.
    let seed_verbs: std::collections::HashSet<String> = Pack::hico_det()
        .verbs
        .iter()
        .chain(&Pack::v_coco().verbs)
        .map(|v| v.name.clone())
        .collect();
    let (status, _, body) = send(&s, get("/verbs")).await;
    assert_eq!(
        (status, json(&body).as_array().unwrap().len()),
        (StatusCode::OK, seed_verbs.len())
    );
    let (status, _, body) = send(&s, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["openapi"], "3.1.0");
    let (status, ct, _) = send(&s, get("/docs/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/html"));
}

/// The web page and its two files are served from the binary with a strict policy, and
/// the page refers only to files that are served.
#[tokio::test]
async fn the_web_page_is_served_with_its_files() {
    let s = state(ServeOptions::default()).await;
    let get = |uri: &'static str| {
        let s = s.clone();
        async move {
            let response = router(s)
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let headers = response.headers().clone();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (headers, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let (headers, page) = get("/").await;
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    for (file, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        assert!(
            page.contains(&format!("\"{file}\"")),
            "the page does not load {file}"
        );
        let (headers, body) = get(file).await;
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(!body.is_empty());
    }
    // The script calls only public API routes documented in the OpenAPI document.
    let (_, script) = get("/ui/app.js").await;
    let document = hoiclip::api::openapi_json();
    for route in ["/info", "/packs", "/detect", "/verbs", "/examples"] {
        assert!(
            script.contains(route) && document.contains(route),
            "{route}"
        );
    }
}

/// GIF (first frame), BMP and TIFF are decoded within the same limits; another format is
/// a 415 that names the accepted ones.
#[tokio::test]
async fn gif_bmp_and_tiff_are_accepted_and_other_formats_named() {
    let s = state(ServeOptions::default()).await;
    let picture = image::load_from_memory(&png()).unwrap();
    for format in [
        image::ImageFormat::Gif,
        image::ImageFormat::Bmp,
        image::ImageFormat::Tiff,
    ] {
        let mut out = Cursor::new(Vec::new());
        picture.write_to(&mut out, format).unwrap();
        let (status, _, body) = send(
            &s,
            raw(
                "/detect?top_k=3",
                "application/octet-stream",
                out.into_inner(),
            ),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{format:?}: {}",
            String::from_utf8_lossy(&body)
        );
        let v = json(&body);
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(90), Some(60)),
            "{format:?}"
        );
    }
    // A portable pixmap: decodable in principle, not accepted.
    let ppm = b"P6\n2 2\n255\n\0\0\0\0\0\0\0\0\0\0\0\0".to_vec();
    let (status, ct, body) = send(&s, raw("/detect", "application/octet-stream", ppm)).await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );
    let detail = json(&body)["detail"].as_str().unwrap().to_string();
    for name in ["JPEG", "PNG", "WebP", "GIF", "BMP", "TIFF"] {
        assert!(detail.contains(name), "{detail}");
    }
}

/// `POST /detect/batch`: one answer per image, in order, each equal to the image's own
/// `/detect` answer; images of one size share a forward pass; a bad image refuses the
/// whole request and names itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_image_in_order() {
    use base64::Engine;
    let s = state(ServeOptions::default()).await;
    let other = std::fs::read(common::fixture("hoiclip/img1.png")).unwrap();
    let images = [png(), other.clone(), png()];
    let boundary = "XbatchX";
    let mut body = Vec::new();
    for image in &images {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"i.png\"\r\nContent-Type: image/png\r\n\r\n").into_bytes());
        body.extend(image);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").into_bytes());
    let batches_before = s
        .service
        .engine()
        .stats()
        .largest_batch
        .load(std::sync::atomic::Ordering::Relaxed);
    let (status, _, answer) = send(
        &s,
        raw(
            "/detect/batch?top_k=7",
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let results = json(&answer)["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    for (result, image) in results.iter().zip(&images) {
        let (status, _, single) =
            send(&s, raw("/detect?top_k=7", "image/png", image.clone())).await;
        assert_eq!(status, StatusCode::OK);
        let single = json(&single);
        assert_eq!(result["width"], single["width"]);
        assert_eq!(result["triplets"], single["triplets"]);
    }
    assert_eq!(results[1]["width"], 70);
    assert!(
        s.service
            .engine()
            .stats()
            .largest_batch
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2.max(batches_before),
        "the two images of one size did not share a pass"
    );

    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (status, _, answer) = send(
        &s,
        post_json(
            "/detect/batch",
            serde_json::json!({"images": [b64(&png()), b64(&other)], "top_k": 2}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json(&answer)["results"][1]["triplets"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let cases = [
        (
            serde_json::json!({"images": [b64(&png()), b64(&png()[..100])]}),
            StatusCode::BAD_REQUEST,
            "invalid-image",
            Some("images[1]"),
        ),
        (
            serde_json::json!({"images": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            None,
        ),
        (
            serde_json::json!({"images": vec![b64(&png()); 17]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            None,
        ),
        (
            serde_json::json!({"images": [b64(&png())], "render": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            None,
        ),
        (
            serde_json::json!({"images": [b64(&png())], "top_k": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            None,
        ),
    ];
    for (body, expected, kind, named) in cases {
        let (status, ct, answer) = send(&s, post_json("/detect/batch", body)).await;
        assert_problem(status, &ct, &answer, expected, kind);
        if let Some(name) = named {
            assert!(json(&answer)["detail"].as_str().unwrap().starts_with(name));
        }
    }
}

/// A batch with more images than the queue can ever hold is a 422 naming the limit (a
/// 429 would invite retries without end); the engine never sees it.
#[tokio::test]
async fn a_batch_larger_than_the_queue_is_refused() {
    use base64::Engine;
    let engine = EngineOptions {
        max_queue: 2,
        ..EngineOptions::default()
    };
    let (s, _gate, _batches) = held_state(ServeOptions::default(), engine).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(png());
    let (status, ct, body) = send(
        &s,
        post_json("/detect/batch", serde_json::json!({"images": vec![b64; 3]})),
    )
    .await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    );
    assert!(
        json(&body)["detail"]
            .as_str()
            .unwrap()
            .contains("at most 2")
    );
    assert_eq!(s.service.engine().queue_depth(), 0, "no place was kept");
}

/// Under `--batch-policy pad`, three landscape images of three sizes sent as one
/// `/detect/batch` share one forward pass (counted on `/metrics` and in the engine's
/// stats) and each is answered exactly as it is alone: same triplets in the same order,
/// scores within 1e-5, boxes within 0.01 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_sizes_share_a_pass_and_answer_as_alone_under_pad() {
    use hoiclip::engine::BatchPolicy;
    use std::sync::atomic::Ordering;
    let settings = hoiclip::config::Settings {
        engine: EngineOptions {
            policy: BatchPolicy::Pad,
            ..EngineOptions::default()
        },
        ..common::settings_at(&common::test_db("pad"))
    };
    let s = hoiclip::app::build(&settings).await.unwrap().state;
    let encode = |img: image::RgbImage| {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let base = image::open(common::fixture("hoiclip/img0.png"))
        .unwrap()
        .to_rgb8();
    let images = [
        encode(base.clone()),
        encode(image::imageops::resize(
            &base,
            133,
            71,
            image::imageops::FilterType::Triangle,
        )),
        std::fs::read(common::fixture("hoiclip/img2.jpg")).unwrap(),
    ];
    let boundary = "XpadX";
    let mut body = Vec::new();
    for image in &images {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"i\"\r\nContent-Type: application/octet-stream\r\n\r\n").into_bytes());
        body.extend(image);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").into_bytes());
    let stats = || {
        s.service
            .engine()
            .stats()
            .forward_passes
            .load(Ordering::Relaxed)
    };
    let before = stats();
    let (status, _, answer) = send(
        &s,
        raw(
            "/detect/batch?top_k=20",
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(stats() - before, 1, "three landscape images, one pass");
    let (_, _, metrics) = send(&s, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(
        String::from_utf8_lossy(&metrics).contains("hoiclip_forward_passes_total"),
        "no pass counter on /metrics"
    );
    let results = json(&answer)["results"].as_array().unwrap().clone();
    let widths: std::collections::HashSet<String> = results
        .iter()
        .map(|r| format!("{}x{}", r["width"], r["height"]))
        .collect();
    assert_eq!(widths.len(), 3, "three sizes: {widths:?}");
    for (i, (result, image)) in results.iter().zip(&images).enumerate() {
        let (status, _, single) = send(
            &s,
            raw(
                "/detect?top_k=20",
                "application/octet-stream",
                image.clone(),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let single = json(&single);
        let (a, b) = (
            result["triplets"].as_array().unwrap(),
            single["triplets"].as_array().unwrap(),
        );
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len(), "image {i}");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x["interaction_id"], y["interaction_id"], "image {i}: order");
            let score = |t: &serde_json::Value| t["score"].as_f64().unwrap();
            assert!(
                (score(x) - score(y)).abs() <= 1e-5,
                "image {i}: {} vs {}",
                score(x),
                score(y)
            );
            for key in ["human", "object"] {
                for (p, q) in x[key]["box"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(y[key]["box"].as_array().unwrap())
                {
                    assert!(
                        (p.as_f64().unwrap() - q.as_f64().unwrap()).abs() <= 0.01,
                        "image {i}: box"
                    );
                }
            }
        }
    }
}

/// Size buckets and a warm-up of the common shapes (what a GPU server does, here on the
/// CPU): the server runs every warm-up shape before it says ready, and padding each
/// image up to its bucket changes no answer (scores within 1e-5, boxes within 0.01 px).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucketed_and_warmed_up_server_answers_as_the_plain_one() {
    use hoiclip::config::WarmUp;
    use std::sync::atomic::Ordering;
    let plain = state(ServeOptions::default()).await;
    let settings = hoiclip::config::Settings {
        size_bucket: Some(64),
        warm_up: Some(WarmUp::Common),
        engine: EngineOptions {
            max_batch_size: 2,
            ..EngineOptions::default()
        },
        ..common::settings_at(&common::test_db("bucketed"))
    };
    let app = hoiclip::app::build(&settings).await.unwrap();
    // 1:1, 4:3, 3:2 and 16:9 both ways (7 sizes) at batch 1 and 2, then the blank image.
    assert_eq!(app.warm_up.len(), 14);
    let passes = app
        .state
        .service
        .engine()
        .stats()
        .forward_passes
        .load(Ordering::Relaxed);
    assert_eq!(passes, 15, "every warm-up shape ran before ready");
    let bucketed = app.state.clone();
    for name in ["hoiclip/img0.png", "hoiclip/img2.jpg"] {
        let image = std::fs::read(common::fixture(name)).unwrap();
        let answer = |s: AppState| {
            let image = image.clone();
            async move {
                let (status, _, body) = send(
                    &s,
                    raw("/detect?top_k=20", "application/octet-stream", image),
                )
                .await;
                assert_eq!(status, StatusCode::OK);
                json(&body)
            }
        };
        let (a, b) = (answer(plain.clone()).await, answer(bucketed.clone()).await);
        let (a, b) = (
            a["triplets"].as_array().unwrap(),
            b["triplets"].as_array().unwrap(),
        );
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len(), "{name}");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x["interaction_id"], y["interaction_id"], "{name}: order");
            let score = |t: &serde_json::Value| t["score"].as_f64().unwrap();
            assert!(
                (score(x) - score(y)).abs() <= 1e-5,
                "{name}: {} vs {}",
                score(x),
                score(y)
            );
            for key in ["human", "object"] {
                let (p, q) = (
                    x[key]["box"].as_array().unwrap(),
                    y[key]["box"].as_array().unwrap(),
                );
                for (p, q) in p.iter().zip(q) {
                    assert!(
                        (p.as_f64().unwrap() - q.as_f64().unwrap()).abs() <= 0.01,
                        "{name}: box"
                    );
                }
            }
        }
    }
}

/// Two settings with two names: `top_k` results out of `candidates` kept before NMS.
/// Asking for more results than the official 100 candidates widens the pool (the first
/// results stay the same); asking for more results than explicit candidates is a 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_k_beyond_the_official_candidates_widens_the_pool() {
    let s = state(ServeOptions::default()).await;
    let image = std::fs::read(common::fixture("hoiclip/img0.png")).unwrap();
    let triplets = |query: &str| {
        let s = s.clone();
        let image = image.clone();
        let uri = format!("/detect?{query}");
        async move {
            let (status, _, body) = send(&s, raw(&uri, "image/png", image)).await;
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            json(&body)["triplets"].as_array().unwrap().clone()
        }
    };
    let official = triplets("top_k=100").await;
    let wider = triplets("top_k=300").await;
    assert!(
        wider.len() > official.len(),
        "300 candidates kept no more than 100 did ({} vs {})",
        wider.len(),
        official.len()
    );
    assert_eq!(
        &wider[..official.len()],
        &official[..],
        "the first results changed"
    );
    let pool = triplets("top_k=10&candidates=300").await;
    assert_eq!(
        &pool[..],
        &wider[..10.min(wider.len())],
        "top_k cuts the wider pool's answer"
    );
    let (status, ct, body) = send(
        &s,
        raw(
            "/detect?top_k=300&candidates=200",
            "image/png",
            image.clone(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(ct.starts_with("application/problem+json"));
    assert!(String::from_utf8_lossy(&body).contains("candidates"));
}

/// One rule for what makes two names one name (case, compatibility forms, whitespace,
/// dashes), on every path: creating, looking up, filtering detections, packs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_the_same_name_in_every_spelling_on_every_path() {
    let s = state(ServeOptions::default()).await;
    // Lookups fold: an object named in capitals, with spaces, or in full-width letters.
    let (status, _, body) = send(
        &s,
        post_json(
            "/verbs",
            serde_json::json!({"name": "juggle", "ing": "juggling", "objects": ["ORANGE", " apple "]}),
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let objects: Vec<String> = json(&body)["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["object"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(objects, ["orange", "apple"]);
    let (status, _, body) = send(
        &s,
        post_json(
            "/interactions",
            serde_json::json!({"verb": "JUGGLE", "object": "ｂａｎａｎａ"}),
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(json(&body)["interaction"]["verb"], "juggle");
    // Creating folds the same way: another spelling is the same verb.
    let (status, ct, body) = send(
        &s,
        post_json(
            "/verbs",
            serde_json::json!({"name": "Juggle", "ing": "juggling", "objects": ["orange"]}),
        ),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::CONFLICT, "conflict");
    // Detection filters fold: `verbs=JUGGLE` and `pack=HICO-DET` select what they name.
    for query in ["verbs=JUGGLE", "verbs=%20Juggle%20,ride", "pack=HICO-DET"] {
        let (status, _, body) =
            send(&s, raw(&format!("/detect?{query}"), "image/png", png())).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{query}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // Packs: another spelling of the seed pack is the seed pack, for import and export.
    for name in ["HICO-DET", "hico\u{2011}det"] {
        let pack = serde_json::json!({
            "name": name,
            "verbs": [{"name": "juggle", "ing": "juggling"}],
            "objects": [],
            "interactions": [{"verb": "juggle", "object": null, "prompt": "a photo of a person juggling"}]
        });
        let (status, ct, body) = send(&s, post_json("/packs/import", pack)).await;
        assert!(
            status == StatusCode::CONFLICT,
            "{name}: {status} {ct} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, _, body) = send(
        &s,
        Request::get("/packs/HICO-DET/export")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["name"], "hico-det");
    let (_, _, body) = send(&s, Request::get("/packs").body(Body::empty()).unwrap()).await;
    let packs: Vec<String> = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_lowercase())
        .collect();
    assert_eq!(
        packs.iter().filter(|p| p.contains("hico")).count(),
        1,
        "{packs:?}"
    );
}

/// Every answer is `nosniff`; the Swagger UI, on the web page's origin, cannot be framed;
/// the web page keeps its own, stricter policy.
#[tokio::test]
async fn answers_carry_nosniff_and_the_docs_cannot_be_framed() {
    let s = state(ServeOptions::default()).await;
    let headers_of = |uri: &'static str| {
        let s = s.clone();
        async move {
            router(s)
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap()
                .headers()
                .clone()
        }
    };
    for uri in ["/info", "/verbs", "/nope", "/docs/", "/openapi.json"] {
        let h = headers_of(uri).await;
        assert_eq!(
            h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(),
            "nosniff",
            "{uri}"
        );
    }
    let docs = headers_of("/docs/").await;
    assert_eq!(docs.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
    assert!(
        docs.get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let page = headers_of("/").await;
    assert!(
        page.get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("script-src 'self'"),
        "the page's own policy was replaced"
    );
}

/// An import whose interaction names a verb found nowhere is 404, as documented, and
/// stores nothing.
#[tokio::test]
async fn an_import_naming_an_unknown_verb_is_a_documented_404() {
    let s = state(ServeOptions::default()).await;
    let pack = serde_json::json!({
        "name": "ghosts",
        "verbs": [],
        "objects": [],
        "interactions": [{"verb": "haunt", "object": null, "prompt": "a photo of a person haunting"}]
    });
    let (status, ct, body) = send(&s, post_json("/packs/import", pack)).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND, "not-found");
    let doc = hoiclip::api::openapi_json();
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert!(
        doc["paths"]["/packs/import"]["post"]["responses"]["404"].is_object(),
        "the OpenAPI document does not list the 404"
    );
    let (_, _, body) = send(&s, Request::get("/packs").body(Body::empty()).unwrap()).await;
    assert!(!String::from_utf8_lossy(&body).contains("ghosts"));
}

/// A multipart request to `uri` with `n` small PNGs, each in a field named `image`.
fn png_images(uri: &str, n: usize) -> Request<Body> {
    let boundary = "XpngsX";
    let mut body = Vec::new();
    for _ in 0..n {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").into_bytes());
        body.extend(png());
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").into_bytes());
    raw(
        uri,
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
}

/// Request shapes that used to be taken without a word: two `image` fields on `/detect`,
/// a negative `min_vocabulary_version` hidden by a valid one in the query, and a batch
/// over the limit reported with a count the server never finished reading.
#[tokio::test]
async fn ambiguous_or_oversized_requests_are_refused_with_what_was_wrong() {
    let s = state(ServeOptions::default()).await;
    let (status, ct, answer) = send(&s, png_images("/detect", 2)).await;
    assert_problem(
        status,
        &ct,
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    );
    assert!(String::from_utf8_lossy(&answer).contains("/detect/batch"));

    let image = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, png());
    let (status, ct, answer) = send(
        &s,
        post_json(
            "/detect?min_vocabulary_version=0",
            serde_json::json!({"image": image, "min_vocabulary_version": -1}),
        ),
    )
    .await;
    assert_problem(
        status,
        &ct,
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    );
    assert!(String::from_utf8_lossy(&answer).contains("not -1"));

    let (status, ct, answer) = send(&s, png_images("/detect/batch", 40)).await;
    assert_problem(
        status,
        &ct,
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    );
    let detail = json(&answer)["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("at most") && !detail.contains("not 17"),
        "{detail}"
    );
}
