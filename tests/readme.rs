//! The README describes what the binary does: its list of a detection answer's fields is
//! exactly the fields of the answer's schema (the OpenAPI document the server serves,
//! which `tests/api.rs` keeps equal to the committed one).

use std::collections::BTreeSet;

/// The README's marked list of detection fields: every backticked field path in it, with
/// `a.{b, c}` expanded to `a.b` and `a.c`. Values are written in quotes, not backticks;
/// backticked tokens that are not field paths (`explain=true`, `[x1, ...]`) are skipped.
fn readme_fields() -> BTreeSet<String> {
    let readme = include_str!("../README.md");
    let start = readme
        .find("<!-- detect-output")
        .expect("README has the marked list of detection fields");
    let end = readme[start..]
        .find("<!-- /detect-output -->")
        .expect("the list is closed")
        + start;
    let block = &readme[start..end];
    let path = regex::Regex::new(
        r"^[a-z_][a-z0-9_]*(\[\])?(\.(\{[a-z0-9_, ]+\}|[a-z_][a-z0-9_]*(\[\])?))*$",
    )
    .unwrap();
    let mut fields = BTreeSet::new();
    for (i, token) in block.split('`').enumerate() {
        if i % 2 == 1 && path.is_match(token) {
            let mut expanded = vec![String::new()];
            for (j, part) in token.split('.').enumerate() {
                let names: Vec<&str> = match part.strip_prefix('{') {
                    Some(list) => list
                        .trim_end_matches('}')
                        .split(',')
                        .map(str::trim)
                        .collect(),
                    None => vec![part],
                };
                expanded = expanded
                    .iter()
                    .flat_map(|prefix| {
                        names.iter().map(move |n| {
                            if j == 0 {
                                n.to_string()
                            } else {
                                format!("{prefix}.{n}")
                            }
                        })
                    })
                    .collect();
            }
            fields.extend(expanded);
        }
    }
    fields
}

/// Leaf field paths of an OpenAPI schema (`[]` marks an array of objects).
fn schema_fields(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    prefix: &str,
    out: &mut BTreeSet<String>,
) {
    let resolve = |s: &serde_json::Value| -> serde_json::Value {
        match s["$ref"].as_str() {
            Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap().clone(),
            None => s.clone(),
        }
    };
    let schema = resolve(schema);
    if let Some(variants) = schema["oneOf"].as_array() {
        for v in variants.iter().filter(|v| v["type"] != "null") {
            schema_fields(doc, v, prefix, out);
        }
        return;
    }
    if let Some(props) = schema["properties"].as_object() {
        for (name, sub) in props {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            schema_fields(doc, sub, &path, out);
        }
        return;
    }
    let items = resolve(&schema["items"]);
    if schema["type"] == "array" && items["properties"].is_object() {
        schema_fields(doc, &items, &format!("{prefix}[]"), out);
        return;
    }
    out.insert(prefix.to_string());
}

#[test]
fn readme_lists_exactly_the_fields_of_a_detection_answer() {
    let doc: serde_json::Value = serde_json::from_str(&hoiclip::api::openapi_json()).unwrap();
    let mut schema = BTreeSet::new();
    schema_fields(
        &doc,
        &doc["components"]["schemas"]["DetectResponse"],
        "",
        &mut schema,
    );
    assert!(schema.contains("triplets[].object.label"), "{schema:?}");
    let readme = readme_fields();
    let missing: Vec<_> = schema.difference(&readme).collect();
    let unknown: Vec<_> = readme.difference(&schema).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README's detection fields differ from the schema: not in the README {missing:?}, \
         not in the schema {unknown:?}"
    );
}
