//! The `hoiclip` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hoiclip::backend::Cpu;
use hoiclip::model::clip::tokenizer::ClipTokenizer;
use hoiclip::model::clip::{ClipConfig, l2_normalize};
use hoiclip::model::weights::{Checkpoint, LoadPlan};

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
