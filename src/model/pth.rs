//! A tolerant reader for PyTorch's zip checkpoints (`torch.save`, format >= 1.6).
//!
//! Training checkpoints hold more than tensors: HOICLIP's has optimizer state keyed by
//! integers, an LR-scheduler `Counter` and an `argparse.Namespace`. burn-store's pickle
//! reader rejects non-string dict keys, so this module runs a small pickle machine that
//! keeps any value it does not understand as an opaque object and only interprets what a
//! state dict needs: dicts, strings, numbers, `_rebuild_tensor_v2`/`_rebuild_parameter` and
//! persistent storage ids. Tensor data stays in the archive until a tensor is loaded.
//!
//! The file is untrusted: every size, offset and stride in it is checked with overflow-free
//! arithmetic against what the archive really holds, reads are capped by the file's length,
//! and nothing walks a pickled value recursively without a depth limit, so a damaged or
//! hostile file is an error, never a panic, a stack overflow or a huge allocation.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use burn::module::ParamId;
use burn::tensor::{DType, TensorData};
use burn_store::{TensorSnapshot, TensorSnapshotError};

type Archive = Rc<RefCell<zip::ZipArchive<BufReader<File>>>>;
type Shared<T> = Rc<RefCell<T>>;

/// How much larger than the whole file one archive entry may inflate. `torch.save` stores
/// entries uncompressed; a re-compressed archive inflates a little, a zip bomb far more.
const MAX_INFLATION: u64 = 64;
/// Dicts nested deeper than this are not a state dict (HOICLIP's nests 2 levels).
const MAX_DICT_DEPTH: usize = 32;
/// Longer flattened keys are not a state dict's (real ones are under 200 bytes).
const MAX_KEY_LEN: usize = 4096;

#[derive(Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes,
    Tuple(Rc<Items>),
    List(Shared<Items>),
    Dict(Shared<Pairs>),
    Global(Rc<(String, String)>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// An `argparse.Namespace` before its BUILD gives it its attributes (then it
    /// becomes a dict of them).
    Namespace,
    /// Anything else (a Counter, ...): kept, never interpreted.
    Object,
    Mark,
}

impl Value {
    /// What the value is, without its contents (which may be huge, deep or cyclic).
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a class",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
            Value::Namespace => "a Namespace",
            Value::Object => "an object",
            Value::Mark => "a MARK",
        }
    }
}

/// A tuple's or list's items. Dropped without recursion: a pickle can nest containers
/// millions deep at one byte per level, and a recursive drop would overflow the stack.
#[derive(Debug, Default)]
struct Items(Vec<Value>);

/// A dict's entries, in pickle order (keys need not be hashable or unique). Dropped
/// without recursion, like [`Items`].
#[derive(Debug, Default)]
struct Pairs(Vec<(Value, Value)>);

impl Drop for Items {
    fn drop(&mut self) {
        release(std::mem::take(&mut self.0));
    }
}

impl Drop for Pairs {
    fn drop(&mut self) {
        release(
            std::mem::take(&mut self.0)
                .into_iter()
                .flat_map(|(k, v)| [k, v])
                .collect(),
        );
    }
}

/// Drops `values` with an explicit work list: a container whose last reference goes here
/// hands its items to the list instead of dropping them recursively.
fn release(mut pending: Vec<Value>) {
    while let Some(value) = pending.pop() {
        match value {
            Value::Tuple(rc) => {
                if let Ok(mut items) = Rc::try_unwrap(rc) {
                    pending.append(&mut items.0);
                }
            }
            Value::List(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    pending.append(&mut cell.into_inner().0);
                }
            }
            Value::Dict(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    for (k, v) in cell.into_inner().0.drain(..) {
                        pending.push(k);
                        pending.push(v);
                    }
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug)]
struct StorageRef {
    key: String,
    dtype: DType,
}

#[derive(Debug)]
struct TensorRef {
    storage: Rc<StorageRef>,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// A scalar training argument saved with a checkpoint (`args`, an argparse.Namespace).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Arg {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Arg {
    /// The value as a number (ints and bools widen), if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Arg::Bool(b) => Some(f64::from(u8::from(*b))),
            Arg::Int(i) => Some(*i as f64),
            Arg::Float(f) => Some(*f),
            Arg::Str(_) => None,
        }
    }

    /// The value as text, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Arg::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The scalar entries of the root dict's `args` (HOICLIP saves its argparse Namespace
