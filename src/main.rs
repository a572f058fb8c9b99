//! The `hoiclip` command line.

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

mod eval_command;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::time::Duration;

use hoiclip::api::dto::DetectParams;
use hoiclip::api::server::ServerLimits;
use hoiclip::api::{ApiKeys, RateLimit, ServeOptions};
use hoiclip::backend::Cpu;
use hoiclip::config::{ModelSource, Settings, WarmUp};
use hoiclip::detector::Detection;
use hoiclip::engine::{BatchPolicy, EngineOptions, Inference, Request};
use hoiclip::model::clip::tokenizer::ClipTokenizer;
use hoiclip::model::clip::{ClipConfig, l2_normalize};
use hoiclip::model::kernels::GpuConv;
use hoiclip::model::weights::{Checkpoint, LoadPlan};
use hoiclip::vision::decode::{exif_orientation, orient};
use hoiclip::vision::{DecodeLimits, decode};

#[derive(Parser, Debug)]
#[command(
    name = "hoiclip",
    version,
    about = "Human-object interaction detection (HOICLIP in Burn)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Give freed large blocks back to the kernel at once (the C library's default): less
    /// resident memory between requests, about 12-16% slower inference on the CPU.
    #[arg(long, global = true, env = "HOICLIP_RELEASE_FREED_MEMORY")]
    release_freed_memory: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print CLIP token ids of each text (with start and end tokens), one JSON array per line.
    Tokenize {
        /// Texts to tokenize.
        #[arg(required = true)]
        texts: Vec<String>,
        /// A CLIP BPE merge list to use instead of the built-in one.
        #[arg(long, env = "HOICLIP_TOKENIZER")]
        tokenizer: Option<PathBuf>,
    },
    /// Check that a weights file loads: a whole HOICLIP checkpoint (sizes read from its shapes)
    /// or a CLIP ViT-B/32 state dict; lists every missing, unused and mis-shaped key.
    InspectWeights {
        /// A HOICLIP checkpoint (.pth) or a CLIP state dict (.pth / .safetensors).
        file: PathBuf,
    },
    /// Detect human-object interactions; prints one JSON object per image, in the API's
    /// `POST /detect` schema plus the image's path.
    ///
    /// It runs the same pipeline as `serve` (vocabulary, engine, batch policy), so an
    /// image gives the same triplets here as through the API. Without --weights this runs
    /// the demo model (random weights, `"trained": false`): its detections are
    /// meaningless and only show the pipeline working.
    Detect {
        /// Images (JPEG, PNG, WebP, GIF, BMP or TIFF).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        engine: EngineArgs,
        /// Write the first image with its detections drawn to this PNG.
        #[arg(long)]
        render: Option<PathBuf>,
        /// Drop triplets scoring below this (as `score_threshold`).
        #[arg(long)]
        score_threshold: Option<f32>,
        /// At most this many triplets per image (as `top_k`; default 100).
        #[arg(long, alias = "max-results")]
        top_k: Option<usize>,
        /// Score only the interactions of this pack.
        #[arg(long)]
        pack: Option<String>,
        /// Score only these verbs (comma-separated).
        #[arg(long)]
        verbs: Option<String>,
        /// Training-free enhancement with CLIP's top-K image scores (the paper's best: 10;
        /// the API's `training_free_enhancement=true`).
        #[arg(long)]
        tfe: Option<usize>,
        /// Give each triplet its score terms and the sources of their rows (as
        /// `explain=true`).
        #[arg(long)]
        explain: bool,
        /// Keep the stored orientation instead of turning each image as its EXIF
        /// orientation says (as `auto_orient=false`; what the official evaluation sees).
        #[arg(long)]
        keep_orientation: bool,
    },
    /// Convert an official checkpoint into a native file that loads without pickle parsing,
    /// fp16 widening or layout conversion (outputs are bit-identical).
    Convert {
        /// The official HOICLIP checkpoint (.pth).
        weights: PathBuf,
        /// Output file (.safetensors, Burn layout plus the model's sizes).
        out: PathBuf,
    },
    /// Run the REST API (see /docs for the OpenAPI UI). Without --weights it serves the
    /// clearly labelled demo model.
    Serve(ServeArgs),
    /// Print the OpenAPI document (what openapi/openapi.json holds).
    Openapi,
    /// Load the model and run the warm-up `serve` would run (default: every input shape
    /// on a GPU), then exit: with --kernel-cache, fills the cache ahead of deployment so
    /// that servers start without compiling.
    WarmUp {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Benchmark numbers: HICO-DET mAP (Default and Known-object; Full/Rare/Non-rare, and
    /// Unseen/Seen for a zero-shot split) or V-COCO role AP (Scenarios 1 and 2), from a
    /// checkpoint run over the test images or from saved predictions.
    Eval(eval_command::EvalArgs),
    /// Manage the vocabulary in the database (seeded with HICO-DET and V-COCO on first use).
    Vocab {
        /// Vocabulary database URL: sqlite:PATH or postgres://USER@HOST/DB.
        #[arg(long, env = "HOICLIP_DATABASE_URL", default_value_t = defaults().database_url)]
        database_url: String,
        #[command(subcommand)]
        command: VocabCommand,
    },
    /// Embed prompts with the CLIP text tower of a checkpoint; prints L2-normalised vectors as JSON.
    EmbedText {
        #[arg(long, env = "HOICLIP_WEIGHTS")]
        weights: PathBuf,
        #[arg(required = true)]
        prompts: Vec<String>,
    },
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

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HOICLIP_LISTEN", default_value_t = defaults().listen)]
    listen: String,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// API key required by POST /detect (header X-API-Key or Authorization: Bearer).
    /// Prefer HOICLIP_API_KEY or --api-key-file: a flag shows in `ps`. Several keys:
    /// comma-separated.
    #[arg(
        long,
        env = "HOICLIP_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_key: Vec<String>,
    /// File with detection API keys, one per line (`#` starts a comment).
    #[arg(long, env = "HOICLIP_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    /// API key required by vocabulary writes (also accepted by /detect).
    #[arg(
        long,
        env = "HOICLIP_ADMIN_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    admin_key: Vec<String>,
    /// File with admin keys, one per line.
    #[arg(long, env = "HOICLIP_ADMIN_KEY_FILE")]
    admin_key_file: Option<PathBuf>,
    /// Requests per second per API key (per client address where no key is needed);
    /// 0 turns rate limiting off.
    #[arg(long, env = "HOICLIP_RATE_LIMIT", default_value_t = defaults().api.rate_limit.per_second)]
    rate_limit: u32,
    /// Requests a key may send at once above the sustained rate.
    #[arg(long, env = "HOICLIP_RATE_LIMIT_BURST", default_value_t = defaults().api.rate_limit.burst)]
    rate_limit_burst: u32,
    /// Seconds to receive a request's headers; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, env = "HOICLIP_HEADER_TIMEOUT", default_value_t = defaults().server.header_timeout.as_secs())]
    header_timeout: u64,
    /// Seconds to receive a whole request body (slower uploads get 408).
    #[arg(long, env = "HOICLIP_BODY_TIMEOUT", default_value_t = defaults().api.body_timeout.as_secs())]
    body_timeout: u64,
    /// Open connections at most (lowered to fit the descriptor limit); more get 503.
    #[arg(long, env = "HOICLIP_MAX_CONNECTIONS", default_value_t = defaults().server.max_connections)]
    max_connections: usize,
    /// Seconds a response write may wait for a client that does not read; then the
    /// connection is closed.
    #[arg(long, env = "HOICLIP_SEND_TIMEOUT", default_value_t = defaults().server.send_timeout.as_secs())]
    send_timeout: u64,
    /// Open connections from one client address at most; 0: no per-client limit (behind
    /// a proxy, where every client has the proxy's address).
    #[arg(
        long,
        env = "HOICLIP_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = defaults().server.max_connections_per_client
    )]
    max_connections_per_client: usize,
    /// Seconds requests in flight may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "HOICLIP_SHUTDOWN_GRACE", default_value_t = defaults().server.shutdown_grace.as_secs())]
    shutdown_grace: u64,
    /// Decoded pixels in memory at once across all requests (about 3-8 bytes each);
    /// further decodes wait. Never below --max-pixels.
    #[arg(
        long,
        env = "HOICLIP_DECODE_BUDGET_PIXELS",
        default_value_t = defaults().api.decode_budget_pixels
    )]
    decode_budget_pixels: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "HOICLIP_MAX_BODY_BYTES", default_value_t = defaults().api.max_body_bytes)]
    max_body_bytes: usize,
    /// Largest accepted image, in decoded pixels.
    #[arg(long, env = "HOICLIP_MAX_PIXELS", default_value_t = defaults().api.decode.max_pixels)]
    max_pixels: u64,
    /// Per-request time limit in seconds: a detection not answered by then gets 503
    /// `timeout` (and is dropped from the queue if it has not run yet).
    #[arg(long, env = "HOICLIP_REQUEST_TIMEOUT", default_value_t = defaults().api.request_timeout.as_secs())]
    request_timeout: u64,
    /// Allow cross-origin requests from any origin.
    #[arg(long, env = "HOICLIP_CORS")]
    cors: bool,
    /// Milliseconds between checks of the stored vocabulary version for changes made
    /// elsewhere (other replicas, the CLI); on Postgres the fallback behind LISTEN/NOTIFY.
    #[arg(long, env = "HOICLIP_VOCABULARY_POLL_MS", default_value_t = defaults().vocabulary_poll.as_millis() as u64)]
    vocabulary_poll_ms: u64,
    /// Longest a detection waits, in milliseconds, for the vocabulary version it asks for
    /// (`min_vocabulary_version`) before answering 503 `stale-vocabulary`.
    #[arg(long, env = "HOICLIP_VOCABULARY_WAIT_MS", default_value_t = defaults().api.vocabulary_wait.as_millis() as u64)]
    vocabulary_wait_ms: u64,
}

