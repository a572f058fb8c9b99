//! A tolerant reader for PyTorch's zip checkpoints (`torch.save`, format >= 1.6).
//!
//! Training checkpoints hold more than tensors: HOICLIP's has optimizer state keyed by
//! integers, an LR-scheduler `Counter` and an `argparse.Namespace`. burn-store's pickle
//! reader rejects non-string dict keys, so this module runs a small pickle machine that
//! keeps any value it does not understand as an opaque object and only interprets what a
//! state dict needs: dicts, strings, numbers, `_rebuild_tensor_v2`/`_rebuild_parameter` and
//! persistent storage ids. Tensor data stays in the archive until a tensor is loaded.

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

#[derive(Clone, Debug)]
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Bytes,
    Tuple(Rc<Vec<Value>>),
    List(Shared<Vec<Value>>),
    Dict(Shared<Vec<(Value, Value)>>),
    Global(Rc<(String, String)>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// Anything else (a Namespace, a Counter, ...): kept, never interpreted.
    Object,
    Mark,
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

/// Reads the tensors of a zip checkpoint. If the root is a dict with a `model` dict
/// (HOICLIP's layout), that dict is returned; otherwise the root dict. Nested dicts are
/// flattened with `.`-joined keys.
pub fn read(path: &Path) -> Result<BTreeMap<String, TensorSnapshot>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| format!("not a zip archive: {e}"))?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_string))
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .ok_or("no data.pkl in the archive (not a torch.save file)")?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut pickle = Vec::new();
    zip.by_name(&pkl_name)
        .map_err(|e| e.to_string())?
        .read_to_end(&mut pickle)
        .map_err(|e| format!("cannot read {pkl_name}: {e}"))?;
    if let Ok(mut f) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        let _ = f.read_to_string(&mut order);
        if order.trim() == "big" {
            return Err("big-endian checkpoints are not supported".into());
        }
    }
    let root = Machine::default().run(&pickle)?;
    let Value::Dict(root) = root else {
        return Err(
            "the checkpoint's root is not a dict (a whole pickled model rather than a state dict?)"
                .into(),
        );
    };
    let model = root.borrow().iter().find_map(|(k, v)| match (k, v) {
        (Value::Str(k), Value::Dict(d)) if k == "model" => Some(d.clone()),
        _ => None,
    });
    let dict = model.unwrap_or(root);
    let archive: Archive = Rc::new(RefCell::new(zip));
    let mut out = BTreeMap::new();
    flatten(&dict.borrow(), "", &archive, &prefix, &mut out);
    Ok(out)
}

fn flatten(
    dict: &[(Value, Value)],
    path: &str,
    archive: &Archive,
    prefix: &str,
    out: &mut BTreeMap<String, TensorSnapshot>,
) {
    for (k, v) in dict {
        let key = match k {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            _ => continue,
        };
        let full = if path.is_empty() {
            key
        } else {
            format!("{path}.{key}")
        };
        match v {
            Value::Tensor(t) => {
                out.insert(
                    full.clone(),
                    snapshot(t.clone(), archive.clone(), prefix, &full),
                );
            }
            Value::Dict(d) => flatten(&d.borrow(), &full, archive, prefix, out),
            _ => {}
        }
    }
}

