//! The HOICLIP detector against a from-the-spec PyTorch reference
//! (tests/fixtures/make_hoiclip.py; cross-checked there against the official code):
//! a tiny model in the official checkpoint layout, three photos of different sizes.

mod common;

use burn::prelude::*;
use common::{B, fixture, max_abs_diff, reference};
use hoiclip::model::hoiclip::{self as detector, Hoiclip, HoiclipConfig, ModelInput};
use hoiclip::model::weights::Checkpoint;
use hoiclip::postprocess::{ImagePredictions, PostprocessConfig, triplets};
use hoiclip::vision::preprocess::{PreprocessConfig, prepare};
use hoiclip::vision::{DecodeLimits, decode};

/// f32 CPU against PyTorch f32. Hidden states and boxes stay within 1e-4. Logits are
/// cosines times exp(logit scale) (18x here), and the reference's own f32 result moves by
/// up to 1.3e-4 against an f64 run (make_hoiclip.py), so logits get 2e-4 (seen: 1.4e-4).
const TOL_HIDDEN: f32 = 1e-4;
const TOL_LOGITS: f32 = 2e-4;
const TOL_BOXES: f32 = 1e-4;
/// A padded image against the same image unpadded, both here: the same arithmetic on the
/// image's own positions, summed in other orders where a product's size changes with the
/// padded size. Boxes (in [0, 1]) within 1e-6; logits within 5e-5, which this random tiny
/// model amplifies rounding to (at most 1e-5 on triplet scores: sigmoid's slope is at most
/// 1/4).
const TOL_PADDED_LOGITS: f32 = 5e-5;
const TOL_PADDED_BOXES: f32 = 1e-6;

struct Fixture {
    config: HoiclipConfig,
    json: serde_json::Value,
    refs: Checkpoint,
}

