//! The library's layering, checked from its source: every `crate::` path in a module
//! must name a module of a lower layer (src/lib.rs states the layers). An arrow that runs
//! upward (e.g. rendering importing the detector) fails here with its file and line.

use std::path::Path;

/// Lowest first; a module may use the modules of the layers before its own.
const LAYERS: &[&[&str]] = &[
    &["backend", "model", "boxes"],
    &["vision", "postprocess"],
    &["vocab"],
    &["classifier"],
    &["detector"],
    &["engine"],
    &["eval"],
    &["api"],
    &["config"],
    &["app"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_only_use_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    let mut checked = 0;
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_string();
        // The binary's files (main.rs and its command modules) sit above every layer.
        let Some(own) = layer_of(&module) else {
            assert!(
                ["main", "lib", "eval_command"].contains(&module.as_str()),
                "{} is in no layer: add it to LAYERS and to src/lib.rs",
                rel.display()
            );
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                let used: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let Some(theirs) = layer_of(&used) else {
                    continue;
                };
                checked += 1;
                if used != module && theirs >= own {
                    upward.push(format!("{}:{}: {module} uses {used}", rel.display(), n + 1));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "too few `crate::` paths found ({checked}): is the scan broken?"
    );
    assert!(
        upward.is_empty(),
        "arrows that do not run downward:\n{}",
        upward.join("\n")
    );
}

/// The library core knows nothing of the command line or of HTTP: clap lives in the
/// binary, axum / utoipa / tower / hyper in `api` (and the layers above it).
#[test]
fn the_core_uses_no_cli_or_http_crates() {
    const CORE: &[&str] = &[
        "backend",
        "boxes",
        "model",
        "vision",
        "postprocess",
        "vocab",
        "classifier",
        "detector",
        "engine",
        "eval",
    ];
    const OUTSIDE: &[&str] = &["clap", "axum", "utoipa", "tower", "tower_http", "hyper"];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    let mut scanned = 0;
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        if !CORE.contains(&top.trim_end_matches(".rs")) {
            continue;
        }
        scanned += 1;
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for name in OUTSIDE {
                let path = format!("{name}::");
                let used = code.match_indices(&path).any(|(at, _)| {
                    // A whole path segment: not `my_clap::` nor `x.tower::`.
                    code[..at]
                        .chars()
                        .last()
                        .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                });
                if used {
                    found.push(format!("{}:{}: {name}", rel.display(), n + 1));
                }
            }
        }
    }
    assert!(scanned > 20, "only {scanned} core files found");
    assert!(
        found.is_empty(),
        "core files using CLI/HTTP crates:\n{}",
        found.join("\n")
    );
}
