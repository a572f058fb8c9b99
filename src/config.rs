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
    /// Padded input sizes are rounded up to multiples of this, so a GPU meets few shapes
    /// (exact: padding changes no answer). `None`: 64 on a GPU, off (0) on the CPU.
    pub size_bucket: Option<usize>,
    /// Which input shapes run before the server says ready. `None`: every shape on a GPU
    /// (no kernel is compiled during a request), one blank image on the CPU.
    pub warm_up: Option<WarmUp>,
    /// Where a GPU backend keeps compiled kernels between runs (cubecl's PTX cache), so a
    /// restarted or second replica reads them instead of compiling.
    pub kernel_cache: Option<PathBuf>,
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
            size_bucket: None,
            warm_up: None,
            kernel_cache: None,
            engine: EngineOptions::default(),
            api: ServeOptions::default(),
            server: ServerLimits::default(),
        }
    }
}

/// Which input shapes a server runs once before it says ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmUp {
    /// Every padded size DETR's resize can give (in size buckets), at every batch size up
    /// to the largest: no request meets a shape for the first time.
    All,
    /// The shapes of common photos (1:1, 4:3, 3:2, 16:9, both orientations) at batch 1
    /// and at the largest batch.
    Common,
    /// One small blank image (the pass that proves the path works).
    None,
}

impl Settings {
    fn on_gpu(&self) -> bool {
        matches!(self.device.parse(), Ok(DeviceChoice::Cuda(_)))
    }

    /// The size bucket in force (see [`Settings::size_bucket`]).
    pub fn effective_size_bucket(&self) -> usize {
        self.size_bucket
            .unwrap_or(if self.on_gpu() { 64 } else { 0 })
    }

    /// The warm-up in force (see [`Settings::warm_up`]).
    pub fn effective_warm_up(&self) -> WarmUp {
        self.warm_up.unwrap_or(if self.on_gpu() {
            WarmUp::All
        } else {
            WarmUp::None
        })
    }

    /// The settings as the server runs them: durations that would refuse everything or
    /// spin raised to their floor (a body or header timeout of at least a second, a send
    /// timeout of at least a second, a vocabulary poll of at least 10 ms, which is one
    /// small query, not a busy loop). The composition root runs only these.
    pub fn normalized(&self) -> Self {
        let at_least = |d: std::time::Duration, floor: std::time::Duration| d.max(floor);
        let second = std::time::Duration::from_secs(1);
        let mut s = self.clone();
        s.api.body_timeout = at_least(s.api.body_timeout, second);
        s.server.header_timeout = at_least(s.server.header_timeout, second);
        s.server.send_timeout = at_least(s.server.send_timeout, second);
        s.vocabulary_poll = at_least(s.vocabulary_poll, std::time::Duration::from_millis(10));
        s
    }

    /// Checks what no single field can: the device name, and that warming every shape
    /// has a finite set of shapes to warm.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.device.parse::<DeviceChoice>()?;
        if self.effective_warm_up() == WarmUp::All && self.effective_size_bucket() < 16 {
            return Err(ConfigError::WarmUpNeedsBuckets);
        }
        Ok(())
    }

    /// The shapes [`Settings::effective_warm_up`] runs, for images resized by
    /// `preprocess`'s rule, bucketed as [`Settings::effective_size_bucket`] says.
    pub fn warm_up_shapes(
        &self,
        preprocess: &crate::vision::PreprocessConfig,
    ) -> Vec<crate::engine::WarmUpShape> {
        use crate::vision::preprocess::{common_shapes, detr_shapes};
        let step = self.effective_size_bucket();
        let largest = self.engine.max_batch_size.max(1);
        let (sizes, batches): (Vec<(usize, usize)>, Vec<usize>) = match self.effective_warm_up() {
            WarmUp::None => return Vec::new(),
            WarmUp::Common => {
                let mut batches = vec![1, largest];
                batches.dedup();
                (common_shapes(preprocess, step), batches)
            }
            WarmUp::All if step >= 16 => (detr_shapes(preprocess, step), (1..=largest).collect()),
            // Refused by `check`: without buckets the sizes are too many to run.
            WarmUp::All => (common_shapes(preprocess, step), vec![1, largest]),
        };
        batches
            .iter()
            .flat_map(|&batch| {
                sizes
                    .iter()
                    .map(move |&size| crate::engine::WarmUpShape { batch, size })
            })
            .collect()
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
    #[error(
        "--warm-up all needs --size-bucket of 16 or more: unbucketed, the sizes are too many to run"
    )]
    WarmUpNeedsBuckets,
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
    use super::{ConfigError, DeviceChoice, Settings, WarmUp};

    #[test]
    fn durations_that_would_refuse_everything_are_raised_to_their_floor() {
        let mut s = Settings::default();
        s.api.body_timeout = std::time::Duration::ZERO;
        s.server.header_timeout = std::time::Duration::ZERO;
        s.server.send_timeout = std::time::Duration::ZERO;
        s.vocabulary_poll = std::time::Duration::ZERO;
        let n = s.normalized();
        assert_eq!(n.api.body_timeout, std::time::Duration::from_secs(1));
        assert_eq!(n.server.header_timeout, std::time::Duration::from_secs(1));
        assert_eq!(n.server.send_timeout, std::time::Duration::from_secs(1));
        assert_eq!(n.vocabulary_poll, std::time::Duration::from_millis(10));
        let d = Settings::default();
        assert_eq!(d.normalized().api.body_timeout, d.api.body_timeout);
    }

    #[test]
    fn gpu_defaults_bucket_and_warm_every_shape_cpu_defaults_do_not() {
        let cpu = Settings::default();
        assert_eq!(
            (cpu.effective_size_bucket(), cpu.effective_warm_up()),
            (0, WarmUp::None)
        );
        assert!(cpu.warm_up_shapes(&Default::default()).is_empty());
        let gpu = Settings {
            device: "cuda:1".into(),
            ..Settings::default()
        };
        assert_eq!(
            (gpu.effective_size_bucket(), gpu.effective_warm_up()),
            (64, WarmUp::All)
        );
        let shapes = gpu.warm_up_shapes(&Default::default());
        // 43 bucketed sizes at every batch size up to the default largest batch (8).
        assert_eq!(shapes.len(), 43 * 8);
        assert!(
            shapes
                .iter()
                .all(|s| s.size.0 % 64 == 0 && s.size.1 % 64 == 0)
        );
        let unbucketed = Settings {
            size_bucket: Some(0),
            ..gpu.clone()
        };
        assert_eq!(unbucketed.check(), Err(ConfigError::WarmUpNeedsBuckets));
        let common = Settings {
            warm_up: Some(WarmUp::Common),
            ..unbucketed
        };
        assert_eq!(common.check(), Ok(()));
        // 1:1, then 4:3, 3:2 and 16:9 both ways, at batch 1 and 8.
        assert_eq!(common.warm_up_shapes(&Default::default()).len(), 7 * 2);
    }

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
