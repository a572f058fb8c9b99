//! Classifier sets: the HOI, verb and object rows a detection is scored against, built
//! from a vocabulary snapshot. Immutable and versioned; the service swaps a new set in
//! atomically, and a request keeps the set it started with.
//!
//! Rows: for the interactions, verbs and objects of the checkpoint's own pack, the
//! checkpoint's trained rows (with their bias); for everything else, the L2-normalised
//! CLIP text embedding of the prompt (bias 0). A new verb's row (read by the verb
//! adapter) is the normalised text embedding of "a photo of a person {ing}": the verb
//! space is CLIP's joint space, where the official verb rows also live (they start from
//! CLIP image features, `tmp/verb.pth`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use tokio::sync::Mutex;

use crate::model::clip::tokenizer::ClipTokenizer;
use crate::model::clip::{Clip, ClipTextError, l2_normalize};
use crate::model::hoiclip::Classifier;
pub use crate::vocab::store::verb_prompt;
use crate::vocab::store::{VocabError, VocabSnapshot, VocabStore};

/// Name of the object classifier's last ("no object") row.
pub const NOTHING: &str = "nothing";
const NOTHING_PROMPT: &str = "a photo of nothing";

/// One HOI class of a set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassRow {
    pub interaction_id: i64,
    pub pack: String,
    pub verb: String,
    pub object: String,
    pub prompt: String,
}

/// An immutable, versioned classifier.
#[derive(Debug, Clone)]
pub struct ClassifierSet<B: Backend> {
    /// The vocabulary version it was built from.
    pub version: i64,
    pub classifier: Classifier<B>,
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
}

/// The checkpoint's own classifier and the pack its rows follow.
#[derive(Debug, Clone)]
pub struct TrainedRows<B: Backend> {
    pub pack: String,
    pub classifier: Classifier<B>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error(transparent)]
    Vocab(#[from] VocabError),
    #[error(transparent)]
    Text(#[from] ClipTextError),
    #[error("the vocabulary has no enabled interactions")]
    Empty,
}

/// Fingerprint of a text tower's weights: cached embeddings are keyed by it, so changing
/// the weights never reuses a stale embedding.
pub fn text_fingerprint<B: Backend>(clip: &Clip<B>) -> String {
    struct Hash(crc32fast::Hasher, usize);
    impl<B: Backend> ModuleVisitor<B> for Hash {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let values: Vec<f32> = param
                .val()
                .into_data()
                .convert::<f32>()
                .to_vec()
                .unwrap_or_default();
            self.1 += values.len();
            for chunk in values.chunks(1 << 16) {
                let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.0.update(&bytes);
            }
        }
    }
    let mut h = Hash(crc32fast::Hasher::new(), 0);
    clip.transformer.visit(&mut h);
    clip.token_embedding.visit(&mut h);
    clip.ln_final.visit(&mut h);
    ModuleVisitor::<B>::visit_float(&mut h, &clip.positional_embedding);
    ModuleVisitor::<B>::visit_float(&mut h, &clip.text_projection);
    format!("crc32-{:08x}-{}", h.0.finalize(), h.1)
}