impl ServeArgs {
    /// The flags as settings (keys read from their files).
    fn settings(&self) -> anyhow::Result<Settings> {
        let base = self.model.settings(&self.engine);
        Ok(Settings {
            listen: self.listen.clone(),
            api: ServeOptions {
                keys: ApiKeys {
                    detect: read_keys(&self.api_key, self.api_key_file.as_ref())?,
                    admin: read_keys(&self.admin_key, self.admin_key_file.as_ref())?,
                },
                max_body_bytes: self.max_body_bytes,
                decode: DecodeLimits {
                    max_pixels: self.max_pixels,
                    ..base.api.decode
                },
                request_timeout: Duration::from_secs(self.request_timeout),
                // 0 would refuse every body: at least a second.
                body_timeout: Duration::from_secs(self.body_timeout.max(1)),
                decode_budget_pixels: self.decode_budget_pixels,
                rate_limit: RateLimit {
                    per_second: self.rate_limit,
                    burst: self.rate_limit_burst,
                },
                cors: self.cors,
                vocabulary_wait: Duration::from_millis(self.vocabulary_wait_ms),
            },
            // At least 10 ms: a poll is one small query, not a busy loop.
            vocabulary_poll: Duration::from_millis(self.vocabulary_poll_ms.max(10)),
            server: ServerLimits {
                header_timeout: Duration::from_secs(self.header_timeout.max(1)),
                max_connections: self.max_connections,
                shutdown_grace: Duration::from_secs(self.shutdown_grace),
                send_timeout: Duration::from_secs(self.send_timeout.max(1)),
                max_connections_per_client: self.max_connections_per_client,
            },
            ..base
        })
    }
}

