//! What the worker runs its commands with. The real runner groups a detection batch by
//! size, or by orientation when mixed sizes are padded together, and scores each image with its own
//! classifier set; it also runs the text tower and builds classifier sets, so every
//! tensor lives on the worker thread.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use super::sets::{ClassifierHandle, ClassifierSets, SetSource};
use super::{EngineError, Request, WarmUpShape};
use crate::classifier::{self, ClassifierError, ClassifierSet, TrainedRows};
use crate::detector::{BatchItem, Detector, ImageDetections};
use crate::model::kernels::ModelBackend;

/// Runs the worker's commands, on the worker thread. Any method may panic; the worker
/// contains it (failing that command's callers only).
pub trait Runner {
    /// One detection batch: one result per request, in order.
    fn run(&mut self, batch: &[Request]) -> Vec<Result<ImageDetections, EngineError>>;

    /// One forward pass over `shape.batch` blank images padded to `shape.size`, scored
    /// with `classes` (warm-up before serving).
    fn warm_up(
        &mut self,
        shape: WarmUpShape,
        classes: &ClassifierHandle,
    ) -> Result<(), EngineError> {
        let _ = (shape, classes);
        Err(EngineError::Unsupported("warm-up passes"))
    }

    /// Forward passes of the model run so far.
    fn forward_passes(&self) -> u64 {
        0
    }

    /// L2-normalised text embeddings of tokenized prompts (one text-tower pass).
    fn embed_text(&mut self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        let _ = ids;
        Err(EngineError::Unsupported("text embeddings"))
    }

    /// Builds a classifier set on the device and registers it.
    fn install(&mut self, source: SetSource) -> Result<ClassifierHandle, ClassifierError> {
        let _ = source;
        Err(ClassifierError::Unsupported("classifier sets"))
    }

    /// CLIP image embeddings (not normalised) of CLIP-ready crops (one image-tower pass):
    /// the features verb rows are made from (`classifier::arithmetic`).
    fn embed_images(&mut self, crops: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        let _ = crops;
        Err(EngineError::Unsupported("image embeddings"))
    }
}

/// How images of different sizes share a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchPolicy {
    /// Only images with the same resized size share a pass: no padding, so a batched
    /// result equals the image's result alone.
    SameSize,
    /// Images of different sizes and one orientation (landscape or square, or portrait)
    /// share a pass, zero-padded to the largest. Exact: the model keeps the padding out
    /// of every answer (the backbone zeroes it where a convolution reads it, and every
    /// attention over image memory masks it), so a batched result equals the image's
    /// result alone up to float rounding. Orientations stay apart, since padding one to
    /// the other's shape would waste a third of a pass or more.
    Pad,
}

impl BatchPolicy {
    /// The policy as flags and `/info` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::SameSize => "same-size",
            Self::Pad => "pad",
        }
    }
}

/// The runner of a real detector.
pub struct DetectorRunner<B: ModelBackend> {
    /// Owned: the worker is the only code that touches the model's tensors.
    detector: Detector<B>,
    policy: BatchPolicy,
    registry: ClassifierSets<B>,
    /// The checkpoint's own rows (trained models only), which vocabulary sets reuse.
    trained: Option<TrainedRows<B>>,
    passes: u64,
}

impl<B: ModelBackend> DetectorRunner<B> {
    /// Scores requests with the sets in `registry` (the service shares it).
    pub fn new(detector: Detector<B>, policy: BatchPolicy, registry: ClassifierSets<B>) -> Self {
        let trained = detector.trained_rows();
        Self {
            detector,
            policy,
            registry,
            trained,
            passes: 0,
        }
    }

    /// The sets this runner scores with (tests keep a clone to compare the tensors of a
    /// set in service with direct calls, or to see replaced sets freed).
    pub fn registry(&self) -> &ClassifierSets<B> {
        &self.registry
    }
}

impl<B: ModelBackend> Runner for DetectorRunner<B> {
    fn forward_passes(&self) -> u64 {
        self.passes
    }

