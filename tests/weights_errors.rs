//! Bad weights and tokenizer files give errors that name the file and the problem.

mod common;
#[path = "pth_writer/mod.rs"]
mod pth_writer;

use std::process::Command;

use burn::module::Module;
use burn::tensor::DType;
use common::{B, fixture};
use hoiclip::model::clip::tokenizer::{ClipTokenizer, TokenizerError};
use hoiclip::model::clip::{ClipConfig, load_plan};
use hoiclip::model::hoiclip::{self as detector_model, HoiclipConfig, Inspection};
use hoiclip::model::weights::{Checkpoint, WeightsError};
use pth_writer::{PthTensor, TempFile, read_all, write};

fn tiny_config() -> ClipConfig {
    serde_json::from_str(&std::fs::read_to_string(fixture("clip/tiny_config.json")).unwrap())
        .unwrap()
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hoiclip-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = Checkpoint::open("/nonexistent/weights.pth").unwrap_err();
    assert!(matches!(err, WeightsError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/weights.pth"),
        "{err}"
    );
}

#[test]
fn garbage_empty_and_truncated_files_are_format_errors() {
    let garbage = temp_file("garbage.pth", b"this is not a checkpoint at all, just text");
    let empty = temp_file("empty.safetensors", b"");
    let full = std::fs::read(fixture("clip/hoiclip_layout.pth")).unwrap();
    let truncated = temp_file("truncated.pth", &full[..full.len() / 2]);
    for path in [garbage, empty, truncated] {
        let err = match Checkpoint::open(&path) {
            Err(e) => e,
            // A lazily-read file may only fail when its tensors are materialised.
            Ok(ckpt) => {
                let mut clip = tiny_config().init::<B>(&Default::default());
                ckpt.load_into(&mut clip, &load_plan(&ckpt)).unwrap_err()
            }
        };
        assert!(
            matches!(
                err,
                WeightsError::Format { .. } | WeightsError::Mismatch { .. }
            ),
            "{path:?}: {err:?}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn checkpoint_of_another_architecture_is_refused() {
    let ckpt = Checkpoint::open(fixture("clip/other_arch.pth")).unwrap();
    let mut clip = tiny_config().init::<B>(&Default::default());
    let err = ckpt.load_into(&mut clip, &load_plan(&ckpt)).unwrap_err();
    assert!(
        matches!(err, WeightsError::NoMatchingKeys { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("other_arch.pth") && msg.contains("backbone.0.body"),
        "{msg}"
    );
}

#[test]
fn wrong_sizes_are_reported_key_by_key() {
    let ckpt = Checkpoint::open(fixture("clip/hoiclip_layout.pth")).unwrap();
    let mut config = tiny_config();
    config.text_width = 32; // the file has 16
    config.text_layers = 3; // the file has 2
    let mut clip = config.init::<B>(&Default::default());
    let err = ckpt.load_into(&mut clip, &load_plan(&ckpt)).unwrap_err();
    let WeightsError::Mismatch { report, .. } = &err else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert!(
        report
            .mis_shaped
            .iter()
            .any(|(k, model, file)| k == "clip_model.ln_final.weight"
                && model == &[32]
                && file == &[16]),
        "{report}"
    );
    assert!(
        report
            .missing
            .iter()
            .any(|k| k == "clip_model.transformer.resblocks.2.ln_1.weight"),
        "{report}"
    );
    assert!(err.to_string().contains("clip_model.ln_final.weight"));
}

#[test]
fn unused_keys_are_an_error() {
    // A plain CLIP state dict with fewer layers in the model than in the file.
    let ckpt = Checkpoint::open(fixture("clip/clip_state.safetensors")).unwrap();
    let mut config = tiny_config();
    config.vision_layers = 1;
    let mut clip = config.init::<B>(&Default::default());
    let err = ckpt.load_into(&mut clip, &load_plan(&ckpt)).unwrap_err();
    let WeightsError::Mismatch { report, .. } = &err else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert!(
        report
            .unused
            .iter()
            .any(|k| k == "visual.transformer.resblocks.1.attn.in_proj_weight"),
        "{report}"
    );
    assert!(report.missing.is_empty(), "{report}");
}

#[test]
fn bad_tokenizer_files_name_the_file() {
    let err = ClipTokenizer::from_file("/nonexistent/bpe.txt.gz").unwrap_err();
    assert!(
        matches!(err, TokenizerError::Io { .. })
            && err.to_string().contains("/nonexistent/bpe.txt.gz")
    );
    let path = temp_file("vocab.txt", b"#version: 0.2\nh e\nnot-a-pair\n");
    let err = ClipTokenizer::from_file(&path).unwrap_err();
    assert!(
        matches!(err, TokenizerError::BadVocabulary { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("vocab.txt"));
    let gz = temp_file("vocab.txt.gz", &[0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad]);
    let err = ClipTokenizer::from_file(&gz).unwrap_err();
    assert!(
        matches!(err, TokenizerError::BadVocabulary { .. }),
        "{err:?}"
    );
}

#[test]
fn shipped_vocabulary_file_loads_like_the_embedded_one() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/clip/bpe_simple_vocab_16e6.txt.gz"
    );
    let a = ClipTokenizer::from_file(path).unwrap();
    let b = ClipTokenizer::new().unwrap();
    assert_eq!(a.vocab_size(), 49408);
    let text = "a photo of a person riding a bicycle";
    assert_eq!(a.encode(text).unwrap(), b.encode(text).unwrap());
}

/// The HOICLIP fixture checkpoint with `edit` applied, written to a temporary file.
fn edited_checkpoint(name: &str, edit: impl FnOnce(&mut Vec<PthTensor>)) -> TempFile {
    let mut tensors = read_all(&fixture("hoiclip/checkpoint.pth"));
    edit(&mut tensors);
    let path = TempFile::new(name);
    std::fs::write(&path, write(&tensors, true)).unwrap();
    path
}

fn replace(tensors: &mut [PthTensor], key: &str, shape: &[usize]) {
    let t = tensors.iter_mut().find(|t| t.key == key).unwrap();
    *t = PthTensor::f32(key, shape);
}

#[test]
fn rewritten_fixture_checkpoint_still_loads() {
    // The writer the tests below rely on reproduces a loadable checkpoint.
    let path = edited_checkpoint("same.pth", |_| {});
    let (_, _, report) = detector_model::load_file::<B>(&path, &Default::default()).unwrap();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn width_not_divisible_by_heads_is_an_error_naming_the_key_not_a_panic() {
    let path = edited_checkpoint("d255.pth", |t| {
        replace(t, "query_embed_h.weight", &[64, 255])
    });
    let device = Default::default();
    let err = detector_model::load_file::<B>(&path, &device).unwrap_err();
    let WeightsError::BadShape { key, shape, .. } = &err else {
        panic!("expected BadShape, got {err:?}");
    };
    assert_eq!(
        (key.as_str(), shape.as_slice()),
        ("query_embed_h.weight", &[64, 255][..])
    );
    let msg = err.to_string();
    assert!(
        msg.contains("query_embed_h.weight") && msg.contains("[64, 255]") && msg.contains("8"),
        "{msg}"
    );
    // inspect-weights goes through the same checks.
    let err = detector_model::inspect::<B>(&path, &device).unwrap_err();
    assert!(matches!(err, WeightsError::BadShape { .. }), "{err:?}");
    // And so does the CLI: an error (exit 1) naming the key, not a panic (exit 101).
    for args in [
        vec!["inspect-weights".to_string(), path.display().to_string()],
        vec![
            "detect".to_string(),
            "--weights".to_string(),
            path.display().to_string(),
            fixture("hoiclip/img1.png").display().to_string(),
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hoiclip"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("query_embed_h.weight"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn inconsistent_sizes_between_keys_name_both_keys() {
    let path = edited_checkpoint("textproj.pth", |t| {
        replace(t, "clip_model.text_projection", &[15, 24])
    });
    let err = detector_model::load_file::<B>(&path, &Default::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WeightsError::BadShape { .. }), "{err:?}");
    assert!(
        msg.contains("clip_model.text_projection")
            && msg.contains("[15, 24]")
            && msg.contains("clip_model.positional_embedding"),
        "{msg}"
    );
    // Empty dimensions and wrong ranks are refused the same way.
    for (i, shape) in [vec![6, 0], vec![6], vec![6, 32, 1]]
        .into_iter()
        .enumerate()
    {
        let path = edited_checkpoint(&format!("query{i}.pth"), |t| {
            replace(t, "query_embed_h.weight", &shape)
        });
        let err = detector_model::load_file::<B>(&path, &Default::default()).unwrap_err();
        assert!(
            matches!(err, WeightsError::BadShape { .. }),
            "{shape:?}: {err:?}"
        );
    }
    // An object head with only the "no object" row would give -1 object classes.
    let path = edited_checkpoint("obj1.pth", |t| {
        replace(t, "obj_visual_projection.weight", &[1, 24])
    });
    let err = detector_model::load_file::<B>(&path, &Default::default()).unwrap_err();
    assert!(
        err.to_string().contains("obj_visual_projection.weight"),
        "{err}"
    );
}

#[test]
fn layer_numbers_with_gaps_cannot_make_the_model_arbitrarily_deep() {
    let path = edited_checkpoint("gap.pth", |t| {
        t.push(PthTensor::f32(
            "transformer.encoder.layers.1000000.linear1.bias",
            &[64],
        ));
    });
    let err = detector_model::load_file::<B>(&path, &Default::default()).unwrap_err();
    assert!(matches!(err, WeightsError::BadSizes { .. }), "{err:?}");
    assert!(
        err.to_string().contains("transformer.encoder.layers."),
        "{err}"
    );
}

#[test]
fn mis_shaped_linear_weight_is_reported_as_stored_in_the_file() {
    // linear2 maps 64 -> 32: PyTorch stores [32, 64]; this file has [32, 63].
    let key = "transformer.encoder.layers.0.linear2.weight";
    let path = edited_checkpoint("linear2.pth", |t| replace(t, key, &[32, 63]));
    let err = detector_model::load_file::<B>(&path, &Default::default()).unwrap_err();
    let WeightsError::Mismatch { report, .. } = &err else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert_eq!(
        report.mis_shaped,
        vec![(key.to_string(), vec![32, 64], vec![32, 63])],
        "{report}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{key} (file [32, 63], expected [32, 64])")),
        "{msg}"
    );
}

#[test]
fn integer_tensor_where_the_model_needs_floats_is_refused_by_name() {
    let key = "transformer.encoder.layers.0.linear1.bias";
    let path = edited_checkpoint("int.pth", |t| {
        let target = t.iter_mut().find(|t| t.key == key).unwrap();
        let n: usize = target.shape.iter().product();
        target.dtype = DType::I64;
        target.data = (0..n as i64).flat_map(i64::to_le_bytes).collect();
    });
    let err = detector_model::load_file::<B>(&path, &Default::default()).unwrap_err();
    let WeightsError::Mismatch { report, .. } = &err else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert!(report.failed.iter().any(|(k, _)| k == key), "{report}");
    assert!(!report.missing.iter().any(|k| k == key), "{report}");
}

#[test]
fn converted_file_passes_inspect_weights() {
    let device = Default::default();
    let (model, config, _) =
        detector_model::load_file::<B>(&fixture("hoiclip/checkpoint.pth"), &device).unwrap();
    let out = TempFile::new("converted.safetensors");
    detector_model::save_native(&model, &config, &Default::default(), &out).unwrap();
    let inspection = detector_model::inspect::<B>(&out, &device).unwrap();
    let Inspection::Hoiclip { report, native, .. } = &inspection else {
        panic!("expected a HOICLIP model, got {inspection:?}");
    };
    assert!(*native && report.is_clean(), "{inspection}");
    assert_eq!(report.applied.len(), 305, "{inspection}");
    assert!(
        inspection.to_string().contains("10 HOI classes"),
        "{inspection}"
    );
    let cli = Command::new(env!("CARGO_BIN_EXE_hoiclip"))
        .arg("inspect-weights")
        .arg(&*out)
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(String::from_utf8_lossy(&cli.stdout).contains("loads cleanly"));
}

#[test]
fn native_file_with_unbuildable_or_oversized_sizes_is_refused_before_building() {
    let device = Default::default();
    let config: HoiclipConfig =
        serde_json::from_str(&std::fs::read_to_string(fixture("hoiclip/config.json")).unwrap())
            .unwrap();
    let model = config.init::<B>(&device);
    for (name, bad, expect) in [
        (
            "odd.safetensors",
            config.clone().with_hidden_dim(30),
            "not divisible",
        ),
        (
            "zero.safetensors",
            config.clone().with_num_queries(0),
            "num_queries is 0",
        ),
        (
            "huge.safetensors",
            config.clone().with_hidden_dim(1 << 16),
            "parameters",
        ),
    ] {
        let json = serde_json::to_string(&bad).unwrap();
        let out = TempFile::new(name);
        hoiclip::model::weights::save_native(
            &model,
            &out,
            &[
                (
                    detector_model::NATIVE_FORMAT_KEY,
                    detector_model::NATIVE_FORMAT,
                ),
                (detector_model::NATIVE_CONFIG_KEY, &json),
            ],
        )
        .unwrap();
        let err = detector_model::load_file::<B>(&out, &device).unwrap_err();
        assert!(
            matches!(err, WeightsError::BadSizes { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(expect), "{name}: {err}");
    }
}

#[test]
fn parameter_count_matches_the_built_model() {
    let fixture_config: HoiclipConfig =
        serde_json::from_str(&std::fs::read_to_string(fixture("hoiclip/config.json")).unwrap())
            .unwrap();
    let odd = fixture_config
        .clone()
        .with_backbone_layers([2, 1, 3, 1])
        .with_enc_layers(1)
        .with_inter_dec_layers(3)
        .with_num_obj_classes(9);
    for config in [fixture_config, odd] {
        let built = config.init::<B>(&Default::default()).num_params() as u64;
        assert_eq!(config.num_params(), Some(built));
    }
}

#[test]
fn missing_and_mis_shaped_tensors_are_named_as_the_file_names_them() {
    // Keys the loader remaps (`backbone.0.body.` -> `backbone.`, `obj_class_fc.1.` ->
    // `obj_class_fc.norm.`) are reported under the file's names; a mis-shaped norm weight
    // is reported once, as mis-shaped, not also as unused.
    let path = edited_checkpoint("names.pth", |t| {
        t.retain(|t| t.key != "backbone.0.body.layer2.0.conv3.weight");
        replace(t, "obj_class_fc.1.weight", &[23]);
    });
    let err = detector_model::load_file::<B>(&path, &Default::default()).unwrap_err();
    let WeightsError::Mismatch { report, .. } = &err else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert_eq!(
        report.missing,
        vec!["backbone.0.body.layer2.0.conv3.weight"],
        "{report}"
    );
    assert_eq!(
        report.mis_shaped,
        vec![("obj_class_fc.1.weight".to_string(), vec![24], vec![23])],
        "{report}"
    );
    assert!(report.unused.is_empty(), "{report}");
}

#[test]
fn checkpoint_with_fewer_object_classes_than_its_vocabulary_is_refused() {
    // 600 HOI classes select HICO-DET, whose interactions name 80 objects; the fixture's
    // object head has 6 (+1): detection would read past its logits.
    let path = edited_checkpoint("hico600.pth", |t| {
        replace(t, "visual_projection.weight", &[600, 24]);
        replace(t, "visual_projection.bias", &[600]);
        replace(t, "verb2hoi_proj", &[5, 600]);
    });
    let err = hoiclip::detector::Detector::<B>::from_weights(&path, &Default::default())
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            hoiclip::detector::DetectorError::TooFewObjectClasses { objects: 6, .. }
        ),
        "{err:?}"
    );
}
