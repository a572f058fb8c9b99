//! The evaluator against hand-made ground truth.

use super::*;
use serde_json::json;

const NAMES: [&str; 3] = ["vcoco_test.json", "instances.json", "vcoco_test.ids"];
const IDS: &str = "1\n2\n3\n";
// GT boxes after x2 = x + w - 1, y2 = y + h - 1 (see coco()).
const P101: [f64; 4] = [10.0, 10.0, 109.0, 209.0];
const KNIFE: [f64; 4] = [120.0, 50.0, 139.0, 79.0];
const CAKE: [f64; 4] = [150.0, 100.0, 209.0, 139.0];
const P104: [f64; 4] = [300.0, 10.0, 399.0, 209.0];
const P201: [f64; 4] = [50.0, 50.0, 149.0, 149.0];
const CUP: [f64; 4] = [160.0, 60.0, 189.0, 89.0];
const P203: [f64; 4] = [300.0, 50.0, 399.0, 149.0];
const APPLE: [f64; 4] = [420.0, 60.0, 449.0, 89.0];
const P301: [f64; 4] = [10.0, 10.0, 59.0, 59.0];
const ZERO: [f64; 4] = [0.0; 4];

fn ann(id: u64, image: u64, category: u64, [x, y, w, h]: [u32; 4]) -> Value {
    json!({"id": id, "image_id": image, "category_id": category, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
}

/// Image 1: person 101 cuts cake 103 with knife 102 and points (no instr); person 104 is not in V-COCO.
/// Image 2: person 201 stands and holds cup 202; person 203 cuts apple 204, instr missing.
/// Image 3: its only person, 301, has `ignore: 1`, so the image has no GT person.
fn coco() -> Value {
    let mut ignored = ann(301, 3, 1, [10, 10, 50, 50]);
    ignored["ignore"] = json!(1);
    let image = |id: u64| json!({"id": id, "width": 640, "height": 480, "file_name": format!("img{id}.jpg")});
    json!({
        "images": [image(1), image(2), image(3)],
        "annotations": [
            ann(101, 1, 1, [10, 10, 100, 200]), ann(102, 1, 49, [120, 50, 20, 30]),
            ann(103, 1, 61, [150, 100, 60, 40]), ann(104, 1, 1, [300, 10, 100, 200]),
            ann(201, 2, 1, [50, 50, 100, 100]), ann(202, 2, 47, [160, 60, 30, 30]),
            ann(203, 2, 1, [300, 50, 100, 100]), ann(204, 2, 53, [420, 60, 30, 30]),
            ignored,
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 47, "name": "cup"}, {"id": 49, "name": "knife"},
                       {"id": 53, "name": "apple"}, {"id": 61, "name": "cake"}],
    })
}

/// Persons (ann_id) 101, 201, 203, 301. npos: stand 2, hold 1, cut 2, point 1, kick 0.
fn vcoco() -> Value {
    let action = |name: &str, roles: &[&str], label: [u8; 4], objects: &[[u64; 4]]| {
        let mut role_object_id = vec![101, 201, 203, 301];
        role_object_id.extend(objects.iter().flatten());
        json!({"action_name": name, "role_name": roles, "image_id": [1, 2, 2, 3], "ann_id": [101, 201, 203, 301],
               "label": label, "role_object_id": role_object_id, "include": []})
    };
    let cut_objects = [[102, 0, 0, 0], [103, 0, 204, 0]];
    json!([
        action("stand", &["agent"], [1, 1, 0, 0], &[]),
        // 301 holds too, but `ignore: 1` drops it from the GT: hold npos stays 1.
        action("hold", &["agent", "obj"], [0, 1, 0, 1], &[[0, 202, 0, 0]]),
        action(
            "cut",
            &["agent", "instr", "obj"],
            [1, 0, 1, 0],
            &cut_objects
        ),
        action("point", &["agent", "instr"], [1, 0, 0, 0], &[[0, 0, 0, 0]]),
        action("kick", &["agent", "obj"], [0, 0, 0, 0], &[[0, 0, 0, 0]]),
    ])
}

fn gt() -> VcocoGroundTruth {
    let (vcoco, coco) = (vcoco().to_string(), coco().to_string());
    VcocoGroundTruth::from_parts(&vcoco, &coco, IDS, NAMES).expect("fixture parses")
}

/// One detection of `action`; its agent score and every listed role get `score`.
fn det(
    image_id: u64,
    person: [f64; 4],
    action: &str,
    score: f64,
    roles: &[(&str, [f64; 4])],
) -> VcocoDetection {
    let agent_scores = HashMap::from([(action.to_string(), score)]);
    let role = |&(role, bbox): &(&str, [f64; 4])| ((action.into(), role.into()), (bbox, score));
    let role_boxes = roles.iter().map(role).collect();
    VcocoDetection {
        image_id,
        person_box: person,
        agent_scores,
        role_boxes,
    }
}

/// [agent AP, Scenario 1 AP, Scenario 2 AP] of (action, role), and the report.
fn aps(dets: &[VcocoDetection], action: &str, role: &str) -> ([f64; 3], VcocoReport) {
    let report = evaluate(&gt(), dets);
    let agent = report
        .agent_ap
        .iter()
        .find(|(a, _)| a == action)
        .expect("action")
        .1;
    let role_ap = |entries: &[RoleAp]| {
        let entry = entries
            .iter()
            .find(|e| e.action == action && e.role == role);
        entry.expect("entry").ap
    };
    (
        [
            agent,
            role_ap(&report.scenario_1),
            role_ap(&report.scenario_2),
        ],
        report,
    )
}

fn assert_close<const N: usize>(actual: [f64; N], expected: [f64; N]) {
    let close = actual
        .iter()
        .zip(&expected)
        .all(|(a, e)| (a - e).abs() < 1e-12);
    assert!(close, "{actual:?} != {expected:?}");
}

fn perfect(point_instr: [f64; 4]) -> Vec<VcocoDetection> {
    vec![
        det(1, P101, "stand", 0.9, &[]),
        det(2, P201, "stand", 0.9, &[]),
        det(2, P201, "hold", 0.9, &[("obj", CUP)]),
        det(1, P101, "cut", 0.9, &[("instr", KNIFE), ("obj", CAKE)]),
        det(2, P203, "cut", 0.9, &[("instr", ZERO), ("obj", APPLE)]),
        det(1, P101, "point", 0.9, &[("instr", point_instr)]),
    ]
}

#[test]
fn perfect_detections_score_one() {
    let dets = perfect(ZERO);
    for (action, role) in [
        ("hold", "obj"),
        ("cut", "instr"),
        ("cut", "obj"),
        ("point", "instr"),
    ] {
        assert_close(aps(&dets, action, role).0, [1.0; 3]);
    }
    let (kick, report) = aps(&dets, "kick", "obj");
    assert!(kick.iter().all(|ap| ap.is_nan()), "npos = 0 gives NaN");
    assert_eq!(report.agent_ap[0].0, "stand");
    assert_close([report.agent_ap[0].1], [1.0]);
    assert_eq!((report.scenario_1.len(), report.scenario_2.len()), (5, 5));
    // nansum / 5 actions: the NaN of kick counts as 0 there, as in vsrl_eval ...
    assert_close([report.mean_agent_ap], [4.0 / 5.0]);
    // ... while kick/obj (NaN) is left out of the role means.
    let maps = [
        report.role_map_s1,
        report.role_map_s2,
        report.role_map_s1_no_point,
        report.role_map_s2_no_point,
    ];
    assert_close(maps, [1.0; 4]);
}

#[test]
fn duplicate_detection_is_a_false_positive() {
    // cut, npos 2: 0.9 TP (101), 0.8 FP (101 again), 0.7 TP (203).
    // rec = [.5, .5, 1], prec = [1, .5, 2/3]; envelope at rec .5 -> 1, at rec 1 -> 2/3.
    // AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    let dets = [
        det(1, P101, "cut", 0.9, &[("obj", CAKE)]),
        det(1, P101, "cut", 0.8, &[("obj", CAKE)]),
        det(2, P203, "cut", 0.7, &[("obj", APPLE)]),
    ];
    let (cut, report) = aps(&dets, "cut", "obj");
    assert_close(cut, [5.0 / 6.0; 3]);
    assert_eq!(report.scenario_1[2].detections, 3);
}

