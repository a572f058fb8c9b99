//! Names and prompts: how they are cleaned, checked and written.

use super::*;

/// "a" or "an" before a word, as the official prompt templates do.
pub fn article(word: &str) -> &'static str {
    match word.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// The official HOI prompt template.
pub fn interaction_prompt(ing: &str, object: &str) -> String {
    format!("a photo of a person {ing} {} {object}", article(object))
}

/// Prompt of a verb's text-derived row (read by the verb adapter).
pub fn verb_prompt(ing: &str) -> String {
    format!("a photo of a person {ing}")
}

/// The official object prompt template.
pub fn object_prompt(object: &str) -> String {
    format!("a photo of {} {object}", article(object))
}

/// What makes two names the same name, on every path (creating, looking up, filtering,
/// importing packs): compatibility forms folded (NFKC: "ｒｉｄｅ" is "ride"), runs of
/// whitespace collapsed and trimmed, every dash folded to `-` ("hico‑det" with a
/// non-breaking hyphen is "hico-det"), and letter case ignored. Names are stored as
/// first written; this key only compares them.
pub fn name_key(name: &str) -> String {
    let folded: String = unicode_normalization::UnicodeNormalization::nfkc(name)
        .map(|c| match c {
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{fe58}' | '\u{fe63}' | '\u{ff0d}' => '-',
            c => c,
        })
        .collect();
    folded
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

pub(super) fn clean_name(field: &'static str, raw: &str) -> Result<String, VocabError> {
    // The limit holds for the text as sent (what the OpenAPI schema states), before
    // whitespace is collapsed.
    if raw.chars().count() > MAX_NAME_CHARS {
        return Err(VocabError::Invalid {
            field,
            reason: format!("at most {MAX_NAME_CHARS} characters"),
        });
    }
    // Invisible and direction-changing characters make one name look like another
    // ("ride" + zero-width space, or a right-to-left override that displays "ride").
    if raw.chars().any(invisible) {
        return Err(VocabError::Invalid {
            field,
            reason: "must not contain invisible or text-direction characters".into(),
        });
    }
    // Compatibility forms fold to their plain letters ("ｒｉｄｅ" is "ride"), as the
    // tokenizer folds them: two spellings of one name would be one class twice.
    let folded: String = unicode_normalization::UnicodeNormalization::nfkc(raw).collect();
    let name = folded.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        return Err(VocabError::Invalid {
            field,
            reason: "must not be empty".into(),
        });
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(VocabError::Invalid {
            field,
            reason: format!("at most {MAX_NAME_CHARS} characters"),
        });
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(VocabError::Invalid {
            field,
            reason: "must not contain control characters".into(),
        });
    }
    // A name of only invisible characters (zero-width space, joiners) looks empty in
    // every listing and cannot be typed back.
    if !name.chars().any(char::is_alphanumeric) {
        return Err(VocabError::Invalid {
            field,
            reason: "must contain at least one letter or digit".into(),
        });
    }
    // `verbs=` on /detect is a comma list: a name with a comma could never be selected.
    if name.contains(',') {
        return Err(VocabError::Invalid {
            field,
            reason: "must not contain a comma".into(),
        });
    }
    Ok(name)
}

/// Zero-width, soft-hyphen, word-joiner, byte-order and bidirectional control characters.
pub(super) fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}')
}

/// CLIP's special tokens: written in a prompt they would end it early (the text feature
/// is read at the first end-of-text token), silently dropping the rest.
pub(super) const SPECIAL_TOKENS: [&str; 2] = ["<|startoftext|>", "<|endoftext|>"];

impl VocabStore {
    pub(super) fn check_prompt(&self, prompt: &str) -> Result<String, VocabError> {
        // Bounded before tokenizing: a 16 MB "prompt" must not cost seconds of CPU.
        if prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(VocabError::Invalid {
                field: "prompt",
                reason: format!("at most {MAX_PROMPT_CHARS} characters"),
            });
        }
        let prompt = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
        if prompt.is_empty() {
            return Err(VocabError::Invalid {
                field: "prompt",
                reason: "must not be empty".into(),
            });
        }
        // Judged on the token ids, after the tokenizer's own cleaning (HTML entities,
        // full-width forms, invisible characters): any spelling that becomes a special
        // token is caught, not just the literal one.
        let ids = self.tokenizer.encode_raw(&prompt)?;
        if ids
            .iter()
            .any(|&id| id == self.tokenizer.sot_id() || id == self.tokenizer.eot_id())
        {
            return Err(VocabError::Invalid {
                field: "prompt",
                reason: format!(
                    "must not contain CLIP's special tokens ({})",
                    SPECIAL_TOKENS.join(", ")
                ),
            });
        }
        self.tokenizer.encode(&prompt)?;
        Ok(prompt)
    }
}
