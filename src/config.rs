//! Every setting of a server in one struct. Each default is written once, in its part's
//! `Default` (engine, API, HTTP loop, decoding) and composed here; the CLI's flags take
//! their defaults from [`Settings::default`], so `--help` shows what runs.

use std::path::PathBuf;

use crate::api::ServeOptions;
use crate::api::server::ServerLimits;
use crate::engine::EngineOptions;
use crate::model::hoiclip::HoiclipConfig;

/// Where the vocabulary lives unless told otherwise.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/hoiclip.db";

#[derive(Debug, Clone)]
pub struct Settings {
    /// Address the server listens on.
    pub listen: String,
    /// The model to run.
    pub model: ModelSource,
    /// The vocabulary database.
    pub database_url: String,
    /// How often the stored vocabulary version is checked for changes made elsewhere
    /// (other replicas, the CLI); on Postgres this is the fallback behind LISTEN/NOTIFY.
    pub vocabulary_poll: std::time::Duration,
    /// "cpu", "cuda" or "cuda:N".
    pub device: String,
    /// How a GPU backend runs convolutions (ignored on the CPU).
    pub gpu_conv: crate::model::kernels::GpuConv,
    /// Queue and batching.
    pub engine: EngineOptions,
    /// Keys, limits and timeouts of the API.
    pub api: ServeOptions,
    /// Connection handling of the HTTP loop.
    pub server: ServerLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            model: ModelSource::default(),
            database_url: DEFAULT_DATABASE_URL.into(),
            vocabulary_poll: std::time::Duration::from_secs(1),
            device: "cpu".into(),
            gpu_conv: Default::default(),
            engine: EngineOptions::default(),
            api: ServeOptions::default(),
            server: ServerLimits::default(),
        }
    }
}

/// Where the model's weights come from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// An official HOICLIP checkpoint (`.pth`) or a file from `hoiclip convert`.
    Weights(PathBuf),
    /// Seeded random weights at these sizes, labelled as the demo model (`"trained":
    /// false`, meaningless detections): the demo, or benchmarks at full size.
    Random(Box<HoiclipConfig>),
}

impl Default for ModelSource {
    /// The demo model (small, fast on a CPU).
    fn default() -> Self {
        Self::Random(Box::new(HoiclipConfig::demo()))
    }
}

impl ModelSource {
    /// `--weights` as a source: the demo model without it.
    pub fn from_weights(weights: Option<PathBuf>) -> Self {
        weights.map_or_else(Self::default, Self::Weights)
    }
}

/// A device named in the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    /// A CUDA device index (usable in builds with the `cuda` feature).
    Cuda(usize),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("bad device `{0}`: use cpu, cuda or cuda:N")]
    BadDevice(String),
}

impl std::str::FromStr for DeviceChoice {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        if lower == "cpu" {
            return Ok(Self::Cpu);
        }
        match lower.strip_prefix("cuda") {
            Some("") => Ok(Self::Cuda(0)),
            Some(rest) => rest
                .strip_prefix(':')
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| ConfigError::BadDevice(text.into())),
            None => Err(ConfigError::BadDevice(text.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceChoice;

    #[test]
    fn devices_parse_and_bad_names_are_refused() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!(" CUDA ".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda3", ""] {
            assert!(bad.parse::<DeviceChoice>().is_err(), "{bad:?}");
        }
    }
}
