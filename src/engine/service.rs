//! The model side as the HTTP layer sees it: no backend type, no tensors.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use image::RgbImage;

use super::{
    ClassView, ClassifierService, DetectorRunner, Engine, EngineOptions, RebuildError, Runner,
    SetRegistry,
};
use crate::detector::{Detector, ModelInfo};
use crate::model::clip::tokenizer::ClipTokenizer;
use crate::model::kernels::ModelBackend;
use crate::vision::preprocess::Prepared;
use crate::vocab::store::VocabStore;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything the API needs from the model, vocabulary and engine.
pub trait Inference: Send + Sync {
    fn info(&self) -> &ModelInfo;
    /// "cpu" or "cuda:N".
    fn device(&self) -> &str;
    /// Burn backend name, e.g. "flex" or "cuda".
    fn backend(&self) -> &str;
    /// The set in service (None before the first build).
    fn classes(&self) -> Option<ClassView>;
    /// Resize and normalise (host work; call off the async threads).
    fn prepare(&self, image: &RgbImage) -> Prepared;
    fn engine(&self) -> &Engine;
    fn store(&self) -> &VocabStore;
    fn text_fingerprint(&self) -> &str;
    /// Example features are stored under this (the image tower's weights).
    fn vision_fingerprint(&self) -> &str;
    /// Side of the square CLIP input that example crops are prepared at.
    fn clip_resolution(&self) -> usize;
    /// Rebuilds the classifier set if the vocabulary moved.
    fn refresh(&self) -> BoxFuture<'_, Result<ClassView, RebuildError>>;
    /// Why the last rebuild failed, when it did (the set in service lags the vocabulary).
    fn rebuild_error(&self) -> Option<String>;
    /// Vocabulary rows the set in service leaves out because they cannot be embedded.
    fn skipped_rows(&self) -> Vec<String>;
    /// The set in service once it has reached `version`, waiting at most `wait` (None if
    /// it has not by then): read-your-writes across replicas.
    fn classes_at_least(&self, version: i64, wait: Duration) -> BoxFuture<'_, Option<ClassView>>;
    /// Whether the last rebuild failed only because the database was out of reach.
    fn store_unreachable(&self) -> bool;
    /// How many looks at the vocabulary database have found it out of reach so far.
    fn store_failures(&self) -> u64;
}

/// [`Inference`] for a detector on backend `B`. The detector is shared with the worker;
/// this side only reads its settings (`info`, `prepare`), never its tensors.
pub struct Service<B: ModelBackend> {
    detector: Arc<Detector<B>>,
    classifiers: Arc<ClassifierService>,
    registry: SetRegistry<B>,
    engine: Engine,
    device: String,
    backend: String,
    /// The task keeping the set in step with writes made elsewhere (see [`Self::follow`]).
    follower: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<B: ModelBackend> Drop for Service<B> {
    fn drop(&mut self) {
        self.stop_following();
    }
}

impl<B: ModelBackend> Service<B> {
    /// Stops following the vocabulary (changes made elsewhere then arrive only with this
    /// replica's own writes or a `refresh`).
    pub fn stop_following(&self) {
        if let Some(task) = self
            .follower
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }

    /// Starts following the vocabulary: changes committed by other replicas (announced
    /// by Postgres, or found by polling the version every `poll`) are rebuilt into the
    /// set in service without a request asking. Replaces an earlier follower.
    pub fn follow(&self, poll: Duration) {
        let task = tokio::spawn(self.classifiers.clone().follow(poll));
        if let Some(old) = self
            .follower
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(task)
        {
            old.abort();
        }
    }

    /// Starts the engine's worker for `detector` and builds the first classifier set
    /// from `store` (through the worker).
    pub async fn start(
        detector: Arc<Detector<B>>,
        store: VocabStore,
        tokenizer: Arc<ClipTokenizer>,
        options: EngineOptions,
        device: impl Into<String>,
        backend: impl Into<String>,
    ) -> Result<Self, RebuildError> {
        let policy = options.policy;
        Self::with_runner(
            detector,
            store,
            tokenizer,
            options,
            device,
            backend,
            move |d, registry| DetectorRunner::new(d, policy, registry),
        )
        .await
    }

