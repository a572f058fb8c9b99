//! Classifier sets: the HOI, verb and object rows a detection is scored against, built
//! from a vocabulary snapshot. Immutable and versioned; the engine builds them on its
//! worker (`engine::ClassifierSync` decides when), and a request keeps the set it
//! started with.
//!
//! Rows: for the interactions, verbs and objects of the checkpoint's own pack, the
//! checkpoint's trained rows (with their bias); for everything else, the L2-normalised
//! CLIP text embedding of the prompt (bias 0). A new verb's row (read by the verb
//! adapter) is the normalised text embedding of "a photo of a person {ing}": the verb
//! space is CLIP's joint space, where the official verb rows also live (they start from
//! CLIP image features, `tmp/verb.pth`).

pub mod arithmetic;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

use crate::model::clip::tokenizer::ClipTokenizer;
use crate::model::clip::{Clip, ClipTextError, l2_normalize};
use crate::model::hoiclip::ClassifierWeights;
use crate::model::kernels::ModelBackend;
pub use crate::vocab::store::verb_prompt;
use crate::vocab::store::{VocabError, VocabSnapshot};

/// Name of the object classifier's last ("no object") row.
pub const NOTHING: &str = "nothing";
const NOTHING_PROMPT: &str = "a photo of nothing";

/// One HOI class of a set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassRow {
    pub interaction_id: i64,
    pub pack: String,
    /// Vocabulary id of its verb (the checkpoint's own set: the verb's index).
    pub verb_id: i64,
    pub verb: String,
    /// Vocabulary id of its object (none: an object-less role, or the checkpoint's set).
    pub object_id: Option<i64>,
    pub object: String,
    pub prompt: String,
}

/// Where a classifier row comes from, so a user can tell how a category is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RowSource {
    /// The checkpoint's trained row.
    Trained,
    /// Visual semantic arithmetic on this many stored example images (verbs only).
    Examples { examples: usize },
    /// The CLIP text embedding of its prompt.
    Text,
}

/// A verb row learned from stored examples, and how many examples it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedRow {
    pub row: Vec<f32>,
    pub examples: usize,
}

/// The source of every row of a set, by vocabulary id (rows left out are absent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowSources {
    pub verbs: HashMap<i64, RowSource>,
    pub objects: HashMap<i64, RowSource>,
    pub interactions: HashMap<i64, RowSource>,
}

/// An immutable, versioned classifier.
#[derive(Debug, Clone)]
pub struct ClassifierSet<B: ModelBackend> {
    /// The vocabulary version it was built from.
    pub version: i64,
    pub classifier: ClassifierWeights<B>,
    /// Shared so request handlers can read them without holding tensors.
    pub rows: Arc<Vec<ClassRow>>,
    /// Object-classifier row of each HOI class.
    pub hoi_object: Vec<usize>,
    /// Labels of the object-classifier rows (last: "nothing").
    pub object_labels: Vec<String>,
    /// Verb row of each HOI class, and the verbs' names (verb-level output).
    pub hoi_verb: Vec<usize>,
    pub verb_labels: Vec<String>,
    /// `valid[v * object_labels.len() + k]`: verb `v` has an interaction with object row
    /// `k` (V-COCO's `correct_mat`; the "no object" role row is valid for every verb).
    pub valid: Vec<bool>,
    /// Object rows that may be a query's predicted label in verb-level output: the
    /// checkpoint's own rows (so its seed vocabulary labels exactly as the official code
    /// does) plus objects of user interactions; every row but the last without a checkpoint.
    pub label_rows: Vec<bool>,
    /// Vocabulary rows left out of this set because they cannot be embedded any more
    /// (e.g. a prompt too long for this tokenizer), one line each. The server keeps
    /// serving the rest; `/vocabulary` and the log report these.
    pub skipped: Vec<String>,
    /// Where each verb, object and interaction row came from (empty for the checkpoint's
    /// own set).
    pub sources: Arc<RowSources>,
}

