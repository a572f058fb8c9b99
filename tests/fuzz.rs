//! Property tests with bounded case counts (stable Rust, proptest): image decoding, pack
//! import and the tokenizer never panic on hostile input; a refused import changes
//! nothing, and an accepted one never leaves a row the next rebuild cannot embed.

mod common;

use std::sync::Arc;

use hoiclip::classifier::prompts_needed;
use hoiclip::model::clip::tokenizer::ClipTokenizer;
use hoiclip::vision::{DecodeLimits, decode, probe};
use hoiclip::vocab::store::{ExportInteraction, ExportObject, ExportVerb, PackExport, VocabStore};
use proptest::prelude::*;

fn small_png() -> Vec<u8> {
    std::fs::read(common::fixture("hoiclip/img0.png")).unwrap()
}

fn small_jpeg() -> Vec<u8> {
    let image = image::RgbImage::from_fn(37, 23, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 11) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// The PNG fixture re-encoded in another format.
fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let image = image::load_from_memory(&small_png()).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn jpeg_fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::fixture(&format!("jpeg/{name}.jpg"))).unwrap()
}

fn limits() -> DecodeLimits {
    DecodeLimits {
        max_pixels: 4_000_000,
        max_alloc: 64 << 20,
        ..DecodeLimits::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = probe(&bytes, limits());
        let _ = decode(&bytes, limits());
    }

    #[test]
    fn decoding_damaged_images_never_panics(
        seed in 0usize..8,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        // Every JPEG path of the decoder (baseline, progressive, greyscale, CMYK) and PNG.
        let mut bytes = match seed {
            0 => small_jpeg(),
            1 => jpeg_fixture("progressive_420"),
            2 => jpeg_fixture("grey"),
            3 => jpeg_fixture("cmyk"),
            4 => encoded(image::ImageFormat::Gif),
            5 => encoded(image::ImageFormat::Bmp),
            6 => encoded(image::ImageFormat::Tiff),
            _ => small_png(),
        };
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep.max(1));
        if let Ok(image) = decode(&bytes, limits()) {
            prop_assert!(image.width() > 0 && image.height() > 0);
        }
    }

    #[test]
    fn tokenizing_any_text_never_panics_and_respects_the_context(text in "\\PC{0,120}") {
        let tokenizer = tokenizer();
        if let Ok(ids) = tokenizer.encode(&text) {
            prop_assert!(ids.len() <= tokenizer.context_length());
            prop_assert_eq!(ids.first().copied(), Some(tokenizer.sot_id()));
            prop_assert_eq!(ids.last().copied(), Some(tokenizer.eot_id()));
        }
    }
}

fn tokenizer() -> Arc<ClipTokenizer> {
    static T: std::sync::OnceLock<Arc<ClipTokenizer>> = std::sync::OnceLock::new();
    T.get_or_init(|| Arc::new(ClipTokenizer::new().unwrap()))
        .clone()
}

/// Names and prompts as a careless or hostile client writes them: ordinary words, empty,
/// blank, invisible, commas, special tokens, very long or non-Latin text.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,12}",
        Just(String::new()),
        Just(" \t ".to_string()),
        Just("\u{200b}".to_string()),
        Just("hold,carry".to_string()),
        Just("a photo of <|endoftext|> x".to_string()),
        "\\PC{1,70}",
        "[𝐚-𝐳]{40,64}",
    ]
}

fn pack() -> impl Strategy<Value = PackExport> {
    let verbs = proptest::collection::vec((text(), text()), 0..3);
    let objects = proptest::collection::vec((text(), text()), 0..3);
    let interactions =
        proptest::collection::vec((text(), proptest::option::of(text()), text()), 0..3);
    (text(), verbs, objects, interactions).prop_map(|(name, verbs, objects, interactions)| {
        PackExport {
            name,
            verbs: verbs
                .into_iter()
                .map(|(name, ing)| ExportVerb { name, ing })
                .collect(),
            objects: objects
                .into_iter()
                .map(|(name, prompt)| ExportObject { name, prompt })
                .collect(),
            interactions: interactions
                .into_iter()
                .map(|(verb, object, prompt)| ExportInteraction {
                    verb,
                    object,
                    prompt,
                })
                .collect(),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_pack_import_is_all_or_nothing_and_never_unbuildable(pack in pack()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = VocabStore::open("sqlite::memory:", tokenizer()).await.unwrap();
            let before = store.snapshot().await.unwrap();
            match store.import_pack(&pack).await {
                Err(_) => {
                    let after = store.snapshot().await.unwrap();
                    prop_assert_eq!(before, after, "a refused import changed the vocabulary");
                }
                Ok(_) => {
                    let after = store.snapshot().await.unwrap();
                    for prompt in prompts_needed(&after, None) {
                        prop_assert!(
                            tokenizer().encode(&prompt).is_ok(),
                            "an accepted import left a prompt no rebuild can embed: {:?}",
                            prompt
                        );
                    }
                }
            }
            Ok(())
        })?;
    }
}
