//! Peak memory and time of loading full-size HOICLIP weights from a native file (the
//! safetensors file `hoiclip convert` writes): `hoiclip inspect-weights` loads the whole
//! model strictly, in a child process whose peak resident memory (`ru_maxrss`) is read
//! when it exits. The weights in f32 are the floor: the file holds exactly them.
//!
//!     cargo bench --bench native_load -- [--file PATH] [--also BINARY ...]
//!
//! `--file` keeps (or reuses) the random full-size file there instead of a temporary one;
//! `--also` measures other `hoiclip` binaries (say, an older build) on the same file in
//! the same run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hoiclip::backend::Cpu;
use hoiclip::model::hoiclip::{HoiclipConfig, save_native};

/// Peak resident MB and wall seconds of `binary inspect-weights file`.
// The child is reaped by `wait4` (which also gives its rusage), not `Child::wait`.
#[allow(clippy::zombie_processes)]
fn measure(binary: &Path, file: &Path) -> (f64, f64) {
    let started = Instant::now();
    let child = std::process::Command::new(binary)
        .arg("inspect-weights")
        .arg(file)
        .stdout(std::process::Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start hoiclip inspect-weights");
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own child, waited for once; both pointers are valid.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(
        waited > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} inspect-weights failed (status {status})",
        binary.display()
    );
    (
        usage.ru_maxrss as f64 / 1024.0,
        started.elapsed().as_secs_f64(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = args
        .iter()
        .position(|a| a == "--file")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("hoiclip-native-load-bench.safetensors"));
    let keep = args.iter().any(|a| a == "--file");
    let mut binaries = vec![PathBuf::from(env!("CARGO_BIN_EXE_hoiclip"))];
    binaries.extend(
        args.windows(2)
            .filter(|w| w[0] == "--also")
            .map(|w| PathBuf::from(&w[1])),
    );
    if !file.exists() {
        let config = HoiclipConfig::hico_det();
        let model = config.init::<Cpu>(&Default::default());
        save_native(&model, &config, &Default::default(), &file).expect("write the native file");
    }
    let size_mb = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) as f64 / (1 << 20) as f64;
    println!(
        "# {} {}: full-size HOICLIP, random weights, native file of {size_mb:.0} MB",
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| binary | peak RSS MB | peak / file | seconds |");
    println!("|---|---:|---:|---:|");
    for binary in &binaries {
        let (peak, seconds) = measure(binary, &file);
        println!(
            "| {} | {peak:.0} | {:.2} | {seconds:.1} |",
            binary.display(),
            peak / size_mb
        );
    }
    if !keep {
        let _ = std::fs::remove_file(&file);
    }
}
