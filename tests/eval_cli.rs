//! `hoiclip eval` end to end: the demo model over real photos with a synthetic HICO-DET
//! annotation file, saved predictions scored again, a V-COCO set scored from predictions,
//! and bad files reported by name and field.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixture;
use serde_json::{Value, json};

fn hoiclip(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hoiclip"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run hoiclip");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `hoiclip eval --dataset hico-det --annotations ANNOTATIONS` plus `extra`.
fn hico_eval(annotations: &str, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "eval",
        "--dataset",
        "hico-det",
        "--annotations",
        &annotations,
    ];
    args.extend_from_slice(extra);
    hoiclip(&args)
}

/// `hoiclip eval --dataset v-coco` on the three V-COCO files, plus `extra`.
fn vcoco_eval(files: [&str; 3], extra: &[&str]) -> (bool, String, String) {
    let [annotations, instances, ids] = files;
    let mut args = vec![
        "eval",
        "--dataset",
        "v-coco",
        "--annotations",
        annotations,
        "--instances",
        instances,
        "--ids",
        ids,
    ];
    args.extend_from_slice(extra);
    hoiclip(&args)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hoiclip-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path.display().to_string()
}

const HUMAN: [f64; 4] = [10.0, 10.0, 109.0, 209.0];
const CUP: [f64; 4] = [160.0, 60.0, 189.0, 89.0];

/// The three fixture photos, each with one "hold cup" pair (HICO-DET verb id 37 = hold,
/// COCO category 47 = cup).
fn hico_annotations() -> Value {
    let image = |name: &str| {
        json!({
            "file_name": name,
            "annotations": [{"bbox": HUMAN, "category_id": 1}, {"bbox": CUP, "category_id": 47}],
            "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": 37}],
        })
    };
    json!([image("img0.png"), image("img1.png"), image("img2.jpg")])
}

