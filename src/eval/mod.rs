//! Benchmark evaluation: HICO-DET mAP (Default and Known-object; Full/Rare/Non-rare and
//! zero-shot Unseen/Seen) and V-COCO role AP (Scenarios 1 and 2), over saved or fresh
//! predictions. Pure host code: no tensors here; `hoiclip eval` runs the model.

pub mod ap;
pub mod hico;
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

/// Field-by-field readers over `serde_json::Value` whose errors carry the JSON path.
pub(crate) mod json {
    use super::EvalError;
    use serde_json::Value;

    /// Parses `text`; a syntax error names the line and column.
    pub fn parse(path: &str, text: &str) -> Result<Value, EvalError> {
        serde_json::from_str(text).map_err(|e| {
            EvalError::invalid(
                path,
                format!("line {} column {}", e.line(), e.column()),
                format!("not valid JSON: {e}"),
            )
        })
    }

    pub fn array<'a>(path: &str, field: &str, v: &'a Value) -> Result<&'a Vec<Value>, EvalError> {
        v.as_array().ok_or_else(|| {
            EvalError::invalid(path, field, format!("expected a list, found {}", kind(v)))
        })
    }

    pub fn get<'a>(
        path: &str,
        field: &str,
        v: &'a Value,
        key: &str,
    ) -> Result<&'a Value, EvalError> {
        v.get(key).ok_or_else(|| {
            let at = if field.is_empty() {
                key.to_string()
            } else {
                format!("{field}.{key}")
            };
            EvalError::invalid(path, at, "missing")
        })
    }

    pub fn string(path: &str, field: &str, v: &Value) -> Result<String, EvalError> {
        v.as_str().map(str::to_string).ok_or_else(|| {
            EvalError::invalid(path, field, format!("expected a string, found {}", kind(v)))
        })
    }

    /// A non-negative integer (JSON integers, or floats with no fraction).
    pub fn index(path: &str, field: &str, v: &Value) -> Result<u64, EvalError> {
        v.as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| {
                EvalError::invalid(
                    path,
                    field,
                    format!("expected a non-negative integer, found {v}"),
                )
            })
    }

    pub fn number(path: &str, field: &str, v: &Value) -> Result<f64, EvalError> {
        v.as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
            EvalError::invalid(path, field, format!("expected a finite number, found {v}"))
        })
    }

    /// `[x1, y1, x2, y2]` with x1 <= x2 and y1 <= y2.
    pub fn bbox(path: &str, field: &str, v: &Value) -> Result<[f64; 4], EvalError> {
        let items = array(path, field, v)?;
        if items.len() != 4 {
            return Err(EvalError::invalid(
                path,
                field,
                format!("expected 4 numbers [x1, y1, x2, y2], found {}", items.len()),
            ));
        }
        let mut b = [0.0; 4];
        for (i, item) in items.iter().enumerate() {
            b[i] = number(path, &format!("{field}[{i}]"), item)?;
        }
        if b[2] < b[0] || b[3] < b[1] {
            return Err(EvalError::invalid(
                path,
                field,
                format!("x2 < x1 or y2 < y1 in {b:?}"),
            ));
        }
        Ok(b)
    }

    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        }
    }
}
