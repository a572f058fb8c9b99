//! Property tests for the `.pth` reader and the weights loader: random bytes, damaged
//! copies of valid checkpoints, and valid checkpoints with wrong shapes, dtypes or missing
//! keys. Whatever the input, opening, reading every tensor and loading a model must give
//! an error or a usable result, never a panic (proptest turns a panic into a failure that
//! shows the input). Case counts are bounded so the suite runs in seconds in release.

#[path = "pth_writer/mod.rs"]
mod pth_writer;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::DType;
use hoiclip::model::clip::{ClipConfig, load_plan};
use hoiclip::model::hoiclip as detector_model;
use hoiclip::model::weights::Checkpoint;
use proptest::prelude::*;
use proptest::sample::Index;
use pth_writer::{PthTensor, entries, read_all, temp_path, write, zip};

type B = hoiclip::backend::Cpu;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// `cases` per property; `PROPTEST_CASES` (proptest's own variable) overrides it for a
/// longer run.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Each case writes a file and may build a model: keep shrinking short.
        max_shrink_iters: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// `bytes` written to a fresh temporary file.
fn temp_file(tag: &str, bytes: &[u8]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = temp_path(&format!(
        "{tag}-{}.pth",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Opens `path` and reads every tensor's data. Returns whether it opened.
fn open_and_read(path: &Path) -> Option<Checkpoint> {
    let ckpt = Checkpoint::open(path).ok()?;
    let keys: Vec<String> = ckpt.keys().map(str::to_string).collect();
    for key in keys {
        if let Ok(data) = ckpt.data(&key) {
            // A tensor that reads is complete: its bytes fill its shape.
            let n: usize = data.shape.iter().product();
            assert_eq!(data.as_bytes().len(), n * data.dtype.size(), "{key}");
        }
    }
    Some(ckpt)
}

/// A small valid checkpoint: several dtypes, a scalar, an empty tensor, nested dicts.
fn small_checkpoint() -> Vec<PthTensor> {
    let mut half = PthTensor::f32("clip_model.ln_final.bias", &[16]);
    half.dtype = DType::F16;
    half.data = (0..16u16)
        .flat_map(|i| (0x3c00 + i).to_le_bytes())
        .collect();
    let mut long = PthTensor::f32("backbone.0.body.bn1.num_batches_tracked", &[]);
    long.dtype = DType::I64;
    long.data = 7i64.to_le_bytes().to_vec();
    vec![
        PthTensor::f32("clip_model.ln_final.weight", &[16]),
        PthTensor::f32("query_embed_h.weight", &[6, 32]),
        PthTensor::f32("logit_scale", &[]),
        PthTensor::f32("empty", &[0, 4]),
        half,
        long,
    ]
}

/// Offsets of zip headers with signature `sig` in `bytes`.
fn headers(bytes: &[u8], sig: &[u8; 4]) -> Vec<usize> {
    bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == sig)
        .map(|(i, _)| i)
        .collect()
}

/// Ways to damage a zip archive's structure (beyond flipping random bytes).
#[derive(Debug, Clone)]
enum ZipDamage {
    /// Set an entry's compression method (local header and central directory).
    Method(Index, u16),
    /// Set an entry's compressed and uncompressed sizes in its central record.
    Sizes(Index, u32),
    /// Point an entry's central record at another offset.
    Offset(Index, u32),
    /// Rename an entry (its last name byte), so storage lookups fail.
    Rename(Index),
}

fn damage(bytes: &mut [u8], d: &ZipDamage) {
    let local = headers(bytes, b"PK\x03\x04");
    let central = headers(bytes, b"PK\x01\x02");
    if central.is_empty() {
        return;
    }
    let mut put = |at: usize, v: &[u8]| {
        if let Some(dst) = bytes.get_mut(at..at + v.len()) {
            dst.copy_from_slice(v);
        }
    };
    match *d {
        ZipDamage::Method(ref i, m) => {
            let c = central[i.index(central.len())];
            put(c + 10, &m.to_le_bytes());
            if let Some(&l) = local.get(i.index(central.len())) {
                put(l + 8, &m.to_le_bytes());
            }
        }
        ZipDamage::Sizes(ref i, s) => {
            let c = central[i.index(central.len())];
            put(c + 20, &s.to_le_bytes());
            put(c + 24, &s.to_le_bytes());
        }
        ZipDamage::Offset(ref i, o) => {
            let c = central[i.index(central.len())];
            put(c + 42, &o.to_le_bytes());
        }
        ZipDamage::Rename(ref i) => {
            let c = central[i.index(central.len())];
            let name_len = bytes
                .get(c + 28..c + 30)
                .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
            if name_len > 0
                && let Some(b) = bytes.get_mut(c + 46 + name_len - 1)
            {
                *b ^= 0x01;
            }
        }
    }
}

fn zip_damage() -> impl Strategy<Value = ZipDamage> {
    prop_oneof![
        (
            any::<Index>(),
            prop::sample::select(vec![1u16, 8, 12, 14, 93, 99, 0xffff])
        )
            .prop_map(|(i, m)| ZipDamage::Method(i, m)),
        (
            any::<Index>(),
            prop::sample::select(vec![0u32, 1, 3, 64, 1 << 20, u32::MAX])
        )
            .prop_map(|(i, s)| ZipDamage::Sizes(i, s)),
        (any::<Index>(), any::<u32>()).prop_map(|(i, o)| ZipDamage::Offset(i, o % 8192)),
        any::<Index>().prop_map(ZipDamage::Rename),
    ]
}

/// Bytes of a pickle from opcodes and arguments the machine knows, mixed with noise.
fn pickle_soup() -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<&'static [u8]> = vec![
        b"}", b"]", b")", b"(", b"t", b"l", b"d", b"u", b"s", b"a", b"e", b"0", b"1", b"2",
        b"N", b"\x88", b"\x89", b"K\x02", b"K\x00", b"M\x00\x01", b"J\xff\xff\xff\xff",
        b"\x8a\x01\xff", b"\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09", b"\x85", b"\x86",
        b"\x87", b"X\x01\x00\x00\x00a", b"X\x05\x00\x00\x00model", b"\x8c\x01b",
        b"X\xff\xff\xff\x7f", b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff", b"q\x00", b"h\x00",
        b"r\x01\x00\x00\x00", b"j\x01\x00\x00\x00", b"\x94", b"R", b"Q", b"b", b"\x81",
        b"\x92", b"o", b"ctorch._utils\n_rebuild_tensor_v2\n",
        b"ctorch._utils\n_rebuild_parameter\n", b"ctorch\nFloatStorage\n",
        b"ccollections\nOrderedDict\n", b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x10tQ",
        b"K\x00(K\x04K\x04t(K\x04K\x01t\x89", b"(K\x00K\x00t", b"I12\n", b"L99999999999999999999L\n",
        b"F1.5\n", b"G\x00\x00\x00\x00\x00\x00\x00\x00", b"Vx\n", b"S'y'\n", b"p0\n", b"g0\n",
        b"\x95\x10\x00\x00\x00\x00\x00\x00\x00", b"\x80\x05", b".",
        // A dict that contains itself (d = {}; d["a"] = d), and a list that does.
        b"}q\x07X\x01\x00\x00\x00ah\x07s", b"]q\x08h\x08a",
    ];
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(pieces).prop_map(|p| p.to_vec()),
            1 => prop::collection::vec(any::<u8>(), 1..4),
        ],
        0..160,
    )
    .prop_map(|parts| {
        let mut p = vec![0x80, 0x02];
        p.extend(parts.concat());
        p
    })
}