/// there); lists, tensors and nested values are left out.
fn scalar_args(root: &[(Value, Value)]) -> BTreeMap<String, Arg> {
    let mut out = BTreeMap::new();
    let Some(Value::Dict(args)) = root.iter().find_map(|(k, v)| match k {
        Value::Str(k) if k == "args" => Some(v),
        _ => None,
    }) else {
        return out;
    };
    for (k, v) in args.borrow().0.iter() {
        let Value::Str(k) = k else { continue };
        let arg = match v {
            Value::Bool(b) => Arg::Bool(*b),
            Value::Int(i) => Arg::Int(*i),
            Value::Float(f) => Arg::Float(*f),
            Value::Str(s) if s.len() <= 4096 => Arg::Str(s.clone()),
            _ => continue,
        };
        out.insert(k.clone(), arg);
    }
    out
}

/// Reads the tensors of a zip checkpoint. If the root is a dict with a `model` dict
/// (HOICLIP's layout), that dict is returned; otherwise the root dict. Nested dicts are
/// flattened with `.`-joined keys. Every tensor is checked to lie inside its storage entry
/// here, so a shape in the result is backed by data in the file.
/// Also returns the checkpoint's scalar training arguments (empty when it has none).
#[allow(clippy::type_complexity)]
pub fn read_with_args(
    path: &Path,
) -> Result<(BTreeMap<String, TensorSnapshot>, BTreeMap<String, Arg>), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let read_limit = file_len.saturating_mul(MAX_INFLATION);
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| format!("not a zip archive: {e}"))?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_string))
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .ok_or("no data.pkl in the archive (not a torch.save file)")?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let pickle = read_entry(&mut zip, &pkl_name, read_limit)?;
    if let Ok(order) = read_entry(&mut zip, &format!("{prefix}byteorder"), 16)
        && String::from_utf8_lossy(&order).trim() == "big"
    {
        return Err("big-endian checkpoints are not supported".into());
    }
    let root = Machine::default().run(&pickle)?;
    let Value::Dict(root) = root else {
        return Err(
            "the checkpoint's root is not a dict (a whole pickled model rather than a state dict?)"
                .into(),
        );
    };
    let model = root.borrow().0.iter().find_map(|(k, v)| match (k, v) {
        (Value::Str(k), Value::Dict(d)) if k == "model" => Some(d.clone()),
        _ => None,
    });
    let args = scalar_args(&root.borrow().0);
    let dict = model.unwrap_or(root);
    let mut flat = Flattener {
        archive: Rc::new(RefCell::new(zip)),
        prefix,
        file_len,
        read_limit,
        // Each entry of a state dict costs pickle bytes: more visits than that means dicts
        // shared or nested to multiply the work, as no state dict does.
        visits_left: pickle.len(),
        storage_sizes: HashMap::new(),
        out: BTreeMap::new(),
    };
    flat.flatten(&dict.borrow().0, "", 0)?;
    Ok((flat.out, args))
}

/// One archive entry's bytes, refused beyond `limit` (read up to `limit + 1` bytes at most,
/// whatever the entry's header claims).
fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, String> {
    let entry = zip.by_name(name).map_err(|e| format!("{name}: {e}"))?;
    let mut bytes = Vec::new();
    entry
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{name} inflates to more than {limit} bytes, far more than the file's size"
        ));
    }
    Ok(bytes)
}

struct Flattener {
    archive: Archive,
    prefix: String,
    file_len: u64,
    read_limit: u64,
    visits_left: usize,
    /// Declared uncompressed size of each storage entry looked up so far.
    storage_sizes: HashMap<String, Result<u64, String>>,
    out: BTreeMap<String, TensorSnapshot>,
}

