//! hoiclip: human-object interaction detection with a Burn port of HOICLIP.
//!
//! Layers call only downwards, lowest first:
//! 1. `model` (Burn modules, weight files), `backend` and `boxes` (box overlap);
//! 2. `vision` (decoding, resizing, rendering) and `postprocess` (raw outputs to triplets);
//! 3. `vocab` (the SQLite vocabulary);
//! 4. `classifier` (classifier sets built from the vocabulary);
//! 5. `detector` (model + classifier + processing);
//! 6. `engine` (the worker that owns the device and alone computes tensors: detection
//!    batches, text passes, classifier builds);
//! 7. `eval` (benchmarks over datasets);
//! 8. `api` (HTTP);
//! 9. `config` (every setting of a server, defaults in one place);
//! 10. `app` (the composition root: builds the server from the settings, for the binary,
//!     the tests and the benches alike).
//!
//! `tests/layers.rs` checks this from the source, and that the layers below `api` use no
//! clap, axum or utoipa (the CLI lives in `main.rs`, HTTP and OpenAPI in `api`). `model`
//! knows nothing of HTTP, SQL or the network. See README.md for the layout.

pub mod api;
pub mod app;
pub mod backend;
pub mod boxes;
pub mod classifier;
pub mod config;
pub mod detector;
pub mod engine;
pub mod eval;
pub mod model;
pub mod postprocess;
pub mod vision;
pub mod vocab;
