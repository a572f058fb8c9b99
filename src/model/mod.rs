//! Tensor code: Burn modules generic over the backend. No I/O beyond weight files, no HTTP.

pub mod attention;
pub mod clip;
mod pth;
pub mod weights;
