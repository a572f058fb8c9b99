//! Reading PyTorch (`.pth`) and `.safetensors` weights into Burn modules.
//!
//! Handles what official HOICLIP checkpoints need: the `{"model": state_dict, "args":
//! Namespace, "optimizer": ...}` wrapper, fp16 tensors (widened to f32), PyTorch's packed
//! attention (`in_proj_weight` -> `in_proj.weight`), scalar parameters (`[]` -> `[1]`), and
//! PyTorch's `[out, in]` Linear layout. Every load reports missing, unused and mis-shaped
//! keys by name; a load that leaves any of them is an error, never a silent partial model.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::module::ParamId;
use burn::prelude::*;
use burn::tensor::DType;
use burn_store::pytorch::PytorchReader;
use burn_store::{
    ApplyError, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore, TensorSnapshot,
};

/// Why a weights file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read weights file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("weights file {path} is not a readable PyTorch or safetensors file: {message}")]
    Format { path: PathBuf, message: String },
    #[error(
        "weights file {path} has none of the model's tensors under the prefix `{prefix}` \
         (it holds {found} tensors, e.g. {examples}); is it a checkpoint of another architecture?"
    )]
    NoMatchingKeys {
        path: PathBuf,
        prefix: String,
        found: usize,
        examples: String,
    },
    #[error("weights file {path} does not fit the model: {report}")]
    Mismatch {
        path: PathBuf,
        report: Box<LoadReport>,
    },
    /// A tensor whose shape gives sizes no model can be built with (checked before any
    /// module is built). `shape` is as stored in the file.
    #[error("weights file {path}: `{key}` has shape {shape:?}; {problem}")]
    BadShape {
        path: PathBuf,
        key: String,
        shape: Vec<usize>,
        problem: String,
    },
    /// Model sizes (read from shapes, layer keys or a native file's metadata) that no
    /// model can be built with, or that describe a model larger than the file could hold.
    #[error("weights file {path}: {problem}")]
    BadSizes { path: PathBuf, problem: String },
}

/// What a load did, key by key (names as in the file, prefix included).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Tensors loaded into the model.
    pub applied: Vec<String>,
    /// Model parameters the file lacks.
    pub missing: Vec<String>,
    /// File tensors the model has no place for (and that are not known to be unused).
    pub unused: Vec<String>,
    /// File tensors known to be unused by inference (listed, not an error).
    pub ignored: Vec<String>,
    /// Tensors whose shape differs: (key, expected shape, shape in the file). Both are in
    /// the file's layout: the file's shape exactly as stored, and the expected one as the
    /// file would store it (PyTorch's `[out, in]` for a Linear weight of a PyTorch file).
    pub mis_shaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Any other per-tensor failure: (key, message).
    pub failed: Vec<(String, String)>,
}

impl LoadReport {
    /// True when every model parameter was loaded and nothing unexpected was left over.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.unused.is_empty()
            && self.mis_shaped.is_empty()
            && self.failed.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tensors loaded", self.applied.len())?;
        if !self.missing.is_empty() {
            write!(
                f,
                "; {} missing: {}",
                self.missing.len(),
                self.missing.join(", ")
            )?;
        }
        if !self.unused.is_empty() {
            write!(
                f,
                "; {} unused: {}",
                self.unused.len(),
                self.unused.join(", ")
            )?;
        }
        if !self.mis_shaped.is_empty() {
            let items: Vec<String> = self
                .mis_shaped
                .iter()
                .map(|(k, want, got)| format!("{k} (file {got:?}, expected {want:?})"))
                .collect();
            write!(f, "; {} mis-shaped: {}", items.len(), items.join(", "))?;
        }
        if !self.failed.is_empty() {
            let items: Vec<String> = self
                .failed
                .iter()
                .map(|(k, m)| format!("{k}: {m}"))
                .collect();
            write!(f, "; {} failed: {}", items.len(), items.join(", "))?;
        }
        Ok(())
    }
}