#[test]
fn person_iou_threshold_uses_plus_one_pixel() {
    // GT 201 = [50,50,149,149] is 100x100 = 10000 px with the +1. A box [50,50,x2,149] lies
    // inside it, so IoU = (x2 - 50 + 1) * 100 / 10000:
    //   x2 = 100 -> 5100/10000 = 0.51 (TP); x2 = 98 -> 4900/10000 = 0.49 (FP);
    //   x2 = 99 -> 5000/10000 = 0.50 exactly (TP; without the +1: 49*99/(99*99) = 0.4949, FP).
    for (x2, expected) in [(100.0, 1.0), (99.0, 1.0), (98.0, 0.0)] {
        let dets = [det(
            2,
            [50.0, 50.0, x2, 149.0],
            "hold",
            1.0,
            &[("obj", CUP)],
        )];
        assert_close(aps(&dets, "hold", "obj").0, [expected; 3]);
    }
}

#[test]
fn missing_gt_role_object() {
    // point: person 101, instr role_object_id 0, npos 1. S1 wants an all-0 or all-NaN box, S2 takes any.
    for (pred, s1) in [(KNIFE, 0.0), (ZERO, 1.0), ([f64::NAN; 4], 1.0)] {
        let dets = [det(1, P101, "point", 0.9, &[("instr", pred)])];
        assert_close(aps(&dets, "point", "instr").0, [1.0, s1, 1.0]);
    }
}

