//! Images in: decoding with limits, PIL-compatible resizing, normalisation, batching.
//! Mirrors the official evaluation transforms (docs/model-reference.md, section 1).

pub mod decode;
mod jpeg;
pub mod preprocess;
pub mod render;
pub mod resize;

pub use decode::{DecodeLimits, VisionError, decode, probe};
pub use preprocess::{Prepared, PreprocessConfig, batch, prepare};
