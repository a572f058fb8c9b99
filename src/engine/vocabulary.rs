//! Keeps the classifier set in service in step with the vocabulary store. A rebuild
//! reads the store, sends the prompts it lacks embeddings for to the worker a text batch
//! at a time, caches them, and has the worker build the set; this side only awaits, so
//! detections keep running between the text passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwapOption;

use super::{ClassView, Engine, EngineError, SetSource, TEXT_BATCH};
use crate::classifier::{ClassifierError, LearnedRow, prompts_needed};
use crate::model::clip::tokenizer::ClipTokenizer;
use crate::vocab::store::{VocabError, VocabSnapshot, VocabStore};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<VocabError> for RebuildError {
    fn from(e: VocabError) -> Self {
        Self::Classifier(e.into())
    }
}

/// The vocabulary's classifier set in service, rebuilt on demand.
pub struct ClassifierService {
    store: VocabStore,
    tokenizer: Arc<ClipTokenizer>,
    /// Cached embeddings are keyed by the text tower's fingerprint.
    fingerprint: String,
    /// The image tower's fingerprint: stored example features of it give verb rows.
    vision_fingerprint: Option<String>,
    /// The pack whose seed rows come from the checkpoint (trained models only).
    trained_pack: Option<String>,
    engine: Engine,
    current: ArcSwapOption<ClassView>,
    /// One rebuild at a time; it is held while awaiting the store and the worker, never
    /// by a detection. It keeps the embeddings the set in service was built from, so a
    /// rebuild reads only new prompts from the cache table.
    rebuild_lock: tokio::sync::Mutex<Arc<HashMap<String, Vec<f32>>>>,
    text_passes: AtomicUsize,
    prompts_embedded: AtomicUsize,
    /// Why the last rebuild failed (None after a success): readiness reports it, since
    /// the set in service then lags the vocabulary.
    last_error: std::sync::Mutex<Option<String>>,
}

impl ClassifierService {
    pub fn new(
        store: VocabStore,
        tokenizer: Arc<ClipTokenizer>,
        fingerprint: String,
        trained_pack: Option<String>,
        engine: Engine,
    ) -> Self {
        Self {
            store,
            tokenizer,
            fingerprint,
            vision_fingerprint: None,
            trained_pack,
            engine,
            current: ArcSwapOption::empty(),
            rebuild_lock: tokio::sync::Mutex::new(Arc::default()),
            text_passes: AtomicUsize::new(0),
            prompts_embedded: AtomicUsize::new(0),
            last_error: std::sync::Mutex::new(None),
        }
    }

    /// Verb rows from example images stored under `vision_fingerprint` (features of
    /// other image towers are ignored): builds after this use them for verbs without
    /// trained rows.
    pub fn with_examples(mut self, vision_fingerprint: String) -> Self {
        self.vision_fingerprint = Some(vision_fingerprint);
        self
    }

    /// Verb rows from the stored examples, by verb id (none without an image tower).
    async fn example_rows(
        &self,
        snapshot: &VocabSnapshot,
    ) -> Result<HashMap<i64, LearnedRow>, RebuildError> {
        let Some(fingerprint) = &self.vision_fingerprint else {
            return Ok(HashMap::new());
        };
        let examples = self.store.example_features(fingerprint).await?;
        let person = snapshot
            .objects
            .iter()
            .find(|o| o.name == "person")
            .map(|o| o.id);
        let mut counts: HashMap<i64, usize> = HashMap::new();
        for e in &examples {
            *counts.entry(e.verb_id).or_default() += 1;
        }
        Ok(
            crate::classifier::arithmetic::rows_by_verb(&examples, person)
                .into_iter()
                .map(|(verb, row)| {
                    let examples = counts.get(&verb).copied().unwrap_or(0);
                    (verb, LearnedRow { row, examples })
                })
                .collect(),
        )
    }

    pub fn store(&self) -> &VocabStore {
        &self.store
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The set in service (None before the first build).
    pub fn current(&self) -> Option<ClassView> {
        self.current.load_full().map(|v| v.as_ref().clone())
    }

    /// Text-tower passes run so far, and prompts embedded (cache misses).
    pub fn text_passes(&self) -> (usize, usize) {
        (
            self.text_passes.load(Ordering::Relaxed),
            self.prompts_embedded.load(Ordering::Relaxed),
        )
    }

    /// Why the last rebuild failed, if it did (the set in service is then older than the
    /// vocabulary).
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Rebuilds from the store if its version moved, embedding only uncached prompts, and
    /// swaps the result in. A failure leaves the previous set serving and is remembered
    /// for readiness. Rows that can no longer be embedded are skipped and reported, not
    /// fatal: a server always starts on a database it wrote.
    pub async fn refresh(&self) -> Result<ClassView, RebuildError> {
        let mut known = self.rebuild_lock.lock().await;
        let result = self.rebuild(&mut known).await;
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            result.as_ref().err().map(|e| e.to_string());
        result
    }

    async fn rebuild(
        &self,
        known: &mut Arc<HashMap<String, Vec<f32>>>,
    ) -> Result<ClassView, RebuildError> {
        let snapshot = self.store.snapshot().await?;
        if let Some(set) = self.current()
            && set.version == snapshot.version
        {
            return Ok(set);
        }
        let needed = prompts_needed(&snapshot, self.trained_pack.as_deref());
        let (mut embeddings, unknown): (HashMap<String, Vec<f32>>, Vec<String>) = {
            let mut have = HashMap::with_capacity(needed.len());
            let mut unknown = Vec::new();
            for p in needed {
                match known.get(&p) {
                    Some(v) => {
                        have.insert(p, v.clone());
                    }
                    None => unknown.push(p),
                }
            }
            (have, unknown)
        };
        embeddings.extend(
            self.store
                .cached_embeddings(&self.fingerprint, &unknown)
                .await?,
        );
        // Prompts this tokenizer refuses get no embedding; the set skips their rows.
        let mut missing: Vec<(String, Vec<u32>)> = unknown
            .into_iter()
            .filter(|p| !embeddings.contains_key(p))
            .filter_map(|p| self.tokenizer.encode(&p).ok().map(|ids| (p, ids)))
            .collect();
        // Similar lengths together waste less padding.
        missing.sort_by_key(|(_, ids)| ids.len());
        for chunk in missing.chunks(TEXT_BATCH) {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|(_, ids)| ids.clone()).collect();
            let vectors = self.engine.embed_text(ids).await?;
            self.text_passes.fetch_add(1, Ordering::Relaxed);
            self.prompts_embedded
                .fetch_add(chunk.len(), Ordering::Relaxed);
            let rows: Vec<(String, Vec<f32>)> =
                chunk.iter().map(|(p, _)| p.clone()).zip(vectors).collect();
            // Cached chunk by chunk: work done survives a later failure.
            self.store
                .store_embeddings(&self.fingerprint, &rows)
                .await?;
            embeddings.extend(rows);
        }
        let embeddings = Arc::new(embeddings);
        let view = self
            .engine
            .install(SetSource::Vocabulary {
                verb_rows: Arc::new(self.example_rows(&snapshot).await?),
                snapshot: Arc::new(snapshot),
                embeddings: embeddings.clone(),
            })
            .await?;
        // Only what the set in service needs is kept: removed rows drop out.
        *known = embeddings;
        for row in view.skipped.iter() {
            tracing::warn!(version = view.version, "vocabulary row skipped: {row}");
        }
        self.current.store(Some(Arc::new(view.clone())));
        Ok(view)
    }
}