/// Edits of a valid pickle (applied before zipping, so the archive's checksums hold and
/// the pickle machine sees the damage).
#[derive(Debug, Clone)]
enum PickleEdit {
    Flip(Index, u8),
    Delete(Index, usize),
    Insert(Index, Vec<u8>),
    /// Replace a one-byte int argument (`K n`) with a large one: offsets, sizes, strides.
    BigInt(Index, u64),
    /// Insert `count` copies of `piece`: deep nesting, long chains.
    Repeat(Index, &'static [u8], usize),
}

fn pickle_edit() -> impl Strategy<Value = PickleEdit> {
    prop_oneof![
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, x)| PickleEdit::Flip(i, x | 1)),
        1 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| PickleEdit::Delete(i, n)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| PickleEdit::Insert(i, b)),
        2 => (
            any::<Index>(),
            prop::sample::select(vec![
                3u64,
                255,
                1 << 31,
                (1 << 31) - 1,
                1 << 40,
                1 << 62,
                i64::MAX as u64,
                u64::MAX,
            ])
        )
            .prop_map(|(i, v)| PickleEdit::BigInt(i, v)),
        1 => (
            any::<Index>(),
            prop::sample::select(vec![
                &b"\x85"[..],
                &b"("[..],
                &b"}"[..],
                &b"]"[..],
                &b")\x85"[..],
                &b"}X\x01\x00\x00\x00a"[..],
                &b"s"[..],
                &b"2"[..],
            ]),
            prop::sample::select(vec![2usize, 100, 10_000, 300_000]),
        )
            .prop_map(|(i, piece, n)| PickleEdit::Repeat(i, piece, n)),
    ]
}

