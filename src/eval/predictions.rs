//! The saved-predictions file (`--save-predictions` / `--predictions`): one entry per
//! image with its triplets, classes as indices of the dataset's official HOI order.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::json::{self, Node};
use super::{EvalError, read_text};

pub const FORMAT: &str = "hoiclip-predictions/1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PredictionFile {
    pub format: String,
    /// "hico-det" or "v-coco".
    pub dataset: String,
    /// The model that made them (name, weights), for the record.
    #[serde(default)]
    pub model: Option<String>,
    pub images: Vec<ImagePredictions>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImagePredictions {
    pub file_name: String,
    pub triplets: Vec<PredictedTriplet>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PredictedTriplet {
    /// `[x1, y1, x2, y2]` in original pixels, 0-based.
    pub human: [f64; 4],
    pub object: [f64; 4],
    /// Index in the dataset's HOI order (HICO-DET: 0..600, `hoi_category_id - 1`).
    pub hoi: usize,
    pub score: f64,
    /// The model's query (human-object pair) the triplet came from, when known: V-COCO
    /// exports one detection per query, as the official route does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<usize>,
    /// The object label the model gave the triplet (V-COCO: the query's predicted
    /// object; "nothing" for the "no object" role), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_label: Option<String>,
}

impl PredictionFile {
    pub fn new(dataset: &str, model: Option<String>) -> Self {
        Self {
            format: FORMAT.into(),
            dataset: dataset.into(),
            model,
            images: Vec::new(),
        }
    }

    /// Reads and checks a file written by `--save-predictions` (or by hand): every field
    /// present and typed, boxes ordered, scores finite, classes below `classes`.
    pub fn load(path: &Path, dataset: &str, classes: usize) -> Result<Self, EvalError> {
        let name = path.display().to_string();
        Self::parse(&read_text(path)?, &name, dataset, classes)
    }

    pub fn parse(text: &str, path: &str, dataset: &str, classes: usize) -> Result<Self, EvalError> {
        let value = json::parse(path, text)?;
        let root = Node::root(path, &value);
        let format = root.get("format").string()?;
        if format != FORMAT {
            return Err(root
                .get("format")
                .invalid(format!("expected \"{FORMAT}\", found \"{format}\"")));
        }
        let found = root.get("dataset").string()?;
        if found != dataset {
            return Err(root
                .get("dataset")
                .invalid(format!("these are {found} predictions, not {dataset}")));
        }
        let model = value
            .get("model")
            .and_then(|m| m.as_str())
            .map(str::to_string);
        let mut images = Vec::new();
        for image in root.get("images").items()? {
            let file_name = image.get("file_name").string()?;
            let mut triplets = Vec::new();
            for t in image.get("triplets").items()? {
                let hoi = t.get("hoi").uint()? as usize;
                if hoi >= classes {
                    return Err(t
                        .get("hoi")
                        .invalid(format!("{hoi} is not a {dataset} class (0..{classes})")));
                }
                triplets.push(PredictedTriplet {
                    human: t.get("human").bbox()?,
                    object: t.get("object").bbox()?,
                    hoi,
                    score: t.get("score").number()?,
                    query: t
                        .get("query")
                        .optional()
                        .map(|q| q.uint().map(|q| q as usize))
                        .transpose()?,
                    object_label: t
                        .get("object_label")
                        .optional()
                        .map(|l| l.string())
                        .transpose()?,
                });
            }
            images.push(ImagePredictions {
                file_name,
                triplets,
            });
        }
        Ok(Self {
            format,
            dataset: found,
            model,
            images,
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), EvalError> {
        let text = serde_json::to_string(self).map_err(|e| {
            EvalError::invalid(&path.display().to_string(), "(writing)", e.to_string())
        })?;
        std::fs::write(path, text).map_err(|source| EvalError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}
