//! A minimal `torch.save` writer for tests: the zip layout (`archive/data.pkl`, one
//! uncompressed `archive/data/<i>` entry per storage) and the pickle opcodes PyTorch
//! writes, so tests can build checkpoints with any keys, shapes and dtypes.
#![allow(dead_code)]

use std::io::{Cursor, Write};

use burn::tensor::DType;
use hoiclip::model::weights::Checkpoint;
use zip::write::SimpleFileOptions;

/// One tensor: a contiguous view of its own storage.
#[derive(Debug, Clone, PartialEq)]
pub struct PthTensor {
    pub key: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// Little-endian elements, row-major.
    pub data: Vec<u8>,
}

impl PthTensor {
    /// An f32 tensor of `shape` holding `values` (row-major).
    pub fn f32_values(key: &str, shape: &[usize], values: &[f32]) -> Self {
        Self {
            key: key.to_string(),
            shape: shape.to_vec(),
            dtype: DType::F32,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An f32 tensor of `shape` filled with a ramp (so views and transposes are visible).
    pub fn f32(key: &str, shape: &[usize]) -> Self {
        let n: usize = shape.iter().product();
        Self {
            key: key.to_string(),
            shape: shape.to_vec(),
            dtype: DType::F32,
            data: (0..n)
                .flat_map(|i| (i as f32 * 1e-3).to_le_bytes())
                .collect(),
        }
    }
}

/// PyTorch's name of the storage class holding `dtype`.
fn storage_class(dtype: DType) -> &'static str {
    match dtype {
        DType::F64 => "DoubleStorage",
        DType::F16 => "HalfStorage",
        DType::BF16 => "BFloat16Storage",
        DType::I64 => "LongStorage",
        DType::I32 => "IntStorage",
        DType::I16 => "ShortStorage",
        DType::I8 => "CharStorage",
        DType::U8 => "ByteStorage",
        DType::Bool(_) => "BoolStorage",
        _ => "FloatStorage",
    }
}

fn int(p: &mut Vec<u8>, v: usize) {
    if v < 256 {
        p.extend_from_slice(&[b'K', v as u8]);
    } else if v < 65536 {
        p.push(b'M');
        p.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= i32::MAX as usize {
        p.push(b'J');
        p.extend_from_slice(&(v as i32).to_le_bytes());
    } else {
        p.extend_from_slice(&[0x8a, 8]); // LONG1, 8 bytes
        p.extend_from_slice(&(v as u64).to_le_bytes());
    }
}

fn string(p: &mut Vec<u8>, s: &str) {
    p.push(b'X');
    p.extend_from_slice(&(s.len() as u32).to_le_bytes());
    p.extend_from_slice(s.as_bytes());
}

fn global(p: &mut Vec<u8>, module: &str, name: &str) {
    p.push(b'c');
    p.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
}

/// The pickle of `{key: tensor, ...}` (wrapped as `{"model": {...}}` when `wrap`),
/// storage `i` being tensor `i`'s.
pub fn pickle(tensors: &[PthTensor], wrap: bool) -> Vec<u8> {
    let mut p = vec![0x80, 0x02];
    if wrap {
        p.push(b'}');
        string(&mut p, "model");
    }
    p.extend_from_slice(b"}(");
    for (i, t) in tensors.iter().enumerate() {
        string(&mut p, &t.key);
        global(&mut p, "torch._utils", "_rebuild_tensor_v2");
        p.push(b'(');
        // Persistent id ('storage', class, key, location, numel).
        p.push(b'(');
        string(&mut p, "storage");
        global(&mut p, "torch", storage_class(t.dtype));
        string(&mut p, &i.to_string());
        string(&mut p, "cpu");
        int(&mut p, t.shape.iter().product());
        p.extend_from_slice(b"tQ");
        int(&mut p, 0); // storage offset
        p.push(b'(');
        for &d in &t.shape {
            int(&mut p, d);
        }
        p.push(b't');
        p.push(b'(');
        let mut stride = 1;
        let mut strides = vec![0; t.shape.len()];
        for (d, s) in t.shape.iter().zip(strides.iter_mut()).rev() {
            *s = stride;
            stride *= d;
        }
        for s in strides {
            int(&mut p, s);
        }
        p.push(b't');
        p.push(0x89); // requires_grad = False
        global(&mut p, "collections", "OrderedDict");
        p.extend_from_slice(b")R"); // backward hooks
        p.extend_from_slice(b"tR");
    }
    p.push(b'u');
    if wrap {
        p.push(b's');
    }
    p.push(b'.');
    p
}

/// A zip archive of `entries` (name, bytes), uncompressed as `torch.save` writes them.
pub fn zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        w.start_file(name.as_str(), options).expect("zip entry");
        w.write_all(bytes).expect("zip write");
    }
    w.finish().expect("zip finish").into_inner()
}