    fn warm_up(
        &mut self,
        shape: WarmUpShape,
        classes: &ClassifierHandle,
    ) -> Result<(), EngineError> {
        let set = self.registry.get(classes).ok_or_else(|| {
            EngineError::Failed("the warm-up's classifier set is not registered".into())
        })?;
        let blank = self.detector.blank_input(shape.size);
        let options = crate::detector::DetectOptions::default();
        let items: Vec<BatchItem<'_, B>> = (0..shape.batch.max(1))
            .map(|_| BatchItem {
                input: &blank,
                options: &options,
                set: &set,
            })
            .collect();
        self.passes += 1;
        metrics::counter!("hoiclip_forward_passes_total").increment(1);
        self.detector
            .detect_batch(&items)
            .map(|_| ())
            .map_err(|e| EngineError::Failed(e.to_string()))
    }

    fn embed_text(&mut self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        classifier::embed_ids(&self.detector.model().clip_model, ids)
            .map_err(|e| EngineError::Failed(e.to_string()))
    }

    fn embed_images(&mut self, crops: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        let detector = &self.detector;
        classifier::embed_images(
            &detector.model().clip_model,
            crops,
            detector.clip_resolution(),
            crops.len(),
            detector.device(),
        )
        .map_err(|e| EngineError::Failed(e.to_string()))
    }

    fn install(&mut self, source: SetSource) -> Result<ClassifierHandle, ClassifierError> {
        let set = match source {
            SetSource::Checkpoint => self.detector.classes(),
            SetSource::Vocabulary {
                snapshot,
                embeddings,
                verb_rows,
            } => {
                let clip = &self.detector.model().clip_model;
                Arc::new(classifier::assemble(
                    &snapshot,
                    &embeddings,
                    &verb_rows,
                    self.trained.as_ref(),
                    clip.text_projection.dims()[1],
                    &clip.text_projection.val().device(),
                )?)
            }
        };
        Ok(self.registry.register(set))
    }

    fn run(&mut self, batch: &[Request]) -> Vec<Result<ImageDetections, EngineError>> {
        let Some(sets) = batch
            .iter()
            .map(|r| self.registry.get(&r.classes))
            .collect::<Option<Vec<Arc<ClassifierSet<B>>>>>()
        else {
            return super::failed(
                batch.len(),
                "the request's classifier set is not registered with this engine".into(),
            );
        };
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, request) in batch.iter().enumerate() {
            let size = request.input.detr_size;
            let portrait = |(h, w): (usize, usize)| h > w;
            let group = match self.policy {
                BatchPolicy::Pad => groups
                    .iter_mut()
                    .find(|g| portrait(batch[g[0]].input.detr_size) == portrait(size)),
                BatchPolicy::SameSize => groups
                    .iter_mut()
                    .find(|g| batch[g[0]].input.detr_size == size),
            };
            match group {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        let mut out: Vec<Result<ImageDetections, EngineError>> = batch
            .iter()
            .map(|_| Err(EngineError::Failed("not run".into())))
            .collect();
        for group in groups {
            self.passes += 1;
            metrics::counter!("hoiclip_forward_passes_total").increment(1);
            metrics::histogram!("hoiclip_forward_images").record(group.len() as f64);
            let items: Vec<BatchItem<'_, B>> = group
                .iter()
                .map(|&i| BatchItem {
                    input: &batch[i].input,
                    options: &batch[i].options,
                    set: &sets[i],
                })
                .collect();
            // A failing pass fails its own group only.
            let results =
                std::panic::catch_unwind(AssertUnwindSafe(|| self.detector.detect_batch(&items)));
            match results {
                Ok(Ok(results)) if results.len() == group.len() => {
                    for (i, result) in group.iter().zip(results) {
                        out[*i] = Ok(result);
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    for i in &group {
                        out[*i] = Err(EngineError::Failed(error.to_string()));
                    }
                }
                Err(panic) => {
                    let message = super::panic_message(panic.as_ref());
                    for i in &group {
                        out[*i] = Err(EngineError::Failed(message.clone()));
                    }
                }
            }
        }
        out
    }
}
