//! Benchmark evaluation: HICO-DET mAP (Default and Known-object; Full/Rare/Non-rare and
//! zero-shot Unseen/Seen) and V-COCO role AP (Scenarios 1 and 2), over saved or fresh
//! predictions. Pure host code: no tensors here; `hoiclip eval` runs the model.

pub mod ap;
pub mod hico;
pub mod json;
pub mod predictions;
pub mod run;
pub mod vcoco;

/// A bad or unreadable input file. Every message names the file and, where one is at
/// fault, the field (`test_hico.json: [12].hoi_annotation[3].object_id: ...`).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
}

impl EvalError {
    pub fn invalid(path: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        EvalError::Invalid {
            path: path.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Reads a whole file, naming it in the error.
pub fn read_text(path: &std::path::Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.display().to_string(),
        source,
    })
}
