//! The triplets a detection gives, in the original image's pixels.

use super::*;

/// A detected person's box.
#[derive(Debug, Clone, PartialEq)]
pub struct HumanBox {
    /// `[x1, y1, x2, y2]` in original pixels.
    pub bbox: [f32; 4],
}

/// A detected object's box and its predicted label.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectBox {
    /// `[x1, y1, x2, y2]` in original pixels.
    pub bbox: [f32; 4],
    pub label: String,
}

/// One detected interaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub human: HumanBox,
    pub object: ObjectBox,
    pub verb: String,
    /// The interaction's prompt text, e.g. "a photo of a person riding a bicycle".
    pub interaction: String,
    /// Index of the interaction in the vocabulary.
    pub interaction_index: usize,
    pub score: f32,
    /// The decoder query (human-object pair) it came from: triplets of one query share
    /// their boxes.
    pub query: usize,
    /// What the score is made of (when asked for).
    pub terms: Option<ScoreTerms>,
}

impl Detection {
    /// What rendering draws for it: both boxes and "verb object score".
    pub fn pair(&self) -> crate::vision::render::Pair {
        crate::vision::render::Pair {
            human: self.human.bbox,
            object: self.object.bbox,
            caption: format!("{} {} {:.2}", self.verb, self.object.label, self.score),
        }
    }

    /// [`Self::pair`] of each detection.
    pub fn pairs(detections: &[Detection]) -> Vec<crate::vision::render::Pair> {
        detections.iter().map(Detection::pair).collect()
    }

    pub(super) fn new(t: Triplet, verb: &str, label: &str, prompt: &str) -> Self {
        Self {
            human: HumanBox { bbox: t.human_box },
            object: ObjectBox {
                bbox: t.object_box,
                label: label.to_string(),
            },
            verb: verb.to_string(),
            interaction: prompt.to_string(),
            interaction_index: t.hoi,
            score: t.score,
            query: t.query,
            terms: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageDetections {
    pub width: u32,
    pub height: u32,
    pub detections: Vec<Detection>,
}