/// Keys from flags or the environment plus those in `file` (one per line, `#` comments).
fn read_keys(given: &[String], file: Option<&PathBuf>) -> anyhow::Result<Vec<String>> {
    let mut keys: Vec<String> = given
        .iter()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    // A key setting given but blank (`HOICLIP_ADMIN_KEY=" "`) would silently leave the
    // API open: refuse to start instead.
    if !given.is_empty() && keys.is_empty() {
        anyhow::bail!("an API key setting is present but holds no key (only blanks or commas)");
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
        if keys.is_empty() {
            anyhow::bail!("key file {} holds no key", path.display());
        }
    }
    Ok(keys)
}

/// Ctrl-C or SIGTERM: stop accepting, finish the requests in flight.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(hoiclip::app::serve(&settings, shutdown_signal()))?;
    Ok(())
}

/// `hoiclip warm-up`: builds the server as `serve` does (its warm-up included) and
/// reports what ran.
fn warm_up(settings: &Settings) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let app = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(hoiclip::app::build(settings))?;
    println!(
        "{}",
        serde_json::json!({
            "device": app.service().device(),
            "shapes": app.warm_up.len(),
            "seconds_to_ready": started.elapsed().as_secs_f64(),
            "kernel_cache": settings.kernel_cache,
        })
    );
    Ok(())
}

