//! HICO-DET evaluation on tiny synthetic annotation sets whose APs are worked out by hand
//! in the comments.
//!
//! Classes used (official order, models/vocab/hico-det.json):
//! - 0: board airplane (verb id 5, COCO object 5), non-rare
//! - 10: carry bicycle (verb id 9, COCO object 2), non-rare
//! - 22: wash bicycle (verb id 112, COCO object 2), rare, and unseen in `rare_first`
//! - 1: direct airplane (verb id 18), no ground truth anywhere below

use hoiclip::eval::ap::ApMethod;
use hoiclip::eval::hico::{
    HicoAnnotations, HicoOptions, HicoReport, HicoVocabulary, NoDetectionRule, Protocol, evaluate,
};
use hoiclip::eval::predictions::{ImagePredictions, PredictedTriplet, PredictionFile};
use serde_json::json;

const HUMAN: [f64; 4] = [0.0, 0.0, 99.0, 99.0];
const PLANE: [f64; 4] = [200.0, 0.0, 299.0, 99.0];
const BIKE: [f64; 4] = [100.0, 100.0, 199.0, 199.0];

/// One image: its boxes (human first) and `(verb id, object box index)` pairs.
fn image(name: &str, object: [f64; 4], coco: u64, verbs: &[u64]) -> serde_json::Value {
    json!({
        "file_name": name,
        "annotations": [
            {"bbox": HUMAN, "category_id": 1},
            {"bbox": object, "category_id": coco},
        ],
        "hoi_annotation": verbs.iter().map(|v| json!({"subject_id": 0, "object_id": 1, "category_id": v})).collect::<Vec<_>>(),
    })
}

/// a.jpg: board airplane. b.jpg: carry + wash bicycle. c.jpg: board airplane.
fn annotations() -> HicoAnnotations {
    let text = json!([
        image("a.jpg", PLANE, 5, &[5]),
        image("b.jpg", BIKE, 2, &[9, 112]),
        image("c.jpg", PLANE, 5, &[5]),
    ])
    .to_string();
    HicoAnnotations::parse(&text, "test_hico.json", &HicoVocabulary::official()).unwrap()
}

fn triplet(hoi: usize, human: [f64; 4], object: [f64; 4], score: f64) -> PredictedTriplet {
    PredictedTriplet {
        human,
        object,
        hoi,
        score,
        query: None,
        object_label: None,
    }
}

fn predictions(per_image: &[(&str, Vec<PredictedTriplet>)]) -> PredictionFile {
    let mut file = PredictionFile::new("hico-det", None);
    file.images = per_image
        .iter()
        .map(|(name, triplets)| ImagePredictions {
            file_name: name.to_string(),
            triplets: triplets.clone(),
        })
        .collect();
    file
}

fn try_run(
    p: &PredictionFile,
    protocol: Protocol,
    ap: ApMethod,
    zero_shot: Option<&str>,
) -> Result<HicoReport, hoiclip::eval::EvalError> {
    evaluate(
        &annotations(),
        p,
        &HicoVocabulary::official(),
        &HicoOptions {
            protocol,
            ap,
            no_detection: NoDetectionRule::GenVlkt,
            zero_shot: zero_shot.map(str::to_string),
        },
        "p.json",
    )
}

fn run(
    p: &PredictionFile,
    protocol: Protocol,
    ap: ApMethod,
    zero_shot: Option<&str>,
) -> HicoReport {
    try_run(p, protocol, ap, zero_shot).unwrap()
}

fn official(p: &PredictionFile) -> HicoReport {
    run(p, Protocol::Official, ApMethod::ElevenPoint, None)
}

