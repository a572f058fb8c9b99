//! The model side as the HTTP layer sees it: no backend type, no tensors.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use burn::prelude::*;
use image::RgbImage;

use super::{DetectorRunner, Engine, EngineOptions, Runner};
use crate::classifier::{ClassRow, ClassifierError, ClassifierService, ClassifierSet};
use crate::detector::{Detector, ModelInfo};
use crate::vision::preprocess::Prepared;
use crate::vocab::store::VocabStore;

/// A classifier set seen from outside the engine: version and rows, with the tensors
/// carried along opaquely so the request is scored with exactly the set it was checked
/// against, even if the vocabulary changes while it waits.
#[derive(Clone)]
pub struct ClassView {
    pub version: i64,
    pub rows: Arc<Vec<ClassRow>>,
    set: Arc<dyn Any + Send + Sync>,
}

impl ClassView {
    pub fn new<B: Backend>(set: Arc<ClassifierSet<B>>) -> Self {
        Self {
            version: set.version,
            rows: set.rows.clone(),
            set,
        }
    }

    /// The set's tensors, when they live on backend `B`.
    pub fn set<B: Backend>(&self) -> Option<&ClassifierSet<B>> {
        self.set.downcast_ref()
    }
}

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
    /// Rebuilds the classifier set if the vocabulary moved.
    fn refresh(&self) -> BoxFuture<'_, Result<ClassView, ClassifierError>>;
    /// Why the last rebuild failed, when it did (the set in service lags the vocabulary).
    fn rebuild_error(&self) -> Option<String>;
    /// Vocabulary rows the set in service leaves out because they cannot be embedded.
    fn skipped_rows(&self) -> Vec<String>;
}

/// [`Inference`] for a detector on backend `B`.
pub struct Service<B: Backend> {
    detector: Arc<Detector<B>>,
    classifiers: Arc<ClassifierService<B>>,
    engine: Engine,
    device: String,
    backend: String,
}

impl<B: Backend> Service<B> {
    /// Starts the engine's worker for `detector`.
    pub fn start(
        detector: Arc<Detector<B>>,
        classifiers: Arc<ClassifierService<B>>,
        options: EngineOptions,
        device: impl Into<String>,
        backend: impl Into<String>,
    ) -> Self {
        let policy = options.policy;
        Self::with_runner(detector, classifiers, options, device, backend, move |d| {
            DetectorRunner::new(d, policy)
        })
    }

    /// As [`Self::start`], with the worker's runner made by `make_runner` (on the worker
    /// thread): tests wrap the real runner to hold or break batches.
    pub fn with_runner<R, F>(
        detector: Arc<Detector<B>>,
        classifiers: Arc<ClassifierService<B>>,
        options: EngineOptions,
        device: impl Into<String>,
        backend: impl Into<String>,
        make_runner: F,
    ) -> Self
    where
        R: Runner,
        F: FnOnce(Arc<Detector<B>>) -> R + Send + 'static,
    {
        let for_worker = detector.clone();
        let engine = Engine::start(move || make_runner(for_worker), options);
        Self {
            detector,
            classifiers,
            engine,
            device: device.into(),
            backend: backend.into(),
        }
    }

    pub fn detector(&self) -> &Arc<Detector<B>> {
        &self.detector
    }

    pub fn classifiers(&self) -> &Arc<ClassifierService<B>> {
        &self.classifiers
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
        self.classifiers.current().map(ClassView::new)
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

    fn rebuild_error(&self) -> Option<String> {
        self.classifiers.last_error()
    }

    fn skipped_rows(&self) -> Vec<String> {
        self.classifiers
            .current()
            .map(|s| s.skipped.clone())
            .unwrap_or_default()
    }

    fn refresh(&self) -> BoxFuture<'_, Result<ClassView, ClassifierError>> {
        Box::pin(async move {
            let set = self
                .classifiers
                .refresh(&self.detector.model().clip_model)
                .await?;
            Ok(ClassView::new(set))
        })
    }
}