fn edit_pickle(p: &mut Vec<u8>, edit: &PickleEdit) {
    let at = |i: &Index, len: usize| i.index(len + 1);
    match edit {
        PickleEdit::Flip(i, x) => {
            if !p.is_empty() {
                let i = i.index(p.len());
                p[i] ^= x;
            }
        }
        PickleEdit::Delete(i, n) => {
            let i = at(i, p.len());
            let end = (i + n).min(p.len());
            p.drain(i..end);
        }
        PickleEdit::Insert(i, bytes) => {
            let i = at(i, p.len());
            p.splice(i..i, bytes.iter().copied());
        }
        PickleEdit::BigInt(i, v) => {
            let ks: Vec<usize> = (0..p.len().saturating_sub(1))
                .filter(|&j| p[j] == b'K')
                .collect();
            if !ks.is_empty() {
                let j = ks[i.index(ks.len())];
                let mut long = vec![0x8a, 8];
                long.extend_from_slice(&v.to_le_bytes());
                p.splice(j..j + 2, long);
            }
        }
        PickleEdit::Repeat(i, piece, n) => {
            let i = at(i, p.len());
            let bytes: Vec<u8> = piece
                .iter()
                .copied()
                .cycle()
                .take(piece.len() * n)
                .collect();
            p.splice(i..i, bytes);
        }
    }
}

/// The HOICLIP fixture checkpoint's tensors, read once.
fn hoiclip_tensors() -> &'static [PthTensor] {
    static TENSORS: OnceLock<Vec<PthTensor>> = OnceLock::new();
    TENSORS.get_or_init(|| read_all(&fixture("hoiclip/checkpoint.pth")))
}

/// Edits that keep a checkpoint well-formed but make it not fit the model.
#[derive(Debug, Clone)]
enum Edit {
    Remove(Index),
    Reshape(Index, Vec<usize>),
    /// Reshape one of the tensors the model's sizes are read from.
    ReshapeSizing(Index, Vec<usize>),
    /// Store a tensor as integers (or booleans) instead of floats.
    Retype(Index, DType),
    /// Add a layer key at index `usize` under one of the counted layer prefixes.
    AddLayer(Index, usize),
    /// Swap the dimensions of a 2-D tensor (a PyTorch/Burn layout mix-up).
    Transpose(Index),
}

/// The tensors whose shapes give the model's sizes.
const SIZING_KEYS: &[&str] = &[
    "clip_model.visual.conv1.weight",
    "clip_model.visual.positional_embedding",
    "clip_model.positional_embedding",
    "clip_model.text_projection",
    "clip_model.token_embedding.weight",
    "query_embed_h.weight",
    "backbone.0.body.conv1.weight",
    "transformer.encoder.layers.0.linear1.weight",
    "visual_projection.weight",
    "verb_projection.weight",
    "obj_visual_projection.weight",
];

const LAYER_PREFIXES: &[&str] = &[
    "transformer.encoder.layers.",
    "transformer.instance_decoder.layers.",
    "transformer.clip_interaction_decoder.layers.",
    "clip_model.visual.transformer.resblocks.",
    "clip_model.transformer.resblocks.",
    "backbone.0.body.layer4.",
];