impl Flattener {
    fn flatten(&mut self, dict: &[(Value, Value)], path: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DICT_DEPTH {
            return Err(format!(
                "dicts nested more than {MAX_DICT_DEPTH} levels deep at `{path}` (a cycle?)"
            ));
        }
        for (k, v) in dict {
            self.visits_left = self.visits_left.checked_sub(1).ok_or(
                "the pickle's dicts are shared or nested far beyond what a state dict holds",
            )?;
            let key = match k {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                _ => continue,
            };
            if !matches!(v, Value::Tensor(_) | Value::Dict(_)) {
                continue;
            }
            if path.len() + key.len() + 1 > MAX_KEY_LEN {
                return Err(format!(
                    "a key under `{}` is longer than {MAX_KEY_LEN} bytes",
                    path.chars().take(64).collect::<String>()
                ));
            }
            let full = if path.is_empty() {
                key
            } else {
                format!("{path}.{key}")
            };
            match v {
                Value::Tensor(t) => {
                    let snap = self.snapshot(t.clone(), &full)?;
                    self.out.insert(full, snap);
                }
                Value::Dict(d) => self.flatten(&d.borrow().0, &full, depth + 1)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The declared size of a storage entry: checked against the file, since a stored
    /// entry's bytes are in it and a compressed one may only inflate so far.
    fn storage_size(&mut self, entry: &str) -> Result<u64, String> {
        if let Some(size) = self.storage_sizes.get(entry) {
            return size.clone();
        }
        let size = match self.archive.borrow_mut().by_name(entry) {
            Err(e) => Err(format!("storage {entry}: {e}")),
            Ok(f) => {
                let limit = if f.compression() == zip::CompressionMethod::Stored {
                    self.file_len
                } else {
                    self.read_limit
                };
                if f.size() > limit {
                    Err(format!(
                        "storage {entry} claims {} bytes, more than the {}-byte file can hold",
                        f.size(),
                        self.file_len
                    ))
                } else {
                    Ok(f.size())
                }
            }
        };
        self.storage_sizes.insert(entry.to_string(), size.clone());
        size
    }

    /// A lazy snapshot of `t`, after checking that its view lies inside its storage.
    fn snapshot(&mut self, t: Rc<TensorRef>, key: &str) -> Result<TensorSnapshot, String> {
        let entry = format!("{}data/{}", self.prefix, t.storage.key);
        let stored = self
            .storage_size(&entry)
            .map_err(|e| format!("`{key}`: {e}"))?;
        let size = t.storage.dtype.size();
        let needed = storage_extent(&t)
            .and_then(|n| n.checked_mul(size))
            .ok_or_else(|| format!("`{key}`: shape {:?} overflows", t.shape))?;
        if needed as u64 > stored {
            return Err(format!(
                "`{key}` of shape {:?} needs {needed} bytes of storage {entry}, which holds {stored}",
                t.shape
            ));
        }
        // A strided view may repeat elements (stride 0): its copy may outgrow its storage,
        // but not the file.
        let max_out = usize::try_from(stored.max(self.file_len)).unwrap_or(usize::MAX);
        let out_bytes = numel(&t.shape).and_then(|n| n.checked_mul(size));
        if out_bytes.is_none_or(|b| b > max_out) {
            return Err(format!(
                "`{key}` of shape {:?} is larger than the whole file",
                t.shape
            ));
        }
        let dtype = t.storage.dtype;
        let shape = t.shape.clone();
        let archive = self.archive.clone();
        let limit = stored;
        let data_fn = Rc::new(move || -> Result<TensorData, TensorSnapshotError> {
            let bytes = read_entry(&mut *archive.borrow_mut(), &entry, limit)
                .map_err(TensorSnapshotError::IoError)?;
            materialise(&t, &bytes, max_out).map_err(TensorSnapshotError::DataError)
        });
        let mut snap = TensorSnapshot::from_closure(
            data_fn,
            dtype,
            shape.into(),
            key.split('.').map(str::to_string).collect(),
            Vec::new(),
            ParamId::new(),
        );
        snap.container_stack = None;
        snap.tensor_id = None;
        Ok(snap)
    }
}

/// Number of elements of `shape`; `None` if it overflows.
fn numel(shape: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Elements of its storage a view spans: its offset plus its furthest element, plus one
/// (0 for an empty view); `None` if that overflows.
fn storage_extent(t: &TensorRef) -> Option<usize> {
    if t.shape.contains(&0) {
        return Some(0);
    }
    let mut last = t.offset;
    for (&n, &s) in t.shape.iter().zip(&t.stride) {
        last = last.checked_add((n - 1).checked_mul(s)?)?;
    }
    last.checked_add(1)
}

/// Row-major strides of a contiguous tensor of `shape` (`None` if they overflow).
fn contiguous_strides(shape: &[usize]) -> Option<Vec<usize>> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1].checked_mul(shape[d + 1])?;
    }
    Some(strides)
}

/// Element indices of a strided view, in row-major order. The caller checks the view's
/// extent first, so no index here overflows.
fn element_indices(t: &TensorRef) -> impl Iterator<Item = usize> + '_ {
    let n = numel(&t.shape).unwrap_or(0);
    let mut counter = vec![0usize; t.shape.len()];
    (0..n).map(move |_| {
        let index = t.offset
            + counter
                .iter()
                .zip(&t.stride)
                .map(|(c, s)| c * s)
                .sum::<usize>();
        for d in (0..counter.len()).rev() {
            counter[d] += 1;
            if counter[d] < t.shape[d] {
                break;
            }
            counter[d] = 0;
        }
        index
    })
}

