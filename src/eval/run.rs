//! Runs the model over a dataset's images through the engine (batched, decoding
//! overlapped with inference, memory bounded by the queue) and collects predictions.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::EvalError;
use super::predictions::{ImagePredictions, PredictedTriplet, PredictionFile};
use super::vcoco::{VcocoDetection, VcocoGroundTruth};
use crate::detector::ImageDetections;
use crate::engine::detection::{OFFICIAL_CANDIDATES, OFFLINE_DEADLINE, PendingAnswer};
use crate::engine::{DetectPlan, DetectRequest, ImageInput, Service, SetSource};
use crate::vision::DecodeLimits;

/// Detects every image (`file_name` relative to `images`) through `service`'s engine
/// (batched as its settings say, decoding overlapped with inference, memory bounded by
/// its queue) with the checkpoint's own classifier, keeping the official top-100 triplets
/// per image, the stored pixels read as the official evaluation reads them (no EXIF
/// turn). `tfe_top_k` turns on the training-free enhancement. `progress(done, total)` is
/// called after each image. A missing or undecodable image is an error naming it.
pub async fn predict(
    service: Arc<Service>,
    dataset: &str,
    images: &Path,
    file_names: &[String],
    tfe_top_k: Option<usize>,
    progress: impl Fn(usize, usize),
) -> Result<PredictionFile, EvalError> {
    let classes = service
        .engine()
        .install(SetSource::Checkpoint)
        .await
        .map_err(|e| EvalError::invalid("(model)", "classifier", e.to_string()))?;
    let request = DetectRequest {
        top_k: OFFICIAL_CANDIDATES,
        tfe_top_k,
        auto_orient: false,
        ..DetectRequest::default()
    };
    let plan = DetectPlan::with_set(classes, &request, Instant::now() + OFFLINE_DEADLINE)
        .map_err(|e| EvalError::invalid("(model)", "options", e.to_string()))?;
    let model = service.info();
    let mut out = PredictionFile::new(
        dataset,
        Some(match &model.weights {
            Some(w) => format!("{} ({})", model.name, w.display()),
            None => format!("{} (random demo weights)", model.name),
        }),
    );
    let max_queue = service.engine().options().max_queue.max(1);
    let mut pending: VecDeque<(usize, PendingAnswer)> = VecDeque::new();
    let total = file_names.len();
    for (i, name) in file_names.iter().enumerate() {
        // Bounded: wait for the oldest answer before the queue could overflow.
        if pending.len() >= max_queue {
            collect_one(&mut pending, file_names, &mut out).await?;
            progress(out.images.len(), total);
        }
        let path = images.join(name);
        let decode_with = service.clone();
        let input = tokio::task::spawn_blocking(move || read_image(decode_with.as_ref(), &path))
            .await
            .map_err(|e| EvalError::invalid(name, "preparation", e.to_string()))??;
        let detection =
            |e: &dyn std::fmt::Display| EvalError::invalid(name, "detection", e.to_string());
        let admission = service.engine().admit().map_err(|e| detection(&e))?;
        let answer = plan
            .submit(service.as_ref(), input, admission)
            .map_err(|e| detection(&e))?;
        pending.push_back((i, answer));
    }
    while !pending.is_empty() {
        collect_one(&mut pending, file_names, &mut out).await?;
        progress(out.images.len(), total);
    }
    Ok(out)
}

async fn collect_one(
    pending: &mut VecDeque<(usize, PendingAnswer)>,
    file_names: &[String],
    out: &mut PredictionFile,
) -> Result<(), EvalError> {
    if let Some((i, answer)) = pending.pop_front() {
        let name = &file_names[i];
        let answer = answer
            .wait()
            .await
            .map_err(|e| EvalError::invalid(name, "detection", e.to_string()))?;
        out.images.push(to_predictions(name, answer.detections));
    }
    Ok(())
}

/// A dataset image read and prepared (dataset images may be larger than a server takes).
fn read_image(service: &Service, path: &PathBuf) -> Result<ImageInput, EvalError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
        path: name.clone(),
        source,
    })?;
    let limits = DecodeLimits {
        max_pixels: 100_000_000,
        ..DecodeLimits::default()
    };
    ImageInput::decode(service, &bytes, limits, false, false)
        .map_err(|e| EvalError::invalid(&name, "image", e.to_string()))
}

