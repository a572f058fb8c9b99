//! The CLIP tokenizer against ids dumped from OpenAI's algorithm (open_clip's
//! SimpleTokenizer with OpenAI's special-token names) on a 279-string corpus.

mod common;

use common::fixture;
use hoiclip::model::clip::tokenizer::{ClipTokenizer, EOT_ID, SOT_ID, TokenizerError};

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Option<Vec<u32>>,
    too_long: Option<usize>,
}

#[test]
fn corpus_matches_reference_ids_exactly() {
    let cases: Vec<Case> = serde_json::from_str(
        &std::fs::read_to_string(fixture("clip/tokenizer_corpus.json")).unwrap(),
    )
    .unwrap();
    assert!(cases.len() >= 200);
    let tok = ClipTokenizer::new().unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        match (tok.encode(&case.text), &case.ids, case.too_long) {
            (Ok(ours), Some(theirs), _) if &ours == theirs => {}
            (
                Err(TokenizerError::TooLong {
                    tokens, max: 77, ..
                }),
                None,
                Some(n),
            ) if tokens == n => {}
            (ours, theirs, n) => failures.push(format!(
                "{:?}: ours {:?}, reference {:?} / too long {:?}",
                case.text,
                ours.map_err(|e| e.to_string()),
                theirs,
                n
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn special_tokens_and_padding() {
    let tok = ClipTokenizer::new().unwrap();
    assert_eq!((tok.sot_id(), tok.eot_id()), (SOT_ID, EOT_ID));
    assert_eq!(tok.encode("").unwrap(), vec![SOT_ID, EOT_ID]);
    let padded = tok.encode_padded("a photo").unwrap();
    assert_eq!(padded.len(), 77);
    assert_eq!(&padded[..4], &[SOT_ID, 320, 1125, EOT_ID]);
    assert!(padded[4..].iter().all(|&i| i == 0));
}

#[test]
fn too_long_prompt_names_its_token_count() {
    let tok = ClipTokenizer::new().unwrap();
    let prompt = "word ".repeat(100);
    let err = tok.encode(&prompt).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::TooLong {
                tokens: 102,
                max: 77,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("102 tokens"), "{err}");
}
