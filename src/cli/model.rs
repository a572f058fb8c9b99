//! Commands about the model and its files: `tokenize`, `inspect-weights`, `convert` and
//! `embed-text`.

use std::path::PathBuf;

use super::{VocabModelArgs, runtime};
use hoiclip::backend::Cpu;
use hoiclip::model::clip::tokenizer::ClipTokenizer;

#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// Texts to tokenize.
    #[arg(required = true)]
    texts: Vec<String>,
    /// A CLIP BPE merge list to use instead of the built-in one.
    #[arg(long, env = "HOICLIP_TOKENIZER")]
    tokenizer: Option<PathBuf>,
}

pub fn tokenize(args: TokenizeArgs) -> anyhow::Result<()> {
    let tok = match args.tokenizer {
        Some(path) => ClipTokenizer::from_file(path)?,
        None => ClipTokenizer::new()?,
    };
    for text in args.texts {
        println!("{}", serde_json::to_string(&tok.encode(&text)?)?);
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A HOICLIP checkpoint (.pth) or a CLIP state dict (.pth / .safetensors).
    file: PathBuf,
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let inspection = hoiclip::model::hoiclip::inspect::<Cpu>(&args.file, &Default::default())?;
    println!("{}: {inspection}", args.file.display());
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// The official HOICLIP checkpoint (.pth).
    weights: PathBuf,
    /// Output file (.safetensors, Burn layout plus the model's sizes).
    out: PathBuf,
}

pub fn convert(args: ConvertArgs) -> anyhow::Result<()> {
    let report = hoiclip::model::hoiclip::convert::<Cpu>(&args.weights, &args.out)?;
    println!(
        "{} -> {}: {} tensors ({} stored but unused by inference, dropped)",
        args.weights.display(),
        args.out.display(),
        report.applied.len(),
        report.ignored.len()
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct EmbedTextArgs {
    #[arg(required = true)]
    prompts: Vec<String>,
    #[command(flatten)]
    model: VocabModelArgs,
}

/// The prompts through the model's text tower on its worker, as the server embeds the
/// prompts of a vocabulary.
pub fn embed_text(args: EmbedTextArgs) -> anyhow::Result<()> {
    let settings = args.model.settings("sqlite::memory:");
    let tokenizer = ClipTokenizer::new()?;
    let refs: Vec<&str> = args.prompts.iter().map(String::as_str).collect();
    let ids = tokenizer.encode_batch(&refs)?;
    let rows = runtime()?.block_on(async {
        let service = hoiclip::app::service(&settings).await?;
        anyhow::Ok(service.engine().embed_text(ids).await?)
    })?;
    for (prompt, row) in args.prompts.iter().zip(rows) {
        println!(
            "{}",
            serde_json::json!({ "prompt": prompt, "embedding": row })
        );
    }
    Ok(())
}