/// How to place a file's tensors into one module.
#[derive(Debug, Clone, Default)]
pub struct LoadPlan {
    /// Only keys under this prefix are considered (e.g. `clip_model.`); it is stripped.
    pub prefix: String,
    /// Keys (after the prefix) matching any of these regexes are known to be unused.
    pub known_unused: Vec<String>,
    /// `(regex, replacement)` rewrites from file keys (after the prefix) to module paths,
    /// applied in order, for names a Rust field cannot carry (`backbone.0.body`, `fc.0`).
    pub remap: Vec<(String, String)>,
    /// The file holds Burn's own layout (written by [`save_native`]): no PyTorch
    /// adaptation (Linear transposes, norm renames).
    pub native: bool,
}

/// The tensors of one weights file, read lazily (data is only materialised when loaded).
pub struct Checkpoint {
    path: PathBuf,
    /// The file's length in bytes: what any size read from it is checked against.
    len: u64,
    tensors: BTreeMap<String, TensorSnapshot>,
    /// safetensors `__metadata__` (empty for PyTorch files).
    metadata: BTreeMap<String, String>,
    /// The training arguments an official checkpoint carries (`args`), scalars only.
    args: BTreeMap<String, super::pth::Arg>,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// safetensors metadata key under which `hoiclip convert` keeps the official checkpoint's
/// training arguments (JSON).
pub const ARGS_METADATA_KEY: &str = "hoiclip_args";

impl Checkpoint {
    /// Opens a `.pth`/`.pt` (zip or legacy pickle) or `.safetensors` file, told apart by content.
    /// A PyTorch checkpoint with a top-level `model` entry (HOICLIP's layout) is unwrapped.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| WeightsError::Io {
            path: path.clone(),
            source,
        };
        let mut head = [0u8; 9];
        let mut file = std::fs::File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let n = read_up_to(&mut file, &mut head).map_err(io)?;
        let head = &head[..n];
        let format_err = |message: String| WeightsError::Format {
            path: path.clone(),
            message,
        };
        if n == 0 {
            return Err(format_err("the file is empty".into()));
        }
        // safetensors: an 8-byte little-endian header length, then a JSON header.
        let is_safetensors = n == 9 && head[8] == b'{';
        let mut metadata = BTreeMap::new();
        let mut args = BTreeMap::new();
        let tensors = if is_safetensors {
            let file = super::safetensors_file::open(&path).map_err(format_err)?;
            metadata = file.metadata;
            // A converted file carries the official checkpoint's arguments along.
            if let Some(json) = metadata.get(ARGS_METADATA_KEY) {
                args = serde_json::from_str(json)
                    .map_err(|e| format_err(format!("bad {ARGS_METADATA_KEY} metadata: {e}")))?;
            }
            file.tensors
        } else if head.starts_with(ZIP_MAGIC) {
            let (tensors, saved) = super::pth::read_with_args(&path).map_err(format_err)?;
            args = saved;
            tensors
        } else if head[0] == 0x80 {
            read_legacy_pytorch(&path).map_err(format_err)?
        } else {
            return Err(format_err(
                "unknown format (expected a PyTorch zip/pickle or a safetensors file)".into(),
            ));
        };
        Ok(Self {
            path,
            len,
            tensors,
            metadata,
            args,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length in bytes (when it was opened).
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// A training argument saved with an official checkpoint (`args.NAME`).
    pub fn arg(&self, name: &str) -> Option<&super::pth::Arg> {
        self.args.get(name)
    }

    /// Every scalar training argument the file carries.
    pub fn args(&self) -> &BTreeMap<String, super::pth::Arg> {
        &self.args
    }

    /// A safetensors metadata entry.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// All tensor names in the file (after unwrapping `model`).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// One tensor's data (floats widened to f32), e.g. to read reference outputs.
    pub fn data(&self, key: &str) -> Result<TensorData, WeightsError> {
        let snap = self.tensors.get(key).ok_or_else(|| WeightsError::Format {
            path: self.path.clone(),
            message: format!("no tensor named `{key}`"),
        })?;
        widened(snap, key)
            .to_data()
            .map_err(|e| WeightsError::Format {
                path: self.path.clone(),
                message: format!("cannot read `{key}`: {e:?}"),
            })
    }

    /// Shape of one tensor, if present.
    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.tensors.get(key).map(|s| s.shape.to_vec())
    }

    /// Loads every parameter of `module` from the file's keys under `plan.prefix`.
    /// Fails with a full report unless every parameter is loaded with the right shape and
    /// every key under the prefix is used or known to be unused.
    pub fn load_into<B: Backend, M: ModuleSnapshot<B>>(
        &self,
        module: &mut M,
        plan: &LoadPlan,
    ) -> Result<LoadReport, WeightsError> {
        let known_unused: Vec<regex::Regex> = plan
            .known_unused
            .iter()
            .map(|r| regex::Regex::new(r))
            .collect::<Result<_, _>>()
            .map_err(|e| WeightsError::Format {
                path: self.path.clone(),
                message: format!("bad known-unused pattern: {e}"),
            })?;
        let remap: Vec<(regex::Regex, &str)> = plan
            .remap
            .iter()
            .map(|(pattern, to)| regex::Regex::new(pattern).map(|r| (r, to.as_str())))
            .collect::<Result<_, _>>()
            .map_err(|e| WeightsError::Format {
                path: self.path.clone(),
                message: format!("bad key remapping pattern: {e}"),
            })?;
        // The model's parameters by Burn path: their dtype, and whether the adapter
        // transposes what loads into them (a Linear weight read from a PyTorch file).
        let params: BTreeMap<String, (DType, bool)> = module
            .collect(None, None, false)
            .iter()
            .map(|s| {
                let linear_weight = s.module_type().as_deref() == Some(LINEAR_TYPE)
                    && s.path_stack
                        .as_ref()
                        .and_then(|p| p.last())
                        .is_some_and(|name| name == "weight")
                    && s.shape.num_dims() == 2;
                (s.full_path(), (s.dtype, linear_weight && !plan.native))
            })
            .collect();
        // Burn path -> file key, to report in the file's own names.
        let mut names = BTreeMap::new();
        let mut snapshots = Vec::new();
        let mut ignored = Vec::new();
        let mut failed = Vec::new();
        for (key, snap) in &self.tensors {
            let Some(rest) = key.strip_prefix(plan.prefix.as_str()) else {
                continue;
            };
            if known_unused.iter().any(|r| r.is_match(rest)) {
                ignored.push(key.clone());
                continue;
            }
            let mut mapped = rest.to_string();
            for (pattern, to) in &remap {
                mapped = pattern.replace_all(&mapped, *to).into_owned();
            }
            let burn_path = to_burn_path(&mapped);
            names.insert(burn_path.clone(), key.clone());
            // Integers or booleans where the model holds floats: Burn would build a float
            // tensor of an integer dtype from them, so refuse here, by name.
            let target = params
                .get(&burn_path)
                .or_else(|| burn_norm_name(&burn_path).and_then(|alt| params.get(&alt)));
            if let Some((want, _)) = target
                && want.is_float()
                && !snap.dtype.is_float()
            {
                failed.push((
                    key.clone(),
                    format!(
                        "stored as {:?}; the model needs floating-point values",
                        snap.dtype
                    ),
                ));
                continue;
            }
            snapshots.push(widened(snap, &burn_path));
        }
        if snapshots.is_empty() && ignored.is_empty() && failed.is_empty() {
            let examples: Vec<&str> = self.keys().take(3).collect();
            return Err(WeightsError::NoMatchingKeys {
                path: self.path.clone(),
                prefix: plan.prefix.clone(),
                found: self.tensors.len(),
                examples: if examples.is_empty() {
                    "none".into()
                } else {
                    examples.join(", ")
                },
            });
        }
        let adapter: Option<Box<dyn burn_store::ModuleAdapter>> = if plan.native {
            None
        } else {
            Some(Box::new(PyTorchToBurnAdapter))
        };
        let result = module.apply(snapshots, None, adapter, false);
        if result.applied.is_empty() && result.errors.is_empty() && failed.is_empty() {
            // Nothing matched at all: a different model, not a damaged one.
            let examples: Vec<&str> = self.keys().take(3).collect();
            return Err(WeightsError::NoMatchingKeys {
                path: self.path.clone(),
                prefix: plan.prefix.clone(),
                found: self.tensors.len(),
                examples: examples.join(", "),
            });
        }
        // A norm's `gamma`/`beta` came from the file's `weight`/`bias`; a path the file
        // lacks gets the key it would have had.
        let file_name = |p: &str| {
            names
                .get(p)
                .or_else(|| norm_param_torch_name(p).and_then(|alt| names.get(&alt)))
                .cloned()
                .unwrap_or_else(|| format!("{}{}", plan.prefix, unmap(&to_torch_path(p), &remap)))
        };
        // The adapter loads PyTorch's norm `weight`/`bias` into Burn's `gamma`/`beta` but
        // still lists the file's names as unused: count them as the applied tensors they are.
        let mut applied = Vec::new();
        let mut taken = std::collections::BTreeSet::new();
        for p in &result.applied {
            let torch_name = norm_param_torch_name(p).filter(|alt| names.contains_key(alt));
            if let Some(alt) = &torch_name {
                taken.insert(alt.clone());
            }
            applied.push(file_name(torch_name.as_deref().unwrap_or(p)));
        }
        let refused: std::collections::BTreeSet<String> =
            failed.iter().map(|(k, _)| k.clone()).collect();
        let mut report = LoadReport {
            applied,
            // A parameter whose tensor was refused above is reported as failed, not missing.
            missing: result
                .missing
                .iter()
                .map(|(p, _)| file_name(p))
                .filter(|k| !refused.contains(k))
                .collect(),
            unused: result
                .unused
                .iter()
                .filter(|p| !taken.contains(p.as_str()))
                .map(|p| file_name(p))
                .collect(),
            ignored,
            failed,
            ..Default::default()
        };
        for err in &result.errors {
            match err {
                ApplyError::ShapeMismatch {
                    path,
                    expected,
                    found,
                } => {
                    // Burn compares in its own layout, after the adapter transposed Linear
                    // weights: report the file's shape as stored, and the expected shape as
                    // the file would store it.
                    let key = file_name(path);
                    let stored = self
                        .tensors
                        .get(&key)
                        .map_or_else(|| found.to_vec(), |s| s.shape.to_vec());
                    let mut want = expected.to_vec();
                    if params.get(path).is_some_and(|(_, transposed)| *transposed) {
                        want.reverse();
                    }
                    report.mis_shaped.push((key, want, stored));
                }
                ApplyError::DTypeMismatch { path, .. }
                | ApplyError::AdapterError { path, .. }
                | ApplyError::LoadError { path, .. } => {
                    report.failed.push((file_name(path), err.to_string()))
                }
            }
        }
        // A norm tensor that failed was looked up by its alternative name: Burn also lists
        // it as unused, but it is reported once, as what went wrong with it.
        let reported: std::collections::BTreeSet<String> = report
            .mis_shaped
            .iter()
            .map(|(k, ..)| k.clone())
            .chain(report.failed.iter().map(|(k, _)| k.clone()))
            .collect();
        report.unused.retain(|k| !reported.contains(k));
        report.applied.sort();
        report.missing.sort();
        report.unused.sort();
        if report.is_clean() {
            Ok(report)
        } else {
            Err(WeightsError::Mismatch {
                path: self.path.clone(),
                report: Box::new(report),
            })
        }
    }
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Pre-1.6 (non-zip) `torch.save` files, through burn-store's reader.
fn read_legacy_pytorch(path: &Path) -> Result<BTreeMap<String, TensorSnapshot>, String> {
    let reader = match PytorchReader::with_top_level_key(path, "model") {
        Ok(r) if !r.is_empty() => r,
        _ => PytorchReader::new(path).map_err(|e| e.to_string())?,
    };
    Ok(reader.into_tensors().into_iter().collect())
}

/// Writes `module` in Burn's own layout as safetensors with `metadata`: a file that loads
/// without pickle parsing, fp16 widening or PyTorch adaptation.
pub fn save_native<B: Backend, M: ModuleSnapshot<B>>(
    module: &M,
    path: impl AsRef<Path>,
    metadata: &[(&str, &str)],
) -> Result<(), WeightsError> {
    let path = path.as_ref().to_path_buf();
    let mut store = SafetensorsStore::from_file(path.clone()).overwrite(true);
    for (k, v) in metadata {
        store = store.metadata(*k, *v);
    }
    module
        .save_into(&mut store)
        .map_err(|e| WeightsError::Format {
            path,
            message: format!("cannot write: {e}"),
        })
}

/// `x.gamma` -> `x.weight`, `x.beta` -> `x.bias` (Burn's norm names back to PyTorch's).
fn norm_param_torch_name(path: &str) -> Option<String> {
    if let Some(base) = path.strip_suffix(".gamma") {
        Some(format!("{base}.weight"))
    } else {
        path.strip_suffix(".beta")
            .map(|base| format!("{base}.bias"))
    }
}

/// Undoes `remap` on a module path (to name a missing tensor as the file would), for the
/// rules that are plain literals (`^backbone\.0\.body\.` -> `backbone.`), as this crate's
/// plans use; other rules are left alone.
fn unmap(path: &str, remap: &[(regex::Regex, &str)]) -> String {
    let mut path = path.to_string();
    for (pattern, to) in remap.iter().rev() {
        let pattern = pattern.as_str();
        let (anchored, body) = match pattern.strip_prefix('^') {
            Some(body) => (true, body),
            None => (false, pattern),
        };
        let literal = body.replace("\\.", ".");
        if to.contains('$') || literal.contains(|c: char| "\\^$*+?()[]{}|".contains(c)) {
            continue;
        }
        if anchored {
            if let Some(rest) = path.strip_prefix(to) {
                path = format!("{literal}{rest}");
            }
        } else {
            path = path.replace(to, &literal);
        }
    }
    path
}

/// `x.weight` -> `x.gamma`, `x.bias` -> `x.beta` (PyTorch's norm names to Burn's).
fn burn_norm_name(path: &str) -> Option<String> {
    if let Some(base) = path.strip_suffix(".weight") {
        Some(format!("{base}.gamma"))
    } else {
        path.strip_suffix(".bias")
            .map(|base| format!("{base}.beta"))
    }
}

/// Burn's container name for `nn::Linear`, whose weights the PyTorch adapter transposes.
const LINEAR_TYPE: &str = "Struct:Linear";

/// Burn module path -> the PyTorch key it would have (for reporting missing tensors).
fn to_torch_path(path: &str) -> String {
    if let Some(base) = path.strip_suffix(".in_proj.weight") {
        format!("{base}.in_proj_weight")
    } else if let Some(base) = path.strip_suffix(".in_proj.bias") {
        format!("{base}.in_proj_bias")
    } else {
        norm_param_torch_name(path).unwrap_or_else(|| path.to_string())
    }
}

/// PyTorch key (prefix stripped) -> Burn module path. Only packed attention differs.
fn to_burn_path(key: &str) -> String {
    if let Some(base) = key.strip_suffix("in_proj_weight") {
        format!("{base}in_proj.weight")
    } else if let Some(base) = key.strip_suffix("in_proj_bias") {
        format!("{base}in_proj.bias")
    } else {
        key.to_string()
    }
}

/// A lazy snapshot at `burn_path` whose float data is widened to f32 and whose scalar
/// shape `[]` becomes `[1]` (Burn has no rank-0 tensors).
fn widened(snap: &TensorSnapshot, burn_path: &str) -> TensorSnapshot {
    let source = snap.clone_data_fn();
    let is_float = matches!(
        snap.dtype,
        DType::F16 | DType::BF16 | DType::F32 | DType::F64
    );
    let dtype = if is_float { DType::F32 } else { snap.dtype };
    let scalar = snap.shape.num_dims() == 0;
    let shape: Vec<usize> = if scalar { vec![1] } else { snap.shape.to_vec() };
    let target_shape = shape.clone();
    let data_fn = Rc::new(move || {
        let mut data = source()?;
        if is_float && data.dtype != DType::F32 {
            data = data.convert_dtype(DType::F32);
        }
        if scalar {
            data.shape = target_shape.clone().into();
        }
        Ok(data)
    });
    let mut out = TensorSnapshot::from_closure(
        data_fn,
        dtype,
        shape.into(),
        burn_path.split('.').map(str::to_string).collect(),
        Vec::new(),
        ParamId::new(),
    );
    out.container_stack = None;
    out.tensor_id = None;
    out
}