fn to_predictions(name: &str, result: ImageDetections) -> ImagePredictions {
    let widen = |b: [f32; 4]| b.map(f64::from);
    ImagePredictions {
        file_name: name.to_string(),
        triplets: result
            .detections
            .into_iter()
            .map(|d| PredictedTriplet {
                human: widen(d.human.bbox),
                object: widen(d.object.bbox),
                hoi: d.interaction_index,
                score: f64::from(d.score),
                query: Some(d.query),
                object_label: Some(d.object.label),
            })
            .collect(),
    }
}

/// Per V-COCO interaction: its action, its role (`None` for agent-only actions) and
/// whether it has no object.
fn vcoco_roles() -> Vec<(String, Option<String>, bool)> {
    #[derive(serde::Deserialize)]
    struct Verb {
        action: String,
        role: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct File {
        verbs: Vec<Verb>,
    }
    let file: File = serde_json::from_str(crate::vocab::pack::V_COCO_JSON)
        .expect("the embedded V-COCO vocabulary is valid");
    let pack = crate::vocab::Pack::v_coco();
    pack.interactions
        .iter()
        .map(|i| {
            let verb = &file.verbs[i.verb];
            let no_object = i.object >= pack.objects.len();
            (verb.action.clone(), verb.role.clone(), no_object)
        })
        .collect()
}

/// Official-format V-COCO detections from triplets over the 263 V-COCO interactions, as
/// GEN-VLKT's exporter builds them: one detection per (image, query) with the person box,
/// each action's best score as its agent score, and for each (action, role) the object
/// box with its best score. Triplets without a query each make their own detection.
/// The role box is the query's object box, as GEN-VLKT's exporter has it; it is NaN
/// (Scenario 1: "no role object") only when the triplet's object label is "nothing" (the
/// "no object" role), or, for saved predictions without labels, when the interaction has
/// no object.
pub fn vcoco_detections(
    predictions: &PredictionFile,
    gt: &VcocoGroundTruth,
    path: &str,
) -> Result<Vec<VcocoDetection>, EvalError> {
    let roles = vcoco_roles();
    let mut out = Vec::new();
    for (i, image) in predictions.images.iter().enumerate() {
        let image_id = gt.image_id(&image.file_name).ok_or_else(|| {
            EvalError::invalid(
                path,
                format!("images[{i}].file_name"),
                format!("`{}` is not a V-COCO test image", image.file_name),
            )
        })?;
        // Detections by query, in first-seen order.
        let mut by_query: Vec<(Option<usize>, VcocoDetection)> = Vec::new();
        for t in &image.triplets {
            let Some((action, role, no_object)) = roles.get(t.hoi) else {
                continue;
            };
            let slot = match t.query {
                Some(q) => by_query.iter().position(|(k, _)| *k == Some(q)),
                None => None,
            };
            let at = match slot {
                Some(at) => at,
                None => {
                    by_query.push((
                        t.query,
                        VcocoDetection {
                            image_id,
                            person_box: t.human,
                            ..VcocoDetection::default()
                        },
                    ));
                    by_query.len() - 1
                }
            };
            let detection = &mut by_query[at].1;
            let agent = detection
                .agent_scores
                .entry(action.clone())
                .or_insert(f64::MIN);
            *agent = agent.max(t.score);
            if let Some(role) = role {
                let no_role_object = match &t.object_label {
                    Some(label) => label == crate::classifier::NOTHING,
                    None => *no_object,
                };
                let object = if no_role_object {
                    [f64::NAN; 4]
                } else {
                    t.object
                };
                let entry = detection
                    .role_boxes
                    .entry((action.clone(), role.clone()))
                    .or_insert((object, f64::MIN));
                if t.score > entry.1 {
                    *entry = (object, t.score);
                }
            }
        }
        out.extend(by_query.into_iter().map(|(_, d)| d));
    }
    Ok(out)
}
