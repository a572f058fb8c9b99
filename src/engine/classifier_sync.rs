//! Keeps the classifier set in service in step with the vocabulary store. A rebuild
//! reads the store, sends the prompts it lacks embeddings for to the worker a text batch
//! at a time, caches them, and has the worker build the set; this side only awaits, so
//! detections keep running between the text passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use super::{ClassifierHandle, Engine, EngineError, SetSource, TEXT_BATCH};
use crate::classifier::{ClassifierError, LearnedRow, prompts_needed};
use crate::model::clip::tokenizer::ClipTokenizer;
use crate::vocab::store::{VocabError, VocabListener, VocabSnapshot, VocabStore};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl RebuildError {
    /// The vocabulary database was out of reach (nothing is wrong with the vocabulary).
    pub fn store_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Classifier(ClassifierError::Vocab(VocabError::Unavailable(_)))
        )
    }
}

impl From<VocabError> for RebuildError {
    fn from(e: VocabError) -> Self {
        Self::Classifier(e.into())
    }
}

/// The vocabulary's classifier set in service, rebuilt on demand.
pub struct ClassifierSync {
    store: VocabStore,
    tokenizer: Arc<ClipTokenizer>,
    /// Cached embeddings are keyed by the text tower's fingerprint.
    fingerprint: String,
    /// The image tower's fingerprint: stored example features of it give verb rows.
    vision_fingerprint: Option<String>,
    /// The pack whose seed rows come from the checkpoint (trained models only).
    trained_pack: Option<String>,
    engine: Engine,
    current: ArcSwapOption<ClassifierHandle>,
    /// One rebuild at a time; it is held while awaiting the store and the worker, never
    /// by a detection. It keeps the embeddings the set in service was built from, so a
    /// rebuild reads only new prompts from the cache table.
    rebuild_lock: tokio::sync::Mutex<Arc<HashMap<String, Vec<f32>>>>,
    text_passes: AtomicUsize,
    prompts_embedded: AtomicUsize,
    /// Why the last rebuild failed (None after a success): readiness reports it, since
    /// the set in service then lags the vocabulary.
    last_error: std::sync::Mutex<Option<String>>,
    /// Whether the last failure was the database being out of reach (not a broken
    /// vocabulary): detections are still answered correctly from the set in service.
    store_unreachable: std::sync::atomic::AtomicBool,
    /// How many times a look at the store found it out of reach (a writer waiting for
    /// its rebuild stops waiting when this moves).
    store_failures: std::sync::atomic::AtomicU64,
    /// The version of the set in service, for requests that wait for a version.
    version: tokio::sync::watch::Sender<i64>,
    /// Asks the follower to look at the store now (coalesced).
    poke: tokio::sync::Notify,
}

impl ClassifierSync {
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
            store_unreachable: std::sync::atomic::AtomicBool::new(false),
            store_failures: std::sync::atomic::AtomicU64::new(0),
            version: tokio::sync::watch::Sender::new(-1),
            poke: tokio::sync::Notify::new(),
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
    pub fn current(&self) -> Option<ClassifierHandle> {
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
    pub async fn refresh(&self) -> Result<ClassifierHandle, RebuildError> {
        let mut known = self.rebuild_lock.lock().await;
        let result = self.rebuild(&mut known).await;
        let unreachable = result
            .as_ref()
            .err()
            .is_some_and(RebuildError::store_unreachable);
        if unreachable {
            self.mark_unreachable();
        } else {
            self.store_unreachable.store(false, Ordering::Relaxed);
        }
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            result.as_ref().err().map(|e| e.to_string());
        result
    }

    /// Whether the last rebuild failed only because the database was out of reach.
    pub fn store_unreachable(&self) -> bool {
        self.store_unreachable.load(Ordering::Relaxed)
    }

    /// A look at the store found it out of reach.
    fn mark_unreachable(&self) {
        self.store_failures.fetch_add(1, Ordering::Relaxed);
        self.store_unreachable.store(true, Ordering::Relaxed);
    }

    /// How many looks at the store have found it out of reach so far.
    pub fn store_failures(&self) -> u64 {
        self.store_failures.load(Ordering::Relaxed)
    }

    /// The set in service once its version is at least `version`, waiting at most `wait`
    /// (None if it does not get there in time). Asks the follower to look at the store at
    /// once, in case the announcement of that version is still on its way or was lost.
    pub async fn at_least(&self, version: i64, wait: Duration) -> Option<ClassifierHandle> {
        if let Some(set) = self.current()
            && set.version >= version
        {
            return Some(set);
        }
        let mut seen = self.version.subscribe();
        self.poke.notify_one();
        tokio::time::timeout(wait, seen.wait_for(|&v| v >= version))
            .await
            .ok()?
            .ok()?;
        self.current()
    }

    /// Keeps the set in service in step with writes made elsewhere (other replicas, the
    /// CLI on the same SQLite file): rebuilds when Postgres announces a new version, when
    /// a poll every `poll` finds the stored version moved (the fallback for announcements
    /// lost with a connection), and when a request waiting for a version asks. Runs until
    /// the task is aborted; errors are logged and retried, never fatal.
    pub async fn follow(self: Arc<Self>, poll: Duration) {
        let mut listener: Option<VocabListener> = None;
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            if listener.is_none() {
                match self.store.listen(poll.max(Duration::from_secs(1))).await {
                    Ok(Some(l)) => {
                        listener = Some(l);
                        // Changes made before LISTEN took effect were not announced to us.
                        self.catch_up().await;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        if !warned {
                            tracing::warn!(error = %e, "cannot listen for vocabulary changes; polling every {poll:?}");
                            warned = true;
                        }
                    }
                }
            }
            enum Event {
                Heard(Result<Option<i64>, VocabError>),
                Look,
            }
            let event = tokio::select! {
                heard = async {
                    match listener.as_mut() {
                        Some(l) => l.next().await,
                        None => std::future::pending().await,
                    }
                } => Event::Heard(heard),
                _ = tick.tick() => Event::Look,
                _ = self.poke.notified() => Event::Look,
            };
            match event {
                Event::Heard(Ok(Some(version))) => {
                    warned = false;
                    if self.current().is_none_or(|set| set.version < version) {
                        self.refresh_logged().await;
                    }
                }
                // The connection was lost (announcements may be gone) or said something
                // else: look at the store.
                Event::Heard(Ok(None)) => self.catch_up().await,
                Event::Heard(Err(e)) => {
                    tracing::debug!(error = %e, "vocabulary listener lost its connection");
                    listener = None;
                }
                Event::Look => self.catch_up().await,
            }
        }
    }