/// The checkpoint's own classifier and the pack its rows follow.
#[derive(Debug, Clone)]
pub struct TrainedRows<B: ModelBackend> {
    pub pack: String,
    pub classifier: ClassifierWeights<B>,
    /// The pack's official verb x object validity matrix (V-COCO's `corre_vcoco.npy`),
    /// in the checkpoint's verb and object order.
    pub correct_matrix: Option<Vec<Vec<u8>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error(transparent)]
    Vocab(#[from] VocabError),
    #[error(transparent)]
    Text(#[from] ClipTextError),
    #[error("the vocabulary has no enabled interactions")]
    Empty,
    /// A tensor could not be read back from the device.
    #[error("cannot read a tensor back from the device: {0}")]
    ReadBack(String),
    #[error("this runner does not build {0}")]
    Unsupported(&'static str),
}

/// CLIP image embeddings (`encode_image`: projected CLS, not normalised) of CLIP-ready
/// CHW images of `res` x `res` (e.g. `vision::preprocess::clip_crop`), `batch` at a time.
pub fn embed_images<B: ModelBackend>(
    clip: &Clip<B>,
    images: &[Vec<f32>],
    res: usize,
    batch: usize,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>, ClassifierError> {
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch.max(1)) {
        let data: Vec<f32> = chunk.iter().flatten().copied().collect();
        let input =
            Tensor::<B, 4>::from_data(TensorData::new(data, [chunk.len(), 3, res, res]), device);
        let cls = clip.encode_image(input).cls;
        let dim = cls.dims()[1];
        out.extend(to_host(cls)?.chunks(dim).map(<[f32]>::to_vec));
    }
    Ok(out)
}

/// A tensor's values on the host, or why they cannot be read.
fn to_host<B: ModelBackend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, ClassifierError> {
    t.into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| ClassifierError::ReadBack(format!("{e:?}")))
}

/// Fingerprint of a text tower's weights: cached embeddings are keyed by it, so changing
/// the weights never reuses a stale embedding.
pub fn text_fingerprint<B: ModelBackend>(clip: &Clip<B>) -> Result<String, ClassifierError> {
    fingerprint(|h| {
        clip.transformer.visit(h);
        clip.token_embedding.visit(h);
        clip.ln_final.visit(h);
        ModuleVisitor::<B>::visit_float(h, &clip.positional_embedding);
        ModuleVisitor::<B>::visit_float(h, &clip.text_projection);
    })
}

/// Fingerprint of the image tower's weights: features of example crops are keyed by it,
/// as text embeddings are by [`text_fingerprint`].
pub fn vision_fingerprint<B: ModelBackend>(clip: &Clip<B>) -> Result<String, ClassifierError> {
    fingerprint(|h| clip.visual.visit(h))
}

/// CRC32 and element count of the float parameters it is shown; the first read-back
/// failure, if any.
struct Hasher(crc32fast::Hasher, usize, Option<ClassifierError>);

impl<B: ModelBackend> ModuleVisitor<B> for Hasher {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let values = match to_host(param.val()) {
            Ok(v) => v,
            Err(e) => {
                self.2.get_or_insert(e);
                return;
            }
        };
        self.1 += values.len();
        for chunk in values.chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.0.update(&bytes);
        }
    }
}

fn fingerprint(visit: impl FnOnce(&mut Hasher)) -> Result<String, ClassifierError> {
    let mut h = Hasher(crc32fast::Hasher::new(), 0, None);
    visit(&mut h);
    if let Some(e) = h.2 {
        return Err(e);
    }
    Ok(format!("crc32-{:08x}-{}", h.0.finalize(), h.1))
}

/// Prompts per text-tower pass when a set is built (the engine's interleaving unit).
pub const TEXT_BATCH: usize = 64;

/// Normalised text embeddings of tokenized prompts, one text-tower pass (padded to the
/// longest).
pub fn embed_ids<B: ModelBackend>(
    clip: &Clip<B>,
    ids: &[Vec<u32>],
) -> Result<Vec<Vec<f32>>, ClassifierError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let emb = l2_normalize(clip.encode_text(ids)?);
    let dim = emb.dims()[1];
    Ok(to_host(emb)?.chunks(dim).map(<[f32]>::to_vec).collect())
}

