//! Bad weights and tokenizer files give errors that name the file and the problem.

mod common;

use common::{B, fixture};
use hoiclip::model::clip::tokenizer::{ClipTokenizer, TokenizerError};
use hoiclip::model::clip::{ClipConfig, load_plan};
use hoiclip::model::weights::{Checkpoint, WeightsError};

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