fn snapshot(t: Rc<TensorRef>, archive: Archive, prefix: &str, key: &str) -> TensorSnapshot {
    let entry = format!("{prefix}data/{}", t.storage.key);
    let dtype = t.storage.dtype;
    let shape = t.shape.clone();
    let data_fn = Rc::new(move || -> Result<TensorData, TensorSnapshotError> {
        let mut bytes = Vec::new();
        archive
            .borrow_mut()
            .by_name(&entry)
            .map_err(|e| TensorSnapshotError::IoError(format!("{entry}: {e}")))?
            .read_to_end(&mut bytes)
            .map_err(|e| TensorSnapshotError::IoError(format!("{entry}: {e}")))?;
        materialise(&t, &bytes).map_err(TensorSnapshotError::DataError)
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
    snap
}

/// Row-major strides of a contiguous tensor of `shape`.
fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// Element indices of a strided view, in row-major order.
fn element_indices(t: &TensorRef) -> Vec<usize> {
    let n: usize = t.shape.iter().product();
    let mut idx = Vec::with_capacity(n);
    let mut counter = vec![0usize; t.shape.len()];
    for _ in 0..n {
        idx.push(
            t.offset
                + counter
                    .iter()
                    .zip(&t.stride)
                    .map(|(c, s)| c * s)
                    .sum::<usize>(),
        );
        for d in (0..counter.len()).rev() {
            counter[d] += 1;
            if counter[d] < t.shape[d] {
                break;
            }
            counter[d] = 0;
        }
    }
    idx
}

/// The tensor's elements as little-endian bytes in row-major order, typed by the
/// storage. State-dict tensors are nearly always contiguous: one slice copy; strided
/// views are gathered element by element. (Checkpoints are little-endian, checked at
/// open, as is every host this runs on.)
fn materialise(t: &TensorRef, bytes: &[u8]) -> Result<TensorData, String> {
    let size = t.storage.dtype.size();
    let n: usize = t.shape.iter().product();
    let available = bytes.len() / size;
    let out_of_range = |element: usize| {
        format!(
            "storage {} holds {available} elements, the tensor reads element {element}",
            t.storage.key
        )
    };
    let data = if n == 0 {
        Vec::new()
    } else if t.stride == contiguous_strides(&t.shape) {
        let end = t.offset + n;
        if end > available {
            return Err(out_of_range(end - 1));
        }
        bytes[t.offset * size..end * size].to_vec()
    } else {
        let idx = element_indices(t);
        if let Some(&bad) = idx.iter().find(|&&i| i >= available) {
            return Err(out_of_range(bad));
        }
        let mut data = Vec::with_capacity(n * size);
        for i in idx {
            data.extend_from_slice(&bytes[i * size..(i + 1) * size]);
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
                0x88 => self.stack.push(Value::Bool),
                0x89 => self.stack.push(Value::Bool),
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
                    if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
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
                    c.take(8)?;
                    self.stack.push(Value::Float);
                }
                b'I' => {
                    let line = c.line()?;
                    self.stack.push(match line {
                        "01" => Value::Bool,
                        "00" => Value::Bool,
                        s => Value::Int(s.parse().map_err(|_| format!("bad INT {s:?}"))?),
                    });
                }
                b'L' => {
                    let s = c.line()?.trim_end_matches('L');
                    self.stack
                        .push(s.parse().map(Value::Int).unwrap_or(Value::Object));
                }
                b'F' => {
                    c.line()?;
                    self.stack.push(Value::Float);
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
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = items
                        .chunks(2)
                        .filter(|p| p.len() == 2)
                        .map(|p| (p[0].clone(), p[1].clone()))
                        .collect();
                    self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
                }
                b'a' => {
                    let v = self.pop()?;
                    if let Value::List(l) = self.top()? {
                        l.borrow_mut().push(v);
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    if let Value::List(l) = self.top()? {
                        l.borrow_mut().extend(items);
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    if let Value::Dict(d) = self.top()? {
                        d.borrow_mut().push((k, v));
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if let Value::Dict(d) = self.top()? {
                        let mut d = d.borrow_mut();
                        for p in items.chunks(2).filter(|p| p.len() == 2) {
                            d.push((p[0].clone(), p[1].clone()));
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
                    self.pop()?; // BUILD: state is irrelevant to tensors (Namespace, _metadata)
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
        _ => Value::Object,
    }
}

fn as_usize(v: &Value) -> Result<usize, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        other => Err(format!("expected a non-negative integer, found {other:?}")),
    }
}

fn as_usizes(v: &Value) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) => items.iter().map(as_usize).collect(),
        Value::List(items) => items.borrow().iter().map(as_usize).collect(),
        other => Err(format!("expected a tuple of sizes, found {other:?}")),
    }
}

/// `('storage', torch.HalfStorage, '12', 'cuda:0', 1024)` -> a storage reference.
fn persistent(pid: Value) -> Result<Value, String> {
    let Value::Tuple(items) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match items.as_slice() {
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
                (args.first(), args.get(1), args.get(2), args.get(3))
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
            Ok(args.first().cloned().unwrap_or(Value::Object))
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
        assert_eq!(element_indices(&t), vec![1, 3, 5, 2, 4, 6]);
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
        let values = |t: &TensorRef| materialise(t, &bytes).unwrap().to_vec::<f32>().unwrap();
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
        assert!(
            materialise(&past, &bytes)
                .unwrap_err()
                .contains("element 8")
        );
        let mut past = view(vec![1, 4]);
        past.offset = 0;
        assert!(
            materialise(&past, &bytes)
                .unwrap_err()
                .contains("element 8")
        );
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
        let d = d.borrow();
        assert_eq!(d.len(), 2);
        assert!(matches!(d[0], (Value::Int(1), Value::Object)));
        assert!(matches!(&d[1], (Value::Str(k), Value::Int(2)) if k == "a"));
    }
}
