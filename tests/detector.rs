//! The detector end to end: the demo model, native conversion, config inference, the CLI.

mod common;

use std::process::Command;

use common::{B, fixture, max_abs_diff, reference};
use hoiclip::detector::{DetectOptions, Detector};
use hoiclip::model::hoiclip::{self as detector_model, HoiclipConfig, ModelInput};
use hoiclip::model::weights::Checkpoint;
use hoiclip::vision::{DecodeLimits, decode};

fn fixture_config() -> HoiclipConfig {
    serde_json::from_str(&std::fs::read_to_string(fixture("hoiclip/config.json")).unwrap()).unwrap()
}

fn photo(name: &str) -> image::RgbImage {
    decode(
        &std::fs::read(fixture(&format!("hoiclip/{name}"))).unwrap(),
        DecodeLimits::default(),
    )
    .unwrap()
}

#[test]
fn demo_model_detects_labelled_triplets_inside_the_image() {
    let device = Default::default();
    let detector = Detector::<B>::demo(&device).unwrap();
    assert!(!detector.info().trained);
    assert_eq!(detector.info().name, "hoiclip-demo");
    let images = [photo("img0.png"), photo("img1.png")];
    let options = DetectOptions {
        max_results: 10,
        ..Default::default()
    };
    let results = detector.detect(&images, &options).unwrap();
    assert_eq!(results.len(), 2);
    for (img, r) in images.iter().zip(&results) {
        assert_eq!((r.width, r.height), img.dimensions());
        assert!(!r.detections.is_empty() && r.detections.len() <= 10);
        for pair in r.detections.windows(2) {
            assert!(pair[0].score >= pair[1].score, "sorted by score");
        }
        for d in &r.detections {
            // sigmoid + sigmoid^2 lies in (0, 2)
            assert!(d.score > 0.0 && d.score < 2.0);
            let it = &detector.pack().interactions[d.interaction_index];
            assert_eq!(d.interaction, it.prompt);
            assert_eq!(d.verb, detector.pack().verbs[it.verb].name);
            assert_eq!(d.object.label, detector.pack().object_name(it.object));
        }
    }
    // The demo model is deterministic: same seed, same detections. (Compare equal batches:
    // padding in a batch changes results, as in the reference; see the engine docs.)
    let alone = detector.detect(&images[..1], &options).unwrap();
    let again = Detector::<B>::demo(&device)
        .unwrap()
        .detect(&images[..1], &options)
        .unwrap();
    assert_eq!(again, alone);
    // A threshold above every score leaves nothing.
    let none = detector
        .detect(
            &images[..1],
            &DetectOptions {
                score_threshold: 2.0,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(none[0].detections.is_empty());
}

#[test]
fn inferred_config_matches_the_checkpoint_sizes() {
    let ckpt = Checkpoint::open(fixture("hoiclip/checkpoint.pth")).unwrap();
    let inferred = detector_model::infer_config(&ckpt).unwrap();
    let expected = fixture_config();
    // Head counts are not visible in shapes (official values are assumed); all else is.
    let mut inferred = inferred.with_nheads(expected.nheads);
    inferred.clip.vision_heads = expected.clip.vision_heads;
    inferred.clip.text_heads = expected.clip.text_heads;
    assert_eq!(
        serde_json::to_value(&inferred).unwrap(),
        serde_json::to_value(&expected).unwrap()
    );
    let other = Checkpoint::open(fixture("clip/other_arch.pth")).unwrap();
    let err = detector_model::infer_config(&other).unwrap_err();
    assert!(err.to_string().contains("other_arch.pth"), "{err}");
}

#[test]
fn native_conversion_gives_bit_identical_outputs() {
    let device = Default::default();
    let config = fixture_config();
    let ckpt = Checkpoint::open(fixture("hoiclip/checkpoint.pth")).unwrap();
    let (model, _) = detector_model::load::<B>(&config, &ckpt, &device).unwrap();
    let out =
        std::env::temp_dir().join(format!("hoiclip-native-{}.safetensors", std::process::id()));
    detector_model::save_native(&model, &config, &Default::default(), &out).unwrap();
    let (native, native_config, report) = detector_model::load_file::<B>(&out, &device).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        serde_json::to_value(&native_config).unwrap(),
        serde_json::to_value(&config).unwrap()
    );
    let refs = Checkpoint::open(fixture("hoiclip/reference.safetensors")).unwrap();
    let input = || {
        let detr = reference::<4>(&refs, "img1_detr_input");
        let [_, _, h, w] = detr.dims();
        ModelInput {
            detr,
            valid: vec![(h, w)],
            clip: reference::<4>(&refs, "img1_clip_input"),
        }
    };
    let a = model.forward(input());
    let b = native.forward(input());
    assert_eq!(max_abs_diff(a.hoi_logits, b.hoi_logits), 0.0);
    assert_eq!(max_abs_diff(a.obj_boxes, b.obj_boxes), 0.0);
    std::fs::remove_file(out).ok();
}

#[test]
fn cli_detect_prints_json_and_renders() {
    let out = std::env::temp_dir().join(format!("hoiclip-render-{}.png", std::process::id()));
    let result = Command::new(env!("CARGO_BIN_EXE_hoiclip"))
        .args(["detect", "--database-url", "sqlite::memory:"])
        .args(["--top-k", "3", "--render"])
        .arg(&out)
        .arg(fixture("hoiclip/img1.png"))
        .arg(fixture("hoiclip/img2.jpg"))
        .env_remove("HOICLIP_WEIGHTS")
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let stdout = String::from_utf8(result.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The API's schema, plus the image's path, in the order given.
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["model"]["trained"], false);
    assert_eq!(lines[0]["model"]["name"], "hoiclip-demo");
    assert!(lines[0]["image"].as_str().unwrap().ends_with("img1.png"));
    assert_eq!(lines[1]["width"], 128);
    let triplets = lines[1]["triplets"].as_array().unwrap();
    assert_eq!(triplets.len(), 3);
    assert!(triplets[0]["interaction_id"].as_i64().unwrap() >= 1);
    assert!(lines[1]["vocabulary_version"].as_i64().unwrap() >= 1);
    assert!(String::from_utf8_lossy(&result.stderr).contains("DEMO"));
    let rendered = image::open(&out).unwrap();
    assert_eq!((rendered.width(), rendered.height()), (70, 100));
    std::fs::remove_file(out).ok();

    // An unreadable image stops the run, after the answers before it are printed.
    let partial = Command::new(env!("CARGO_BIN_EXE_hoiclip"))
        .args(["detect", "--database-url", "sqlite::memory:"])
        .arg(fixture("hoiclip/img1.png"))
        .arg(fixture("hoiclip/config.json"))
        .output()
        .unwrap();
    assert!(!partial.status.success());
    assert_eq!(String::from_utf8_lossy(&partial.stdout).lines().count(), 1);
    assert!(String::from_utf8_lossy(&partial.stderr).contains("config.json"));

    let bad = Command::new(env!("CARGO_BIN_EXE_hoiclip"))
        .args(["detect", "--database-url", "sqlite::memory:", "--weights"])
        .arg(fixture("clip/other_arch.pth"))
        .arg(fixture("hoiclip/img1.png"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("other_arch.pth"));
}

#[test]
fn cli_vocab_adds_lists_exports_and_refuses_bad_input() {
    let dir = std::env::temp_dir().join(format!("hoiclip-cli-vocab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}/v.db", dir.display());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hoiclip"))
            .arg("vocab")
            .args(["--database-url", &url])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "add-verb", "juggle", "--ing", "juggling", "--object", "orange", "--object", "apple",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(added["interactions"].as_array().unwrap().len(), 2);
    let out = run(&["list", "interactions", "--pack", "user"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let out = run(&["list", "packs"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3); // hico-det, v-coco, user
    let dup = run(&[
        "add-verb", "juggle", "--ing", "juggling", "--object", "orange",
    ]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let seed = run(&["remove", "verb", "1"]);
    assert!(!seed.status.success());
    assert!(String::from_utf8_lossy(&seed.stderr).contains("seed"));
    let export = run(&["export", "user"]);
    assert!(
        String::from_utf8_lossy(&export.stdout).contains("a photo of a person juggling an apple")
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_inspect_weights_reports_a_clean_load_or_names_the_problem() {
    let ok = Command::new(env!("CARGO_BIN_EXE_hoiclip"))
        .arg("inspect-weights")
        .arg(fixture("hoiclip/checkpoint.pth"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        text.contains("10 HOI classes")
            && text.contains("305 tensors loaded")
            && text.contains("48 stored tensors unused"),
        "{text}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_hoiclip"))
        .arg("inspect-weights")
        .arg(fixture("clip/other_arch.pth"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("another architecture"));
}

/// The allocator setting changes where freed memory goes, never a result: the same
/// answer (all but its timings) with glibc's default (`--release-freed-memory`, also
/// accepted after the subcommand) and with freed blocks kept (the default).
#[test]
fn cli_detections_do_not_depend_on_the_allocator_setting() {
    let detect = |flag: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hoiclip"));
        command.args([
            "detect",
            "--database-url",
            "sqlite::memory:",
            "--top-k",
            "5",
        ]);
        command.args(flag).arg(fixture("hoiclip/img2.jpg"));
        let result = command.env_remove("HOICLIP_WEIGHTS").output().unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        let mut answer: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
        answer.as_object_mut().unwrap().remove("timings");
        answer
    };
    let kept = detect(None);
    assert!(!kept["triplets"].as_array().unwrap().is_empty());
    assert_eq!(detect(Some("--release-freed-memory")), kept);
}