fn edit() -> impl Strategy<Value = Edit> {
    let dim = prop::sample::select(vec![0usize, 1, 2, 3, 4, 6, 7, 8, 16, 24, 32, 63, 64, 255]);
    prop_oneof![
        1 => any::<Index>().prop_map(Edit::Remove),
        1 => (any::<Index>(), prop::collection::vec(dim.clone(), 0..5))
            .prop_map(|(i, shape)| Edit::Reshape(i, shape)),
        2 => (any::<Index>(), prop::collection::vec(dim, 0..5))
            .prop_map(|(i, shape)| Edit::ReshapeSizing(i, shape)),
        1 => (
            any::<Index>(),
            prop::sample::select(vec![DType::I64, DType::I32, DType::U8])
        )
            .prop_map(|(i, d)| Edit::Retype(i, d)),
        1 => (
            any::<Index>(),
            prop::sample::select(vec![0usize, 1, 2, 3, 5, 11, 4096])
        )
            .prop_map(|(i, n)| Edit::AddLayer(i, n)),
        1 => any::<Index>().prop_map(Edit::Transpose),
    ]
}

/// Gives tensor `i` a new `shape` (at most 2^16 elements: the file stays small).
fn reshape(tensors: &mut [PthTensor], i: usize, shape: &[usize]) {
    // At most 2^16 elements: the file stays small whatever the shape.
    let shape: Vec<usize> = if shape.iter().product::<usize>() > 1 << 16 {
        shape.iter().map(|&d| d.min(8)).collect()
    } else {
        shape.to_vec()
    };
    let key = tensors[i].key.clone();
    tensors[i] = PthTensor::f32(&key, &shape);
}

