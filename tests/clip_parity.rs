//! CLIP towers against open_clip (tests/fixtures/make_clip.py): a tiny random CLIP saved in
//! the official HOICLIP checkpoint layout (fp16 tensors, `args` Namespace, optimizer state).

mod common;

use common::{B, fixture, max_abs_diff, reference};
use hoiclip::model::clip::tokenizer::ClipTokenizer;
use hoiclip::model::clip::{Clip, ClipConfig, load_plan};
use hoiclip::model::weights::Checkpoint;

/// Parity bound for f32 CPU vs PyTorch f32 on the tiny model.
const TOL: f32 = 1e-4;

fn tiny_config() -> ClipConfig {
    let text = std::fs::read_to_string(fixture("clip/tiny_config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(file: &str) -> Clip<B> {
    let ckpt = Checkpoint::open(fixture(file)).unwrap();
    let mut clip = tiny_config().init::<B>(&Default::default());
    let report = ckpt.load_into(&mut clip, &load_plan(&ckpt)).unwrap();
    assert!(report.is_clean(), "{report}");
    clip
}

fn reference_file() -> Checkpoint {
    Checkpoint::open(fixture("clip/reference.safetensors")).unwrap()
}

#[test]
fn vision_tower_matches_open_clip() {
    let clip = load("clip/hoiclip_layout.pth");
    let refs = reference_file();
    let out = clip.encode_image(reference::<4>(&refs, "images"));
    let cls_diff = max_abs_diff(out.cls, reference::<2>(&refs, "cls"));
    let tok_diff = max_abs_diff(out.tokens, reference::<3>(&refs, "tokens"));
    eprintln!("vision parity: cls {cls_diff:e}, tokens {tok_diff:e}");
    assert!(cls_diff <= TOL, "CLS embedding differs by {cls_diff}");
    assert!(tok_diff <= TOL, "token map differs by {tok_diff}");
}

#[test]
fn text_tower_matches_open_clip() {
    let clip = load("clip/hoiclip_layout.pth");
    let refs = reference_file();
    let prompts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(fixture("clip/prompts.json")).unwrap())
            .unwrap();
    let tok = ClipTokenizer::new().unwrap();
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| tok.encode(p).unwrap()).collect();
    // Our tokenizer reproduces the reference's (padded) token ids...
    let ref_ids: Vec<i64> = refs.data("token_ids").unwrap().to_vec().unwrap();
    for (row, ours) in ids.iter().enumerate() {
        let theirs = &ref_ids[row * 77..(row + 1) * 77];
        let mut padded: Vec<i64> = ours.iter().map(|&i| i as i64).collect();
        padded.resize(77, 0);
        assert_eq!(padded, theirs, "token ids of {:?}", prompts[row]);
    }
    // ...and the embeddings, computed on the batch cut to its longest prompt.
    let text = clip.encode_text(&ids).unwrap();
    let diff = max_abs_diff(text.clone(), reference::<2>(&refs, "text"));
    eprintln!("text parity: {diff:e}");
    assert!(diff <= TOL, "text embeddings differ by {diff}");
    // Batch composition does not change a prompt's embedding.
    let alone = clip.encode_text(&ids[5..6]).unwrap();
    let diff = max_abs_diff(alone, text.narrow(0, 5, 1));
    assert!(
        diff <= TOL,
        "single-prompt embedding differs from batched by {diff}"
    );
}

#[test]
fn safetensors_and_pth_give_identical_models() {
    let a = load("clip/hoiclip_layout.pth");
    let b = load("clip/clip_state.safetensors");
    let refs = reference_file();
    let images = reference::<4>(&refs, "images");
    let diff = max_abs_diff(
        a.encode_image(images.clone()).tokens,
        b.encode_image(images).tokens,
    );
    assert_eq!(diff, 0.0);
}

#[test]
fn load_report_lists_loaded_and_leaves_detector_keys_alone() {
    let ckpt = Checkpoint::open(fixture("clip/hoiclip_layout.pth")).unwrap();
    let plan = load_plan(&ckpt);
    assert_eq!(plan.prefix, "clip_model.");
    let mut clip = tiny_config().init::<B>(&Default::default());
    let report = ckpt.load_into(&mut clip, &plan).unwrap();
    let clip_keys = ckpt.keys().filter(|k| k.starts_with("clip_model.")).count();
    assert_eq!(report.applied.len(), clip_keys);
    assert!(
        report
            .applied
            .contains(&"clip_model.visual.transformer.resblocks.1.attn.in_proj_weight".to_string())
    );
    assert!(
        report
            .applied
            .contains(&"clip_model.logit_scale".to_string())
    );
    assert!(!report.applied.iter().any(|k| k.starts_with("query_embed")));
    // fp16 in the file, f32 in the model.
    let w = clip.visual.proj.val();
    assert_eq!(w.dtype(), burn::tensor::DType::F32);
}