/// The archive entries of a checkpoint holding `tensors`.
pub fn entries(tensors: &[PthTensor], wrap: bool) -> Vec<(String, Vec<u8>)> {
    let mut entries = vec![
        ("archive/data.pkl".to_string(), pickle(tensors, wrap)),
        ("archive/byteorder".to_string(), b"little".to_vec()),
    ];
    for (i, t) in tensors.iter().enumerate() {
        entries.push((format!("archive/data/{i}"), t.data.clone()));
    }
    entries.push(("archive/version".to_string(), b"3\n".to_vec()));
    entries
}

/// A `torch.save` file of `tensors`, as bytes.
pub fn write(tensors: &[PthTensor], wrap: bool) -> Vec<u8> {
    zip(&entries(tensors, wrap))
}

/// Every tensor of a weights file, floats widened to f32, in key order.
pub fn read_all(path: &std::path::Path) -> Vec<PthTensor> {
    let ckpt = Checkpoint::open(path).expect("fixture opens");
    let keys: Vec<String> = ckpt.keys().map(str::to_string).collect();
    keys.into_iter()
        .map(|key| {
            let data = ckpt.data(&key).expect("fixture tensor");
            PthTensor {
                shape: ckpt.shape(&key).expect("shape"),
                dtype: data.dtype,
                data: data.as_bytes().to_vec(),
                key,
            }
        })
        .collect()
}

/// A file under a per-process temporary directory.
pub fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hoiclip-pth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// A temporary file, removed when dropped (also when a test fails).
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    /// A not yet existing file under the per-process temporary directory.
    pub fn new(name: &str) -> Self {
        Self(temp_path(name))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

impl std::ops::Deref for TempFile {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempFile {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

/// A training argument as `argparse.Namespace` holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgW {
    Bool(bool),
    Int(usize),
    Float(f64),
    Str(String),
}

/// The scoring arguments a HOICLIP training run saves (`dataset_file`, `verb_weight`, the
/// triplet NMS settings of the official scripts).
pub fn scoring_args(dataset: &str, verb_weight: f64) -> Vec<(&'static str, ArgW)> {
    vec![
        ("dataset_file", ArgW::Str(dataset.into())),
        ("verb_weight", ArgW::Float(verb_weight)),
        ("use_nms_filter", ArgW::Bool(true)),
        ("thres_nms", ArgW::Float(0.7)),
        ("nms_alpha", ArgW::Int(1)),
        ("nms_beta", ArgW::Float(0.5)),
    ]
}

/// `{"model": {...}, "args": Namespace(**args)}`, as HOICLIP's `torch.save` writes it.
pub fn write_with_args(tensors: &[PthTensor], args: &[(&str, ArgW)]) -> Vec<u8> {
    let mut p = pickle(tensors, true);
    p.pop(); // STOP
    string(&mut p, "args");
    global(&mut p, "argparse", "Namespace");
    p.push(b')');
    p.push(0x81); // NEWOBJ
    p.extend_from_slice(b"}(");
    for (name, value) in args {
        string(&mut p, name);
        match value {
            ArgW::Bool(true) => p.push(0x88),
            ArgW::Bool(false) => p.push(0x89),
            ArgW::Int(i) => int(&mut p, *i),
            ArgW::Float(f) => {
                p.push(b'G');
                p.extend_from_slice(&f.to_be_bytes());
            }
            ArgW::Str(s) => string(&mut p, s),
        }
    }
    p.extend_from_slice(b"ub"); // SETITEMS, BUILD
    p.push(b's');
    p.push(b'.');
    let mut entries = entries(tensors, true);
    entries[0].1 = p;
    zip(&entries)
}