fn fixture_set() -> Fixture {
    let text = std::fs::read_to_string(fixture("hoiclip/config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let config: HoiclipConfig = serde_json::from_value(json.clone()).unwrap();
    let refs = Checkpoint::open(fixture("hoiclip/reference.safetensors")).unwrap();
    Fixture { config, json, refs }
}

/// The checkpoint as loaded, before [`Hoiclip::prepare_for_inference`].
fn loaded(f: &Fixture) -> Hoiclip<B> {
    let ckpt = Checkpoint::open(fixture("hoiclip/checkpoint.pth")).unwrap();
    let (model, report) = detector::load::<B>(&f.config, &ckpt, &Default::default()).unwrap();
    assert!(report.is_clean(), "{report}");
    model
}

/// As the detector runs it: batch norm factors computed once at load.
fn model(f: &Fixture) -> Hoiclip<B> {
    loaded(f).prepare_for_inference()
}

fn usizes(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn preprocess_config(f: &Fixture) -> PreprocessConfig {
    PreprocessConfig {
        resize_short: f.json["resize_short"].as_u64().unwrap() as usize,
        resize_max: f.json["resize_max"].as_u64().unwrap() as usize,
        clip_resolution: f.config.clip.image_resolution,
    }
}

fn check(name: &str, ours: Tensor<B, 3>, theirs: Tensor<B, 3>, tol: f32) {
    let diff = max_abs_diff(ours, theirs);
    eprintln!("{name}: max abs diff {diff:e}");
    assert!(diff <= tol, "{name} differs by {diff} (tolerance {tol})");
}

#[test]
fn checkpoint_loads_strictly_and_lists_unused_modules() {
    let f = fixture_set();
    let ckpt = Checkpoint::open(fixture("hoiclip/checkpoint.pth")).unwrap();
    let (_, report) = detector::load::<B>(&f.config, &ckpt, &Default::default()).unwrap();
    assert!(report.is_clean(), "{report}");
    for family in [
        "transformer.interaction_decoder.",
        "transformer.inter_guided_embedd",
        "hoi_class_fc.",
        ".norm4.",
        "verb2hoi_proj_eval",
    ] {
        assert!(
            report.ignored.iter().any(|k| k.contains(family)),
            "{family} not listed as ignored"
        );
    }
    let total = ckpt.keys().count();
    assert_eq!(report.applied.len() + report.ignored.len(), total);
}

#[test]
fn unexpected_key_in_checkpoint_is_an_error() {
    // A model with one decoder layer fewer leaves the file's last layer unused: strict.
    let mut f = fixture_set();
    f.config.dec_layers -= 1;
    let ckpt = Checkpoint::open(fixture("hoiclip/checkpoint.pth")).unwrap();
    let err = detector::load::<B>(&f.config, &ckpt, &Default::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("transformer.instance_decoder.layers.1.self_attn.in_proj_weight"),
        "{msg}"
    );
}

/// Batch norms folded into the convolutions' weights (what the CUDA backend runs) against
/// the exact arithmetic, on the fixture images: f32 rounding only. Backbone features within
/// 1e-5 of their scale; logits within 2x the logit tolerance, since this random tiny model
/// amplifies rounding (the reference's own f32-vs-f64 spread is 1.3e-4); boxes within the
/// box tolerance.
#[test]
fn folded_batch_norms_match_the_exact_model_on_the_fixture() {
    let f = fixture_set();
    let mut exact = loaded(&f);
    let mut folded = exact.clone();
    exact.backbone = exact.backbone.prepare_batch_norms(false);
    folded.backbone = folded.backbone.prepare_batch_norms(true);
    assert!(folded.backbone.is_folded() && !exact.backbone.is_folded());
    for i in 0..3 {
        let detr = reference::<4>(&f.refs, &format!("img{i}_detr_input"));
        let [_, _, h, w] = detr.dims();
        let input = ModelInput {
            detr,
            valid: vec![(h, w)],
            clip: reference::<4>(&f.refs, &format!("img{i}_clip_input")),
        };
        let (fa, ta) = exact.features_traced(input.clone());
        let (fb, tb) = folded.features_traced(input);
        let scale = ta.c5.clone().abs().max().into_scalar();
        let c5 = max_abs_diff(ta.c5, tb.c5);
        assert!(
            c5 <= 1e-5 * scale.max(1.0),
            "img{i} c5 differs by {c5} (scale {scale})"
        );
        let (pa, pb) = (
            exact.heads(&fa, &exact.trained_classifier()),
            folded.heads(&fb, &folded.trained_classifier()),
        );
        check(
            &format!("img{i} folded hoi logits"),
            pa.hoi_logits,
            pb.hoi_logits,
            2.0 * TOL_LOGITS,
        );
        check(
            &format!("img{i} folded obj logits"),
            pa.obj_logits,
            pb.obj_logits,
            2.0 * TOL_LOGITS,
        );
        check(
            &format!("img{i} folded sub boxes"),
            pa.sub_boxes,
            pb.sub_boxes,
            TOL_BOXES,
        );
        check(
            &format!("img{i} folded obj boxes"),
            pa.obj_boxes,
            pb.obj_boxes,
            TOL_BOXES,
        );
    }
}

#[test]
fn single_images_match_the_reference_layer_by_layer() {
    let f = fixture_set();
    let model = model(&f);
    for i in 0..3 {
        let detr = reference::<4>(&f.refs, &format!("img{i}_detr_input"));
        let [_, _, h, w] = detr.dims();
        let input = ModelInput {
            detr,
            valid: vec![(h, w)],
            clip: reference::<4>(&f.refs, &format!("img{i}_clip_input")),
        };
        let (features, trace) = model.features_traced(input);
        let r3 = |k: &str| reference::<3>(&f.refs, &format!("img{i}_{k}"));
        let c5_diff = max_abs_diff(trace.c5, reference::<4>(&f.refs, &format!("img{i}_c5")));
        eprintln!("img{i} c5: {c5_diff:e}");
        assert!(c5_diff <= TOL_HIDDEN, "img{i} c5 differs by {c5_diff}");
        check(
            &format!("img{i} memory"),
            trace.memory,
            r3("memory"),
            TOL_HIDDEN,
        );
        check(&format!("img{i} h_hs"), trace.h_hs, r3("h_hs"), TOL_HIDDEN);
        check(&format!("img{i} o_hs"), trace.o_hs, r3("o_hs"), TOL_HIDDEN);
        check(
            &format!("img{i} inter_hs"),
            features.inter_hs.clone(),
            r3("inter_hs"),
            TOL_HIDDEN,
        );
        let preds = model.heads(&features, &model.trained_classifier());
        check(
            &format!("img{i} hoi logits"),
            preds.hoi_logits,
            r3("pred_hoi_logits"),
            TOL_LOGITS,
        );
        check(
            &format!("img{i} obj logits"),
            preds.obj_logits,
            r3("pred_obj_logits"),
            TOL_LOGITS,
        );
        check(
            &format!("img{i} sub boxes"),
            preds.sub_boxes,
            r3("pred_sub_boxes"),
            TOL_BOXES,
        );
        check(
            &format!("img{i} obj boxes"),
            preds.obj_boxes,
            r3("pred_obj_boxes"),
            TOL_BOXES,
        );
        let cls = preds.clip_cls.unsqueeze::<3>();
        check(
            &format!("img{i} clip cls"),
            cls,
            reference::<2>(&f.refs, &format!("img{i}_clip_cls")).unsqueeze(),
            TOL_HIDDEN,
        );
        let logits = preds.clip_logits.unsqueeze::<3>();
        check(
            &format!("img{i} clip logits"),
            logits,
            reference::<2>(&f.refs, &format!("img{i}_clip_logits")).unsqueeze(),
            TOL_HIDDEN,
        );
    }
}

/// The reference's padded batch (img0 and img1 zero-padded to the larger of each side)
/// gives each image what the official model gives it alone, at the single-image
/// tolerances. (The official code itself does not: it lets the backbone's padding and the
/// CLIP fusion layers' unmasked attention change the answers; it evaluates single images.)
#[test]
fn padded_batch_gives_each_image_the_reference_answer_alone() {
    let f = fixture_set();
    let model = model(&f);
    let mut valid = Vec::new();
    for i in 0..2 {
        let [_, _, h, w] = reference::<4>(&f.refs, &format!("img{i}_detr_input")).dims();
        valid.push((h, w));
    }
    let input = ModelInput {
        detr: reference::<4>(&f.refs, "batch_detr_input"),
        valid,
        clip: reference::<4>(&f.refs, "batch_clip_input"),
    };
    let preds = model.forward(input);
    for i in 0..2 {
        let r3 = |k: &str| reference::<3>(&f.refs, &format!("img{i}_{k}"));
        let one = |t: &Tensor<B, 3>| t.clone().narrow(0, i, 1);
        let checks = [
            (
                "hoi logits",
                &preds.hoi_logits,
                "pred_hoi_logits",
                TOL_LOGITS,
            ),
            (
                "obj logits",
                &preds.obj_logits,
                "pred_obj_logits",
                TOL_LOGITS,
            ),
            ("sub boxes", &preds.sub_boxes, "pred_sub_boxes", TOL_BOXES),
            ("obj boxes", &preds.obj_boxes, "pred_obj_boxes", TOL_BOXES),
        ];
        for (name, ours, key, tol) in checks {
            check(&format!("batch img{i} {name}"), one(ours), r3(key), tol);
        }
    }
}

/// Zero-pads a `[1, 3, h, w]` image to `[1, 3, ph, pw]` (top-left, as batches are made).
fn pad_to(x: Tensor<B, 4>, ph: usize, pw: usize) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    Tensor::<B, 4>::zeros([1, 3, ph, pw], &Default::default())
        .slice_assign([0..1, 0..3, 0..h, 0..w], x)
}

/// The three fixture images (three sizes) in one batch, padded to a size larger than any
/// of them, and each image alone padded to a larger size still: every image's outputs
/// equal its own unpadded batch-1 outputs up to float rounding (the backbone keeps the
/// padding at zero where convolutions read, and every attention over image memory masks
/// it).
#[test]
fn any_padding_gives_each_image_its_answer_alone() {
    let f = fixture_set();
    let model = model(&f);
    let inputs: Vec<(Tensor<B, 4>, Tensor<B, 4>)> = (0..3)
        .map(|i| {
            (
                reference::<4>(&f.refs, &format!("img{i}_detr_input")),
                reference::<4>(&f.refs, &format!("img{i}_clip_input")),
            )
        })
        .collect();
    let alone: Vec<_> = inputs
        .iter()
        .map(|(detr, clip)| {
            let [_, _, h, w] = detr.dims();
            model.forward(ModelInput {
                detr: detr.clone(),
                valid: vec![(h, w)],
                clip: clip.clone(),
            })
        })
        .collect();
    let sizes: Vec<(usize, usize)> = inputs
        .iter()
        .map(|(d, _)| (d.dims()[2], d.dims()[3]))
        .collect();
    let ph = sizes.iter().map(|s| s.0).max().unwrap() + 37;
    let pw = sizes.iter().map(|s| s.1).max().unwrap() + 70;
    let together = model.forward(ModelInput {
        detr: Tensor::cat(
            inputs
                .iter()
                .map(|(d, _)| pad_to(d.clone(), ph, pw))
                .collect(),
            0,
        ),
        valid: sizes.clone(),
        clip: Tensor::cat(inputs.iter().map(|(_, c)| c.clone()).collect(), 0),
    });
    for (i, one) in alone.iter().enumerate() {
        let pick = |t: &Tensor<B, 3>| t.clone().narrow(0, i, 1);
        let bigger = model.forward(ModelInput {
            detr: pad_to(inputs[i].0.clone(), sizes[i].0 + 64, sizes[i].1 + 5),
            valid: vec![sizes[i]],
            clip: inputs[i].1.clone(),
        });
        for (what, p) in [("batch of three", &together), ("padded alone", &bigger)] {
            let at = |t: &Tensor<B, 3>| {
                if std::ptr::eq(p, &together) {
                    pick(t)
                } else {
                    t.clone()
                }
            };
            check(
                &format!("img{i} {what} hoi logits"),
                at(&p.hoi_logits),
                one.hoi_logits.clone(),
                TOL_PADDED_LOGITS,
            );
            check(
                &format!("img{i} {what} obj logits"),
                at(&p.obj_logits),
                one.obj_logits.clone(),
                TOL_PADDED_LOGITS,
            );
            check(
                &format!("img{i} {what} sub boxes"),
                at(&p.sub_boxes),
                one.sub_boxes.clone(),
                TOL_PADDED_BOXES,
            );
            check(
                &format!("img{i} {what} obj boxes"),
                at(&p.obj_boxes),
                one.obj_boxes.clone(),
                TOL_PADDED_BOXES,
            );
        }
    }
}

/// The fixture image as the model sees it, decoded from its file (JPEG included: the
/// decoder gives Pillow's pixels exactly, checked here against the pixels the reference
/// run used).
fn image_pixels(f: &Fixture, i: usize, name: &str) -> image::RgbImage {
    let bytes = std::fs::read(fixture(&format!("hoiclip/{name}"))).unwrap();
    let decoded = decode(&bytes, DecodeLimits::default()).unwrap();
    if let Ok(data) = f.refs.data(&format!("img{i}_pixels")) {
        let pillow = data.to_vec::<u8>().unwrap();
        assert_eq!(
            decoded.as_raw(),
            &pillow,
            "{name}: decoded pixels differ from Pillow's"
        );
    }
    decoded
}

#[test]
fn preprocessing_reproduces_pillow_and_torchvision() {
    let f = fixture_set();
    let config = preprocess_config(&f);
    for (i, name) in ["img0.png", "img1.png", "img2.jpg"].iter().enumerate() {
        let img = image_pixels(&f, i, name);
        let p = prepare(&img, &config);
        let input = hoiclip::vision::preprocess::batch::<B>(&[&p], &Default::default());
        let detr = reference::<4>(&f.refs, &format!("img{i}_detr_input"));
        assert_eq!(input.detr.dims(), detr.dims(), "img{i} resized size");
        let d1 = max_abs_diff(input.detr, detr);
        let d2 = max_abs_diff(
            input.clip,
            reference::<4>(&f.refs, &format!("img{i}_clip_input")),
        );
        eprintln!("img{i} preprocessing: detr {d1:e}, clip {d2:e}");
        assert!(d1 <= 1e-5 && d2 <= 1e-5, "img{i}: detr {d1}, clip {d2}");
    }
}

#[test]
fn triplets_match_the_reference_end_to_end() {
    let f = fixture_set();
    let model = model(&f);
    let pre = preprocess_config(&f);
    let hoi_object = usizes(&f.json["hoi_object"]);
    let hoi_verb = usizes(&f.json["hoi_verb"]);
    let expected: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("hoiclip/triplets.json")).unwrap())
            .unwrap();
    for (i, case) in expected.iter().enumerate() {
        let img = image_pixels(&f, i, case["image"].as_str().unwrap());
        let p = prepare(&img, &pre);
        let size = p.original;
        let preds = model.forward(hoiclip::vision::preprocess::batch::<B>(
            &[&p],
            &Default::default(),
        ));
        let v = |t: Tensor<B, 3>| t.into_data().to_vec::<f32>().unwrap();
        let (hoi, obj, sub, objb) = (
            v(preds.hoi_logits),
            v(preds.obj_logits),
            v(preds.sub_boxes),
            v(preds.obj_boxes),
        );
        let clip: Vec<f32> = preds.clip_logits.into_data().to_vec().unwrap();
        let p = ImagePredictions {
            hoi_logits: &hoi,
            obj_logits: &obj,
            sub_boxes: &sub,
            obj_boxes: &objb,
            clip_logits: &clip,
            size,
        };
        for (key, tfe) in [("triplets", None), ("triplets_tfe", Some(3))] {
            let config = PostprocessConfig {
                top_k: f.json["top_k"].as_u64().unwrap() as usize,
                tfe_top_k: tfe,
                ..PostprocessConfig::default()
            };
            let ours = triplets(&p, &hoi_object, None, None, &config);
            let theirs = case[key].as_array().unwrap();
            assert_eq!(ours.len(), theirs.len(), "img{i} {key}: count");
            for (a, b) in ours.iter().zip(theirs) {
                assert_eq!(
                    a.query,
                    b["query"].as_u64().unwrap() as usize,
                    "img{i} {key}"
                );
                assert_eq!(a.hoi, b["hoi"].as_u64().unwrap() as usize, "img{i} {key}");
                assert_eq!(hoi_verb[a.hoi], b["verb"].as_u64().unwrap() as usize);
                assert_eq!(hoi_object[a.hoi], b["object"].as_u64().unwrap() as usize);
                assert!(
                    (a.score - b["score"].as_f64().unwrap() as f32).abs() <= 1e-4,
                    "img{i} {key} score"
                );
                for (bx, key2) in [(a.human_box, "human_box"), (a.object_box, "object_box")] {
                    for (x, y) in bx.iter().zip(b[key2].as_array().unwrap()) {
                        assert!(
                            (x - y.as_f64().unwrap() as f32).abs() <= 1e-2,
                            "img{i} {key} {key2}"
                        );
                    }
                }
            }
        }
    }
}