#[test]
fn detection_on_ignored_person_is_skipped() {
    // 104 is a GT person without V-COCO labels: the 0.95 detection is neither TP nor FP, so AP stays 1.
    let dets = [
        det(1, P104, "hold", 0.95, &[("obj", CUP)]),
        det(2, P201, "hold", 0.5, &[("obj", CUP)]),
    ];
    let (hold, report) = aps(&dets, "hold", "obj");
    assert_close(hold, [1.0; 3]);
    assert_eq!(report.scenario_1[0].detections, 1);
}

#[test]
fn image_without_gt_person_gives_false_positive() {
    // Image 3 only has an `ignore: 1` person. Pooled: 0.9 FP, 0.5 TP; rec = [0, 1], prec = [0, .5].
    // Envelope 0.5 over rec 0..1 -> AP = 0.5.
    let dets = [
        det(3, P301, "hold", 0.9, &[("obj", CUP)]),
        det(2, P201, "hold", 0.5, &[("obj", CUP)]),
    ];
    assert_close(aps(&dets, "hold", "obj").0, [0.5; 3]);
}

#[test]
fn wrong_role_box_leaves_person_uncovered() {
    // cut/obj, npos 2: 0.9 knife box on 101 (FP, 101 stays uncovered), 0.8 cake on 101 (TP), 0.7 apple on 203 (TP).
    // rec = [0, .5, 1], prec = [0, .5, 2/3]; envelope 2/3 everywhere -> AP = 0.5*2/3 + 0.5*2/3 = 2/3.
    // The agent AP sees TP, FP (duplicate), TP -> 5/6 as in duplicate_detection_is_a_false_positive.
    let dets = [
        det(1, P101, "cut", 0.9, &[("obj", KNIFE)]),
        det(1, P101, "cut", 0.8, &[("obj", CAKE)]),
        det(2, P203, "cut", 0.7, &[("obj", APPLE)]),
    ];
    assert_close(
        aps(&dets, "cut", "obj").0,
        [5.0 / 6.0, 2.0 / 3.0, 2.0 / 3.0],
    );
}

#[test]
fn means_with_and_without_point() {
    // A knife box for point's missing instr: S1 entries hold 1, cut/instr 1, cut/obj 1, point 0, kick NaN
    // -> 3/4 with point, 3/3 without. S2 accepts the knife box: 1 and 1.
    let report = evaluate(&gt(), &perfect(KNIFE));
    let maps = [
        report.role_map_s1,
        report.role_map_s1_no_point,
        report.role_map_s2,
        report.role_map_s2_no_point,
    ];
    assert_close(maps, [0.75, 1.0, 1.0, 1.0]);
}

#[test]
fn no_detections_give_zero_and_npos_zero_gives_nan() {
    let (hold, report) = aps(&[], "hold", "obj");
    assert_close(hold, [0.0; 3]);
    assert!(report.scenario_1[4].ap.is_nan() && report.scenario_1[4].npos == 0);
    assert_close([report.role_map_s1, report.mean_agent_ap], [0.0; 2]);
}