    /// Rebuilds if the stored version differs from the set in service, or if the last
    /// rebuild failed.
    async fn catch_up(&self) {
        let stored = match self.store.version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the vocabulary version");
                // Readiness reports it (degraded); the next look that succeeds clears it.
                if matches!(e, VocabError::Unavailable(_)) {
                    self.mark_unreachable();
                    *self
                        .last_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                }
                return;
            }
        };
        let behind = self.current().is_none_or(|set| set.version != stored);
        if behind || self.last_error().is_some() {
            self.refresh_logged().await;
        }
    }

    async fn refresh_logged(&self) {
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "classifier rebuild for a vocabulary change failed");
        }
    }

    async fn rebuild(
        &self,
        known: &mut Arc<HashMap<String, Vec<f32>>>,
    ) -> Result<ClassifierHandle, RebuildError> {
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
        // Read before the steps start: between the worker's steps there is only
        // in-memory work, so a busy worker runs them back to back (`rebuild_steps`).
        let verb_rows = Arc::new(self.example_rows(&snapshot).await?);
        let mut caching = Vec::new();
        let (view, embeddings) = {
            let _steps = self.engine.rebuild_steps();
            for chunk in missing.chunks(TEXT_BATCH) {
                let ids: Vec<Vec<u32>> = chunk.iter().map(|(_, ids)| ids.clone()).collect();
                let vectors = self.engine.embed_text(ids).await?;
                self.text_passes.fetch_add(1, Ordering::Relaxed);
                self.prompts_embedded
                    .fetch_add(chunk.len(), Ordering::Relaxed);
                let rows: Vec<(String, Vec<f32>)> =
                    chunk.iter().map(|(p, _)| p.clone()).zip(vectors).collect();
                // Cached chunk by chunk (work done survives a later failure), beside the
                // next steps rather than between them.
                let (store, fingerprint, cached) =
                    (self.store.clone(), self.fingerprint.clone(), rows.clone());
                caching.push(tokio::spawn(async move {
                    store.store_embeddings(&fingerprint, &cached).await
                }));
                embeddings.extend(rows);
            }
            let embeddings = Arc::new(embeddings);
            let view = self
                .engine
                .install(SetSource::Vocabulary {
                    verb_rows,
                    snapshot: Arc::new(snapshot),
                    embeddings: embeddings.clone(),
                })
                .await?;
            (view, embeddings)
        };
        // Only what the set in service needs is kept: removed rows drop out.
        *known = embeddings;
        for row in view.skipped.iter() {
            tracing::warn!(version = view.version, "vocabulary row skipped: {row}");
        }
        self.current.store(Some(Arc::new(view.clone())));
        self.version.send_replace(view.version);
        // The set is right either way; a missed cache write costs another replica (or
        // the next start) a text pass.
        for cached in caching {
            match cached.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot cache text embeddings"),
                Err(e) => tracing::warn!(error = %e, "caching text embeddings stopped"),
            }
        }
        Ok(view)
    }
}