/// V-COCO's post-processing (verb-level triplets, validity matrix, no NMS) on the
/// reference's saved raw outputs equals tests/fixtures/make_vcoco_triplets.py's numpy
/// version: same (query, verb, class, label) in the same order, scores within 1e-5 (f32
/// here, f64 there), boxes within 1e-3 pixels. Zero-scored (invalid) triplets are left
/// out on both sides: they tie, and their order is the sort's.
#[test]
fn vcoco_verb_level_triplets_match_the_reference() {
    use hoiclip::postprocess::{Output, VerbLayout};
    let f = fixture_set();
    let hoi_object = usizes(&f.json["hoi_object"]);
    let hoi_verb = usizes(&f.json["hoi_verb"]);
    let verbs = f.json["num_verb_classes"].as_u64().unwrap() as usize;
    let objects = f.json["num_obj_classes"].as_u64().unwrap() as usize + 1;
    let fixture_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("hoiclip/vcoco_triplets.json")).unwrap(),
    )
    .unwrap();
    // The fixture's official matrix allows more than the classes do (one verb with every
    // object, as V-COCO's agent-only verbs): a matrix derived from the classes fails here.
    let matrix: Vec<Vec<u8>> =
        serde_json::from_value(fixture_json["correct_matrix"].clone()).unwrap();
    let official =
        hoiclip::classifier::official_cells(&matrix, Some, |o| (o < objects - 1).then_some(o));
    let valid =
        hoiclip::classifier::validity(&hoi_verb, &hoi_object, verbs, objects, None, &official);
    let derived = hoiclip::classifier::validity(&hoi_verb, &hoi_object, verbs, objects, None, &[]);
    let mut official_only = 0;
    let mut label_rows = vec![true; objects];
    label_rows[objects - 1] = false;
    let layout = VerbLayout {
        hoi_verb: &hoi_verb,
        verbs,
        valid: &valid,
        objects,
        label_rows: &label_rows,
    };
    let expected = fixture_json["images"].as_array().unwrap();
    let config = PostprocessConfig {
        output: Output::Verbs,
        ..PostprocessConfig::default()
    };
    for (i, case) in expected.iter().enumerate() {
        let v = |key: &str| -> Vec<f32> {
            f.refs
                .data(&format!("img{i}_{key}"))
                .unwrap()
                .to_vec::<f32>()
                .unwrap()
        };
        let (hoi, obj, sub, objb) = (
            v("pred_hoi_logits"),
            v("pred_obj_logits"),
            v("pred_sub_boxes"),
            v("pred_obj_boxes"),
        );
        let clip = vec![0.0; hoi_object.len()];
        let size = (
            case["width"].as_u64().unwrap() as u32,
            case["height"].as_u64().unwrap() as u32,
        );
        let p = ImagePredictions {
            hoi_logits: &hoi,
            obj_logits: &obj,
            sub_boxes: &sub,
            obj_boxes: &objb,
            clip_logits: &clip,
            size,
        };
        let ours: Vec<_> = triplets(&p, &hoi_object, Some(layout), None, &config)
            .into_iter()
            .filter(|t| t.score > 0.0)
            .collect();
        let theirs = case["triplets"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "img{i}: count");
        for (a, b) in ours.iter().zip(theirs) {
            let at = |k: &str| b[k].as_u64().unwrap() as usize;
            assert_eq!(
                (a.query, hoi_verb[a.hoi], a.hoi, a.object_row),
                (at("query"), at("verb"), at("hoi"), Some(at("label"))),
                "img{i}"
            );
            assert!((a.score - b["score"].as_f64().unwrap() as f32).abs() <= 1e-5);
            if !derived[hoi_verb[a.hoi] * objects + at("label")] {
                official_only += 1;
            }
            for (bx, key) in [(a.human_box, "human_box"), (a.object_box, "object_box")] {
                for (x, y) in bx.iter().zip(b[key].as_array().unwrap()) {
                    assert!(
                        (x - y.as_f64().unwrap() as f32).abs() <= 1e-3,
                        "img{i} {key}"
                    );
                }
            }
        }
    }
    assert!(
        official_only > 0,
        "the fixture has no triplet that only the official matrix allows"
    );
}