    /// As [`Self::start`], with the worker's runner made by `make_runner` (on the worker
    /// thread): tests wrap the real runner to hold or break batches.
    pub async fn with_runner<R, F>(
        detector: Arc<Detector<B>>,
        store: VocabStore,
        tokenizer: Arc<ClipTokenizer>,
        options: EngineOptions,
        device: impl Into<String>,
        backend: impl Into<String>,
        make_runner: F,
    ) -> Result<Self, RebuildError>
    where
        R: Runner,
        F: FnOnce(Arc<Detector<B>>, SetRegistry<B>) -> R + Send + 'static,
    {
        let registry = SetRegistry::default();
        let engine = Engine::start(
            {
                let detector = detector.clone();
                let registry = registry.clone();
                move || make_runner(detector, registry)
            },
            options,
        );
        let trained_pack = detector
            .info()
            .trained
            .then(|| detector.pack().name.clone());
        let classifiers = Arc::new(
            ClassifierService::new(
                store,
                tokenizer,
                detector.text_fingerprint().to_string(),
                trained_pack,
                engine.clone(),
            )
            .with_examples(detector.vision_fingerprint().to_string()),
        );
        classifiers.refresh().await?;
        Ok(Self {
            detector,
            classifiers,
            registry,
            engine,
            device: device.into(),
            backend: backend.into(),
            follower: std::sync::Mutex::new(None),
        })
    }

    pub fn detector(&self) -> &Arc<Detector<B>> {
        &self.detector
    }

    pub fn classifiers(&self) -> &Arc<ClassifierService> {
        &self.classifiers
    }

    /// The sets the worker scores with (tests read them to compare with direct calls).
    pub fn registry(&self) -> &SetRegistry<B> {
        &self.registry
    }
}

impl<B: ModelBackend> Inference for Service<B> {
    fn info(&self) -> &ModelInfo {
        self.detector.info()
    }

    fn device(&self) -> &str {
        &self.device
    }

    fn backend(&self) -> &str {
        &self.backend
    }

    fn classes(&self) -> Option<ClassView> {
        self.classifiers.current()
    }

    fn prepare(&self, image: &RgbImage) -> Prepared {
        self.detector.prepare(image)
    }

    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn store(&self) -> &VocabStore {
        self.classifiers.store()
    }

    fn text_fingerprint(&self) -> &str {
        self.classifiers.fingerprint()
    }

    fn vision_fingerprint(&self) -> &str {
        self.detector.vision_fingerprint()
    }

    fn clip_resolution(&self) -> usize {
        self.detector.clip_resolution()
    }

    fn rebuild_error(&self) -> Option<String> {
        self.classifiers.last_error()
    }

    fn skipped_rows(&self) -> Vec<String> {
        self.classifiers
            .current()
            .map(|s| s.skipped.as_ref().clone())
            .unwrap_or_default()
    }

    fn classes_at_least(&self, version: i64, wait: Duration) -> BoxFuture<'_, Option<ClassView>> {
        Box::pin(self.classifiers.at_least(version, wait))
    }

    fn store_unreachable(&self) -> bool {
        self.classifiers.store_unreachable()
    }

    fn store_failures(&self) -> u64 {
        self.classifiers.store_failures()
    }

    fn refresh(&self) -> BoxFuture<'_, Result<ClassView, RebuildError>> {
        let classifiers = self.classifiers.clone();
        Box::pin(async move {
            // Detached: a caller that goes away (a client disconnect, the request
            // deadline) must not cut a rebuild short, which would leave the vocabulary
            // ahead of the set in service with no error recorded for readiness.
            tokio::spawn(async move { classifiers.refresh().await })
                .await
                .map_err(|e| {
                    RebuildError::Engine(super::EngineError::Failed(format!(
                        "the rebuild task failed: {e}"
                    )))
                })?
        })
    }
}
