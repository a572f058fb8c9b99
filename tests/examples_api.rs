//! Verbs learned from example images through the API (`/verbs/{id}/examples`, JSON and
//! multipart) and the CLI (`hoiclip vocab add-examples`): the stored features are the
//! image tower's on the official crops of the decoded image, the verb's row source follows
//! its examples, `explain=true` shows the terms of each score, and every refused request
//! stores nothing.

mod common;

use common::http::*;

use std::io::Cursor;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use hoiclip::api::{AppState, ServeOptions};
use hoiclip::classifier::arithmetic::union_box;
use hoiclip::vision::preprocess::clip_crop;

/// A 96x64 PNG with structure everywhere (crops of it differ).
fn picture() -> Vec<u8> {
    let image = image::RgbImage::from_fn(96, 64, |x, y| {
        image::Rgb([(2 * x) as u8, (3 * y) as u8, ((x * y) % 255) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode PNG");
    out.into_inner()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn example(image: &[u8], human: [f32; 4], object: [f32; 4], name: &str) -> serde_json::Value {
    serde_json::json!({"image": b64(image), "human_box": human, "object_box": object, "object": name})
}

/// A multipart body with the given (name, value) fields; `image` fields are files.
fn multipart(uri: &str, fields: &[(&str, Vec<u8>)]) -> Request<Body> {
    let boundary = "XhoiclipX";
    let mut body = Vec::new();
    for (name, value) in fields {
        let file = if *name == "image" {
            "; filename=\"a.png\"\r\nContent-Type: image/png"
        } else {
            ""
        };
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n"
            )
            .into_bytes(),
        );
        body.extend_from_slice(value);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").into_bytes());
    raw(
        uri,
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
}

async fn delete(state: &AppState, uri: &str) -> (StatusCode, String, Vec<u8>) {
    send(state, Request::delete(uri).body(Body::empty()).unwrap()).await
}

/// Registers `juggle` with oranges and people; returns its id.
async fn juggle(s: &AppState) -> i64 {
    let (status, _, body) = send(
        s,
        post_json(
            "/verbs",
            serde_json::json!({"name": "juggle", "ing": "juggling", "objects": ["orange", "person"]}),
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let v = json(&body);
    assert_eq!(v["verb"]["row_source"]["kind"], "text", "{v}");
    assert_eq!(v["interactions"][0]["row_source"]["kind"], "text", "{v}");
    v["verb"]["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verb_learns_from_examples_sent_as_json_and_multipart() {
    let s = state(ServeOptions::default()).await;
    let id = juggle(&s).await;
    let image = picture();
    let boxes = [
        ([4.0, 6.0, 40.0, 60.0], [30.0, 10.0, 60.0, 30.0], "orange"),
        ([50.5, 2.0, 90.0, 62.0], [10.0, 40.0, 45.0, 63.5], "orange"),
        ([2.0, 2.0, 30.0, 50.0], [60.0, 5.0, 95.0, 60.0], "person"),
    ];
    let version = get_json(&s, "/vocabulary").await["version"]
        .as_i64()
        .unwrap();
    let (status, _, body) = send(
        &s,
        post_json(
            &format!("/verbs/{id}/examples"),
            serde_json::json!({"examples": boxes[..2].iter().map(|(h, o, n)| example(&image, *h, *o, n)).collect::<Vec<_>>()}),
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
    assert_eq!(created["examples"].as_array().unwrap().len(), 2);
    assert_eq!(created["vocabulary_version"], version + 1);
    assert_eq!(
        created["verb"]["row_source"],
        serde_json::json!({"kind": "examples", "examples": 2})
    );
    assert_eq!(
        created["examples"][1]["object_box"],
        serde_json::json!([10.0, 40.0, 45.0, 63.5])
    );
    assert_eq!(created["examples"][0]["used_by_model"], true);
    assert_eq!(
        created["examples"][0]["image"],
        created["examples"][1]["image"]
    );

    let (h, o, n) = boxes[2];
    let text = |b: [f32; 4]| b.map(|v| v.to_string()).join(",").into_bytes();
    let (status, _, body) = send(
        &s,
        multipart(
            &format!("/verbs/{id}/examples"),
            &[
                ("image", image.clone()),
                ("human_box", text(h)),
                ("object_box", text(o)),
                ("object", n.as_bytes().to_vec()),
            ],
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(json(&body)["verb"]["row_source"]["examples"], 3);

    // The stored features are the image tower's on the official crops of the image.
    let service = s.service.clone();
    let decoded = hoiclip::vision::decode(&image, Default::default()).unwrap();
    let res = service.clip_resolution();
    let mut crops = Vec::new();
    for (h, o, _) in &boxes {
        crops.extend([*h, *o, union_box(*h, *o)].map(|b| clip_crop(&decoded, b, res)));
    }
    let expected = service.engine().embed_images(crops).await.unwrap();
    let stored = service
        .store()
        .example_features(service.vision_fingerprint())
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    let mut diff = 0f32;
    for (e, f) in stored.iter().zip(expected.chunks(3)) {
        for (a, b) in [(&e.human, &f[0]), (&e.object, &f[1]), (&e.union, &f[2])] {
            diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(diff, f32::max);
        }
    }
    assert!(
        diff <= 1e-6,
        "stored features differ from the crops' by {diff}"
    );

    let listed = get_json(&s, &format!("/verbs/{id}/examples")).await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2]["object"], "person");
    let verb = get_json(&s, &format!("/verbs/{id}")).await;
    assert_eq!(verb["row_source"]["kind"], "examples");
    let vocabulary = get_json(&s, "/vocabulary").await;
    assert_eq!(
        vocabulary["row_sources"]["verbs"]["examples"], 1,
        "{vocabulary}"
    );
    assert!(
        vocabulary["row_sources"]["interactions"]["text"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Removing examples recomputes the row from the rest, then falls back to text.
    for (k, e) in listed.iter().enumerate() {
        let (status, _, body) = delete(&s, &format!("/verbs/{id}/examples/{}", e["id"])).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let verb = get_json(&s, &format!("/verbs/{id}")).await;
        match 2 - k {
            0 => assert_eq!(verb["row_source"], serde_json::json!({"kind": "text"})),
            left => assert_eq!(verb["row_source"]["examples"], left),
        }
    }
    let (status, ct, body) = delete(&s, &format!("/verbs/{id}/examples/{}", listed[0]["id"])).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND, "not-found");

    // `replace=true` swaps the examples in one step; a refused swap keeps the old ones.
    let post = |query: &str, examples: Vec<serde_json::Value>| {
        post_json(
            &format!("/verbs/{id}/examples{query}"),
            serde_json::json!({ "examples": examples }),
        )
    };
    let one = |(h, o, n): ([f32; 4], [f32; 4], &str)| example(&image, h, o, n);
    let (status, _, _) = send(&s, post("", vec![one(boxes[0]), one(boxes[1])])).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = send(&s, post("?replace=true", vec![one(boxes[2])])).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(json(&body)["verb"]["row_source"]["examples"], 1);
    let outside = one(([0.0, 0.0, 200.0, 10.0], boxes[2].1, "person"));
    let (status, ct, body) = send(&s, post("?replace=true", vec![outside])).await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    );
    let kept = get_json(&s, &format!("/verbs/{id}/examples")).await;
    assert_eq!(kept.as_array().unwrap().len(), 1);
    assert_eq!(kept[0]["object"], "person");
}

/// The terms `explain=true` gives add up to the score, and examples move the verb term
/// of a triplet while leaving its text term alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explained_scores_add_up_and_show_the_verb_rows_source() {
    let s = state(ServeOptions::default()).await;
    let id = juggle(&s).await;
    let detect = |s: AppState| async move {
        let (status, _, body) = send(
            &s,
            raw(
                "/detect?verbs=juggle&explain=true&top_k=50&training_free_enhancement=true",
                "image/png",
                png(),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        json(&body)["triplets"].as_array().unwrap().clone()
    };
    let before = detect(s.clone()).await;
    assert!(!before.is_empty());
    for t in &before {
        let e = &t["explanation"];
        let f = |k: &str| e[k].as_f64().unwrap();
        let sum = f("interaction_score") + f("tfe_score") + f("object_score");
        assert!((sum - t["score"].as_f64().unwrap()).abs() < 1e-5, "{t}");
        let sigmoid = 1.0 / (1.0 + (-(f("text_logit") + f("verb_logit"))).exp());
        assert!((sigmoid - f("interaction_score")).abs() < 1e-5, "{t}");
        let o = 1.0 / (1.0 + (-f("object_logit")).exp());
        assert!((o * o - f("object_score")).abs() < 1e-5, "{t}");
        assert_eq!(e["verb_row"]["kind"], "text");
        assert_eq!(e["interaction_row"]["kind"], "text");
        assert_eq!(e["object_row"]["kind"], "text");
    }
    let plain = send(&s, raw("/detect?verbs=juggle&top_k=5", "image/png", png())).await;
    assert!(json(&plain.2)["triplets"][0].get("explanation").is_none());

    let image = picture();
    let (status, _, body) = send(
        &s,
        post_json(
            &format!("/verbs/{id}/examples"),
            serde_json::json!({"examples": [example(&image, [4.0, 6.0, 40.0, 60.0], [30.0, 10.0, 60.0, 30.0], "orange")]}),
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let after = detect(s.clone()).await;
    // The same pair and interaction: the trunk's floats may move in the last digits
    // between runs (threaded reductions), so boxes match to a tenth of a pixel.
    let same = |a: &serde_json::Value, b: &serde_json::Value| {
        let close = |x: &serde_json::Value, y: &serde_json::Value| {
            (0..4).all(|i| (x[i].as_f64().unwrap() - y[i].as_f64().unwrap()).abs() < 0.1)
        };
        a["interaction_id"] == b["interaction_id"]
            && close(&a["human"]["box"], &b["human"]["box"])
            && close(&a["object"]["box"], &b["object"]["box"])
    };
    let (mut matched, mut text_moved, mut verb_moved) = (0, 0f64, 0f64);
    for t in &after {
        assert_eq!(
            t["explanation"]["verb_row"],
            serde_json::json!({"kind": "examples", "examples": 1})
        );
        let Some(old) = before.iter().find(|b| same(b, t)) else {
            continue;
        };
        matched += 1;
        let term = |t: &serde_json::Value, k: &str| t["explanation"][k].as_f64().unwrap();
        text_moved += (term(t, "text_logit") - term(old, "text_logit")).abs();
        verb_moved += (term(t, "verb_logit") - term(old, "verb_logit")).abs();
    }
    assert!(matched > 0, "no triplet kept its pair and interaction");
    // Pairs of the demo model's nearly identical queries may swap, so on average.
    assert!(
        text_moved < 0.05 * verb_moved,
        "text terms moved by {text_moved} in all, verb terms by {verb_moved}"
    );
}

/// Every kind of bad request gets problem+json with the right status, and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_examples_store_nothing() {
    let s = state(ServeOptions::default()).await;
    let id = juggle(&s).await;
    let image = picture();
    let good = example(
        &image,
        [4.0, 6.0, 40.0, 60.0],
        [30.0, 10.0, 60.0, 30.0],
        "orange",
    );
    let with = |examples: Vec<serde_json::Value>| serde_json::json!({ "examples": examples });
    let uri = format!("/verbs/{id}/examples");
    let bad_box = |h: [f32; 4]| example(&image, h, [30.0, 10.0, 60.0, 30.0], "orange");
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "unknown verb",
            post_json("/verbs/999999/examples", with(vec![good.clone()])),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "unknown object",
            post_json(
                &uri,
                with(vec![example(
                    &image,
                    [4.0, 6.0, 40.0, 60.0],
                    [30.0, 10.0, 60.0, 30.0],
                    "unicorn",
                )]),
            ),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "box past the right edge",
            post_json(&uri, with(vec![bad_box([4.0, 6.0, 97.0, 60.0])])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            "negative box",
            post_json(&uri, with(vec![bad_box([-2.0, 6.0, 40.0, 60.0])])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            "zero-area box",
            post_json(&uri, with(vec![bad_box([4.0, 6.0, 4.0, 60.0])])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            "reversed box",
            post_json(&uri, with(vec![bad_box([40.0, 6.0, 4.0, 60.0])])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            "a bad example after a good one",
            post_json(
                &uri,
                with(vec![good.clone(), bad_box([4.0, 6.0, 40.0, 65.0])]),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            "no examples",
            post_json(&uri, with(vec![])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            "too many examples",
            post_json(&uri, with(vec![good.clone(); 17])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            "not an image",
            post_json(
                &uri,
                with(vec![
                    serde_json::json!({"image": b64(b"not an image at all"), "human_box": [0, 0, 1, 1], "object_box": [0, 0, 1, 1], "object": "orange"}),
                ]),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            "truncated image",
            post_json(
                &uri,
                with(vec![
                    good.clone(),
                    serde_json::json!({"image": b64(&image[..image.len() / 2]), "human_box": [0, 0, 1, 1], "object_box": [0, 0, 1, 1], "object": "orange"}),
                ]),
            ),
            StatusCode::BAD_REQUEST,
            "invalid-image",
        ),
        (
            "bad base64",
            post_json(
                &uri,
                with(vec![
                    serde_json::json!({"image": "%%%", "human_box": [0, 0, 1, 1], "object_box": [0, 0, 1, 1], "object": "orange"}),
                ]),
            ),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            "a box of three numbers",
            post_json(
                &uri,
                with(vec![
                    serde_json::json!({"image": b64(&image), "human_box": [0, 0, 1], "object_box": [0, 0, 1, 1], "object": "orange"}),
                ]),
            ),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            "multipart without a box",
            multipart(
                &uri,
                &[
                    ("image", image.clone()),
                    ("human_box", b"1,1,20,20".to_vec()),
                    ("object", b"orange".to_vec()),
                ],
            ),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            "multipart box text",
            multipart(
                &uri,
                &[
                    ("image", image.clone()),
                    ("human_box", b"1,1,20".to_vec()),
                    ("object_box", b"1,1,20,20".to_vec()),
                    ("object", b"orange".to_vec()),
                ],
            ),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            "plain text",
            raw(&uri, "text/plain", b"hello".to_vec()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            "id not a number",
            post_json("/verbs/juggle/examples", with(vec![good.clone()])),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
    ];
    let version = get_json(&s, "/vocabulary").await["version"].clone();
    for (what, request, expected, kind) in cases {
        let (status, ct, body) = send(&s, request).await;
        assert_eq!(
            status,
            expected,
            "{what}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_problem(status, &ct, &body, expected, kind);
        assert_eq!(
            get_json(&s, "/vocabulary").await["version"],
            version,
            "{what} changed the vocabulary"
        );
        assert_eq!(
            get_json(&s, &uri).await,
            serde_json::json!([]),
            "{what} stored an example"
        );
    }
    // With every learning slot taken, an upload is 429 at once and stores nothing.
    let slots = s
        .learning
        .clone()
        .try_acquire_many_owned(hoiclip::api::LEARNING_AT_ONCE as u32)
        .unwrap();
    let (status, ct, body) = send(&s, post_json(&uri, with(vec![good.clone()]))).await;
    assert_problem(
        status,
        &ct,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "queue-full",
    );
    drop(slots);
    assert_eq!(get_json(&s, &uri).await, serde_json::json!([]));
    let (status, _, _) = send(&s, post_json(&uri, with(vec![good.clone()]))).await;
    assert_eq!(status, StatusCode::CREATED, "a freed slot is usable again");

    let (status, ct, body) = delete(&s, &format!("{uri}/999999")).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND, "not-found");
    let (status, ct, body) = send(
        &s,
        Request::get("/verbs/999999/examples")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND, "not-found");
}

/// `hoiclip vocab add-examples` stores what the API would, and `vocab list --row-sources`
/// reports the verb's learned row.
#[test]
fn the_cli_adds_examples_and_lists_row_sources() {
    use std::process::Command;
    let db = common::temp_db("cli-examples");
    let dir = std::env::temp_dir().join(format!("hoiclip-cli-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("picture.png");
    std::fs::write(&path, picture()).unwrap();
    let hoiclip = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hoiclip"))
            .args(["vocab", "--database-url", &db])
            .args(args)
            .env_remove("HOICLIP_WEIGHTS")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, _, err) = hoiclip(&[
        "add-verb", "juggle", "--ing", "juggling", "--object", "orange",
    ]);
    assert!(ok, "{err}");
    let image = path.to_str().unwrap();
    let (ok, out, err) = hoiclip(&[
        "add-examples",
        "juggle",
        "--example",
        image,
        "4,6,40,60",
        "30,10,60,30",
        "orange",
        "--example",
        image,
        "50,2,90,62",
        "10,40,45,63",
        "orange",
    ]);
    assert!(ok, "{err}");
    let added: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(added["examples"].as_array().unwrap().len(), 2);
    // The API's answer to `POST /verbs/{id}/examples`, field for field.
    assert_eq!(
        added["verb"]["row_source"],
        serde_json::json!({"kind": "examples", "examples": 2})
    );
    assert!(added["vocabulary_version"].as_i64().unwrap() > 0);

    let (ok, out, err) = hoiclip(&["list", "verbs", "--row-sources"]);
    assert!(ok, "{err}");
    let juggle = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["name"] == "juggle")
        .unwrap();
    assert_eq!(juggle["row_source"]["kind"], "examples");
    let (ok, out, _) = hoiclip(&["examples", "juggle"]);
    assert!(ok);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();

    // A refused write changes nothing: a box outside the image, an unknown object.
    for (bad, named) in [
        (
            ["--example", image, "4,6,400,60", "30,10,60,30", "orange"],
            "human_box",
        ),
        (
            ["--example", image, "4,6,40,60", "30,10,60,30", "unicorn"],
            "unicorn",
        ),
    ] {
        let (ok, _, err) = hoiclip(&[&["add-examples", "juggle"][..], &bad[..]].concat());
        assert!(!ok, "{bad:?} was accepted");
        assert!(err.contains(named), "{err}");
    }
    let (_, out, _) = hoiclip(&["examples", "juggle"]);
    assert_eq!(out.lines().count(), 2);

    let (ok, _, err) = hoiclip(&["remove-example", "juggle", &first["id"].to_string()]);
    assert!(ok, "{err}");
    let (_, out, _) = hoiclip(&["examples", "juggle"]);
    assert_eq!(out.lines().count(), 1);
}
