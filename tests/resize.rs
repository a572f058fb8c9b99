//! The PIL-compatible resizer against Pillow's own output (tests/fixtures/make_hoiclip.py):
//! bilinear and bicubic, up and down, non-integer ratios. Exact equality, every pixel.

mod common;

use common::fixture;
use hoiclip::model::weights::Checkpoint;
use hoiclip::vision::resize::{Filter, resize};

#[test]
fn every_case_equals_pillow_exactly() {
    let cases: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(fixture("hoiclip/resize_cases.json")).unwrap(),
    )
    .unwrap();
    let data = Checkpoint::open(fixture("hoiclip/resize_cases.safetensors")).unwrap();
    let load = |key: &str| {
        let d = data.data(key).unwrap();
        image::RgbImage::from_raw(
            d.shape[1] as u32,
            d.shape[0] as u32,
            d.to_vec::<u8>().unwrap(),
        )
        .unwrap()
    };
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let src = load(case["source"].as_str().unwrap());
        let filter = match case["filter"].as_str().unwrap() {
            "bilinear" => Filter::Bilinear,
            "bicubic" => Filter::Bicubic,
            other => panic!("unknown filter {other}"),
        };
        let target = case["target"].as_array().unwrap();
        let (w, h) = (
            target[0].as_u64().unwrap() as u32,
            target[1].as_u64().unwrap() as u32,
        );
        let ours = resize(&src, w, h, filter);
        let theirs = load(name);
        let worst = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        if ours.dimensions() != theirs.dimensions() || worst > 0 {
            failures.push(format!("{name}: max pixel difference {worst}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
