//! OpenAI's CLIP tokenizer on the `tokenizers` crate: byte-level BPE with `</w>` word ends,
//! built from `bpe_simple_vocab_16e6.txt(.gz)` (shipped in `models/clip/`, embedded here).
//!
//! Text is cleaned the way OpenAI/open_clip do before BPE (`basic_clean`, whitespace
//! collapse, lower-case). `basic_clean` runs `ftfy.fix_text`; we reproduce the parts of it
//! that are deterministic character rewrites (NFC, curly quotes, Latin ligatures, full-width
//! forms, control characters, HTML entities). ftfy's heuristic mojibake repair is not
//! reproduced: text that is already broken UTF-8 may tokenize differently.

use std::io::Read;
use std::path::Path;

use tokenizers::SplitDelimiterBehavior;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};
use unicode_normalization::UnicodeNormalization;

/// The merge list every OpenAI CLIP model uses (MIT; see `models/clip/`).
const EMBEDDED_BPE_GZ: &[u8] = include_bytes!("../../../models/clip/bpe_simple_vocab_16e6.txt.gz");

pub const START_OF_TEXT: &str = "<|startoftext|>";
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// Id of `<|startoftext|>` in the standard vocabulary.
pub const SOT_ID: u32 = 49406;
/// Id of `<|endoftext|>` in the standard vocabulary.
pub const EOT_ID: u32 = 49407;
/// Positions of CLIP's text tower.
pub const CONTEXT_LENGTH: usize = 77;
/// Merges OpenAI uses from the file: 49152 - 256 - 2 (lines 1..=48894 after the header).
const NUM_MERGES: usize = 49152 - 256 - 2;
/// Same pre-tokenisation pattern as OpenAI's (applied to lower-cased text).
const PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read tokenizer file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "tokenizer file {path} is not a CLIP BPE merge list: {reason} \
         (expected bpe_simple_vocab_16e6.txt or .txt.gz)"
    )]
    BadVocabulary { path: String, reason: String },
    #[error(
        "prompt has {tokens} tokens (with start and end tokens); CLIP's text tower takes at most {max}: \"{prompt}\""
    )]
    TooLong {
        prompt: String,
        tokens: usize,
        max: usize,
    },
    #[error("tokenizer failed: {0}")]
    Internal(String),
}

/// CLIP's BPE tokenizer. Cheap to share (`&self` everywhere).
pub struct ClipTokenizer {
    inner: Tokenizer,
    sot: u32,
    eot: u32,
    context_length: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("context_length", &self.context_length)
            .finish()
    }
}

impl ClipTokenizer {
    /// The standard tokenizer, from the merge list embedded in the binary.
    pub fn new() -> Result<Self, TokenizerError> {
        let text = gunzip(EMBEDDED_BPE_GZ, "<embedded bpe_simple_vocab_16e6.txt.gz>")?;
        Self::from_merges_text(&text, "<embedded bpe_simple_vocab_16e6.txt.gz>")
    }