fn apply(tensors: &mut Vec<PthTensor>, edit: &Edit) {
    if tensors.is_empty() {
        return;
    }
    match edit {
        Edit::Remove(i) => {
            tensors.remove(i.index(tensors.len()));
        }
        Edit::ReshapeSizing(i, shape) => {
            let key = SIZING_KEYS[i.index(SIZING_KEYS.len())];
            if let Some(at) = tensors.iter().position(|t| t.key == key) {
                reshape(tensors, at, shape);
            }
        }
        Edit::Reshape(i, shape) => {
            let i = i.index(tensors.len());
            reshape(tensors, i, shape);
        }
        Edit::Retype(i, dtype) => {
            let len = tensors.len();
            let t = &mut tensors[i.index(len)];
            let n: usize = t.shape.iter().product();
            t.dtype = *dtype;
            t.data = vec![1; n * dtype.size()];
        }
        Edit::AddLayer(i, n) => {
            let prefix = LAYER_PREFIXES[i.index(LAYER_PREFIXES.len())];
            tensors.push(PthTensor::f32(&format!("{prefix}{n}.linear1.bias"), &[4]));
        }
        Edit::Transpose(i) => {
            let len = tensors.len();
            let t = &mut tensors[i.index(len)];
            if t.shape.len() == 2 {
                t.shape.reverse();
            }
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// (a) Random bytes, some behind the magic numbers that pick each reader.
    #[test]
    fn random_bytes_never_panic(
        kind in 0usize..4,
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = match kind {
            0 => Vec::new(),
            1 => b"PK\x03\x04".to_vec(),
            2 => vec![0x80, 0x02],
            _ => {
                let mut h = (body.len() as u64 / 2).to_le_bytes().to_vec();
                h.push(b'{');
                h
            }
        };
        bytes.extend_from_slice(&body);
        let path = temp_file("random", &bytes);
        if let Some(ckpt) = open_and_read(&path) {
            let _ = detector_model::load_checkpoint::<B>(&ckpt, &Default::default());
        }
        std::fs::remove_file(path).ok();
    }

    /// (a) Random pickles in a well-formed archive with real storages.
    #[test]
    fn random_pickles_never_panic(pickle in pickle_soup()) {
        let mut files = entries(&small_checkpoint(), true);
        files[0].1 = pickle;
        let path = temp_file("pickle", &zip(&files));
        open_and_read(&path);
        std::fs::remove_file(path).ok();
    }

    /// (b) A valid pickle, edited: flipped, cut, spliced, with huge ints and deep nesting.
    #[test]
    fn edited_pickles_never_panic(edits in prop::collection::vec(pickle_edit(), 1..4)) {
        let tensors = small_checkpoint();
        let mut pickle = pth_writer::pickle(&tensors, true);
        for e in &edits {
            edit_pickle(&mut pickle, e);
        }
        let mut files = entries(&tensors, true);
        files[0].1 = pickle;
        let path = temp_file("edited", &zip(&files));
        open_and_read(&path);
        std::fs::remove_file(path).ok();
    }

    /// (b) A small valid checkpoint with flipped bytes, truncation and damaged zip records.
    #[test]
    fn damaged_small_checkpoints_never_panic(
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 0..6),
        truncate in prop::option::weighted(0.2, any::<Index>()),
        damages in prop::collection::vec(zip_damage(), 0..3),
    ) {
        let mut bytes = write(&small_checkpoint(), true);
        for d in &damages {
            damage(&mut bytes, d);
        }
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x | 1;
        }
        if let Some(at) = truncate {
            bytes.truncate(at.index(bytes.len()));
        }
        let path = temp_file("small", &bytes);
        open_and_read(&path);
        std::fs::remove_file(path).ok();
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// (b) The CLIP fixture (a real `torch.save` file) damaged where its structure is: the
    /// pickle at the start, the central directory at the end; then loaded into a model.
    #[test]
    fn damaged_real_checkpoint_never_panics(
        flips in prop::collection::vec((any::<bool>(), any::<Index>(), any::<u8>()), 1..6),
        damages in prop::collection::vec(zip_damage(), 0..2),
    ) {
        let mut bytes = std::fs::read(fixture("clip/hoiclip_layout.pth")).unwrap();
        for d in &damages {
            damage(&mut bytes, d);
        }
        let len = bytes.len();
        for (at_end, at, x) in &flips {
            let window = 12_000.min(len);
            let i = at.index(window);
            let i = if *at_end { len - 1 - i } else { i };
            bytes[i] ^= x | 1;
        }
        let path = temp_file("real", &bytes);
        if let Some(ckpt) = open_and_read(&path) {
            let config: ClipConfig = serde_json::from_str(
                &std::fs::read_to_string(fixture("clip/tiny_config.json")).unwrap(),
            ).unwrap();
            let mut clip = config.init::<B>(&Default::default());
            let _ = ckpt.load_into(&mut clip, &load_plan(&ckpt));
        }
        std::fs::remove_file(path).ok();
    }

    /// (c) Valid HOICLIP checkpoints with wrong shapes, dtypes, missing or extra keys:
    /// the loader (sizes inferred from shapes) errs or loads cleanly.
    #[test]
    fn misfit_checkpoints_never_panic(edits in prop::collection::vec(edit(), 1..4)) {
        let mut tensors = hoiclip_tensors().to_vec();
        for e in &edits {
            apply(&mut tensors, e);
        }
        let path = temp_file("misfit", &write(&tensors, true));
        match detector_model::load_file::<B>(&path, &Default::default()) {
            Ok((_, _, report)) => prop_assert!(report.is_clean(), "{report}"),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        std::fs::remove_file(path).ok();
    }
}

/// A checkpoint whose `data.pkl` is `pickle` (storages as in [`small_checkpoint`]).
fn with_pickle(tag: &str, pickle: Vec<u8>) -> PathBuf {
    let mut files = entries(&small_checkpoint(), true);
    files[0].1 = pickle;
    temp_file(tag, &zip(&files))
}

/// Pickles built to exhaust a naive reader: deep nesting (a recursive walk or drop
/// overflows the stack), cycles (a walk never ends) and shared dicts (a walk takes 2^n
/// steps). Each must be a prompt error or a value.
#[test]
fn deep_cyclic_and_shared_pickles_are_refused_promptly() {
    let string = |s: &str| {
        let mut b = vec![b'X'];
        b.extend_from_slice(&(s.len() as u32).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
        b
    };
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // {"model": ((((...)))) } nested a million tuples deep.
    let mut p = vec![0x80, 0x02, b'}'];
    p.extend(string("model"));
    p.push(b')');
    p.extend(std::iter::repeat_n(0x85, 1_000_000));
    p.extend_from_slice(b"s.");
    cases.push(("tuples", p));
    // {"a": {"a": {... 200000 levels ...}}}.
    let mut p = vec![0x80, 0x02];
    for _ in 0..200_000 {
        p.push(b'}');
        p.extend(string("a"));
    }
    p.push(b'}');
    p.extend(std::iter::repeat_n(b's', 200_000));
    p.push(b'.');
    cases.push(("dicts", p));
    // d = {}; d["model"] = d.
    let mut p = vec![0x80, 0x02, b'}', b'q', 0];
    p.extend(string("model"));
    p.extend_from_slice(b"h\x00s.");
    cases.push(("cycle", p));
    // d[i] = {"a": d[i-1], "b": d[i-1]}, 60 levels: 2^60 paths through 61 dicts.
    let mut p = vec![0x80, 0x02, b'}', b'q', 0];
    for i in 1..=60u8 {
        p.extend_from_slice(b"}(");
        for k in ["a", "b"] {
            p.extend(string(k));
            p.extend_from_slice(&[b'h', i - 1]);
        }
        p.extend_from_slice(&[b'u', b'q', i]);
    }
    p.push(b'.');
    cases.push(("shared", p));
    for (tag, pickle) in cases {
        let start = std::time::Instant::now();
        let path = with_pickle(tag, pickle);
        if let Ok(ckpt) = Checkpoint::open(&path) {
            assert!(ckpt.keys().count() < 1000, "{tag}");
        }
        assert!(
            start.elapsed().as_secs() < 10,
            "{tag} took {:?}",
            start.elapsed()
        );
        std::fs::remove_file(path).ok();
    }
}

/// Tensor views whose offset, sizes or strides overflow, or that reach outside their
/// storage or beyond the file, are errors when the file is opened.
#[test]
fn hostile_views_are_refused() {
    let view = |offset: u64, shape: &[u64], stride: &[u64]| {
        let int = |v: u64| {
            let mut b = vec![0x8a, 8];
            b.extend_from_slice(&v.to_le_bytes());
            b
        };
        let mut p = vec![0x80, 0x02, b'}', b'('];
        p.extend_from_slice(b"X\x01\x00\x00\x00w");
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend_from_slice(
            b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x10tQ",
        );
        p.extend(int(offset));
        p.push(b'(');
        shape.iter().for_each(|&d| p.extend(int(d)));
        p.push(b't');
        p.push(b'(');
        stride.iter().for_each(|&s| p.extend(int(s)));
        p.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtRu.");
        p
    };
    let big = i64::MAX as u64;
    // Storage 0 holds 16 f32 (the first tensor of `small_checkpoint`).
    for (offset, shape, stride) in [
        (big, vec![2], vec![1]),
        (0, vec![big, big], vec![1, 1]),
        (0, vec![1 << 40, 1 << 40], vec![0, 0]),
        (0, vec![4, 4], vec![big, 1]),
        (10, vec![4, 4], vec![4, 1]),
        (0, vec![17], vec![1]),
    ] {
        let path = with_pickle("view", view(offset, &shape, &stride));
        let err = Checkpoint::open(&path).unwrap_err();
        assert!(
            err.to_string().contains("`w`"),
            "{shape:?}/{stride:?}: {err}"
        );
        std::fs::remove_file(path).ok();
    }
    // In range: a transposed view and a broadcast one both read.
    for (shape, stride) in [(vec![4, 4], vec![1, 4]), (vec![3, 16], vec![0, 1])] {
        let path = with_pickle("view-ok", view(0, &shape, &stride));
        let ckpt = Checkpoint::open(&path).unwrap();
        let data = ckpt.data("w").unwrap();
        assert_eq!(
            data.shape.to_vec(),
            shape.iter().map(|&d| d as usize).collect::<Vec<_>>()
        );
        std::fs::remove_file(path).ok();
    }
}