fn class_ap(report: &HicoReport, class: usize) -> f64 {
    report
        .default
        .per_class
        .iter()
        .find(|c| c.class == class)
        .unwrap_or_else(|| panic!("class {class} not evaluated"))
        .ap
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

fn perfect() -> PredictionFile {
    predictions(&[
        ("a.jpg", vec![triplet(0, HUMAN, PLANE, 0.9)]),
        (
            "b.jpg",
            vec![triplet(10, HUMAN, BIKE, 0.8), triplet(22, HUMAN, BIKE, 0.7)],
        ),
        ("c.jpg", vec![triplet(0, HUMAN, PLANE, 0.6)]),
    ])
}

#[test]
fn perfect_predictions_score_one_everywhere() {
    for ap in [ApMethod::ElevenPoint, ApMethod::AllPoint] {
        for protocol in [Protocol::Official, Protocol::GenVlkt] {
            let r = run(&perfect(), protocol, ap, None);
            for setting in [&r.default, &r.known_object] {
                // Three classes have ground truth: 0 and 10 (non-rare), 22 (rare).
                assert_eq!(setting.full.classes, 3);
                assert_eq!(setting.rare.classes, 1);
                assert_eq!(setting.non_rare.classes, 2);
                for m in [setting.full, setting.rare, setting.non_rare] {
                    close(m.map.unwrap(), 1.0);
                }
            }
        }
    }
}

#[test]
fn a_duplicate_detection_is_a_false_positive() {
    // Class 0 has 2 pairs (a.jpg, c.jpg). Sorted: a (TP), a again (FP: pair used), c (TP).
    // recall .5 .5 1, precision 1 .5 2/3.
    let mut p = perfect();
    p.images[0].triplets.push(triplet(0, HUMAN, PLANE, 0.85));
    let r = official(&p);
    // 11-point: t = 0..0.5 (6 thresholds) reach precision 1; t = 0.6..1 (5) reach 2/3.
    close(class_ap(&r, 0), (6.0 + 5.0 * 2.0 / 3.0) / 11.0);
    // All-point: 0.5 * 1 + 0.5 * 2/3.
    let r = run(&p, Protocol::Official, ApMethod::AllPoint, None);
    close(class_ap(&r, 0), 0.5 + 0.5 * 2.0 / 3.0);
}

#[test]
fn a_wrong_class_is_no_hit_and_classes_without_ground_truth_are_not_averaged() {
    // a.jpg's pair predicted as "direct airplane" (class 1): class 0 then has only c.jpg's
    // detection: recall .5 at precision 1 -> 11-point: t = 0..0.5 -> 6/11.
    let mut p = perfect();
    p.images[0].triplets[0].hoi = 1;
    let r = official(&p);
    close(class_ap(&r, 0), 6.0 / 11.0);
    assert!(r.default.per_class.iter().all(|c| c.class != 1));
    // Full = mean(6/11, 1, 1) over the three classes with ground truth.
    close(r.default.full.map.unwrap(), (6.0 / 11.0 + 2.0) / 3.0);
}

#[test]
fn a_box_at_iou_0_49_misses_and_at_0_51_hits() {
    // Human GT [0,0,99,99] has 100x100 pixels (inclusive). A box [0,0,99,y2] inside it
    // overlaps by 100*(y2+1) pixels: IoU = (y2+1)/100. y2 = 48 -> 0.49; y2 = 50 -> 0.51.
    for (y2, hit) in [(48.0, false), (50.0, true)] {
        let mut p = perfect();
        p.images[2].triplets[0].human = [0.0, 0.0, 99.0, y2];
        let r = official(&p);
        // Hit: AP 1. Miss: a.jpg TP (.9), c.jpg FP (.6): recall .5 at precision 1 -> 6/11.
        close(class_ap(&r, 0), if hit { 1.0 } else { 6.0 / 11.0 });
    }
}

#[test]
fn the_official_route_rounds_boxes_and_gen_vlkt_does_not() {
    // y2 = 48.6: official rounds to 49 -> IoU exactly 0.50 -> hit;
    // GEN-VLKT keeps 48.6 -> IoU 0.496 -> miss (AP 6/11 as above).
    let mut p = perfect();
    p.images[2].triplets[0].human = [0.0, 0.0, 99.0, 48.6];
    close(class_ap(&official(&p), 0), 1.0);
    let python = run(&p, Protocol::GenVlkt, ApMethod::ElevenPoint, None);
    close(class_ap(&python, 0), 6.0 / 11.0);
}

#[test]
fn rare_and_non_rare_average_their_own_classes() {
    // Drop the rare class's detection: AP(22) = 0, AP(0) = AP(10) = 1.
    let mut p = perfect();
    p.images[1].triplets.pop();
    let r = official(&p);
    close(r.default.rare.map.unwrap(), 0.0);
    close(r.default.non_rare.map.unwrap(), 1.0);
    close(r.default.full.map.unwrap(), 2.0 / 3.0);
}

#[test]
fn hoiclip_rule_leaves_undetected_classes_out_of_the_subset_means_only() {
    // As above: the rare class 22 has ground truth and no detection.
    let mut p = perfect();
    p.images[1].triplets.pop();
    let r = evaluate(
        &annotations(),
        &p,
        &HicoVocabulary::official(),
        &HicoOptions {
            protocol: Protocol::Official,
            ap: ApMethod::ElevenPoint,
            no_detection: NoDetectionRule::Hoiclip,
            zero_shot: None,
        },
        "p.json",
    )
    .unwrap();
    // HOICLIP's evaluator: the rare mean has no class left; Full still counts it as 0.
    assert_eq!((r.default.rare.map, r.default.rare.classes), (None, 0));
    close(r.default.non_rare.map.unwrap(), 1.0);
    close(r.default.full.map.unwrap(), 2.0 / 3.0);
}

#[test]
fn known_object_ignores_detections_in_images_without_the_object() {
    // A confident "board airplane" in b.jpg, which has a bicycle and no airplane.
    // Default: sorted b (.95, FP), a (.9, TP), c (.6, TP); npos 2 -> recall 0 .5 1,
    // precision 0 .5 2/3 -> every threshold's best precision is 2/3 -> AP 2/3.
    // Known-object: b.jpg has no airplane pair, so the detection is not counted -> AP 1.
    let mut p = perfect();
    p.images[1].triplets.push(triplet(0, HUMAN, BIKE, 0.95));
    let r = official(&p);
    close(class_ap(&r, 0), 2.0 / 3.0);
    let ko = r
        .known_object
        .per_class
        .iter()
        .find(|c| c.class == 0)
        .unwrap();
    close(ko.ap, 1.0);
    assert_eq!(ko.detections, 2);
}

#[test]
fn zero_shot_splits_report_unseen_and_seen() {
    // rare_first lists class 22 as unseen: unseen = {22}, seen = {0, 10}.
    let mut p = perfect();
    p.images[1].triplets.pop();
    let r = run(
        &p,
        Protocol::Official,
        ApMethod::ElevenPoint,
        Some("rare_first"),
    );
    let (unseen, seen) = (r.default.unseen.unwrap(), r.default.seen.unwrap());
    assert_eq!((unseen.classes, seen.classes), (1, 2));
    close(unseen.map.unwrap(), 0.0);
    close(seen.map.unwrap(), 1.0);
    let table = r.to_string();
    assert!(
        table.contains("unseen") && table.contains("rare_first"),
        "{table}"
    );

    let unknown = try_run(
        &p,
        Protocol::Official,
        ApMethod::ElevenPoint,
        Some("no_such_split"),
    );
    assert!(unknown.unwrap_err().to_string().contains("unseen_verb"));
}

#[test]
fn saved_predictions_round_trip_through_the_file_format() {
    let p = perfect();
    let dir = std::env::temp_dir().join(format!("hoiclip-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("predictions.json");
    p.save(&path).unwrap();
    let back = PredictionFile::load(&path, "hico-det", 600).unwrap();
    assert_eq!(back, p);
    // Asking for another dataset's predictions is an error naming the field.
    let wrong = PredictionFile::load(&path, "v-coco", 263)
        .unwrap_err()
        .to_string();
    assert!(wrong.contains("dataset"), "{wrong}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Parses `value` as test_hico.json and returns the error text.
fn annotation_error(value: serde_json::Value) -> String {
    HicoAnnotations::parse(
        &value.to_string(),
        "test_hico.json",
        &HicoVocabulary::official(),
    )
    .unwrap_err()
    .to_string()
}

#[test]
fn malformed_annotations_name_the_file_and_the_field() {
    let mut missing = image("a.jpg", PLANE, 5, &[5]);
    missing.as_object_mut().unwrap().remove("hoi_annotation");
    let e = annotation_error(json!([missing]));
    assert!(
        e.starts_with("test_hico.json: [0].hoi_annotation: missing"),
        "{e}"
    );

    let mut out_of_range = image("a.jpg", PLANE, 5, &[5]);
    out_of_range["hoi_annotation"][0]["object_id"] = json!(7);
    let e = annotation_error(json!([out_of_range]));
    assert!(
        e.contains("[0].hoi_annotation[0].object_id: 7 is out of range"),
        "{e}"
    );

    // Verb 9 (carry) with an airplane is not a HICO-DET interaction.
    let e = annotation_error(json!([image("a.jpg", PLANE, 5, &[9])]));
    assert!(e.contains("[0].hoi_annotation[0].category_id"), "{e}");

    let e = annotation_error(json!([image("a.jpg", [10.0, 0.0, 5.0, 5.0], 5, &[5])]));
    assert!(e.contains("[0].annotations[1].bbox: x2 < x1"), "{e}");

    let e = annotation_error(json!([image("a.jpg", PLANE, 12, &[5])]));
    assert!(
        e.contains("[0].annotations[1].category_id: 12 is not one of the 80"),
        "{e}"
    );

    let e = annotation_error(json!({"images": []}));
    assert!(e.contains("expected a list"), "{e}");

    let e = HicoAnnotations::parse("[{", "test_hico.json", &HicoVocabulary::official())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("test_hico.json: line 1 column"), "{e}");
}

#[test]
fn malformed_predictions_name_the_file_and_the_field() {
    let mut value = serde_json::to_value(perfect()).unwrap();
    value["images"][1]["triplets"][0]["hoi"] = json!(600);
    let e = PredictionFile::parse(&value.to_string(), "p.json", "hico-det", 600)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("p.json: images[1].triplets[0].hoi: 600 is not"),
        "{e}"
    );

    let mut value = serde_json::to_value(perfect()).unwrap();
    value["images"][0]["triplets"][0]["score"] = json!("high");
    let e = PredictionFile::parse(&value.to_string(), "p.json", "hico-det", 600)
        .unwrap_err()
        .to_string();
    assert!(e.contains("images[0].triplets[0].score"), "{e}");

    // An image the annotations do not have.
    let p = predictions(&[("zzz.jpg", vec![])]);
    let e = try_run(&p, Protocol::Official, ApMethod::ElevenPoint, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("p.json: images[0].file_name: `zzz.jpg` is not in the annotations"),
        "{e}"
    );
}