    /// A tokenizer from a user-supplied merge list (`.txt` or gzip-compressed `.txt.gz`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
            path: shown.clone(),
            source,
        })?;
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            gunzip(&bytes, &shown)?
        } else {
            String::from_utf8(bytes).map_err(|_| TokenizerError::BadVocabulary {
                path: shown.clone(),
                reason: "not UTF-8 text".into(),
            })?
        };
        Self::from_merges_text(&text, &shown)
    }

    fn from_merges_text(text: &str, path: &str) -> Result<Self, TokenizerError> {
        let bad = |reason: String| TokenizerError::BadVocabulary {
            path: path.to_string(),
            reason,
        };
        let lines: Vec<&str> = text.split('\n').collect();
        if lines.len() < NUM_MERGES + 1 {
            return Err(bad(format!(
                "it has {} lines, a CLIP merge list has at least {}",
                lines.len(),
                NUM_MERGES + 1
            )));
        }
        let mut merges: Merges = Vec::with_capacity(NUM_MERGES);
        for (i, line) in lines[1..=NUM_MERGES].iter().enumerate() {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => merges.push((a.to_string(), b.to_string())),
                _ => {
                    return Err(bad(format!(
                        "line {} is not a pair of symbols: {line:?}",
                        i + 2
                    )));
                }
            }
        }
        // Vocabulary order: 256 byte symbols, the same with `</w>`, one entry per merge,
        // then the two special tokens.
        let bytes: Vec<String> = byte_symbols().into_iter().map(String::from).collect();
        let mut tokens: Vec<String> = bytes.clone();
        tokens.extend(bytes.iter().map(|b| format!("{b}</w>")));
        tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        tokens.push(START_OF_TEXT.into());
        tokens.push(END_OF_TEXT.into());
        let vocab_size = tokens.len();
        let vocab: Vocab = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        if vocab.len() != vocab_size {
            return Err(bad("it repeats a merged symbol".into()));
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix("</w>".into())
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let split = Split::new(
            SplitPattern::Regex(PATTERN.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(|e| TokenizerError::Internal(e.to_string()))?;
        let pre = Sequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
        ]);
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre));
        inner
            .add_special_tokens(vec![
                AddedToken::from(START_OF_TEXT, true),
                AddedToken::from(END_OF_TEXT, true),
            ])
            .map_err(|e| TokenizerError::Internal(e.to_string()))?;
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| TokenizerError::Internal(format!("{t} is not in the vocabulary")))
        };
        let (sot, eot) = (id(START_OF_TEXT)?, id(END_OF_TEXT)?);
        Ok(Self {
            inner,
            sot,
            eot,
            context_length: CONTEXT_LENGTH,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    pub fn eot_id(&self) -> u32 {
        self.eot
    }

    pub fn sot_id(&self) -> u32 {
        self.sot
    }

    /// BPE ids of the cleaned text, without start/end tokens.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let cleaned = clean_text(text);
        let enc = self
            .inner
            .encode(cleaned.as_str(), false)
            .map_err(|e| TokenizerError::Internal(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `<|startoftext|> ... <|endoftext|>` ids, unpadded. A prompt that does not fit the
    /// context is an error naming its token count: nothing is cut silently.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let raw = self.encode_raw(text)?;
        let tokens = raw.len() + 2;
        if tokens > self.context_length {
            return Err(TokenizerError::TooLong {
                prompt: text.to_string(),
                tokens,
                max: self.context_length,
            });
        }
        let mut ids = Vec::with_capacity(tokens);
        ids.push(self.sot);
        ids.extend(raw);
        ids.push(self.eot);
        Ok(ids)
    }

    /// Like [`encode`](Self::encode), zero-padded to the context length (OpenAI's
    /// `clip.tokenize` output).
    pub fn encode_padded(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = self.encode(text)?;
        ids.resize(self.context_length, 0);
        Ok(ids)
    }

    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, TokenizerError> {
        texts.iter().map(|t| self.encode(t)).collect()
    }
}

fn gunzip(bytes: &[u8], path: &str) -> Result<String, TokenizerError> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(|e| TokenizerError::BadVocabulary {
            path: path.to_string(),
            reason: format!("cannot decompress: {e}"),
        })?;
    Ok(text)
}

/// GPT-2/CLIP byte-to-symbol table: printable bytes map to themselves, the rest to
/// code points from 256 upward, in byte order. Returned in CLIP's vocabulary order.
fn byte_symbols() -> Vec<char> {
    let printable = |b: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut direct: Vec<char> = Vec::with_capacity(256);
    let mut shifted: Vec<char> = Vec::new();
    let mut next = 256u32;
    for b in 0u32..256 {
        if printable(b) {
            direct.push(char::from_u32(b).unwrap_or('?'));
        } else {
            shifted.push(char::from_u32(next).unwrap_or('?'));
            next += 1;
        }
    }
    direct.extend(shifted);
    direct
}

/// OpenAI/open_clip text cleaning: `whitespace_clean(basic_clean(text)).lower()`.
pub fn clean_text(text: &str) -> String {
    let fixed = fix_text(text);
    // basic_clean unescapes HTML twice after ftfy.
    let once = html_escape::decode_html_entities(&fixed).into_owned();
    let twice = html_escape::decode_html_entities(&once).into_owned();
    let collapsed: Vec<&str> = twice.split_whitespace().collect();
    collapsed.join(" ").to_lowercase()
}

/// The deterministic character fixes of `ftfy.fix_text` with its default settings.
fn fix_text(text: &str) -> String {
    let unescaped = html_escape::decode_html_entities(text);
    let mut out = String::with_capacity(unescaped.len());
    for c in unescaped.chars() {
        match c {
            // uncurl_quotes
            '\u{02bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
            '\u{201c}'..='\u{201f}' => out.push('"'),
            // fix_character_width: ideographic space and full/half-width forms
            '\u{3000}' => out.push(' '),
            '\u{ff01}'..='\u{ffef}' => out.extend(std::iter::once(c).nfkc()),
            // remove_control_chars
            '\u{00}'..='\u{08}'
            | '\u{0b}'
            | '\u{0e}'..='\u{1f}'
            | '\u{7f}'
            | '\u{206a}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffc}' => {}
            // fix_line_breaks
            '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
            _ => match ligature(c) {
                Some(s) => out.push_str(s),
                None => out.push(c),
            },
        }
    }
    out.nfc().collect()
}

/// ftfy's `fix_latin_ligatures` table.
fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "'n", // ftfy then uncurls the ʼ
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}
