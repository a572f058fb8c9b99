//! OpenAPI schemas of library types the API sends or takes. The library stays free of
//! utoipa: each type here mirrors one library type field for field under its name (`as`),
//! and the tests below fail when a library type gains, loses or renames a field.
#![allow(dead_code)]

use utoipa::ToSchema;

/// What a triplet is about: an HOI class (HICO-DET's evaluation) or a verb with the
/// predicted object (V-COCO's).
#[derive(ToSchema)]
#[schema(as = Output)]
#[serde(rename_all = "kebab-case")]
pub enum OutputDoc {
    Interactions,
    Verbs,
}

/// How raw outputs become scores and triplets: from the checkpoint's saved training
/// arguments when it has them, else the dataset's defaults.
#[derive(ToSchema)]
#[schema(as = Scoring)]
pub struct ScoringDoc {
    /// Weight of the verb branch in the HOI logits (HICO-DET 0.5, V-COCO 0.1).
    verb_weight: f64,
    /// `interactions` (HICO-DET: one triplet per HOI class, triplet NMS) or `verbs`
    /// (V-COCO: one per verb with the predicted object, validity matrix, no NMS).
    output: OutputDoc,
    /// Triplet NMS (interactions output only).
    nms: bool,
    nms_threshold: f32,
    nms_alpha: f32,
    nms_beta: f32,
    /// `checkpoint args` or `dataset defaults`.
    source: String,
}

/// A checkpoint trained for a zero-shot split.
#[derive(ToSchema)]
#[schema(as = ZeroShot)]
pub struct ZeroShotDoc {
    /// The saved `args.zero_shot_type` (`rare_first`, `non_rare_first`, `unseen_object`,
    /// `unseen_verb`, `uc0`..`uc4`), if any.
    split: Option<String>,
    /// Rows of the trained (seen-only) classifier.
    seen_classes: usize,
    /// Rows of the evaluation classifier the model scores with (all classes).
    classes: usize,
    /// The interactions unseen in training: 0-based indices in the vocabulary's official
    /// order; null where the split is unknown or disagrees with the checkpoint's shapes.
    unseen: Option<Vec<usize>>,
}

#[derive(ToSchema)]
#[schema(as = ExportVerb)]
pub struct ExportVerbDoc {
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    name: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    ing: String,
}

#[derive(ToSchema)]
#[schema(as = ExportObject)]
pub struct ExportObjectDoc {
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    name: String,
    #[schema(min_length = 1, max_length = 1024, pattern = "\\S")]
    prompt: String,
}

#[derive(ToSchema)]
#[schema(as = ExportInteraction)]
pub struct ExportInteractionDoc {
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    verb: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    object: Option<String>,
    #[schema(min_length = 1, max_length = 1024, pattern = "\\S")]
    prompt: String,
}

/// A pack in its portable JSON form.
#[derive(ToSchema)]
#[schema(as = PackExport)]
pub struct PackExportDoc {
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    name: String,
    verbs: Vec<ExportVerbDoc>,
    objects: Vec<ExportObjectDoc>,
    interactions: Vec<ExportInteractionDoc>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::detector::Scoring;
    use crate::postprocess::Output;
    use crate::vocab::store::{ExportInteraction, ExportObject, ExportVerb, PackExport};

    /// A documented schema as JSON (as the OpenAPI document holds it).
    fn schema<T: utoipa::PartialSchema>() -> serde_json::Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    /// Property names of a documented object schema.
    fn documented<T: utoipa::PartialSchema>() -> BTreeSet<String> {
        let schema = schema::<T>();
        match schema.get("properties") {
            Some(serde_json::Value::Object(p)) => p.keys().cloned().collect(),
            _ => panic!("not an object schema: {schema}"),
        }
    }

    /// Field names a library value serialises with.
    fn fields(value: impl serde::Serialize) -> BTreeSet<String> {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn documented_schemas_match_the_library_types() {
        let (scoring, _) = Scoring::from_args("hico-det", 0.5, |_| None);
        assert_eq!(documented::<super::ScoringDoc>(), fields(&scoring));
        assert_eq!(
            documented::<super::ZeroShotDoc>(),
            fields(crate::detector::ZeroShot {
                split: Some("rare_first".into()),
                seen_classes: 480,
                classes: 600,
                unseen: Some(vec![8]),
            })
        );
        assert_eq!(
            documented::<super::ExportVerbDoc>(),
            fields(ExportVerb {
                name: "ride".into(),
                ing: "riding".into(),
            })
        );
        assert_eq!(
            documented::<super::ExportObjectDoc>(),
            fields(ExportObject {
                name: "horse".into(),
                prompt: "a photo of a horse".into(),
            })
        );
        let interaction = ExportInteraction {
            verb: "ride".into(),
            object: Some("horse".into()),
            prompt: "a photo of a person riding a horse".into(),
        };
        assert_eq!(
            documented::<super::ExportInteractionDoc>(),
            fields(&interaction)
        );
        assert_eq!(
            documented::<super::PackExportDoc>(),
            fields(PackExport {
                name: "mine".into(),
                verbs: Vec::new(),
                objects: Vec::new(),
                interactions: vec![interaction],
            })
        );
        let names: BTreeSet<String> = [Output::Interactions, Output::Verbs]
            .into_iter()
            .map(|o| {
                serde_json::to_value(o)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let documented_names: BTreeSet<String> = schema::<super::OutputDoc>()["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(documented_names, names);
    }
}
