//! Which Burn backend runs the model. CPU backends are compile-time features; the CUDA
//! backend is a feature too, but is only touched when asked for at run time (it panics on
//! first use where no libcuda exists).

/// The default CPU backend: the fastest robust one measured (BENCHMARKS.md).
#[cfg(feature = "flex")]
pub type Cpu = burn::backend::Flex;
#[cfg(all(not(feature = "flex"), feature = "ndarray"))]
pub type Cpu = burn::backend::NdArray<f32>;
#[cfg(all(not(feature = "flex"), not(feature = "ndarray"), feature = "candle"))]
pub type Cpu = burn::backend::Candle<f32, i64>;

#[cfg(not(any(feature = "flex", feature = "ndarray", feature = "candle")))]
compile_error!("enable at least one CPU backend feature: flex (default), ndarray or candle");

/// The CUDA backend (feature `cuda`).
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32, i32>;

/// Name of the default CPU backend, for logs and `/info`.
pub fn cpu_backend_name() -> &'static str {
    if cfg!(feature = "flex") {
        "flex"
    } else if cfg!(feature = "ndarray") {
        "ndarray"
    } else {
        "candle"
    }
}
