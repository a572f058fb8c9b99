//! hoiclip: human-object interaction detection with a Burn port of HOICLIP.
//!
//! Layers call only downwards: `api -> engine -> model`; `model` knows nothing of HTTP,
//! SQL or the network. See `../shared/design/architecture.md` in the steering repo, and
//! README.md here.

pub mod api;
pub mod backend;
pub mod classifier;
pub mod detector;
pub mod engine;
pub mod eval;
pub mod model;
pub mod postprocess;
pub mod vision;
pub mod vocab;
