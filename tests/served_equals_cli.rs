//! One pipeline: the same official-layout checkpoint through the API (`POST /detect`) and
//! through the CLI (`hoiclip detect`, the same vocabulary, engine and batch policy) gives
//! identical answers in one schema, whichever other images share the command line; and
//! both equal the checkpoint's own classifier applied directly (what the official code
//! scores). For the HICO-DET layout (600 classes) and the V-COCO layout (263 classes, 29
//! verbs, a "no object" role row, the official verb -> HOI matrix that is not one-hot,
//! verb weight 0.1 from the saved args, verb-level output). Checkpoints are built from the
//! tiny parity fixture with the classifier tensors resized to the official class counts.

mod common;
#[path = "pth_writer/mod.rs"]
mod pth_writer;

use axum::http::StatusCode;
use common::http::*;
use hoiclip::api::AppState;
use hoiclip::config::{ModelSource, Settings};
use hoiclip::detector::{DetectOptions, Detector};
use hoiclip::vocab::Pack;
use pth_writer::{PthTensor, TempFile, read_all, scoring_args, write_with_args};

/// Deterministic values in [-1, 1] (a tiny LCG), so rows differ from each other.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn tensor(key: &str, shape: &[usize], data: Vec<f32>) -> PthTensor {
    PthTensor::f32_values(key, shape, &data)
}

/// The parity fixture with its classifier resized to `pack`'s class counts and `objects`
/// object-classifier rows; `verb2hoi` as given (row-major `[V, C]`).
fn checkpoint_for(
    pack: &Pack,
    objects: usize,
    verb2hoi: Vec<f32>,
    verb_weight: f64,
    name: &str,
) -> TempFile {
    let (c, v) = (pack.interactions.len(), pack.verbs.len());
    let mut tensors = read_all(&common::fixture("hoiclip/checkpoint.pth"));
    let e = tensors
        .iter()
        .find(|t| t.key == "visual_projection.weight")
        .map(|t| t.shape[1])
        .unwrap();
    tensors.retain(|t| {
        !matches!(
            t.key.as_str(),
            "visual_projection.weight"
                | "visual_projection.bias"
                | "verb_projection.weight"
                | "verb2hoi_proj"
                | "verb2hoi_proj_eval"
                | "obj_visual_projection.weight"
                | "obj_visual_projection.bias"
        )
    });
    tensors.push(tensor(
        "visual_projection.weight",
        &[c, e],
        values(c * e, 1),
    ));
    tensors.push(tensor("visual_projection.bias", &[c], values(c, 2)));
    tensors.push(tensor("verb_projection.weight", &[v, e], values(v * e, 3)));
    tensors.push(tensor("verb2hoi_proj", &[v, c], verb2hoi.clone()));
    tensors.push(tensor("verb2hoi_proj_eval", &[v, c], verb2hoi));
    tensors.push(tensor(
        "obj_visual_projection.weight",
        &[objects, e],
        values(objects * e, 4),
    ));
    tensors.push(tensor(
        "obj_visual_projection.bias",
        &[objects],
        values(objects, 5),
    ));
    let file = TempFile::new(name);
    let args = scoring_args(&pack.name, verb_weight);
    std::fs::write(&file.0, write_with_args(&tensors, &args)).unwrap();
    file
}

/// `(verb, interaction, label, score, human box, object box)` of each triplet, in order.
type Row = (String, String, String, f32, Vec<f32>, Vec<f32>);

fn rows(triplets: &serde_json::Value) -> Vec<Row> {
    triplets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let b = |v: &serde_json::Value| -> Vec<f32> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            };
            (
                t["verb"].as_str().unwrap().to_string(),
                t["interaction"].as_str().unwrap().to_string(),
                t["object"]["label"].as_str().unwrap().to_string(),
                t["score"].as_f64().unwrap() as f32,
                b(&t["human"]["box"]),
                b(&t["object"]["box"]),
            )
        })
        .collect()
}

/// The server as `hoiclip serve` builds it (fresh vocabulary, both seed packs) on
/// `weights`.
async fn served(weights: &std::path::Path) -> AppState {
    let settings = Settings {
        model: ModelSource::Weights(weights.to_path_buf()),
        ..common::settings_at("sqlite::memory:")
    };
    hoiclip::app::build(&settings).await.unwrap().state
}

