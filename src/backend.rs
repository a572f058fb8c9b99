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

/// Has the C allocator keep freed blocks of every size for reuse instead of giving blocks
/// over 32 MB back to the kernel when they are freed (glibc's default).
///
/// The CPU model's activations are 15-250 MB and every layer allocates new ones; with the
/// default each is a fresh mapping whose pages fault in one by one (about 0.5 ms per MB
/// measured on these machines), 12-16% of a full-size forward (BENCHMARKS.md). One arena
/// for every thread, because a thread's own arena holds at most 64 MB: the engine thread's
/// blocks would be fresh mappings again. The price: the heap's high-water mark stays
/// resident between requests (the peak itself is unchanged at batch 1, 9% higher at
/// batch 4). Call once at start-up, before any thread is spawned. Returns whether the
/// allocator took the settings (false where the C library is not glibc: nothing changes).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets glibc's allocator parameters (it takes the arena lock
        // itself); called before any thread allocates, so no arena exists yet to split.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1) == 1
                && libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The CUDA backend (feature `cuda`).
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32, i32>;

/// Whether CUDA device `index` can run the model, checked without touching Burn (whose
/// CUDA backend panics on a device thread when the driver, the device or NVRTC is
/// missing): the driver library loads and initialises, it sees the device, NVRTC (which
/// compiles Burn's kernels) loads, and the toolkit headers NVRTC is pointed at exist.
#[cfg(feature = "cuda")]
pub fn check_cuda(index: usize) -> Result<(), String> {
    // SAFETY: each only tries to dlopen the library by its usual names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(
            "no CUDA driver library (libcuda.so) was found: install the NVIDIA driver, \
                    or use --device cpu"
                .into(),
        );
    }
    cudarc::driver::result::init().map_err(|e| format!("the CUDA driver did not start: {e}"))?;
    let count = cudarc::driver::result::device::get_count()
        .map_err(|e| format!("the CUDA driver cannot count devices: {e}"))?;
    let count = usize::try_from(count).unwrap_or(0);
    if index >= count {
        return Err(format!(
            "the CUDA driver sees {count} device(s), so there is no cuda:{index}"
        ));
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(
            "NVRTC (libnvrtc.so, part of the CUDA toolkit) was not found: Burn compiles \
                    its kernels with it; add its folder to LD_LIBRARY_PATH"
                .into(),
        );
    }
    // The toolkit whose `include` folder Burn's runtime passes to NVRTC.
    match cubecl_cuda::install::cuda_path() {
        Some(path) if path.join("include").is_dir() => Ok(()),
        Some(path) => Err(format!(
            "the CUDA toolkit at {} has no include folder (NVRTC needs its headers): set \
             CUDA_PATH to the toolkit",
            path.display()
        )),
        None => Err(
            "no CUDA toolkit found (NVRTC needs its headers): set CUDA_PATH, e.g. \
                     CUDA_PATH=/usr/local/cuda-13.0"
                .into(),
        ),
    }
}

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

#[cfg(all(test, feature = "cuda"))]
mod tests {
    /// No machine has ten thousand GPUs: the check must refuse, with a reason, and
    /// without panicking whether or not a driver is installed here.
    #[test]
    fn check_cuda_refuses_a_device_that_is_not_there() {
        let reason = super::check_cuda(10_000).unwrap_err();
        assert!(
            reason.contains("libcuda")
                || reason.contains("cuda:10000")
                || reason.contains("driver"),
            "{reason}"
        );
    }
}

/// Has Burn's CUDA runtime keep the kernels it compiles (PTX, from NVRTC) in `dir`, and
/// read them from there in later runs, so a restarted or second replica skips NVRTC for
/// every kernel a run has compiled before. Call before the first CUDA operation: cubecl
/// reads its configuration once. Any other setting of a `cubecl.toml` found from the
/// working directory up, and of the `CUBECL_*` variables, is kept. The driver still turns
/// PTX into machine code once per process unless `CUDA_CACHE_PATH` points its own cache
/// at a kept folder too (`Dockerfile.cuda` and the Kubernetes manifests set both).
#[cfg(feature = "cuda")]
pub fn use_kernel_cache(dir: &std::path::Path) -> Result<(), String> {
    use burn_cubecl::cubecl::config::cache::CacheConfig;
    use burn_cubecl::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create the kernel cache folder {}: {e}",
            dir.display()
        )
    })?;
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.compilation.cache = Some(CacheConfig::File(dir.to_path_buf()));
    let mut slot = CubeClRuntimeConfig::storage().lock();
    if slot.is_some() {
        return Err("Burn's CUDA runtime has already read its configuration".into());
    }
    *slot = Some(std::sync::Arc::new(config));
    Ok(())
}
