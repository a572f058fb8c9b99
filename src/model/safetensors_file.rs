//! Reads a `.safetensors` file tensor by tensor: the header is parsed once and each tensor
//! is read from its offset when the loader asks for it, into memory it hands on to the
//! model. burn-store's own reader memory-maps the whole file instead; every page it touches
//! then counts as resident until the map is dropped, so loading a 1 GB native file peaked
//! at the model plus most of the file. Here the peak is the model plus one tensor.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use burn::module::ParamId;
use burn::tensor::{DType, TensorData};
use burn_store::{TensorSnapshot, TensorSnapshotError};

/// The header is JSON: names, shapes and offsets (kilobytes for real files).
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// A safetensors file's `__metadata__` and its tensors, whose data is read on demand.
pub struct SafetensorsFile {
    pub metadata: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, TensorSnapshot>,
}

#[derive(serde::Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Element type and its size in bytes.
fn dtype(name: &str) -> Option<(DType, u64)> {
    Some(match name {
        "F64" => (DType::F64, 8),
        "F32" => (DType::F32, 4),
        "F16" => (DType::F16, 2),
        "BF16" => (DType::BF16, 2),
        "I64" => (DType::I64, 8),
        "I32" => (DType::I32, 4),
        "I16" => (DType::I16, 2),
        "I8" => (DType::I8, 1),
        "U64" => (DType::U64, 8),
        "U32" => (DType::U32, 4),
        "U8" => (DType::U8, 1),
        _ => return None,
    })
}

/// Parses the header and checks every tensor's extent against the file before any data
/// is read: a truncated or inconsistent file is refused here, not halfway through a load.
pub fn open(path: &Path) -> Result<SafetensorsFile, String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| e.to_string())?;
    let len = u64::from_le_bytes(len);
    if len > size.saturating_sub(8) || len > MAX_HEADER_BYTES {
        return Err(format!(
            "safetensors header of {len} bytes does not fit the file"
        ));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| format!("bad safetensors header: {e}"))?;
    let metadata = entries
        .remove("__metadata__")
        .and_then(|m| m.as_object().cloned())
        .map(|m| {
            m.into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let data_start = 8 + len;
    let data_len = size - data_start;
    let file = Rc::new(RefCell::new(file));
    let mut tensors = BTreeMap::new();
    for (name, value) in entries {
        let entry: Entry = serde_json::from_value(value)
            .map_err(|e| format!("bad safetensors entry `{name}`: {e}"))?;
        let (dtype, width) = dtype(&entry.dtype)
            .ok_or_else(|| format!("`{name}` has an unsupported dtype {}", entry.dtype))?;
        let [begin, end] = entry.data_offsets;
        let expected = entry
            .shape
            .iter()
            .try_fold(width, |n, &d| n.checked_mul(d as u64));
        if begin > end || end > data_len || expected != Some(end - begin) {
            return Err(format!(
                "`{name}` ({} {:?}) claims bytes {begin}..{end} of {data_len}: not its size, or past the end of the file",
                entry.dtype, entry.shape
            ));
        }
        let (source, shape) = (file.clone(), entry.shape.clone());
        let at = data_start + begin;
        let bytes = (end - begin) as usize;
        let data_fn = Rc::new(move || -> Result<TensorData, TensorSnapshotError> {
            let mut data = vec![0u8; bytes];
            let mut file = source.borrow_mut();
            file.seek(SeekFrom::Start(at))
                .and_then(|_| file.read_exact(&mut data))
                .map_err(|e| TensorSnapshotError::IoError(e.to_string()))?;
            Ok(TensorData::from_bytes_vec(data, shape.clone(), dtype))
        });
        let snapshot = TensorSnapshot::from_closure(
            data_fn,
            dtype,
            entry.shape.into(),
            name.split('.').map(str::to_string).collect(),
            Vec::new(),
            ParamId::new(),
        );
        tensors.insert(name, snapshot);
    }
    Ok(SafetensorsFile { metadata, tensors })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, header: &str, data: &[u8]) {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn tensors_are_read_from_their_offsets_and_bad_extents_refused() {
        let dir = std::env::temp_dir().join(format!("hoiclip-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let data: Vec<u8> = [1.5f32, -2.0, 3.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .chain([7u8, 9])
            .collect();
        write(
            &path,
            r#"{"__metadata__": {"k": "v"}, "a.w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}, "b": {"dtype": "U8", "shape": [2], "data_offsets": [12, 14]}}"#,
            &data,
        );
        let file = open(&path).unwrap();
        assert_eq!(file.metadata.get("k").map(String::as_str), Some("v"));
        let a = file.tensors["a.w"].to_data().unwrap();
        assert_eq!(a.to_vec::<f32>().unwrap(), vec![1.5, -2.0, 3.25]);
        let b = file.tensors["b"].to_data().unwrap();
        assert_eq!(b.to_vec::<u8>().unwrap(), vec![7, 9]);

        for (header, what) in [
            (
                r#"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}"#,
                "size",
            ),
            (
                r#"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [4, 16]}}"#,
                "past the end",
            ),
            (
                r#"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [12, 0]}}"#,
                "claims",
            ),
            (
                r#"{"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}"#,
                "dtype",
            ),
            (r#"{"a": 3}"#, "bad safetensors entry"),
            ("{not json", "bad safetensors header"),
        ] {
            write(&path, header, &data);
            let message = open(&path).err().unwrap_or_default();
            assert!(message.contains(what), "{header}: {message}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