/// The tensor's elements as little-endian bytes in row-major order, typed by the
/// storage, at most `max_out` bytes. State-dict tensors are nearly always contiguous: one
/// slice copy; strided views are gathered element by element. (Checkpoints are
/// little-endian, checked at open, as is every host this runs on.)
fn materialise(t: &TensorRef, bytes: &[u8], max_out: usize) -> Result<TensorData, String> {
    let size = t.storage.dtype.size();
    let too_big = || format!("a tensor of shape {:?} is too large", t.shape);
    let n = numel(&t.shape).ok_or_else(too_big)?;
    let out_bytes = n
        .checked_mul(size)
        .filter(|&b| b <= max_out)
        .ok_or_else(too_big)?;
    let extent = storage_extent(t).ok_or_else(too_big)?;
    let available = bytes.len() / size;
    if extent > available {
        return Err(format!(
            "storage {} holds {available} elements, the tensor reads up to element {}",
            t.storage.key,
            extent - 1
        ));
    }
    let data = if n == 0 {
        Vec::new()
    } else if contiguous_strides(&t.shape).is_some_and(|s| s == t.stride) {
        // extent == offset + n here, and extent <= available: the slice is in bounds.
        bytes
            .get(t.offset * size..extent * size)
            .ok_or_else(too_big)?
            .to_vec()
    } else {
        let mut data = Vec::with_capacity(out_bytes);
        for i in element_indices(t) {
            data.extend_from_slice(bytes.get(i * size..(i + 1) * size).ok_or_else(too_big)?);
        }
        data
    };
    Ok(TensorData::from_bytes_vec(
        data,
        t.shape.clone(),
        t.storage.dtype,
    ))
}

fn storage_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        "BoolStorage" => DType::Bool(burn::tensor::BoolStore::Native),
        _ => return None,
    })
}

/// The pickle virtual machine (protocols 2-5), reduced to what checkpoints use.
#[derive(Default)]
struct Machine {
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| format!("pickle truncated at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| "short read")?,
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "short read")?,
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "short read")?,
        ))
    }
    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated text line in pickle")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "non-UTF-8 text in pickle")?;
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "non-UTF-8 string in pickle".into())
    }
}