/// `hoiclip detect` on `images` together: one JSON line per image.
fn cli(weights: &std::path::Path, images: &[std::path::PathBuf]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoiclip"))
        .args(["detect", "--database-url", "sqlite::memory:", "--weights"])
        .arg(weights)
        .args(images)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The checkpoint's own classifier applied directly to one image, as API triplets.
fn own_classifier(weights: &std::path::Path, image: &std::path::Path) -> serde_json::Value {
    let detector = Detector::<common::B>::from_weights(weights, &Default::default()).unwrap();
    let img = hoiclip::vision::decode(&std::fs::read(image).unwrap(), Default::default()).unwrap();
    let out = detector
        .detect(&[img], &DetectOptions::default())
        .unwrap()
        .remove(0);
    // In the API's triplet fields, for `rows`.
    out.detections
        .iter()
        .map(|d| {
            serde_json::json!({
                "verb": d.verb,
                "interaction": d.interaction,
                "object": {"label": d.object.label, "box": d.object.bbox},
                "human": {"box": d.human.bbox},
                "score": d.score,
            })
        })
        .collect()
}

fn assert_same_rows(a: &[Row], b: &[Row], what: &str) {
    assert!(!a.is_empty(), "{what}: no triplets");
    assert_eq!(a.len(), b.len(), "{what}: triplet counts differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(
            (&x.0, &x.1, &x.2),
            (&y.0, &y.1, &y.2),
            "{what}: triplet {i} differs"
        );
        assert!(
            (x.3 - y.3).abs() <= 1e-6,
            "{what}: triplet {i}: score {} vs {}",
            x.3,
            y.3
        );
        for (p, q) in x.4.iter().chain(&x.5).zip(y.4.iter().chain(&y.5)) {
            assert!((p - q).abs() <= 1e-3, "{what}: triplet {i}: boxes differ");
        }
    }
}

