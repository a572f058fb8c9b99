//! What the worker runs a batch with. The real runner groups a batch by padded size
//! (unless told to pad mixed sizes) and scores each image with its own classifier set.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use burn::prelude::*;

use super::{EngineError, Request};
use crate::classifier::ClassifierSet;
use crate::detector::{BatchItem, Detector, ImageDetections};

/// Runs one batch on the worker thread: one result per request, in order. May panic; the
/// worker contains it (failing the whole batch).
pub trait Runner {
    fn run(&mut self, batch: &[Request]) -> Vec<Result<ImageDetections, EngineError>>;
}

/// How images of different sizes share a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BatchPolicy {
    /// Only images with the same resized size share a pass: no padding, so a batched
    /// result equals the image's result alone.
    SameSize,
    /// Mixed sizes are zero-padded into one pass, as the official evaluation batches.
    /// HOICLIP has no padding mask in its CLIP fusion layers and padding also changes the
    /// backbone's border features, so results move slightly (hoiclip-reference.md 8.3).
    Pad,
}

pub struct DetectorRunner<B: Backend> {
    detector: Arc<Detector<B>>,
    policy: BatchPolicy,
}

impl<B: Backend> DetectorRunner<B> {
    pub fn new(detector: Arc<Detector<B>>, policy: BatchPolicy) -> Self {
        Self { detector, policy }
    }
}

impl<B: Backend> Runner for DetectorRunner<B> {
    fn run(&mut self, batch: &[Request]) -> Vec<Result<ImageDetections, EngineError>> {
        let Some(sets) = batch
            .iter()
            .map(|r| r.classes.set::<B>())
            .collect::<Option<Vec<&ClassifierSet<B>>>>()
        else {
            return super::failed(
                batch.len(),
                "classifier set built for another backend".into(),
            );
        };
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, request) in batch.iter().enumerate() {
            let size = request.input.detr_size;
            let group = match self.policy {
                BatchPolicy::Pad => groups.first_mut(),
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
            metrics::histogram!("hoiclip_forward_images").record(group.len() as f64);
            let items: Vec<BatchItem<'_, B>> = group
                .iter()
                .map(|&i| BatchItem {
                    input: &batch[i].input,
                    options: &batch[i].options,
                    set: sets[i],
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