/// `hoiclip detect`: the images through the same service as `serve`, answers in the
/// API's schema, in the order given.
fn detect(
    images: &[PathBuf],
    settings: &Settings,
    params: &DetectParams,
    tfe: Option<usize>,
    render: Option<&PathBuf>,
) -> anyhow::Result<()> {
    use hoiclip::api::detect::detect_options;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let service = hoiclip::app::service(settings).await?;
        let set = service.classes().context("no classifier set")?;
        let mut options = detect_options(params, &set, &service.info().vocabulary)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if tfe.is_some() {
            options.tfe_top_k = tfe;
        }
        let max_queue = service.engine().options().max_queue;
        let mut answers = Answers {
            service: service.as_ref(),
            set: &set,
            render,
            first_image: None,
            pending: std::collections::VecDeque::new(),
        };
        // An unreadable image stops the run, but the answers already computed for the
        // images before it are printed first.
        let mut failure = None;
        for path in images {
            // Bounded like the server: the oldest answer first once the queue is full.
            if answers.pending.len() >= max_queue {
                answers.print_oldest().await?;
            }
            let started = std::time::Instant::now();
            let (image, exif_orientation, oriented) = match std::fs::read(path)
                .with_context(|| format!("cannot read {}", path.display()))
                .and_then(|bytes| {
                    let exif = exif_orientation(&bytes);
                    let oriented = params.auto_orient.unwrap_or(true) && exif != 1;
                    let image = decode(&bytes, settings.api.decode)
                        .with_context(|| format!("{}", path.display()))?;
                    Ok((
                        if oriented { orient(image, exif) } else { image },
                        exif,
                        oriented,
                    ))
                }) {
                Ok(image) => image,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let input = service.prepare(&image);
            let decode_ms = started.elapsed().as_secs_f64() * 1000.0;
            if answers.first_image.is_none() && render.is_some() {
                answers.first_image = Some(image);
            }
            let ticket = service.engine().submit(Request {
                input,
                options: options.clone(),
                classes: set.clone(),
                deadline: std::time::Instant::now() + Duration::from_secs(24 * 3600),
            })?;
            answers.pending.push_back(Pending {
                path: path.clone(),
                started,
                decode_ms,
                exif_orientation,
                oriented,
                submitted: std::time::Instant::now(),
                ticket,
            });
        }
        while !answers.pending.is_empty() {
            answers.print_oldest().await?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        anyhow::Ok(())
    })
}

/// An image submitted by `hoiclip detect`, waiting for its answer.
struct Pending {
    path: PathBuf,
    started: std::time::Instant,
    decode_ms: f64,
    exif_orientation: u8,
    oriented: bool,
    submitted: std::time::Instant,
    ticket: hoiclip::engine::Ticket,
}

