//! Verb rows from example images (issue 13, item 3, the algorithm): crops, CLIP features
//! and the visual semantic arithmetic against tests/fixtures/make_verb_rows.py, which runs
//! HOICLIP's verb.pth generator (reference 1.7) with the parity fixture's CLIP on the
//! fixture photos with made-up boxes.

mod common;

use common::{B, fixture};
use hoiclip::classifier::arithmetic::{ExampleFeatures, union_box, verb_rows};
use hoiclip::classifier::embed_images;
use hoiclip::model::hoiclip::{self as detector, HoiclipConfig};
use hoiclip::model::weights::Checkpoint;
use hoiclip::vision::preprocess::clip_crop;

/// CLIP image features: as tests/clip_parity.rs holds the image tower.
const TOL_FEATURES: f32 = 1e-5;
/// Rows from the reference's own features: only summation order differs.
const TOL_ROWS: f32 = 1e-6;

struct Fixture {
    annotations: Vec<serde_json::Value>,
    hoi_verb: Vec<usize>,
    hoi_object: Vec<usize>,
    num_verbs: usize,
    refs: Checkpoint,
}

fn load() -> Fixture {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("hoiclip/verb_rows.json")).unwrap())
            .unwrap();
    let hois = json["hois"].as_array().unwrap();
    let pair = |i: usize| -> Vec<usize> {
        hois.iter()
            .map(|h| h[i].as_u64().unwrap() as usize)
            .collect()
    };
    Fixture {
        annotations: json["annotations"].as_array().unwrap().clone(),
        hoi_verb: pair(0),
        hoi_object: pair(1),
        num_verbs: json["num_verbs"].as_u64().unwrap() as usize,
        refs: Checkpoint::open(fixture("hoiclip/verb_rows.safetensors")).unwrap(),
    }
}

fn rows_of(refs: &Checkpoint, key: &str) -> Vec<Vec<f32>> {
    let data = refs.data(key).unwrap();
    let dim = data.shape[1];
    data.to_vec::<f32>()
        .unwrap()
        .chunks(dim)
        .map(<[f32]>::to_vec)
        .collect()
}

fn bbox(v: &serde_json::Value) -> [f32; 4] {
    let b: Vec<f32> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    [b[0], b[1], b[2], b[3]]
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

fn examples(
    f: &Fixture,
    human: &[Vec<f32>],
    object: &[Vec<f32>],
    union: &[Vec<f32>],
) -> Vec<ExampleFeatures> {
    let mut images: Vec<&str> = Vec::new();
    f.annotations
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let name = a["image"].as_str().unwrap();
            let image = images.iter().position(|n| *n == name).unwrap_or_else(|| {
                images.push(name);
                images.len() - 1
            });
            ExampleFeatures {
                image,
                hoi: a["hoi"].as_u64().unwrap() as usize,
                human: human[i].clone(),
                object: object[i].clone(),
                union: union[i].clone(),
            }
        })
        .collect()
}

/// Verb rows from `[human, object, union]` features against the reference's.
fn check_rows(f: &Fixture, feats: &[Vec<Vec<f32>>], what: &str, tol: f32) {
    let examples = examples(f, &feats[0], &feats[1], &feats[2]);
    let rows: Vec<Vec<f32>> = verb_rows(&examples, &f.hoi_verb, &f.hoi_object, f.num_verbs)
        .into_iter()
        .map(|r| r.expect("every verb has examples"))
        .collect();
    let diff = max_diff(&rows, &rows_of(&f.refs, "verb_rows"));
    eprintln!("{what}: max abs diff {diff:e}");
    assert!(diff <= tol, "{what}: {diff}");
}

#[test]
fn arithmetic_on_the_reference_features_gives_the_reference_rows() {
    let f = load();
    let (h, o, u) = (
        rows_of(&f.refs, "human"),
        rows_of(&f.refs, "object"),
        rows_of(&f.refs, "union"),
    );
    check_rows(
        &f,
        &[h, o, u],
        "verb rows from the reference features",
        TOL_ROWS,
    );
}

#[test]
fn crops_and_clip_features_match_the_reference_and_give_its_rows() {
    let f = load();
    let text = std::fs::read_to_string(fixture("hoiclip/config.json")).unwrap();
    let config: HoiclipConfig = serde_json::from_str(&text).unwrap();
    let ckpt = Checkpoint::open(fixture("hoiclip/checkpoint.pth")).unwrap();
    let device = Default::default();
    let (model, _) = detector::load::<B>(&config, &ckpt, &device).unwrap();
    let res = config.clip.image_resolution;
    let mut crops = [Vec::new(), Vec::new(), Vec::new()];
    for a in &f.annotations {
        // Decoded as the server decodes uploads (JPEG as Pillow does).
        let path = fixture(&format!("hoiclip/{}", a["image"].as_str().unwrap()));
        let img =
            hoiclip::vision::decode::decode(&std::fs::read(path).unwrap(), Default::default())
                .unwrap();
        let (hb, ob) = (bbox(&a["human_box"]), bbox(&a["object_box"]));
        crops[0].push(clip_crop(&img, hb, res));
        crops[1].push(clip_crop(&img, ob, res));
        crops[2].push(clip_crop(&img, union_box(hb, ob), res));
    }
    let mut feats = Vec::new();
    for (crops, key) in crops.iter().zip(["human", "object", "union"]) {
        let ours = embed_images(&model.clip_model, crops, res, 4, &device).unwrap();
        let diff = max_diff(&ours, &rows_of(&f.refs, key));
        eprintln!("{key} crop features: max abs diff {diff:e}");
        assert!(diff <= TOL_FEATURES, "{key}: {diff}");
        feats.push(ours);
    }
    check_rows(&f, &feats, "verb rows end to end", TOL_FEATURES);
}
