//! The `hoiclip` command line: one module per command, each turning its flags into the
//! library's settings or request and calling the library (the composition root in
//! `hoiclip::app`, the detection call in `hoiclip::engine::detection`, the vocabulary
//! store); what a command prints is the API's wire shapes (`hoiclip::api::dto`).

/// A flag value for a library enum, variant for variant: clap stays out of the library.
macro_rules! flag_enum {
    ($(#[$meta:meta])* $name:ident => $lib:ty { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
        pub enum $name {
            $($variant),+
        }

        impl From<$name> for $lib {
            fn from(value: $name) -> Self {
                match value {
                    $($name::$variant => <$lib>::$variant),+
                }
            }
        }

        impl From<$lib> for $name {
            fn from(value: $lib) -> Self {
                match value {
                    $(<$lib>::$variant => $name::$variant),+
                }
            }
        }
    };
}

flag_enum!(
    /// `BatchPolicy` as a flag value.
    PolicyArg => BatchPolicy { SameSize, Pad }
);

flag_enum!(
    /// `GpuConv` as a flag value.
    GpuConvArg => GpuConv { Gemm, ImplicitGemm, Direct }
);

flag_enum!(
    /// `WarmUp` as a flag value.
    WarmUpArg => WarmUp { All, Common, None }
);

mod detect;
mod eval;
mod model;
mod serve;
mod vocab;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use hoiclip::config::{ModelSource, Settings, WarmUp};
use hoiclip::engine::{BatchPolicy, EngineOptions};
use hoiclip::model::kernels::GpuConv;

#[derive(Parser, Debug)]
#[command(
    name = "hoiclip",
    version,
    about = "Human-object interaction detection (HOICLIP in Burn)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Give freed large blocks back to the kernel at once (the C library's default): less
    /// resident memory between requests, about 12-16% slower inference on the CPU.
    #[arg(long, global = true, env = "HOICLIP_RELEASE_FREED_MEMORY")]
    pub release_freed_memory: bool,
}

impl Cli {
    /// Whether the command runs the server (which must keep ignoring SIGPIPE).
    pub fn serves(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print CLIP token ids of each text (with start and end tokens), one JSON array per line.
    Tokenize(model::TokenizeArgs),
    /// Check that a weights file loads: a whole HOICLIP checkpoint (sizes read from its shapes)
    /// or a CLIP ViT-B/32 state dict; lists every missing, unused and mis-shaped key.
    InspectWeights(model::InspectArgs),
    /// Detect human-object interactions; prints one JSON object per image, in the API's
    /// `POST /detect` schema plus the image's path.
    ///
    /// It runs the same pipeline as `serve` (vocabulary, engine, batch policy), so an
    /// image gives the same triplets here as through the API. Without --weights this runs
    /// the demo model (random weights, `"trained": false`): its detections are
    /// meaningless and only show the pipeline working.
    Detect(detect::DetectArgs),
    /// Convert an official checkpoint into a native file that loads without pickle parsing,
    /// fp16 widening or layout conversion (outputs are bit-identical).
    Convert(model::ConvertArgs),
    /// Run the REST API (see /docs for the OpenAPI UI). Without --weights it serves the
    /// clearly labelled demo model.
    Serve(serve::ServeArgs),
    /// Print the OpenAPI document (what openapi/openapi.json holds).
    Openapi,
    /// Load the model and run the warm-up `serve` would run (default: every input shape
    /// on a GPU), then exit: with --kernel-cache, fills the cache ahead of deployment so
    /// that servers start without compiling.
    WarmUp(serve::WarmUpArgs),
    /// Benchmark numbers: HICO-DET mAP (Default and Known-object; Full/Rare/Non-rare, and
    /// Unseen/Seen for a zero-shot split) or V-COCO role AP (Scenarios 1 and 2), from a
    /// checkpoint run over the test images or from saved predictions.
    Eval(eval::EvalArgs),
    /// Manage the vocabulary in the database (seeded with HICO-DET and V-COCO on first use).
    Vocab(vocab::VocabArgs),
    /// Embed prompts with the model's CLIP text tower (through the engine, as the server
    /// embeds prompts); prints L2-normalised vectors as JSON.
    EmbedText(model::EmbedTextArgs),
}

/// Runs the command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Tokenize(args) => model::tokenize(args),
        Command::InspectWeights(args) => model::inspect(args),
        Command::Detect(args) => detect::run(args),
        Command::Convert(args) => model::convert(args),
        Command::Serve(args) => serve::serve(args),
        Command::Openapi => {
            println!("{}", hoiclip::api::openapi_json());
            Ok(())
        }
        Command::WarmUp(args) => serve::warm_up(args),
        Command::Eval(args) => eval::eval(args),
        Command::Vocab(args) => vocab::run(args),
        Command::EmbedText(args) => model::embed_text(args),
    }
}

/// A multi-threaded runtime for a command's async work.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The defaults every flag shows and falls back to (one place: `hoiclip::config`).
fn defaults() -> Settings {
    Settings::default()
}