impl Machine {
    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("pickle MARK missing")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    fn run(mut self, data: &[u8]) -> Result<Value, String> {
        let mut c = Cursor { data, pos: 0 };
        loop {
            let op = c.u8()?;
            match op {
                0x80 => {
                    c.u8()?; // PROTO
                }
                0x95 => {
                    c.u64()?; // FRAME
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.stack.push(Value::Mark),
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b']' => self.stack.push(Value::List(Rc::default())),
                b')' => self.stack.push(Value::Tuple(Rc::default())),
                0x8f => self.stack.push(Value::Object), // EMPTY_SET
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => self.stack.push(Value::Int(c.u8()? as i64)),
                b'M' => self.stack.push(Value::Int(c.u16()? as i64)),
                b'J' => self.stack.push(Value::Int(c.u32()? as i32 as i64)),
                0x8a => {
                    let n = c.u8()? as usize;
                    let bytes = c.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &b) in bytes.iter().enumerate().take(8) {
                        v |= (b as i64) << (8 * i);
                    }
                    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
                    if n < 8 && negative {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                0x8b => {
                    let n = c.u32()? as usize;
                    c.take(n)?;
                    self.stack.push(Value::Object); // LONG4: huge int, unused by state dicts
                }
                b'G' => {
                    let bytes = c.take(8)?;
                    let mut be = [0u8; 8];
                    be.copy_from_slice(bytes);
                    self.stack.push(Value::Float(f64::from_be_bytes(be)));
                }
                b'I' => {
                    let line = c.line()?;
                    self.stack.push(match line {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        s => Value::Int(s.parse().map_err(|_| format!("bad INT {s:?}"))?),
                    });
                }
                b'L' => {
                    let s = c.line()?.trim_end_matches('L');
                    self.stack
                        .push(s.parse().map(Value::Int).unwrap_or(Value::Object));
                }
                b'F' => {
                    let line = c.line()?;
                    self.stack.push(
                        line.trim()
                            .parse()
                            .map(Value::Float)
                            .unwrap_or(Value::Object),
                    );
                }
                b'X' => {
                    let n = c.u32()? as usize;
                    self.stack.push(Value::Str(c.string(n)?));
                }
                0x8c => {
                    let n = c.u8()? as usize;
                    self.stack.push(Value::Str(c.string(n)?));
                }
                0x8d => {
                    let n = c.u64()? as usize;
                    self.stack.push(Value::Str(c.string(n)?));
                }
                b'V' | b'S' => {
                    let s = c
                        .line()?
                        .trim_matches(|ch| ch == '\'' || ch == '"')
                        .to_string();
                    self.stack.push(Value::Str(s));
                }
                b'T' => {
                    let n = c.u32()? as usize;
                    self.stack
                        .push(Value::Str(String::from_utf8_lossy(c.take(n)?).into_owned()));
                }
                b'U' => {
                    let n = c.u8()? as usize;
                    self.stack
                        .push(Value::Str(String::from_utf8_lossy(c.take(n)?).into_owned()));
                }
                b'B' => {
                    let n = c.u32()? as usize;
                    c.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b'C' => {
                    let n = c.u8()? as usize;
                    c.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                0x8e | 0x96 => {
                    let n = c.u64()? as usize;
                    c.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(Items(items))));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(Items(items))));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack
                        .push(Value::List(Rc::new(RefCell::new(Items(items)))));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = items
                        .chunks(2)
                        .filter(|p| p.len() == 2)
                        .map(|p| (p[0].clone(), p[1].clone()))
                        .collect();
                    self.stack
                        .push(Value::Dict(Rc::new(RefCell::new(Pairs(pairs)))));
                }
                b'a' => {
                    let v = self.pop()?;
                    if let Value::List(l) = self.top()? {
                        l.borrow_mut().0.push(v);
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    if let Value::List(l) = self.top()? {
                        l.borrow_mut().0.extend(items);
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    if let Value::Dict(d) = self.top()? {
                        d.borrow_mut().0.push((k, v));
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if let Value::Dict(d) = self.top()? {
                        let mut d = d.borrow_mut();
                        for p in items.chunks(2).filter(|p| p.len() == 2) {
                            d.0.push((p[0].clone(), p[1].clone()));
                        }
                    }
                }
                0x90 => {
                    self.pop_mark()?; // ADDITEMS to a set
                }
                0x91 => {
                    self.pop_mark()?;
                    self.stack.push(Value::Object); // FROZENSET
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'c' => {
                    let module = c.line()?.to_string();
                    let name = c.line()?.to_string();
                    self.stack.push(Value::Global(Rc::new((module, name))));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.stack.push(Value::Global(Rc::new((m, n))))
                        }
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'q' => {
                    let i = c.u8()? as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = c.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'p' => {
                    let i: u32 = c.line()?.parse().map_err(|_| "bad PUT")?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' | b'j' | b'g' => {
                    let i = match op {
                        b'h' => c.u8()? as u32,
                        b'j' => c.u32()?,
                        _ => c.line()?.parse().map_err(|_| "bad GET")?,
                    };
                    let v = self
                        .memo
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| format!("pickle memo {i} missing"))?;
                    self.stack.push(v);
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent(pid)?);
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    self.stack.push(reduce(func, args)?);
                }
                0x81 => {
                    self.pop()?; // NEWOBJ: cls, args
                    let cls = self.pop()?;
                    self.stack.push(new_object(&cls));
                }
                0x92 => {
                    self.pop()?; // NEWOBJ_EX: cls, args, kwargs
                    self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(new_object(&cls));
                }
                b'b' => {
                    // BUILD: a Namespace's state is the training arguments (kept as a dict
                    // of them); other states (a state dict's _metadata) are irrelevant.
                    let state = self.pop()?;
                    if let (Some(top @ Value::Namespace), Value::Dict(_)) =
                        (self.stack.last_mut(), &state)
                    {
                        *top = state;
                    }
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    let cls = if items.is_empty() {
                        Value::Object
                    } else {
                        items.remove(0)
                    };
                    self.stack.push(new_object(&cls));
                }
                b'i' => {
                    c.line()?;
                    c.line()?;
                    self.pop_mark()?;
                    self.stack.push(Value::Object);
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        c.pos - 1
                    ));
                }
            }
        }
    }
}

fn new_object(cls: &Value) -> Value {
    match cls {
        Value::Global(g) if g.1 == "OrderedDict" || g.1 == "dict" => Value::Dict(Rc::default()),
        Value::Global(g) if g.0 == "argparse" && g.1 == "Namespace" => Value::Namespace,
        _ => Value::Object,
    }
}

fn as_usize(v: &Value) -> Result<usize, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        other => Err(format!(
            "expected a non-negative integer, found {}",
            other.kind()
        )),
    }
}