#[test]
fn the_demo_model_runs_and_its_saved_predictions_score_the_same() {
    let dir = temp_dir("eval-run");
    let annotations = write(&dir, "test_hico.json", &hico_annotations());
    let saved = dir.join("predictions.json").display().to_string();
    let images = fixture("hoiclip").display().to_string();
    let (ok, run, err) = hico_eval(
        &annotations,
        &[
            "--images",
            &images,
            "--batch-size",
            "2",
            "--save-predictions",
            &saved,
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&run).unwrap();
    assert_eq!(report["images"], 3);
    assert_eq!(report["default"]["full"]["classes"], 1);
    let ap = report["default"]["per_class"][0]["ap"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ap));

    let predictions: Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(predictions["images"].as_array().unwrap().len(), 3);
    assert!(predictions["model"].as_str().unwrap().contains("demo"));
    for image in predictions["images"].as_array().unwrap() {
        let n = image["triplets"].as_array().unwrap().len();
        assert!(n > 0 && n <= 100, "{n} triplets");
    }

    let (ok, rescored, err) = hico_eval(&annotations, &["--predictions", &saved, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&rescored).unwrap(), report);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn perfect_saved_predictions_print_a_table_of_ones() {
    let dir = temp_dir("eval-perfect");
    let annotations = write(&dir, "test_hico.json", &hico_annotations());
    // "hold cup": verb index 36, object index 41 in the official order.
    let class = hoiclip::vocab::Pack::hico_det()
        .interactions
        .iter()
        .position(|i| i.verb == 36 && i.object == 41)
        .unwrap();
    let image = |name: &str| json!({"file_name": name, "triplets": [{"human": HUMAN, "object": CUP, "hoi": class, "score": 0.9}]});
    let predictions = write(
        &dir,
        "p.json",
        &json!({"format": "hoiclip-predictions/1", "dataset": "hico-det", "images": [image("img0.png"), image("img1.png"), image("img2.jpg")]}),
    );
    let (ok, table, err) = hico_eval(&annotations, &["--predictions", &predictions]);
    assert!(ok, "{err}");
    // Full and non-rare are 100; rare has no class with ground truth.
    assert!(
        table.contains("protocol official, eleven-point AP, 3 images"),
        "{table}"
    );
    for setting in ["default", "known object"] {
        let row = format!("{setting:<14}{:>10}{:>10}{:>10}\n", "100.00", "-", "100.00");
        assert!(table.contains(&row), "{table}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_files_are_reported_by_name_and_field() {
    let dir = temp_dir("eval-bad");
    let mut broken = hico_annotations();
    broken[1]["hoi_annotation"][0]["subject_id"] = json!(-1);
    let annotations = write(&dir, "test_hico.json", &broken);
    let images = fixture("hoiclip").display().to_string();
    let (ok, _, err) = hico_eval(&annotations, &["--images", &images]);
    assert!(!ok);
    assert!(
        err.contains("test_hico.json: [1].hoi_annotation[0].subject_id"),
        "{err}"
    );

    let (ok, _, err) = hico_eval("/no/such/test_hico.json", &["--images", &images]);
    assert!(!ok);
    assert!(
        err.contains("/no/such/test_hico.json: cannot read"),
        "{err}"
    );

    // An image listed in the annotations but missing from the folder.
    let mut extra = hico_annotations();
    extra[2]["file_name"] = json!("missing.jpg");
    let annotations = write(&dir, "test_hico.json", &extra);
    let (ok, _, err) = hico_eval(&annotations, &["--images", &images]);
    assert!(!ok);
    assert!(err.contains("missing.jpg: cannot read"), "{err}");

    // A zero-shot split that does not exist is refused before any image is run.
    let annotations = write(&dir, "test_hico.json", &hico_annotations());
    let (ok, _, err) = hico_eval(
        &annotations,
        &["--images", &images, "--zero-shot", "rare_frist"],
    );
    assert!(!ok);
    assert!(
        err.contains("--zero-shot: rare_frist: unknown split"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn v_coco_role_ap_from_saved_predictions() {
    let dir = temp_dir("eval-vcoco");
    // One image: person 1 holds cup 2 and stands.
    let coco = json!({
        "images": [{"id": 7, "width": 640, "height": 480, "file_name": "COCO_val2014_000000000007.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 100, 200], "area": 20000, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 47, "bbox": [160, 60, 30, 30], "area": 900, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 47, "name": "cup"}],
    });
    let vcoco = json!([
        {"action_name": "stand", "role_name": ["agent"], "image_id": [7], "ann_id": [1], "label": [1], "role_object_id": [1], "include": []},
        {"action_name": "hold", "role_name": ["agent", "obj"], "image_id": [7], "ann_id": [1], "label": [1], "role_object_id": [1, 2], "include": []},
    ]);
    let instances = write(&dir, "instances.json", &coco);
    let annotations = write(&dir, "vcoco_test.json", &vcoco);
    let ids = dir.join("vcoco_test.ids");
    std::fs::write(&ids, "7\n").unwrap();
    let ids = ids.display().to_string();
    let eval = |extra: &[&str]| vcoco_eval([&annotations, &instances, &ids], extra);
    // V-COCO interactions 0 = hold cup, 13 = stand. Boxes: COCO [x,y,w,h] -> x2 = x+w-1.
    let triplet = |hoi: usize, object: [f64; 4], score: f64| json!({"human": HUMAN, "object": object, "hoi": hoi, "score": score});
    let predictions = write(
        &dir,
        "p.json",
        &json!({"format": "hoiclip-predictions/1", "dataset": "v-coco", "images": [
            {"file_name": "COCO_val2014_000000000007.jpg", "triplets": [triplet(0, CUP, 0.9), triplet(13, [0.0; 4], 0.8)]},
        ]}),
    );
    let (ok, out, err) = eval(&["--predictions", &predictions, "--json"]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    // hold/obj is the only role entry: AP 1 in both scenarios; stand is agent-only.
    assert_eq!(report["scenario_1"].as_array().unwrap().len(), 1);
    assert_eq!(report["role_map_s1"], 1.0);
    assert_eq!(report["role_map_s2"], 1.0);
    assert_eq!(report["mean_agent_ap"], 1.0);

    // The table form names the entry.
    let (ok, table, err) = eval(&["--predictions", &predictions]);
    assert!(ok, "{err}");
    assert!(
        table.contains("hold / obj") && table.contains("100.00"),
        "{table}"
    );

    // The demo model is a HICO-DET model: running it on V-COCO is refused by name.
    let images = fixture("hoiclip").display().to_string();
    let (ok, _, err) = eval(&["--images", &images]);
    assert!(!ok);
    assert!(err.contains("needs a v-coco checkpoint"), "{err}");

    // A predictions file without its `images` list.
    let broken = write(
        &dir,
        "broken.json",
        &json!({"format": "hoiclip-predictions/1", "dataset": "v-coco"}),
    );
    let (ok, _, err) = eval(&["--predictions", &broken]);
    assert!(!ok);
    assert!(err.contains("broken.json: images: missing"), "{err}");

    // Predictions for an image outside the test split.
    let stranger = write(
        &dir,
        "stranger.json",
        &json!({"format": "hoiclip-predictions/1", "dataset": "v-coco", "images": [
            {"file_name": "COCO_val2014_000000000008.jpg", "triplets": []},
        ]}),
    );
    let (ok, _, err) = eval(&["--predictions", &stranger]);
    assert!(!ok);
    assert!(
        err.contains("stranger.json: images[0].file_name: `COCO_val2014_000000000008.jpg` is not a V-COCO test image"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn v_coco_exports_one_detection_per_query() {
    let dir = temp_dir("eval-vcoco-query");
    // Two images, each with person (id 10*i+1) holding cup (id 10*i+2).
    let image =
        |id: u64| json!({"id": id, "width": 640, "height": 480, "file_name": format!("{id}.jpg")});
    let ann = |id: u64, image: u64, category: u64, bbox: [u64; 4]| json!({"id": id, "image_id": image, "category_id": category, "bbox": bbox, "area": 100, "iscrowd": 0});
    let coco = json!({
        "images": [image(1), image(2)],
        "annotations": [
            ann(11, 1, 1, [10, 10, 100, 200]), ann(12, 1, 47, [160, 60, 30, 30]),
            ann(21, 2, 1, [10, 10, 100, 200]), ann(22, 2, 47, [160, 60, 30, 30]),
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 47, "name": "cup"}],
    });
    let vcoco = json!([
        {"action_name": "hold", "role_name": ["agent", "obj"], "image_id": [1, 2], "ann_id": [11, 21], "label": [1, 1], "role_object_id": [11, 21, 12, 22], "include": []},
    ]);
    let instances = write(&dir, "instances.json", &coco);
    let annotations = write(&dir, "vcoco_test.json", &vcoco);
    let ids = dir.join("ids");
    std::fs::write(&ids, "1\n2\n").unwrap();
    let ids = ids.display().to_string();
    // Image 1, query 0: "hold cup" (0.95) and "hold person" (0.94), the same boxes.
    // Image 2, query 0: "hold cup" (0.90).
    let triplet = |hoi: usize, score: f64, query: Option<usize>| json!({"human": HUMAN, "object": CUP, "hoi": hoi, "score": score, "query": query});
    let role_map = |with_query: bool| {
        let q = with_query.then_some(0);
        let predictions = write(
            &dir,
            "p.json",
            &json!({"format": "hoiclip-predictions/1", "dataset": "v-coco", "images": [
                {"file_name": "1.jpg", "triplets": [triplet(0, 0.95, q), triplet(114, 0.94, q)]},
                {"file_name": "2.jpg", "triplets": [triplet(0, 0.90, q)]},
            ]}),
        );
        let (ok, out, err) = vcoco_eval(
            [&annotations, &instances, &ids],
            &["--predictions", &predictions, "--json"],
        );
        assert!(ok, "{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        report["role_map_s2"].as_f64().unwrap()
    };
    // Per query: image 1 gives one detection (0.95, TP), image 2 one (0.90, TP): AP 1.
    assert_eq!(role_map(true), 1.0);
    // Per triplet: 0.95 TP, 0.94 FP (person already covered), 0.90 TP: recall .5 .5 1,
    // precision 1 .5 2/3 -> all-point AP = .5 * 1 + .5 * 2/3.
    assert!((role_map(false) - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-9);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn v_coco_role_boxes_follow_the_object_label_as_gen_vlkt_exports_them() {
    let dir = temp_dir("eval-vcoco-role-box");
    // Person 1 holds cup 2.
    let coco = json!({
        "images": [{"id": 7, "width": 640, "height": 480, "file_name": "7.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 100, 200], "area": 20000, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 47, "bbox": [160, 60, 30, 30], "area": 900, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 47, "name": "cup"}],
    });
    let vcoco = json!([
        {"action_name": "hold", "role_name": ["agent", "obj"], "image_id": [7], "ann_id": [1], "label": [1], "role_object_id": [1, 2], "include": []},
    ]);
    let instances = write(&dir, "instances.json", &coco);
    let annotations = write(&dir, "vcoco_test.json", &vcoco);
    let ids = dir.join("ids");
    std::fs::write(&ids, "7\n").unwrap();
    let ids = ids.display().to_string();
    let role_map = |label: Option<&str>| {
        let predictions = write(
            &dir,
            "p.json",
            &json!({"format": "hoiclip-predictions/1", "dataset": "v-coco", "images": [
                {"file_name": "7.jpg", "triplets": [
                    {"human": HUMAN, "object": CUP, "hoi": 0, "score": 0.9, "query": 0, "object_label": label},
                ]},
            ]}),
        );
        let (ok, out, err) = vcoco_eval(
            [&annotations, &instances, &ids],
            &["--predictions", &predictions, "--json"],
        );
        assert!(ok, "{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        (
            report["role_map_s1"].as_f64().unwrap(),
            report["role_map_s2"].as_f64().unwrap(),
        )
    };
    // Labelled with an object (or unlabelled, with an object interaction): the query's
    // object box is the role box, and it matches the cup.
    assert_eq!(role_map(Some("cup")), (1.0, 1.0));
    assert_eq!(role_map(None), (1.0, 1.0));
    // Labelled "nothing" (the "no object" role): the role box is NaN, "no role object",
    // which is wrong for a person holding a cup in both scenarios.
    assert_eq!(role_map(Some("nothing")), (0.0, 0.0));
    std::fs::remove_dir_all(&dir).ok();
}
