//! The `hoiclip` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hoiclip::backend::Cpu;
use hoiclip::detector::{DetectOptions, Detector};
use hoiclip::model::clip::tokenizer::ClipTokenizer;
use hoiclip::model::clip::{ClipConfig, l2_normalize};
use hoiclip::model::weights::{Checkpoint, LoadPlan};
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
    /// List what a weights file holds for CLIP and whether it loads (missing/unused/mis-shaped keys).
    InspectWeights {
        /// A HOICLIP checkpoint (.pth) or a CLIP state dict (.pth / .safetensors).
        file: PathBuf,
    },
    /// Detect human-object interactions; prints one JSON object per image.
    ///
    /// Without --weights this runs the demo model (random weights, `"trained": false`):
    /// its detections are meaningless and only show the pipeline working.
    Detect {
        /// Images (JPEG, PNG or WebP).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// An official HOICLIP checkpoint (.pth) or a file from `hoiclip convert`.
        #[arg(long, env = "HOICLIP_WEIGHTS")]
        weights: Option<PathBuf>,
        /// Write the first image with its detections drawn to this PNG.
        #[arg(long)]
        render: Option<PathBuf>,
        /// Drop detections scoring below this.
        #[arg(long, default_value_t = 0.0)]
        score_threshold: f32,
        /// At most this many detections per image.
        #[arg(long, default_value_t = 100)]
        max_results: usize,
        /// Training-free enhancement with CLIP's top-K image scores (the paper's best: 10).
        #[arg(long)]
        tfe: Option<usize>,
    },
    /// Convert an official checkpoint into a native file that loads without pickle parsing,
    /// fp16 widening or layout conversion (outputs are bit-identical).
    Convert {
        /// The official HOICLIP checkpoint (.pth).
        weights: PathBuf,
        /// Output file (.safetensors, Burn layout plus the model's sizes).
        out: PathBuf,
    },
    /// Embed prompts with the CLIP text tower of a checkpoint; prints L2-normalised vectors as JSON.
    EmbedText {
        #[arg(long, env = "HOICLIP_WEIGHTS")]
        weights: PathBuf,
        #[arg(required = true)]
        prompts: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
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
            let ckpt = Checkpoint::open(&file)?;
            let plan = clip_plan(&ckpt);
            let mut clip = ClipConfig::vit_b_32().init::<Cpu>(&Default::default());
            let report = ckpt.load_into(&mut clip, &plan)?;
            println!(
                "{file:?}: CLIP ViT-B/32 loads cleanly: {report}",
                file = file.display()
            );
        }
        Command::Detect {
            images,
            weights,
            render,
            score_threshold,
            max_results,
            tfe,
        } => {
            let device = Default::default();
            let detector = match &weights {
                Some(path) => Detector::<Cpu>::from_weights(path, &device)?,
                None => {
                    tracing::warn!(
                        "no --weights: running the DEMO model (random weights, detections are meaningless)"
                    );
                    Detector::<Cpu>::demo(&device)?
                }
            };
            let options = DetectOptions {
                score_threshold,
                max_results,
                tfe_top_k: tfe,
                classes: None,
            };
            let limits = DecodeLimits::default();
            let mut decoded = Vec::with_capacity(images.len());
            for path in &images {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                decoded
                    .push(decode(&bytes, limits).with_context(|| format!("{}", path.display()))?);
            }
            let info = detector.info().clone();
            let results = detector.detect(&decoded, &options);
            for (path, result) in images.iter().zip(&results) {
                let line = serde_json::json!({
                    "image": path.display().to_string(),
                    "model": info.name,
                    "trained": info.trained,
                    "width": result.width,
                    "height": result.height,
                    "detections": result.detections,
                });
                println!("{line}");
            }
            if let (Some(out), Some(first), Some(result)) =
                (render, decoded.first(), results.first())
            {
                hoiclip::vision::render::render(first, &result.detections)
                    .save(&out)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                eprintln!("rendered {}", out.display());
            }
        }
        Command::Convert { weights, out } => {
            let device = Default::default();
            let (model, config, report) =
                hoiclip::model::hoiclip::load_file::<Cpu>(&weights, &device)?;
            hoiclip::model::hoiclip::save_native(&model, &config, &out)?;
            println!(
                "{} -> {}: {} tensors ({} stored but unused by inference, dropped)",
                weights.display(),
                out.display(),
                report.applied.len(),
                report.ignored.len()
            );
        }
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