/// Normalised text embeddings of `prompts` (batches cut to their longest prompt).
pub fn embed_prompts<B: Backend>(
    clip: &Clip<B>,
    tokenizer: &ClipTokenizer,
    prompts: &[String],
) -> Result<Vec<Vec<f32>>, ClassifierError> {
    let mut out = Vec::with_capacity(prompts.len());
    // Similar lengths together waste less padding.
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    let ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| tokenizer.encode(p).map_err(VocabError::from))
        .collect::<Result<_, _>>()?;
    order.sort_by_key(|&i| ids[i].len());
    let mut by_index: Vec<Option<Vec<f32>>> = vec![None; prompts.len()];
    for chunk in order.chunks(64) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        let emb = l2_normalize(clip.encode_text(&batch)?);
        let dim = emb.dims()[1];
        let values: Vec<f32> = emb.into_data().to_vec().unwrap_or_default();
        for (row, &i) in chunk.iter().enumerate() {
            by_index[i] = Some(values[row * dim..(row + 1) * dim].to_vec());
        }
    }
    for v in by_index {
        out.push(v.unwrap_or_default());
    }
    Ok(out)
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
/// `k` when some class is `(v, k)`; the "no object" role row, if any, with every verb.
pub fn validity(
    hoi_verb: &[usize],
    hoi_object: &[usize],
    verbs: usize,
    objects: usize,
    role_row: Option<usize>,
) -> Vec<bool> {
    let mut valid = vec![false; verbs * objects];
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

/// A `[E, n]` classifier matrix on the host, read column by column.
struct HostColumns {
    values: Vec<f32>,
    n: usize,
}

impl HostColumns {
    fn new<B: Backend>(t: &Tensor<B, 2>) -> Self {
        let n = t.dims()[1];
        Self {
            values: t.clone().into_data().to_vec().unwrap_or_default(),
            n,
        }
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

fn host_vec<B: Backend>(t: &Tensor<B, 1>) -> Vec<f32> {
    t.clone().into_data().to_vec().unwrap_or_default()
}

/// Builds a set from a snapshot and the embeddings of [`prompts_needed`].
pub fn assemble<B: Backend>(
    snapshot: &VocabSnapshot,
    embeddings: &HashMap<String, Vec<f32>>,
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
    let pack = trained.map(|t| t.pack.as_str());
    // Trained matrices read back once, not a device round trip per row.
    let host = trained.map(|t| {
        (
            HostColumns::new(&t.classifier.hoi_weight),
            host_vec(&t.classifier.hoi_bias),
            HostColumns::new(&t.classifier.verb_weight),
            HostColumns::new(&t.classifier.obj_weight),
            host_vec(&t.classifier.obj_bias),
        )
    });
    // The checkpoint's own verb -> HOI map: its seed rows keep exactly the columns the
    // weights were trained with (V-COCO's official matrix is not one-hot per verb).
    let trained_verb2hoi = trained.map(|t| HostColumns::new(&t.classifier.verb2hoi));

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
        let (col, bias) = match (&host, trained_object_row.get(&o.id)) {
            (Some((_, _, _, w, b)), Some(&r)) => (w.column(r), b[r]),
            _ => match text(&o.prompt) {
                Some(col) => (col, 0.0),
                None => {
                    skipped.push(format!(
                        "object `{}`: prompt \"{}\" cannot be embedded",
                        o.name, o.prompt
                    ));
                    continue;
                }
            },
        };
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
        let col = match (&host, trained_verb_row.get(&v.id)) {
            (Some((_, _, w, _, _)), Some(&r)) => w.column(r),
            _ => match text(&verb_prompt(&v.ing)) {
                Some(col) => col,
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
        let (col, bias) = match trained_row {
            Some((w, b, s)) => (w.column(s), b[s]),
            None => match text(&i.prompt) {
                Some(col) => (col, 0.0),
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
        rows.push(ClassRow {
            interaction_id: i.id,
            pack: i.pack.clone(),
            verb: i.verb.clone(),
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
    let valid = validity(&verb_of, &hoi_object, v, k_rows, role_row);
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
        classifier: Classifier {
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
    })
}

/// Keeps the current [`ClassifierSet`] and rebuilds it from the store on demand.
pub struct ClassifierService<B: Backend> {
    store: VocabStore,
    tokenizer: Arc<ClipTokenizer>,
    fingerprint: String,
    trained: Option<TrainedRows<B>>,
    embed_dim: usize,
    device: B::Device,
    current: ArcSwap<Option<Arc<ClassifierSet<B>>>>,
    rebuild_lock: Mutex<HashMap<String, Vec<f32>>>,
    text_passes: AtomicUsize,
    prompts_embedded: AtomicUsize,
    /// Why the last rebuild failed (None after a success): readiness reports it, since
    /// the set in service then lags the vocabulary.
    last_error: std::sync::Mutex<Option<String>>,
}

impl<B: Backend> ClassifierService<B> {
    pub fn new(
        store: VocabStore,
        tokenizer: Arc<ClipTokenizer>,
        clip: &Clip<B>,
        trained: Option<TrainedRows<B>>,
        device: &B::Device,
    ) -> Self {
        Self {
            store,
            tokenizer,
            fingerprint: text_fingerprint(clip),
            trained,
            embed_dim: clip.text_projection.dims()[1],
            device: device.clone(),
            current: ArcSwap::from_pointee(None),
            rebuild_lock: Mutex::new(HashMap::new()),
            text_passes: AtomicUsize::new(0),
            prompts_embedded: AtomicUsize::new(0),
            last_error: std::sync::Mutex::new(None),
        }
    }

    pub fn store(&self) -> &VocabStore {
        &self.store
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The set in service (None before the first build).
    pub fn current(&self) -> Option<Arc<ClassifierSet<B>>> {
        self.current.load_full().as_ref().clone()
    }

    /// Text-tower batches run so far, and prompts embedded (cache misses).
    pub fn text_passes(&self) -> (usize, usize) {
        (
            self.text_passes.load(Ordering::Relaxed),
            self.prompts_embedded.load(Ordering::Relaxed),
        )
    }

    /// Why the last rebuild failed, if it did (the set in service is then older than the
    /// vocabulary).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Rebuilds from the store if its version moved, embedding only uncached prompts, and
    /// swaps the result in. A failure leaves the previous set serving and is remembered
    /// for readiness. Rows that can no longer be embedded are skipped and reported, not
    /// fatal: a server always starts on a database it wrote.
    pub async fn refresh(&self, clip: &Clip<B>) -> Result<Arc<ClassifierSet<B>>, ClassifierError> {
        let _guard = self.rebuild_lock.lock().await;
        let result = self.rebuild(clip).await;
        if let Ok(mut last) = self.last_error.lock() {
            *last = result.as_ref().err().map(|e| e.to_string());
        }
        result
    }

    async fn rebuild(&self, clip: &Clip<B>) -> Result<Arc<ClassifierSet<B>>, ClassifierError> {
        let snapshot = self.store.snapshot().await?;
        if let Some(set) = self.current()
            && set.version == snapshot.version
        {
            return Ok(set);
        }
        let pack = self.trained.as_ref().map(|t| t.pack.as_str());
        let needed = prompts_needed(&snapshot, pack);
        let mut embeddings = self
            .store
            .cached_embeddings(&self.fingerprint, &needed)
            .await?;
        // Prompts this tokenizer refuses get no embedding; `assemble` skips their rows.
        let missing: Vec<String> = needed
            .into_iter()
            .filter(|p| !embeddings.contains_key(p) && self.tokenizer.encode(p).is_ok())
            .collect();
        if !missing.is_empty() {
            let fresh = embed_prompts(clip, &self.tokenizer, &missing)?;
            self.text_passes
                .fetch_add(missing.len().div_ceil(64), Ordering::Relaxed);
            self.prompts_embedded
                .fetch_add(missing.len(), Ordering::Relaxed);
            let rows: Vec<(String, Vec<f32>)> = missing.into_iter().zip(fresh).collect();
            self.store
                .store_embeddings(&self.fingerprint, &rows)
                .await?;
            embeddings.extend(rows);
        }
        let set = Arc::new(assemble(
            &snapshot,
            &embeddings,
            self.trained.as_ref(),
            self.embed_dim,
            &self.device,
        )?);
        for row in &set.skipped {
            tracing::warn!(version = set.version, "vocabulary row skipped: {row}");
        }
        self.current.store(Arc::new(Some(set.clone())));
        Ok(set)
    }
}