/// Every image through the API alone equals its line of one `hoiclip detect` over all of
/// them (same schema, same triplets, same interaction ids), and the API equals the
/// checkpoint's own classifier on the first image.
async fn assert_served_equals_cli(weights: &std::path::Path, output: &str) -> AppState {
    // img0 and its mirror image have the same size, so the CLI runs them in one forward
    // pass; the API runs each alone.
    let mirrored = std::env::temp_dir().join(format!(
        "hoiclip-mirrored-{}-{output}.png",
        std::process::id()
    ));
    image::imageops::flip_horizontal(&image::open(common::fixture("hoiclip/img0.png")).unwrap())
        .save(&mirrored)
        .unwrap();
    let images = [
        common::fixture("hoiclip/img0.png"),
        common::fixture("hoiclip/img1.png"),
        mirrored.clone(),
        common::fixture("hoiclip/img2.jpg"),
    ];
    let from_cli = cli(weights, &images);
    assert_eq!(from_cli.len(), images.len());
    let s = served(weights).await;
    for (i, (image, line)) in images.iter().zip(&from_cli).enumerate() {
        let (status, _, body) = send(
            &s,
            raw(
                "/detect",
                "application/octet-stream",
                std::fs::read(image).unwrap(),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let from_api = json(&body);
        assert_eq!(from_api["output"], output);
        assert_eq!(line["image"], image.display().to_string());
        // One schema: the API's fields, plus the image's path.
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.retain(|k| k != "image");
            k.sort();
            k
        };
        assert_eq!(keys(line), keys(&from_api), "image {i}: fields");
        for field in ["width", "height", "output", "vocabulary_version", "model"] {
            assert_eq!(line[field], from_api[field], "image {i}: {field}");
        }
        let ids = |v: &serde_json::Value| -> Vec<serde_json::Value> {
            v["triplets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["interaction_id"].clone())
                .collect()
        };
        assert_eq!(ids(line), ids(&from_api), "image {i}: interaction ids");
        assert_same_rows(
            &rows(&from_api["triplets"]),
            &rows(&line["triplets"]),
            &format!("image {i}: API vs CLI"),
        );
        if i == 0 {
            assert_same_rows(
                &rows(&from_api["triplets"]),
                &rows(&own_classifier(weights, image)),
                "API vs the checkpoint's own classifier",
            );
        }
    }
    std::fs::remove_file(&mirrored).ok();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hico_det_layout_served_equals_cli() {
    let pack = Pack::hico_det();
    let file = checkpoint_for(&pack, 81, pack.verb_to_hoi(), 0.5, "served-hico.pth");
    let s = assert_served_equals_cli(&file.0, "interactions").await;
    let info = get_json(&s, "/info").await;
    assert_eq!(info["scoring"]["source"], "checkpoint args", "{info}");
    assert_eq!(info["scoring"]["verb_weight"], 0.5);
}

/// V-COCO's official verb -> HOI matrix has its ones only in the first 81 columns (the
/// upstream quirk the model was trained with); a one-hot map rebuilt from the vocabulary
/// would score differently.
fn vcoco_official_verb2hoi(pack: &Pack) -> Vec<f32> {
    let c = pack.interactions.len();
    let mut m = vec![0f32; pack.verbs.len() * c];
    for it in pack.interactions.iter().filter(|it| it.index <= 80) {
        m[it.verb * c + it.index] = 1.0;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v_coco_layout_served_equals_cli_with_verb_level_output() {
    let pack = Pack::v_coco();
    let file = checkpoint_for(
        &pack,
        82,
        vcoco_official_verb2hoi(&pack),
        0.1,
        "served-vcoco.pth",
    );
    let s = assert_served_equals_cli(&file.0, "verbs").await;
    let info = get_json(&s, "/info").await;
    assert_eq!(info["scoring"]["verb_weight"], 0.1, "{info}");
    assert_eq!(info["scoring"]["output"], "verbs");
    assert_eq!(
        info["scoring"]["nms"], false,
        "V-COCO's verb output has no NMS"
    );

    // Verb-level output: one triplet per (pair, verb) at most, labelled with an object
    // the verb is valid for (or the "no object" role), no NMS.
    let (_, _, body) = send(&s, raw("/detect?top_k=100", "image/png", png())).await;
    let out = json(&body);
    let triplets = out["triplets"].as_array().unwrap();
    let mut seen = std::collections::HashSet::new();
    for t in triplets {
        let key = (
            t["human"]["box"].to_string(),
            t["object"]["box"].to_string(),
            t["verb"].to_string(),
        );
        assert!(seen.insert(key), "two triplets for one pair and verb");
    }
    // The official validity matrix (corre_vcoco.npy) allows agent-only verbs with every
    // object; a matrix derived from the 263 classes would score these 0.
    let agent_only_on_objects = triplets
        .iter()
        .filter(|t| {
            ["stand", "walk", "run", "smile"].contains(&t["verb"].as_str().unwrap())
                && t["object"]["label"] != "nothing"
                && t["score"].as_f64().unwrap() > 0.0
        })
        .count();
    assert!(
        agent_only_on_objects > 0,
        "no agent-only verb scored with a real object"
    );

    // A verb registered on a V-COCO model is a new verb-level output, valid only with
    // the objects registered with it.
    let (status, _, body) = send(
        &s,
        post_json("/verbs", serde_json::json!({"name": "juggle", "ing": "juggling", "objects": ["orange", "apple"]})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, body) = send(
        &s,
        raw("/detect?verbs=juggle&top_k=100", "image/png", png()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let out = json(&body);
    let triplets = out["triplets"].as_array().unwrap();
    assert!(!triplets.is_empty());
    for t in triplets {
        assert_eq!(t["verb"], "juggle");
        let label = t["object"]["label"].as_str().unwrap();
        let score = t["score"].as_f64().unwrap();
        assert!(
            score == 0.0 || ["orange", "apple", "nothing"].contains(&label),
            "juggle scored with object {label}"
        );
    }
}

#[test]
fn training_arguments_are_read_from_the_checkpoint_and_survive_conversion() {
    use hoiclip::model::Arg;
    use hoiclip::model::weights::Checkpoint;
    // Written by PyTorch (tests/fixtures/make_hoiclip.py): a real argparse.Namespace.
    let ckpt = Checkpoint::open(common::fixture("hoiclip/checkpoint.pth")).unwrap();
    assert_eq!(ckpt.arg("verb_weight"), Some(&Arg::Float(0.5)));
    assert_eq!(ckpt.arg("use_nms_filter"), Some(&Arg::Bool(true)));
    assert_eq!(ckpt.arg("dataset_file"), Some(&Arg::Str("hico".into())));
    assert_eq!(ckpt.arg("num_queries"), Some(&Arg::Int(6)));
    let pack = Pack::v_coco();
    let file = checkpoint_for(
        &pack,
        82,
        vcoco_official_verb2hoi(&pack),
        0.25,
        "args-vcoco.pth",
    );
    let out = TempFile::new("args-vcoco.safetensors");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_hoiclip"))
        .arg("convert")
        .arg(&file.0)
        .arg(&out.0)
        .status()
        .unwrap();
    assert!(status.success());
    let native = Checkpoint::open(&out.0).unwrap();
    assert_eq!(native.arg("verb_weight"), Some(&Arg::Float(0.25)));
    let detector = Detector::<common::B>::from_weights(&out.0, &Default::default()).unwrap();
    assert_eq!(detector.info().scoring.verb_weight, 0.25);
    assert_eq!(detector.info().scoring.source, "checkpoint args");
}

/// Whether two JSON values have the same shape: the same object keys, recursively
/// (arrays by their first items); `null` (an optional field without a value) matches
/// anything, as the schema allows.
fn same_shape(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => true,
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_shape(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => match (x.first(), y.first()) {
            (Some(p), Some(q)) => same_shape(p, q),
            _ => true,
        },
        (x, y) => std::mem::discriminant(x) == std::mem::discriminant(y),
    }
}

/// `hoiclip vocab` prints what the API answers for the same write or listing, field for
/// field: a new verb, object and interaction, the listings, and a removal, run on two
/// fresh vocabularies (one through the CLI, one through the API) with the same versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vocab_commands_print_the_apis_shapes() {
    use axum::body::Body;
    use axum::http::Request;
    let db = common::sqlite_file_db("vocab-shapes");
    let cli = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoiclip"))
            .args(["vocab", "--database-url", &db])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let s = served_demo().await;
    let api = |request: Request<Body>| {
        let s = s.clone();
        async move {
            let (status, _, body) = send(&s, request).await;
            assert!(
                status.is_success(),
                "{status}: {}",
                String::from_utf8_lossy(&body)
            );
            json(&body)
        }
    };
    let same = |cli: &serde_json::Value, api: &serde_json::Value, what: &str| {
        assert!(same_shape(cli, api), "{what}: CLI {cli} vs API {api}");
    };

    let c = cli(&["add-object", "kettlebell"]).remove(0);
    let a = api(post_json(
        "/objects",
        serde_json::json!({"name": "kettlebell"}),
    ))
    .await;
    same(&c, &a, "add-object");
    assert_eq!(c["vocabulary_version"], a["vocabulary_version"]);

    let c = cli(&[
        "add-verb",
        "heft",
        "--ing",
        "hefting",
        "--object",
        "kettlebell",
    ])
    .remove(0);
    let a = api(post_json(
        "/verbs",
        serde_json::json!({"name": "heft", "ing": "hefting", "objects": ["kettlebell"]}),
    ))
    .await;
    same(&c, &a, "add-verb");
    assert_eq!(c["vocabulary_version"], a["vocabulary_version"]);

    let c = cli(&["add-interaction", "heft", "orange"]).remove(0);
    let a = api(post_json(
        "/interactions",
        serde_json::json!({"verb": "heft", "object": "orange"}),
    ))
    .await;
    same(&c, &a, "add-interaction");

    for (what, path) in [
        ("verbs", "/verbs"),
        ("objects", "/objects"),
        ("interactions", "/interactions"),
        ("packs", "/packs"),
    ] {
        let c = cli(&["list", what]);
        let a = api(Request::get(path).body(Body::empty()).unwrap()).await;
        let a = a.as_array().unwrap().clone();
        assert_eq!(c.len(), a.len(), "list {what}");
        same(&c[0], &a[0], &format!("list {what}"));
    }

    let id = c["interaction"]["id"].to_string();
    let c = cli(&["remove", "interaction", &id]).remove(0);
    let a = api(Request::delete(format!("/interactions/{id}"))
        .body(Body::empty())
        .unwrap())
    .await;
    same(&c, &a, "remove");
    assert_eq!(c["vocabulary_version"], a["vocabulary_version"]);
}

/// The demo model served with a fresh vocabulary of its own.
async fn served_demo() -> AppState {
    hoiclip::app::build(&common::settings_at("sqlite::memory:"))
        .await
        .unwrap()
        .state
}