/// Prints `hoiclip detect`'s answers in submission order.
struct Answers<'a> {
    service: &'a dyn Inference,
    set: &'a hoiclip::engine::ClassView,
    render: Option<&'a PathBuf>,
    /// The first image, kept until its detections are drawn (with --render).
    first_image: Option<image::RgbImage>,
    pending: std::collections::VecDeque<Pending>,
}

impl Answers<'_> {
    /// Waits for the oldest image's answer and prints it (and renders the first image).
    async fn print_oldest(&mut self) -> anyhow::Result<()> {
        use hoiclip::api::detect::response;
        use hoiclip::api::dto::TimingsOut;
        let Some(pending) = self.pending.pop_front() else {
            return Ok(());
        };
        let result = pending
            .ticket
            .wait()
            .await
            .with_context(|| format!("{}", pending.path.display()))?;
        if let (Some(out), Some(image)) = (self.render, self.first_image.take()) {
            hoiclip::vision::render::render(&image, &Detection::pairs(&result.detections))
                .save(out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!("rendered {}", out.display());
        }
        let timings = TimingsOut {
            decode_ms: pending.decode_ms,
            // Until the answer is read: it may have waited while later images decoded.
            inference_ms: pending.submitted.elapsed().as_secs_f64() * 1000.0,
            total_ms: pending.started.elapsed().as_secs_f64() * 1000.0,
        };
        let mut answer = response(self.service.info(), self.set, result, timings);
        answer.exif_orientation = pending.exif_orientation;
        answer.oriented = pending.oriented;
        let mut line = serde_json::to_value(answer)?;
        if let Some(object) = line.as_object_mut() {
            object.insert("image".into(), pending.path.display().to_string().into());
        }
        println!("{line}");
        Ok(())
    }
}

#[derive(Subcommand, Debug)]
enum VocabCommand {
    /// List verbs, objects, interactions or packs as JSON lines.
    List {
        #[arg(value_parser = ["verbs", "objects", "interactions", "packs"])]
        what: String,
        /// Only interactions of this pack.
        #[arg(long)]
        pack: Option<String>,
        /// Add each row's source in the model's classifier (`trained`, `examples` with
        /// their count, or `text`): loads the model (--weights) and builds its classifier.
        #[arg(long)]
        row_sources: bool,
        #[command(flatten)]
        model: VocabModelArgs,
    },
    /// Teach a verb from example images: each example's person, object and union crops
    /// go through the model's image tower, and the verb's row becomes their visual
    /// semantic arithmetic (as `POST /verbs/{id}/examples`). Loads the model (--weights).
    AddExamples {
        /// The verb's name.
        verb: String,
        /// One example: an image file, the person's box and the object's box as
        /// "x1,y1,x2,y2" in the image's pixels, and the object's name (repeatable).
        #[arg(long = "example", num_args = 4, required = true,
            value_names = ["IMAGE", "HUMAN_BOX", "OBJECT_BOX", "OBJECT"])]
        examples: Vec<String>,
        /// Replace the verb's earlier examples with these, in one step.
        #[arg(long)]
        replace: bool,
        /// Boxes are in the stored pixels, not in the image turned to its EXIF
        /// orientation (as the API's `auto_orient=false`).
        #[arg(long)]
        keep_orientation: bool,
        #[command(flatten)]
        model: VocabModelArgs,
    },
    /// List a verb's examples as JSON lines.
    Examples { verb: String },
    /// Remove one example of a verb.
    RemoveExample { verb: String, id: i64 },
    /// Add a verb and its interactions ("a photo of a person {ing} {a/an} {object}").
    AddVerb {
        name: String,
        /// The -ing phrase used in prompts ("juggling", "sitting on").
        #[arg(long)]
        ing: String,
        /// Objects it applies to (repeatable).
        #[arg(long = "object")]
        objects: Vec<String>,
        /// An explicit prompt for an object: OBJECT=PROMPT (repeatable).
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        #[arg(long)]
        pack: Option<String>,
    },
    /// Add an object ("a photo of {a/an} {object}" unless --prompt).
    AddObject {
        name: String,
        #[arg(long)]
        prompt: Option<String>,
    },
    /// Add an interaction for an existing verb and object.
    AddInteraction {
        verb: String,
        object: String,
        #[arg(long)]
        prompt: Option<String>,
        #[arg(long)]
        pack: Option<String>,
    },
    /// Remove a user verb, object or interaction (seed entries stay).
    Remove {
        #[arg(value_parser = ["verb", "object", "interaction"])]
        what: String,
        id: i64,
    },
    /// Write a pack as JSON (to stdout, or --out).
    Export {
        pack: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Import a pack written by `export`.
    Import { file: PathBuf },
}

