//! The one JSON reader of the evaluators: a [`Node`] is a value (or its absence) with the
//! file and the field path its errors name (`test_hico.json: [12].hoi_annotation[3].object_id:
//! ...`).

use serde_json::Value;

use super::EvalError;

pub type Parsed<T> = Result<T, EvalError>;

/// Parses `text`; a syntax error names the line and column.
pub fn parse(file: &str, text: &str) -> Parsed<Value> {
    serde_json::from_str(text).map_err(|e| {
        EvalError::invalid(
            file,
            format!("line {} column {}", e.line(), e.column()),
            format!("not valid JSON: {e}"),
        )
    })
}

/// Parses `text` straight into `T` (for files read whole by serde).
pub fn parse_as<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Parsed<T> {
    serde_json::from_str(text).map_err(|e| EvalError::invalid(file, "(json)", e.to_string()))
}

pub struct Node<'v> {
    file: &'v str,
    path: String,
    value: Option<&'v Value>,
}

impl<'v> Node<'v> {
    /// The whole document.
    pub fn root(file: &'v str, value: &'v Value) -> Self {
        Self::new(file, String::new(), Some(value))
    }

    pub fn new(file: &'v str, path: String, value: Option<&'v Value>) -> Self {
        Self { file, path, value }
    }

    /// The field path ("(top level)" for the document itself).
    pub fn path(&self) -> &str {
        match self.path.as_str() {
            "" => "(top level)",
            path => path,
        }
    }

    /// An error about this node.
    pub fn invalid(&self, message: impl Into<String>) -> EvalError {
        EvalError::invalid(self.file, self.path(), message)
    }

    /// The value of field `key` (absent when this node is not an object or lacks it).
    pub fn get(&self, key: &str) -> Node<'v> {
        let path = if self.path.is_empty() {
            key.into()
        } else {
            format!("{}.{key}", self.path)
        };
        Node::new(self.file, path, self.value.and_then(|v| v.get(key)))
    }

    /// The value, or "missing" when it is absent or null.
    pub fn present(&self) -> Parsed<&'v Value> {
        self.value
            .filter(|v| !v.is_null())
            .ok_or_else(|| self.invalid("missing"))
    }

    /// `Some(node)` when present and not null, for optional fields.
    pub fn optional(self) -> Option<Node<'v>> {
        self.value.filter(|v| !v.is_null()).map(|_| self)
    }

    pub fn items(&self) -> Parsed<Vec<Node<'v>>> {
        let value = self.present()?;
        let list = value
            .as_array()
            .ok_or_else(|| self.invalid(format!("expected a list, found {}", kind(value))))?;
        let item = |(i, v)| Node::new(self.file, format!("{}[{i}]", self.path), Some(v));
        Ok(list.iter().enumerate().map(item).collect())
    }

    /// A non-negative integer; integral floats (as numpy dumps may write) are accepted.
    pub fn uint(&self) -> Parsed<u64> {
        let value = self.present()?;
        let float = value
            .as_f64()
            .filter(|x| *x >= 0.0 && x.fract() == 0.0 && *x < 9.0e15);
        let found = || self.invalid(format!("expected a non-negative integer, found {value}"));
        value.as_u64().or(float.map(|x| x as u64)).ok_or_else(found)
    }

    pub fn uints(&self) -> Parsed<Vec<u64>> {
        self.items()?.iter().map(Node::uint).collect()
    }

    pub fn number(&self) -> Parsed<f64> {
        let value = self.present()?;
        value
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| self.invalid(format!("expected a finite number, found {value}")))
    }

    pub fn string(&self) -> Parsed<String> {
        let value = self.present()?;
        let found = || self.invalid(format!("expected a string, found {}", kind(value)));
        value.as_str().map(String::from).ok_or_else(found)
    }

    /// `[x1, y1, x2, y2]` with x1 <= x2 and y1 <= y2.
    pub fn bbox(&self) -> Parsed<[f64; 4]> {
        let items = self.items()?;
        if items.len() != 4 {
            return Err(self.invalid(format!(
                "expected 4 numbers [x1, y1, x2, y2], found {}",
                items.len()
            )));
        }
        let mut b = [0.0; 4];
        for (slot, item) in b.iter_mut().zip(&items) {
            *slot = item.number()?;
        }
        if b[2] < b[0] || b[3] < b[1] {
            return Err(self.invalid(format!("x2 < x1 or y2 < y1 in {b:?}")));
        }
        Ok(b)
    }
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
