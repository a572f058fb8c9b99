//! OpenAPI schemas of the pack export, a file format the library reads and writes (so it
//! keeps its serde derives there) and the API sends and takes as it is. The library stays
//! free of utoipa: each type here mirrors one library type field for field under its name
//! (`as`), and the tests below fail when a library type gains, loses or renames a field.
#![allow(dead_code)]

use utoipa::ToSchema;

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
    }
}
