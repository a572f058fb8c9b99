//! Tensor code: Burn modules generic over the backend. No I/O beyond weight files, no HTTP.

pub mod attention;
pub mod clip;
pub mod detr;
pub mod hoiclip;
pub mod kernels;
pub mod linear;
mod pth;
mod safetensors_file;
pub use pth::Arg;
pub mod weights;
