//! Verbs learned from example images: each example's human, object and union crops go
//! through the image tower on the worker (one command for the whole request, so they
//! share batched passes), and their features are stored under the tower's fingerprint.
//! The next rebuild turns them into the verb's row (`classifier::arithmetic`).

use std::time::Instant;

use image::RgbImage;

use super::{EngineError, Service};
use crate::classifier::arithmetic::union_box;
use crate::vision::preprocess::clip_crop;
use crate::vocab::store::{ExampleRecord, NewExample, VocabError};

/// Examples one request may add: each costs three image-tower passes, and the body
/// carries every image (see the README).
pub const MAX_EXAMPLES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    #[error(transparent)]
    Vocab(#[from] VocabError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// One example ready for the image tower: its crops, CLIP-preprocessed, and what is
/// stored beside their features.
#[derive(Debug, Clone)]
pub struct ExampleCrops {
    pub object: String,
    /// Identifies the source image (see [`image_id`]).
    pub image: String,
    pub human_box: [f32; 4],
    pub object_box: [f32; 4],
    /// Human, object and union crops, each `3 x res x res`.
    crops: [Vec<f32>; 3],
}

/// A checksum of an image file's bytes: examples from one image share it, which the
/// person row's per-image mean relies on.
pub fn image_id(bytes: &[u8]) -> String {
    format!("crc32-{:08x}-{}", crc32fast::hash(bytes), bytes.len())
}

/// "x1,y1,x2,y2" (spaces allowed) as a box; `None` unless it is exactly four numbers.
pub fn parse_box(text: &str) -> Option<[f32; 4]> {
    let values: Vec<f32> = text
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .ok()?;
    values.try_into().ok()
}

/// Refuses a box that is not finite, leaves the image, or is less than a pixel wide or
/// high once rounded to whole pixels (as the crop rounds it).
pub fn check_box(
    field: &'static str,
    b: [f32; 4],
    (width, height): (u32, u32),
) -> Result<(), VocabError> {
    let invalid = |reason: String| VocabError::Invalid { field, reason };
    if b.iter().any(|v| !v.is_finite()) {
        return Err(invalid(format!("{b:?} has a value that is not a number")));
    }
    let (w, h) = (width as f32, height as f32);
    if b[0] < 0.0 || b[1] < 0.0 || b[2] > w || b[3] > h {
        return Err(invalid(format!(
            "{b:?} leaves the {width}x{height} image (x1, y1 >= 0; x2 <= width; y2 <= height)"
        )));
    }
    let side = |lo: f32, hi: f32| hi.round_ties_even() - lo.round_ties_even();
    if side(b[0], b[2]) < 1.0 || side(b[1], b[3]) < 1.0 {
        return Err(invalid(format!(
            "{b:?} is not [x1, y1, x2, y2] with at least one whole pixel between x1 and x2 and between y1 and y2"
        )));
    }
    Ok(())
}

impl ExampleCrops {
    /// Checks the boxes against the decoded image and crops it as the official
    /// generator does (host work: call off the async threads).
    pub fn new(
        image: &RgbImage,
        image_id: String,
        human_box: [f32; 4],
        object_box: [f32; 4],
        object: String,
        res: usize,
    ) -> Result<Self, VocabError> {
        let size = image.dimensions();
        check_box("human_box", human_box, size)?;
        check_box("object_box", object_box, size)?;
        Ok(Self {
            crops: [
                clip_crop(image, human_box, res),
                clip_crop(image, object_box, res),
                clip_crop(image, union_box(human_box, object_box), res),
            ],
            object,
            image: image_id,
            human_box,
            object_box,
        })
    }
}

/// Checks the request's verb and objects before any crop is embedded (a bad name must
/// not cost image-tower passes), embeds every crop in one engine command, then stores
/// the features, all or none (with `replace`, in place of the verb's earlier examples).
/// Returns the stored examples and the vocabulary version; the caller rebuilds the
/// classifier. The image tower's passes must end before `deadline`, or nothing is stored.
pub async fn learn(
    service: &Service,
    verb_id: i64,
    examples: Vec<ExampleCrops>,
    replace: bool,
    deadline: Instant,
) -> Result<(Vec<ExampleRecord>, i64), ExampleError> {
    check_count(examples.len())?;
    let objects: Vec<&str> = examples.iter().map(|e| e.object.as_str()).collect();
    service
        .store()
        .check_example_targets(verb_id, &objects)
        .await?;
    let mut crops = Vec::with_capacity(3 * examples.len());
    let mut kept = Vec::with_capacity(examples.len());
    for e in examples {
        let [h, o, u] = e.crops;
        crops.extend([h, o, u]);
        kept.push((e.object, e.image, e.human_box, e.object_box));
    }
    // Past the deadline nothing is stored: the caller answers "timed out" and means it.
    let features = tokio::time::timeout_at(deadline.into(), service.engine().embed_images(crops))
        .await
        .map_err(|_| EngineError::DeadlineExceeded)??;
    if features.len() != 3 * kept.len() {
        return Err(EngineError::Failed(format!(
            "{} crops gave {} features",
            3 * kept.len(),
            features.len()
        ))
        .into());
    }
    let mut features = features.into_iter();
    let mut new = Vec::with_capacity(kept.len());
    for (object, image, human_box, object_box) in kept {
        let (Some(human), Some(object_features), Some(union)) =
            (features.next(), features.next(), features.next())
        else {
            break;
        };
        new.push(NewExample {
            object,
            image,
            human_box,
            object_box,
            human,
            object_features,
            union,
        });
    }
    let (store, fingerprint) = (service.store(), service.vision_fingerprint());
    Ok(match replace {
        true => store.replace_examples(verb_id, fingerprint, &new).await?,
        false => store.add_examples(verb_id, fingerprint, &new).await?,
    })
}

/// Refuses no examples or more than [`MAX_EXAMPLES`].
pub fn check_count(n: usize) -> Result<(), VocabError> {
    if n == 0 || n > MAX_EXAMPLES {
        return Err(VocabError::Invalid {
            field: "examples",
            reason: format!("give between 1 and {MAX_EXAMPLES} examples per request, not {n}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_parse_from_text() {
        assert_eq!(parse_box(" 1, 2.5,3 ,4"), Some([1.0, 2.5, 3.0, 4.0]));
        for bad in ["", "1,2,3", "1,2,3,4,5", "1,2,x,4", "1;2;3;4"] {
            assert_eq!(parse_box(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn boxes_must_lie_in_the_image_and_cover_a_pixel() {
        let size = (100, 50);
        assert!(check_box("b", [0.0, 0.0, 100.0, 50.0], size).is_ok());
        assert!(check_box("b", [10.2, 10.0, 11.6, 11.0], size).is_ok());
        for bad in [
            [-1.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 100.5, 10.0],
            [0.0, 0.0, 10.0, 51.0],
            [5.0, 5.0, 5.0, 10.0],
            [10.0, 5.0, 5.0, 10.0],
            // Under a pixel once rounded, as the crop rounds.
            [10.6, 5.0, 11.4, 10.0],
            [1.5, 5.0, 2.5, 10.0],
            [f32::NAN, 0.0, 10.0, 10.0],
            [0.0, 0.0, f32::INFINITY, 10.0],
        ] {
            assert!(check_box("b", bad, size).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn counts_outside_one_to_the_limit_are_refused() {
        assert!(check_count(0).is_err());
        assert!(check_count(1).is_ok());
        assert!(check_count(MAX_EXAMPLES).is_ok());
        assert!(check_count(MAX_EXAMPLES + 1).is_err());
    }
}
