//! The model side as the HTTP layer sees it: no backend type, no tensors.

use std::sync::Arc;
use std::time::Duration;

use image::RgbImage;

use super::{ClassifierHandle, ClassifierSync, Engine, EngineOptions, RebuildError, Runner};
use crate::detector::{Detector, ModelInfo};
use crate::model::clip::tokenizer::ClipTokenizer;
use crate::model::kernels::ModelBackend;
use crate::vision::preprocess::{Prepared, PreprocessConfig, prepare};
use crate::vocab::store::VocabStore;

/// What the async side knows of the model: plain data, no tensors. The detector itself
/// is moved into the engine's worker, the only code that computes.
#[derive(Debug, Clone)]
pub struct ModelHandle {
    pub info: ModelInfo,
    pub preprocess: PreprocessConfig,
    /// The text tower's fingerprint (keys the embedding cache).
    pub text_fingerprint: String,
    /// The image tower's fingerprint (keys stored example features).
    pub vision_fingerprint: String,
    /// The pack whose rows the checkpoint was trained with (trained models only).
    pub trained_pack: Option<String>,
}

impl ModelHandle {
    pub fn of<B: ModelBackend>(detector: &Detector<B>) -> Self {
        let info = detector.info().clone();
        Self {
            trained_pack: info.trained.then(|| detector.pack().name.clone()),
            info,
            preprocess: *detector.preprocess_config(),
            text_fingerprint: detector.text_fingerprint().to_string(),
            vision_fingerprint: detector.vision_fingerprint().to_string(),
        }
    }
}

/// Everything the API and the other front ends need from the model, the vocabulary and
/// the engine. Not generic: the detector and its tensors live on the engine's worker
/// (whatever the backend), this side holds only the [`ModelHandle`], the classifier
/// sets' views and the engine's queue.
pub struct Service {
    model: ModelHandle,
    classifiers: Arc<ClassifierSync>,
    engine: Engine,
    device: String,
    backend: String,
    /// The task keeping the set in step with writes made elsewhere (see [`Self::follow`]).
    follower: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop_following();
    }
}

impl Service {
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

    /// Moves `detector` into a new engine worker, whose runner `make_runner` makes (on the
    /// worker thread: the binary passes the real one through, tests wrap it to hold or
    /// break batches), and builds the first classifier set from `store` through it.
    pub async fn with_runner<B, R, F>(
        detector: Detector<B>,
        store: VocabStore,
        tokenizer: Arc<ClipTokenizer>,
        options: EngineOptions,
        device: impl Into<String>,
        backend: impl Into<String>,
        make_runner: F,
    ) -> Result<Self, RebuildError>
    where
        B: ModelBackend,
        R: Runner,
        F: FnOnce(Detector<B>) -> R + Send + 'static,
    {
        let model = ModelHandle::of(&detector);
        let engine = Engine::start(move || make_runner(detector), options);
        let classifiers = Arc::new(
            ClassifierSync::new(
                store,
                tokenizer,
                model.text_fingerprint.clone(),
                model.trained_pack.clone(),
                engine.clone(),
            )
            .with_examples(model.vision_fingerprint.clone()),
        );
        classifiers.refresh().await?;
        Ok(Self {
            model,
            classifiers,
            engine,
            device: device.into(),
            backend: backend.into(),
            follower: std::sync::Mutex::new(None),
        })
    }

    pub fn model(&self) -> &ModelHandle {
        &self.model
    }

    pub fn classifiers(&self) -> &Arc<ClassifierSync> {
        &self.classifiers
    }

    pub fn info(&self) -> &ModelInfo {
        &self.model.info
    }

    /// "cpu" or "cuda:N".
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Burn backend name, e.g. "flex" or "cuda".
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The set in service (None before the first build).
    pub fn classes(&self) -> Option<ClassifierHandle> {
        self.classifiers.current()
    }

    /// Resize and normalise (host work; call off the async threads).
    pub fn prepare(&self, image: &RgbImage) -> Prepared {
        prepare(image, &self.model.preprocess)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn store(&self) -> &VocabStore {
        self.classifiers.store()
    }

    pub fn text_fingerprint(&self) -> &str {
        self.classifiers.fingerprint()
    }

    /// Example features are stored under this (the image tower's weights).
    pub fn vision_fingerprint(&self) -> &str {
        &self.model.vision_fingerprint
    }

    /// Side of the square CLIP input that example crops are prepared at.
    pub fn clip_resolution(&self) -> usize {
        self.model.preprocess.clip_resolution
    }

    /// Why the last rebuild failed, when it did (the set in service lags the vocabulary).
    pub fn rebuild_error(&self) -> Option<String> {
        self.classifiers.last_error()
    }

    /// Vocabulary rows the set in service leaves out because they cannot be embedded.
    pub fn skipped_rows(&self) -> Vec<String> {
        self.classifiers
            .current()
            .map(|s| s.skipped.as_ref().clone())
            .unwrap_or_default()
    }

    /// The set in service once it has reached `version`, waiting at most `wait` (None if
    /// it has not by then): read-your-writes across replicas.
    pub async fn classes_at_least(&self, version: i64, wait: Duration) -> Option<ClassifierHandle> {
        self.classifiers.at_least(version, wait).await
    }

    /// Whether the last rebuild failed only because the database was out of reach.
    pub fn store_unreachable(&self) -> bool {
        self.classifiers.store_unreachable()
    }

    /// How many looks at the vocabulary database have found it out of reach so far.
    pub fn store_failures(&self) -> u64 {
        self.classifiers.store_failures()
    }

    /// Rebuilds the classifier set if the vocabulary moved.
    pub async fn refresh(&self) -> Result<ClassifierHandle, RebuildError> {
        let classifiers = self.classifiers.clone();
        // Detached: a caller that goes away (a client disconnect, the request deadline)
        // must not cut a rebuild short, which would leave the vocabulary ahead of the set
        // in service with no error recorded for readiness.
        tokio::spawn(async move { classifiers.refresh().await })
            .await
            .map_err(|e| {
                RebuildError::Engine(super::EngineError::Failed(format!(
                    "the rebuild task failed: {e}"
                )))
            })?
    }
}