/// Normalised text embeddings of `prompts`, in passes of `batch` prompts of similar
/// length (less padding).
pub fn embed_prompts<B: ModelBackend>(
    clip: &Clip<B>,
    tokenizer: &ClipTokenizer,
    prompts: &[String],
    batch: usize,
) -> Result<Vec<Vec<f32>>, ClassifierError> {
    let ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| tokenizer.encode(p).map_err(VocabError::from))
        .collect::<Result<_, _>>()?;
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let mut by_index: Vec<Vec<f32>> = vec![Vec::new(); prompts.len()];
    for chunk in order.chunks(batch.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        for (row, &i) in embed_ids(clip, &batch)?.into_iter().zip(chunk) {
            by_index[i] = row;
        }
    }
    Ok(by_index)
}

/// Prompts whose embeddings a set built from `snapshot` needs.
pub fn prompts_needed(snapshot: &VocabSnapshot, trained_pack: Option<&str>) -> Vec<String> {
    let trained_verbs: HashSet<i64> = trained_pack
        .and_then(|p| snapshot.pack_verbs.get(p))
        .map(|v| v.iter().copied().collect())
        .unwrap_or_default();
    let trained_objects: HashSet<i64> = trained_pack
        .and_then(|p| snapshot.pack_objects.get(p))
        .map(|v| v.iter().copied().collect())
        .unwrap_or_default();
    let mut needed: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |p: String| {
        if seen.insert(p.clone()) {
            needed.push(p);
        }
    };
    for i in &snapshot.interactions {
        let trained = Some(i.pack.as_str()) == trained_pack && i.seed_index.is_some();
        if !trained {
            push(i.prompt.clone());
        }
    }
    for v in &snapshot.verbs {
        if !trained_verbs.contains(&v.id) {
            push(verb_prompt(&v.ing));
        }
    }
    for o in &snapshot.objects {
        if !trained_objects.contains(&o.id) {
            push(o.prompt.clone());
        }
    }
    if trained_pack.is_none() {
        push(NOTHING_PROMPT.to_string());
    }
    needed
}

/// V-COCO's validity matrix, row-major `[verbs, objects]`: verb `v` goes with object row
/// `k` when the official matrix allows it (`official`: `(verb row, object row)` cells, as
/// [`official_cells`] maps them) or when some class is `(v, k)` (how a verb a user
/// registers gets its row); the "no object" role row, if any, with every verb.
pub fn validity(
    hoi_verb: &[usize],
    hoi_object: &[usize],
    verbs: usize,
    objects: usize,
    role_row: Option<usize>,
    official: &[(usize, usize)],
) -> Vec<bool> {
    let mut valid = vec![false; verbs * objects];
    for &(v, o) in official {
        if v < verbs && o < objects {
            valid[v * objects + o] = true;
        }
    }
    for (&v, &o) in hoi_verb.iter().zip(hoi_object) {
        if o < objects
            && let Some(cell) = valid.get_mut(v * objects + o)
        {
            *cell = true;
        }
    }
    if let Some(role) = role_row.filter(|&r| r < objects) {
        for v in 0..verbs {
            valid[v * objects + role] = true;
        }
    }
    valid
}

/// The cells an official `[verbs][objects]` 0/1 matrix allows, as `(verb row, object row)`
/// of a set, through the maps from the matrix's verb and object indices to the set's rows
/// (`None`: that verb or object has no row in the set).
pub fn official_cells(
    matrix: &[Vec<u8>],
    verb_row: impl Fn(usize) -> Option<usize>,
    object_row: impl Fn(usize) -> Option<usize>,
) -> Vec<(usize, usize)> {
    let mut cells = Vec::new();
    for (v, row) in matrix.iter().enumerate() {
        let Some(vr) = verb_row(v) else { continue };
        for (o, &allowed) in row.iter().enumerate() {
            if allowed == 1
                && let Some(or) = object_row(o)
            {
                cells.push((vr, or));
            }
        }
    }
    cells
}