/// Which model, vocabulary and device (shared by `serve` and `detect`).
#[derive(clap::Args, Debug)]
struct ModelArgs {
    /// An official HOICLIP checkpoint (.pth) or a file from `hoiclip convert`.
    #[arg(long, env = "HOICLIP_WEIGHTS")]
    weights: Option<PathBuf>,
    /// Vocabulary database URL: sqlite:PATH (embedded, one server), or
    /// postgres://USER:PASSWORD@HOST/DB (shared by several replicas).
    #[arg(long, env = "HOICLIP_DATABASE_URL", default_value_t = defaults().database_url)]
    database_url: String,
    /// cpu, or cuda / cuda:N (build with --features cuda).
    #[arg(long, env = "HOICLIP_DEVICE", default_value_t = defaults().device)]
    device: String,
    /// How the GPU runs convolutions: gemm (im2col + matrix product on the tensor
    /// cores), implicit-gemm (cubek's fixed-algorithm kernel) or direct (Burn's own, for
    /// comparison). Ignored on the CPU.
    #[arg(long, env = "HOICLIP_GPU_CONV", value_enum, default_value_t = GpuConvArg::from(defaults().gpu_conv))]
    gpu_conv: GpuConvArg,
    /// Round padded input sizes up to multiples of this many pixels, so a GPU meets few
    /// shapes (answers do not change: padding is exact). 0: off. Default: 64 on a GPU,
    /// off on the CPU.
    #[arg(long, env = "HOICLIP_SIZE_BUCKET")]
    size_bucket: Option<usize>,
    /// Input shapes run before the server says ready: all (every bucketed size at every
    /// batch size: no kernel is compiled during a request), common (common photo shapes
    /// at batch 1 and the largest batch) or none (one small image). Default: all on a GPU,
    /// none on the CPU.
    #[arg(long, env = "HOICLIP_WARM_UP", value_enum)]
    warm_up: Option<WarmUpArg>,
    /// Keep compiled GPU kernels in this folder and reuse them in later runs (also set
    /// CUDA_CACHE_PATH for the driver's own cache).
    #[arg(long, env = "HOICLIP_KERNEL_CACHE")]
    kernel_cache: Option<PathBuf>,
}

/// The model behind `vocab` commands that need one (the database is `vocab`'s own).
#[derive(clap::Args, Debug)]
struct VocabModelArgs {
    /// An official HOICLIP checkpoint (.pth) or a file from `hoiclip convert` (default:
    /// the demo model).
    #[arg(long, env = "HOICLIP_WEIGHTS")]
    weights: Option<PathBuf>,
    /// cpu, or cuda / cuda:N (build with --features cuda).
    #[arg(long, env = "HOICLIP_DEVICE", default_value_t = defaults().device)]
    device: String,
}

impl VocabModelArgs {
    fn settings(&self, database_url: &str) -> Settings {
        Settings {
            model: ModelSource::from_weights(self.weights.clone()),
            database_url: database_url.to_string(),
            device: self.device.clone(),
            ..defaults()
        }
    }
}

/// How images share forward passes (shared by `serve` and `detect`).
#[derive(clap::Args, Debug)]
struct EngineArgs {
    /// Detection requests that may wait for the inference worker; more are answered 429
    /// at once (with Retry-After).
    #[arg(long, env = "HOICLIP_MAX_QUEUE", default_value_t = defaults().engine.max_queue)]
    max_queue: usize,
    /// Images per forward pass at most.
    #[arg(long, env = "HOICLIP_MAX_BATCH_SIZE", default_value_t = defaults().engine.max_batch_size)]
    max_batch_size: usize,
    /// Milliseconds the worker waits for more images after the first of a batch. 0: run
    /// whatever is queued as soon as the worker is free (batches still form under load).
    #[arg(long, env = "HOICLIP_MAX_BATCH_DELAY", default_value_t = defaults().engine.max_batch_delay.as_millis() as u64)]
    max_batch_delay: u64,
    /// same-size: only images of the same resized size share a pass; pad: images of
    /// different sizes and one orientation share a pass, zero-padded (exact: each image
    /// is answered as it is alone).
    #[arg(long, env = "HOICLIP_BATCH_POLICY", value_enum, default_value_t = PolicyArg::from(defaults().engine.policy))]
    batch_policy: PolicyArg,
}

impl EngineArgs {
    fn options(&self) -> EngineOptions {
        EngineOptions {
            max_queue: self.max_queue,
            max_batch_size: self.max_batch_size,
            max_batch_delay: Duration::from_millis(self.max_batch_delay),
            policy: self.batch_policy.into(),
        }
    }
}

impl ModelArgs {
    /// Settings for everything but the HTTP side.
    fn settings(&self, engine: &EngineArgs) -> Settings {
        Settings {
            model: ModelSource::from_weights(self.weights.clone()),
            database_url: self.database_url.clone(),
            device: self.device.clone(),
            gpu_conv: self.gpu_conv.into(),
            size_bucket: self.size_bucket,
            warm_up: self.warm_up.map(Into::into),
            kernel_cache: self.kernel_cache.clone(),
            engine: engine.options(),
            ..defaults()
        }
    }
}
