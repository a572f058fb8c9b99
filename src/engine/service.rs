//! The model side as the HTTP layer sees it: no backend type, no tensors.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use burn::prelude::*;
use image::RgbImage;

use super::{
    ClassView, ClassifierService, DetectorRunner, Engine, EngineOptions, RebuildError, Runner,
    SetRegistry,
};
use crate::detector::{Detector, ModelInfo};
use crate::model::clip::tokenizer::ClipTokenizer;
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
}

/// [`Inference`] for a detector on backend `B`. The detector is shared with the worker;
/// this side only reads its settings (`info`, `prepare`), never its tensors.
pub struct Service<B: Backend> {
    detector: Arc<Detector<B>>,
    classifiers: Arc<ClassifierService>,
    registry: SetRegistry<B>,
    engine: Engine,
    device: String,
    backend: String,
}

impl<B: Backend> Service<B> {
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

impl<B: Backend> Inference for Service<B> {
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
