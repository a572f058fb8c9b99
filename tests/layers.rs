//! The library's layering, checked from its source: every `crate::` path in a module
//! must name a module of a lower layer (src/lib.rs states the layers). An arrow that runs
//! upward (e.g. rendering importing the detector) fails here with its file and line. And
//! the core below `api` uses no command-line or HTTP crate.

use std::path::{Path, PathBuf};

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

/// The binary's files (main.rs and its command modules under cli/) sit above every layer.
const BINARY: &[&str] = &["main", "lib", "cli"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// One source file: its path under src/, its top-level module, and its code lines
/// (1-based numbers; comment lines left out).
struct Source {
    rel: PathBuf,
    module: String,
    code: Vec<(usize, String)>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|file| {
            let rel = file.strip_prefix(&src).unwrap().to_path_buf();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let code = std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .enumerate()
                .map(|(n, line)| (n + 1, line.trim_start().to_string()))
                .filter(|(_, line)| !line.starts_with("//"))
                .collect();
            Source {
                module: top.trim_end_matches(".rs").to_string(),
                rel,
                code,
            }
        })
        .collect()
}

/// Where `path` (e.g. `crate::`, `clap::`) starts a path segment in `code`.
fn paths_after<'c>(code: &'c str, path: &str) -> impl Iterator<Item = &'c str> {
    code.match_indices(path).filter_map(move |(at, _)| {
        let whole = code[..at]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        whole.then(|| &code[at + path.len()..])
    })
}

#[test]
fn modules_only_use_lower_layers() {
    let mut upward = Vec::new();
    let mut checked = 0;
    for source in sources() {
        let Some(own) = layer_of(&source.module) else {
            assert!(
                BINARY.contains(&source.module.as_str()),
                "{} is in no layer: add it to LAYERS and to src/lib.rs",
                source.rel.display()
            );
            continue;
        };
        for (n, code) in &source.code {
            for rest in paths_after(code, "crate::") {
                let used: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let Some(theirs) = layer_of(&used) else {
                    continue;
                };
                checked += 1;
                if used != source.module && theirs >= own {
                    upward.push(format!(
                        "{}:{n}: {} uses {used}",
                        source.rel.display(),
                        source.module
                    ));
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
    const OUTSIDE: &[&str] = &["clap", "axum", "utoipa", "tower", "tower_http", "hyper"];
    let api = layer_of("api").unwrap();
    let mut found = Vec::new();
    let mut scanned = 0;
    for source in sources() {
        if layer_of(&source.module).is_none_or(|layer| layer >= api) {
            continue;
        }
        scanned += 1;
        for (n, code) in &source.code {
            for name in OUTSIDE {
                if paths_after(code, &format!("{name}::")).next().is_some() {
                    found.push(format!("{}:{n}: {name}", source.rel.display()));
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