#[test]
fn equal_scores_keep_split_order() {
    // Same score: image 2 (TP) comes before image 3 (FP) in the split, so rec = [1, 1] -> AP 1.
    let dets = [
        det(3, P301, "hold", 0.5, &[]),
        det(2, P201, "hold", 0.5, &[]),
    ];
    assert_close([aps(&dets, "hold", "obj").0[0]], [1.0]);
}

#[test]
fn gt_boxes_are_inclusive_clipped_and_validated() {
    let ann = |bbox, area| Annotation {
        id: 1,
        category: 1,
        bbox,
        area,
        ignore: false,
    };
    let size = (640.0, 480.0);
    // x2 = 600 + 80 - 1 = 679, clipped to 639; y2 = 10 + 20 - 1 = 29.
    let clipped = Some([600.0, 10.0, 639.0, 29.0]);
    assert_eq!(
        clean_box(&ann([600.0, 10.0, 80.0, 20.0], 1600.0), size),
        clipped
    );
    // w = 1 gives x2 == x1, and area 0: both dropped.
    assert_eq!(clean_box(&ann([5.0, 5.0, 1.0, 20.0], 20.0), size), None);
    assert_eq!(clean_box(&ann([5.0, 5.0, 10.0, 20.0], 0.0), size), None);
}

#[test]
fn load_reads_files_and_maps_names() {
    let dir = std::env::temp_dir().join(format!("vcoco-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let paths = NAMES.map(|n| dir.join(n));
    for (path, text) in paths
        .iter()
        .zip([vcoco().to_string(), coco().to_string(), IDS.into()])
    {
        std::fs::write(path, text).expect("write");
    }
    let gt = VcocoGroundTruth::load(&paths[0], &paths[1], &paths[2]).expect("load");
    assert_eq!(
        (gt.image_id("img2.jpg"), gt.image_id("nope.jpg")),
        (Some(2), None)
    );
    let roles = vec!["agent".to_string(), "instr".into(), "obj".into()];
    assert_eq!(gt.actions()[2], ("cut".to_string(), roles));
    let missing = VcocoGroundTruth::load(&dir.join("absent.json"), &paths[1], &paths[2]);
    assert!(
        matches!(missing, Err(EvalError::Io { ref path, .. }) if path.ends_with("absent.json"))
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

fn parse_error(vcoco: Value, coco: Value, ids: &str) -> String {
    match VcocoGroundTruth::from_parts(&vcoco.to_string(), &coco.to_string(), ids, NAMES) {
        Err(e @ EvalError::Invalid { .. }) => e.to_string(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn malformed_files_name_file_and_field() {
    let mut v = vcoco();
    v[1].as_object_mut().expect("object").remove("label");
    assert_eq!(
        parse_error(v, coco(), IDS),
        "vcoco_test.json: [1].label: missing"
    );

    let mut v = vcoco();
    v[2]["role_object_id"].as_array_mut().expect("list").pop();
    let expected =
        "vcoco_test.json: [2].role_object_id: expected 3*N = 12 entries (N = 4), found 11";
    assert_eq!(parse_error(v, coco(), IDS), expected);

    let mut v = vcoco();
    v[0]["label"][1] = json!(2);
    assert_eq!(
        parse_error(v, coco(), IDS),
        "vcoco_test.json: [0].label[1]: expected 0 or 1, found 2"
    );

    let err = parse_error(vcoco(), coco(), "1\nx2\n3\n");
    assert_eq!(
        err,
        "vcoco_test.ids: line 2: expected an image id, found \"x2\""
    );
    assert!(
        parse_error(vcoco(), coco(), "1\n2\n").starts_with("vcoco_test.ids: image ids: image 3")
    );

    let mut c = coco();
    c["annotations"][0]
        .as_object_mut()
        .expect("object")
        .remove("bbox");
    assert_eq!(
        parse_error(vcoco(), c, IDS),
        "instances.json: annotations[0].bbox: missing"
    );

    let mut v = vcoco();
    v[1]["role_object_id"][5] = json!(999); // hold's obj of person 201
    assert!(
        parse_error(v, coco(), IDS)
            .starts_with("vcoco_test.json: [1].role_object_id: role object 999")
    );
}