/// A `[E, n]` classifier matrix on the host, read column by column.
struct HostColumns {
    values: Vec<f32>,
    n: usize,
}

impl HostColumns {
    fn new<B: ModelBackend>(t: &Tensor<B, 2>) -> Result<Self, ClassifierError> {
        let n = t.dims()[1];
        Ok(Self {
            values: to_host(t.clone())?,
            n,
        })
    }

    fn column(&self, i: usize) -> Vec<f32> {
        self.values
            .iter()
            .skip(i)
            .step_by(self.n)
            .copied()
            .collect()
    }
}

/// Builds a set from a snapshot and the embeddings of [`prompts_needed`].
pub fn assemble<B: ModelBackend>(
    snapshot: &VocabSnapshot,
    embeddings: &HashMap<String, Vec<f32>>,
    verb_rows: &HashMap<i64, LearnedRow>,
    trained: Option<&TrainedRows<B>>,
    embed_dim: usize,
    device: &B::Device,
) -> Result<ClassifierSet<B>, ClassifierError> {
    if snapshot.interactions.is_empty() {
        return Err(ClassifierError::Empty);
    }
    // A prompt without an embedding could not be tokenized: its row is skipped, never
    // scored with a made-up vector.
    let text = |p: &str| embeddings.get(p).cloned();
    let mut skipped = Vec::new();
    let mut sources = RowSources::default();
    let pack = trained.map(|t| t.pack.as_str());
    // Trained matrices read back once, not a device round trip per row.
    let host = match trained {
        Some(t) => Some((
            HostColumns::new(&t.classifier.hoi_weight)?,
            to_host(t.classifier.hoi_bias.clone())?,
            HostColumns::new(&t.classifier.verb_weight)?,
            HostColumns::new(&t.classifier.obj_weight)?,
            to_host(t.classifier.obj_bias.clone())?,
        )),
        None => None,
    };
    // The checkpoint's own verb -> HOI map: its seed rows keep exactly the columns the
    // weights were trained with (V-COCO's official matrix is not one-hot per verb).
    let trained_verb2hoi = trained
        .map(|t| HostColumns::new(&t.classifier.verb2hoi))
        .transpose()?;

    // Objects: every object, then "nothing".
    let trained_object_row: HashMap<i64, usize> = pack
        .and_then(|p| snapshot.pack_objects.get(p))
        .map(|ids| ids.iter().enumerate().map(|(i, &id)| (id, i)).collect())
        .unwrap_or_default();
    let mut obj_cols = Vec::new();
    let mut obj_bias = Vec::new();
    let mut object_labels = Vec::new();
    let mut object_row: HashMap<i64, usize> = HashMap::new();
    for o in &snapshot.objects {
        let (col, bias, source) = match (&host, trained_object_row.get(&o.id)) {
            (Some((_, _, _, w, b)), Some(&r)) => (w.column(r), b[r], RowSource::Trained),
            _ => match text(&o.prompt) {
                Some(col) => (col, 0.0, RowSource::Text),
                None => {
                    skipped.push(format!(
                        "object `{}`: prompt \"{}\" cannot be embedded",
                        o.name, o.prompt
                    ));
                    continue;
                }
            },
        };
        sources.objects.insert(o.id, source);
        object_row.insert(o.id, object_labels.len());
        object_labels.push(o.name.clone());
        obj_cols.push(col);
        obj_bias.push(bias);
    }
    // V-COCO checkpoints have a trained "no object" role row before DETR's "no object"
    // column (82 rows for 80 objects): the checkpoint's object-less HOIs use it.
    let trained_objects = pack
        .and_then(|p| snapshot.pack_objects.get(p))
        .map_or(0, Vec::len);
    let role_row = match &host {
        Some((_, _, _, w, b)) if w.n == trained_objects + 2 => {
            obj_cols.push(w.column(trained_objects));
            obj_bias.push(b[trained_objects]);
            object_labels.push(NOTHING.into());
            Some(object_labels.len() - 1)
        }
        _ => None,
    };
    let nothing_row = object_labels.len();
    object_labels.push(NOTHING.into());
    match &host {
        Some((_, _, _, w, b)) => {
            let last = w.n - 1;
            obj_cols.push(w.column(last));
            obj_bias.push(b[last]);
        }
        None => {
            obj_cols.push(text(NOTHING_PROMPT).unwrap_or_else(|| vec![0.0; embed_dim]));
            obj_bias.push(0.0);
        }
    }

    // Verbs.
    let trained_verb_row: HashMap<i64, usize> = pack
        .and_then(|p| snapshot.pack_verbs.get(p))
        .map(|ids| ids.iter().enumerate().map(|(i, &id)| (id, i)).collect())
        .unwrap_or_default();
    let mut verb_cols = Vec::new();
    let mut verb_labels = Vec::new();
    let mut verb_index: HashMap<i64, usize> = HashMap::new();
    // Assembled verb row of each trained verb row.
    let mut from_trained: HashMap<usize, usize> = HashMap::new();
    // The checkpoint's verbs first, in its order, then the rest: verb-level triplets that
    // tie (e.g. zeroed by the validity matrix) then rank as the official code ranks them.
    let mut verbs: Vec<&crate::vocab::store::VerbRecord> = snapshot.verbs.iter().collect();
    verbs.sort_by_key(|v| {
        (
            trained_verb_row.get(&v.id).copied().unwrap_or(usize::MAX),
            v.id,
        )
    });
    for v in verbs {
        let (col, source) = match (&host, trained_verb_row.get(&v.id), verb_rows.get(&v.id)) {
            (Some((_, _, w, _, _)), Some(&r), _) => (w.column(r), RowSource::Trained),
            // Learned from example images (visual semantic arithmetic), as trained rows were.
            (_, _, Some(learned)) if learned.row.len() == embed_dim => (
                learned.row.clone(),
                RowSource::Examples {
                    examples: learned.examples,
                },
            ),
            _ => match text(&verb_prompt(&v.ing)) {
                Some(col) => (col, RowSource::Text),
                None => {
                    skipped.push(format!(
                        "verb `{}`: prompt \"{}\" cannot be embedded",
                        v.name,
                        verb_prompt(&v.ing)
                    ));
                    continue;
                }
            },
        };
        if let Some(&r) = trained_verb_row.get(&v.id) {
            from_trained.insert(r, verb_cols.len());
        }
        sources.verbs.insert(v.id, source);
        verb_index.insert(v.id, verb_cols.len());
        verb_labels.push(v.name.clone());
        verb_cols.push(col);
    }

    // HOI rows.
    let mut hoi_cols = Vec::new();
    let mut hoi_bias = Vec::new();
    let mut rows = Vec::new();
    let mut hoi_object = Vec::new();
    let mut verb_of = Vec::new();
    // Per HOI row: the checkpoint's verb2hoi column (seed rows of its own pack only).
    let mut trained_column: Vec<Option<Vec<f32>>> = Vec::new();
    let mut user_rows: Vec<bool> = Vec::new();
    for i in &snapshot.interactions {
        let trained_row = match (&host, i.seed_index) {
            (Some((w, b, _, _, _)), Some(s)) if Some(i.pack.as_str()) == pack => {
                Some((w, b, s as usize))
            }
            _ => None,
        };
        let what = || {
            format!(
                "interaction {} ({} {})",
                i.id,
                i.verb,
                i.object.as_deref().unwrap_or(NOTHING)
            )
        };
        let Some(&verb_row) = verb_index.get(&i.verb_id) else {
            skipped.push(format!("{}: its verb has no row", what()));
            continue;
        };
        let object = match i.object_id {
            None => role_row.unwrap_or(nothing_row),
            Some(o) => match object_row.get(&o) {
                Some(&r) => r,
                None => {
                    skipped.push(format!("{}: its object has no row", what()));
                    continue;
                }
            },
        };
        let (col, bias, source) = match trained_row {
            Some((w, b, s)) => (w.column(s), b[s], RowSource::Trained),
            None => match text(&i.prompt) {
                Some(col) => (col, 0.0, RowSource::Text),
                None => {
                    skipped.push(format!(
                        "{}: prompt \"{}\" cannot be embedded",
                        what(),
                        i.prompt
                    ));
                    continue;
                }
            },
        };
        trained_column.push(match (&trained_verb2hoi, trained_row) {
            (Some(m), Some((_, _, s))) => Some(m.column(s)),
            _ => None,
        });
        user_rows.push(i.seed_index.is_none());
        hoi_cols.push(col);
        hoi_bias.push(bias);
        hoi_object.push(object);
        verb_of.push(verb_row);
        sources.interactions.insert(i.id, source);
        rows.push(ClassRow {
            interaction_id: i.id,
            pack: i.pack.clone(),
            verb_id: i.verb_id,
            verb: i.verb.clone(),
            object_id: i.object_id,
            object: i.object.clone().unwrap_or_else(|| NOTHING.into()),
            prompt: i.prompt.clone(),
        });
    }
    if rows.is_empty() {
        return Err(ClassifierError::Empty);
    }
    let c = rows.len();
    let v = verb_cols.len();
    let mut verb2hoi = vec![0f32; v * c];
    for (h, &vi) in verb_of.iter().enumerate() {
        match &trained_column[h] {
            Some(column) => {
                for (r, &x) in column.iter().enumerate() {
                    if let Some(&a) = from_trained.get(&r) {
                        verb2hoi[a * c + h] = x;
                    }
                }
            }
            None => verb2hoi[vi * c + h] = 1.0,
        }
    }
    let k_rows = object_labels.len();
    // The checkpoint's verbs with its objects: the official matrix, where the pack has one.
    let official = match trained.and_then(|t| t.correct_matrix.as_deref()) {
        Some(matrix) => {
            let pack_object: HashMap<usize, i64> =
                trained_object_row.iter().map(|(&id, &r)| (r, id)).collect();
            official_cells(
                matrix,
                |pv| from_trained.get(&pv).copied(),
                |po| {
                    pack_object
                        .get(&po)
                        .and_then(|id| object_row.get(id))
                        .copied()
                },
            )
        }
        None => Vec::new(),
    };
    let valid = validity(&verb_of, &hoi_object, v, k_rows, role_row, &official);
    let mut label_rows = vec![pack.is_none(); k_rows];
    for (o, &row) in &object_row {
        if trained_object_row.contains_key(o) {
            label_rows[row] = true;
        }
    }
    if let Some(role) = role_row {
        label_rows[role] = true;
    }
    for (i, &o) in user_rows.iter().zip(&hoi_object) {
        if *i {
            label_rows[o] = true;
        }
    }
    label_rows[nothing_row] = false;
    let matrix = |cols: Vec<Vec<f32>>| -> Tensor<B, 2> {
        // cols[j] is row j of a [n, E] matrix; the classifier wants [E, n].
        let n = cols.len();
        let flat: Vec<f32> = cols.into_iter().flatten().collect();
        Tensor::<B, 2>::from_data(TensorData::new(flat, [n, embed_dim]), device).transpose()
    };
    let k = obj_bias.len();
    Ok(ClassifierSet {
        version: snapshot.version,
        classifier: ClassifierWeights {
            hoi_weight: matrix(hoi_cols),
            hoi_bias: Tensor::from_data(TensorData::new(hoi_bias, [c]), device),
            verb_weight: matrix(verb_cols),
            verb2hoi: Tensor::from_data(TensorData::new(verb2hoi, [v, c]), device),
            obj_weight: matrix(obj_cols),
            obj_bias: Tensor::from_data(TensorData::new(obj_bias, [k]), device),
        },
        rows: Arc::new(rows),
        hoi_object,
        object_labels,
        hoi_verb: verb_of,
        verb_labels,
        valid,
        label_rows,
        skipped,
        sources: Arc::new(sources),
    })
}