fn as_usizes(v: &Value) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) => items.0.iter().map(as_usize).collect(),
        Value::List(items) => items.borrow().0.iter().map(as_usize).collect(),
        other => Err(format!("expected a tuple of sizes, found {}", other.kind())),
    }
}

/// `('storage', torch.HalfStorage, '12', 'cuda:0', 1024)` -> a storage reference.
fn persistent(pid: Value) -> Result<Value, String> {
    let Value::Tuple(items) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match items.0.as_slice() {
        [Value::Str(kind), Value::Global(g), Value::Str(key), ..] if kind == "storage" => {
            let dtype = storage_dtype(&g.1)
                .ok_or_else(|| format!("unsupported storage type {}.{}", g.0, g.1))?;
            Ok(Value::Storage(Rc::new(StorageRef {
                key: key.clone(),
                dtype,
            })))
        }
        _ => Ok(Value::Object),
    }
}

fn reduce(func: Value, args: Value) -> Result<Value, String> {
    let Value::Global(g) = &func else {
        return Ok(Value::Object);
    };
    let args = match args {
        Value::Tuple(a) => a,
        _ => return Ok(Value::Object),
    };
    match (g.0.as_str(), g.1.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (Some(Value::Storage(storage)), Some(offset), Some(size), Some(stride)) =
                (args.0.first(), args.0.get(1), args.0.get(2), args.0.get(3))
            else {
                return Err("malformed _rebuild_tensor arguments".into());
            };
            let shape = as_usizes(size)?;
            let stride = as_usizes(stride)?;
            if shape.len() != stride.len() {
                return Err("tensor size and stride differ in rank".into());
            }
            Ok(Value::Tensor(Rc::new(TensorRef {
                storage: storage.clone(),
                offset: as_usize(offset)?,
                shape,
                stride,
            })))
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            Ok(args.0.first().cloned().unwrap_or(Value::Object))
        }
        ("collections", "OrderedDict") | ("builtins", "dict") => Ok(Value::Dict(Rc::default())),
        _ => Ok(Value::Object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_indices_follow_row_major_order() {
        let t = TensorRef {
            storage: Rc::new(StorageRef {
                key: "0".into(),
                dtype: DType::F32,
            }),
            offset: 1,
            shape: vec![2, 3],
            stride: vec![1, 2], // a transposed [3, 2] view
        };
        assert_eq!(
            element_indices(&t).collect::<Vec<_>>(),
            vec![1, 3, 5, 2, 4, 6]
        );
    }

    #[test]
    fn contiguous_and_strided_views_read_the_same_elements() {
        // Storage 0..8 as f32; a [2, 3] view at offset 1, contiguous and transposed.
        let bytes: Vec<u8> = (0..8).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let view = |stride: Vec<usize>| TensorRef {
            storage: Rc::new(StorageRef {
                key: "0".into(),
                dtype: DType::F32,
            }),
            offset: 1,
            shape: vec![2, 3],
            stride,
        };
        let values = |t: &TensorRef| {
            materialise(t, &bytes, 1 << 20)
                .unwrap()
                .to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(
            values(&view(vec![3, 1])),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(
            values(&view(vec![1, 2])),
            vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]
        );
        // Reading past the storage is an error naming the element, not a panic.
        let mut past = view(vec![3, 1]);
        past.offset = 3;
        let err = materialise(&past, &bytes, 1 << 20).unwrap_err();
        assert!(err.contains("element 8"), "{err}");
        let mut past = view(vec![1, 4]);
        past.offset = 0;
        let err = materialise(&past, &bytes, 1 << 20).unwrap_err();
        assert!(err.contains("element 9"), "{err}");
        // Sizes that overflow, and copies larger than allowed, are errors too.
        let mut huge = view(vec![1, 1]);
        huge.shape = vec![usize::MAX / 2, 3];
        assert!(materialise(&huge, &bytes, 1 << 20).is_err());
        let mut broadcast = view(vec![0, 0]);
        broadcast.shape = vec![1 << 20, 1 << 20];
        assert!(materialise(&broadcast, &bytes, 1 << 20).is_err());
    }

    #[test]
    fn deeply_nested_and_cyclic_values_drop_without_overflowing_the_stack() {
        // A million nested 1-tuples: one TUPLE1 byte per level.
        let mut p = vec![0x80, 0x02, b')'];
        p.extend(std::iter::repeat_n(0x85, 1_000_000));
        p.push(b'.');
        let value = Machine::default().run(&p).unwrap();
        assert_eq!(value.kind(), "a tuple");
        drop(value);
        // A list that contains itself: L = []; L.append(L). Its error message stays short.
        let p = [0x80, 0x02, b']', b'q', 0, b'h', 0, b'a', b'.'];
        let value = Machine::default().run(&p).unwrap();
        assert!(as_usize(&value).unwrap_err().len() < 100);
    }

    #[test]
    fn truncated_pickle_is_an_error_not_a_panic() {
        let err = Machine::default()
            .run(&[0x80, 0x02, b'}', b'X', 0xff])
            .unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let err = Machine::default().run(&[0x80, 0x02, b's']).unwrap_err();
        assert!(err.contains("underflow"), "{err}");
    }

    #[test]
    fn integer_dict_keys_and_unknown_objects_are_tolerated() {
        // {1: Namespace(), 'a': 2}: protocol 2, hand-assembled.
        let mut p = vec![0x80, 0x02, b'}', b'(', b'K', 1, b'c'];
        p.extend_from_slice(b"argparse\nNamespace\n");
        p.extend_from_slice(&[
            b')', 0x81, b'}', b'b', b'X', 1, 0, 0, 0, b'a', b'K', 2, b'u', b'.',
        ]);
        let Value::Dict(d) = Machine::default().run(&p).unwrap() else {
            panic!()
        };
        let d = &d.borrow().0;
        assert_eq!(d.len(), 2);
        // A Namespace becomes the dict of its attributes (here none).
        assert!(matches!(&d[0], (Value::Int(1), Value::Dict(n)) if n.borrow().0.is_empty()));
        assert!(matches!(&d[1], (Value::Str(k), Value::Int(2)) if k == "a"));
    }
}