fn vocab(database_url: &str, command: VocabCommand) -> anyhow::Result<()> {
    use hoiclip::classifier::{RowSource, RowSources};
    use hoiclip::engine::examples::{ExampleCrops, image_id, learn};
    use hoiclip::vocab::Pack;
    use hoiclip::vocab::store::{NewVerb, VocabStore};
    use std::collections::HashMap;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = VocabStore::open(database_url, std::sync::Arc::new(ClipTokenizer::new()?)).await?;
        store.seed(&Pack::hico_det()).await?;
        store.seed(&Pack::v_coco()).await?;
        let print = |v: serde_json::Value| println!("{v}");
        match command {
            VocabCommand::List { what, pack, row_sources, model } => {
                let sources = match row_sources {
                    true => {
                        let service = hoiclip::app::service(&model.settings(database_url)).await?;
                        Some(service.classes().context("no classifier set")?.sources)
                    }
                    false => None,
                };
                // The row source of an entry, when asked for (null: not in the classifier).
                let with_source = |mut line: serde_json::Value, id: i64, pick: fn(&RowSources) -> &HashMap<i64, RowSource>| {
                    if let (Some(s), Some(object)) = (&sources, line.as_object_mut()) {
                        object.insert("row_source".into(), serde_json::json!(pick(s).get(&id)));
                    }
                    line
                };
                match what.as_str() {
                    "verbs" => store.verbs().await?.into_iter().for_each(|v| print(with_source(serde_json::json!(v), v.id, |s| &s.verbs))),
                    "objects" => store.objects().await?.into_iter().for_each(|o| print(with_source(serde_json::json!(o), o.id, |s| &s.objects))),
                    "packs" => store.packs().await?.into_iter().for_each(|v| print(serde_json::json!(v))),
                    _ => store.interactions(pack.as_deref()).await?.into_iter().for_each(|i| print(with_source(serde_json::json!(i), i.id, |s| &s.interactions))),
                }
            }
            VocabCommand::AddExamples { verb, examples, replace, keep_orientation, model } => {
                let settings = model.settings(database_url);
                let verb_id = verb_id(&store, &verb).await?;
                let service = hoiclip::app::service(&settings).await?;
                let res = service.clip_resolution();
                let mut crops = Vec::new();
                for example in examples.chunks(4) {
                    let [image, human, object_box, object] = example else {
                        anyhow::bail!("--example takes IMAGE HUMAN_BOX OBJECT_BOX OBJECT");
                    };
                    let bytes = std::fs::read(image).with_context(|| format!("cannot read {image}"))?;
                    let decoded = decode(&bytes, settings.api.decode).with_context(|| image.clone())?;
                    let decoded = match keep_orientation {
                        true => decoded,
                        false => orient(decoded, exif_orientation(&bytes)),
                    };
                    crops.push(ExampleCrops::new(&decoded, image_id(&bytes), parse_box(human)?, parse_box(object_box)?, object.clone(), res)
                        .with_context(|| image.clone())?);
                }
                let (records, version) = learn(service.as_ref(), verb_id, crops, replace, std::time::Instant::now() + Duration::from_secs(24 * 3600)).await?;
                let set = service.refresh().await?;
                print(serde_json::json!({"examples": records, "row_source": set.sources.verbs.get(&verb_id), "version": version}));
            }
            VocabCommand::Examples { verb } => {
                let verb_id = verb_id(&store, &verb).await?;
                store.examples(verb_id).await?.into_iter().for_each(|e| print(serde_json::json!(e)));
            }
            VocabCommand::RemoveExample { verb, id } => {
                let verb_id = verb_id(&store, &verb).await?;
                let version = store.remove_example(verb_id, id).await?;
                print(serde_json::json!({"removed": {"example": id}, "version": version}));
            }
            VocabCommand::AddVerb { name, ing, objects, prompts, pack } => {
                let prompts = prompts
                    .iter()
                    .map(|p| {
                        p.split_once('=')
                            .map(|(o, t)| (o.trim().to_string(), t.trim().to_string()))
                            .ok_or_else(|| anyhow::anyhow!("--prompt takes OBJECT=PROMPT, got {p:?}"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let (verb, interactions, version) = store.add_verb(NewVerb { name, ing, objects, prompts, pack }).await?;
                print(serde_json::json!({"verb": verb, "interactions": interactions, "version": version}));
            }
            VocabCommand::AddObject { name, prompt } => {
                let (object, version) = store.add_object(&name, prompt.as_deref()).await?;
                print(serde_json::json!({"object": object, "version": version}));
            }
            VocabCommand::AddInteraction { verb, object, prompt, pack } => {
                let (interaction, version) = store.add_interaction(&verb, &object, prompt.as_deref(), pack.as_deref()).await?;
                print(serde_json::json!({"interaction": interaction, "version": version}));
            }
            VocabCommand::Remove { what, id } => {
                let version = match what.as_str() {
                    "verb" => store.remove_verb(id).await?,
                    "object" => store.remove_object(id).await?,
                    _ => store.remove_interaction(id).await?,
                };
                print(serde_json::json!({"removed": {what: id}, "version": version}));
            }
            VocabCommand::Export { pack, out } => {
                let json = serde_json::to_string_pretty(&store.export_pack(&pack).await?)?;
                match out {
                    Some(path) => std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?,
                    None => println!("{json}"),
                }
            }
            VocabCommand::Import { file } => {
                let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let pack = serde_json::from_str(&text).with_context(|| format!("{} is not a pack export", file.display()))?;
                let version = store.import_pack(&pack).await?;
                print(serde_json::json!({"imported": file.display().to_string(), "version": version}));
            }
        }
        anyhow::Ok(())
    })
}

/// A verb's id by name.
async fn verb_id(store: &hoiclip::vocab::store::VocabStore, name: &str) -> anyhow::Result<i64> {
    store
        .verbs()
        .await?
        .into_iter()
        .find(|v| v.name == name)
        .map(|v| v.id)
        .with_context(|| format!("no verb `{name}`"))
}

/// "x1,y1,x2,y2" as a box.
fn parse_box(text: &str) -> anyhow::Result<[f32; 4]> {
    hoiclip::engine::examples::parse_box(text)
        .with_context(|| format!("a box is four numbers \"x1,y1,x2,y2\", not {text:?}"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // Before the runtime, the engine or rayon start any thread (see the function).
    if !cli.release_freed_memory && !hoiclip::backend::keep_freed_memory() {
        tracing::debug!("the C library is not glibc: freed memory is handled its own way");
    }
    if !matches!(cli.command, Command::Serve(_)) {
        quiet_broken_pipe();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A command line tool piped into `head` should stop quietly when the reader goes away,
/// as Unix tools do, instead of panicking on the failed write. Rust ignores SIGPIPE; the
/// printing commands take the default action back. The server keeps ignoring it (a client
/// closing its socket must never stop it).
fn quiet_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any thread is spawned; it only resets the
    // disposition of one signal to its default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Tokenize { texts, tokenizer } => {
            let tok = match tokenizer {
                Some(path) => ClipTokenizer::from_file(path)?,
                None => ClipTokenizer::new()?,
            };
            for text in texts {
                println!("{}", serde_json::to_string(&tok.encode(&text)?)?);
            }
        }
        Command::InspectWeights { file } => {
            let inspection = hoiclip::model::hoiclip::inspect::<Cpu>(&file, &Default::default())?;
            println!("{}: {inspection}", file.display());
        }
        Command::Detect {
            images,
            model,
            engine,
            render,
            score_threshold,
            top_k,
            pack,
            verbs,
            tfe,
            explain,
            keep_orientation,
        } => {
            let params = DetectParams {
                score_threshold,
                top_k,
                pack,
                verbs,
                explain: Some(explain),
                auto_orient: Some(!keep_orientation),
                ..DetectParams::default()
            };
            detect(
                &images,
                &model.settings(&engine),
                &params,
                tfe,
                render.as_ref(),
            )?;
        }
        Command::Convert { weights, out } => {
            let device = Default::default();
            let checkpoint = Checkpoint::open(&weights)?;
            let (model, config, report) =
                hoiclip::model::hoiclip::load_checkpoint::<Cpu>(&checkpoint, &device)?;
            hoiclip::model::hoiclip::save_native(&model, &config, checkpoint.args(), &out)?;
            println!(
                "{} -> {}: {} tensors ({} stored but unused by inference, dropped)",
                weights.display(),
                out.display(),
                report.applied.len(),
                report.ignored.len()
            );
        }
        Command::Vocab {
            database_url,
            command,
        } => vocab(&database_url, command)?,
        Command::Serve(args) => serve(args)?,
        Command::Openapi => println!("{}", hoiclip::api::openapi_json()),
        Command::WarmUp { model, engine } => warm_up(&model.settings(&engine))?,
        Command::Eval(args) => eval_command::eval(args)?,
        Command::EmbedText { weights, prompts } => {
            let ckpt = Checkpoint::open(&weights)?;
            let mut clip = ClipConfig::vit_b_32().init::<Cpu>(&Default::default());
            ckpt.load_into(&mut clip, &clip_plan(&ckpt))?;
            let tok = ClipTokenizer::new()?;
            let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
            let ids = tok.encode_batch(&refs)?;
            let emb = l2_normalize(clip.encode_text(&ids)?);
            let dims = emb.dims();
            let values = emb
                .into_data()
                .to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            for (prompt, row) in prompts.iter().zip(values.chunks(dims[1])) {
                println!(
                    "{}",
                    serde_json::json!({ "prompt": prompt, "embedding": row })
                );
            }
        }
    }
    Ok(())
}

/// CLIP lives under `clip_model.` in HOICLIP checkpoints and at the top of a CLIP state dict.
fn clip_plan(ckpt: &Checkpoint) -> LoadPlan {
    hoiclip::model::clip::load_plan(ckpt)
}

#[cfg(test)]
mod tests {
    use super::read_keys;

    #[test]
    fn keys_come_from_flags_and_a_file_with_comments() {
        let path = std::env::temp_dir().join(format!("hoiclip-keys-{}", std::process::id()));
        std::fs::write(&path, "# rotated 2026-11\nkey-b\n\n  key-c  \n").unwrap();
        let keys = read_keys(&["key-a".into(), " ".into()], Some(&path)).unwrap();
        assert_eq!(keys, ["key-a", "key-b", "key-c"]);
        assert!(
            read_keys(&[" ".into(), "".into()], None).is_err(),
            "blank keys must not open the API"
        );
        assert!(read_keys(&[], None).unwrap().is_empty());
        std::fs::write(&path, "# nothing here\n").unwrap();
        assert!(
            read_keys(&[], Some(&path)).is_err(),
            "an empty key file must not open the API"
        );
        let missing = path.with_extension("missing");
        assert!(read_keys(&[], Some(&missing)).is_err());
        let _ = std::fs::remove_file(path);
    }
}
