//! `hoiclip eval`: benchmark numbers from a checkpoint (run through the composition root,
//! on any device) or from saved predictions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hoiclip::config::{ModelSource, Settings};
use hoiclip::engine::EngineOptions;
use hoiclip::eval::ap::ApMethod;
use hoiclip::eval::hico::{
    self, HicoAnnotations, HicoOptions, HicoVocabulary, NoDetectionRule, Protocol,
};
use hoiclip::eval::predictions::PredictionFile;
use hoiclip::eval::run::{predict, vcoco_detections};
use hoiclip::eval::vcoco::{self, VcocoGroundTruth};

flag_enum!(ProtocolArg => Protocol { Official, GenVlkt });
flag_enum!(ApArg => ApMethod { ElevenPoint, AllPoint });
flag_enum!(NoDetectionArg => NoDetectionRule { GenVlkt, Hoiclip });

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dataset {
    HicoDet,
    VCoco,
}

impl Dataset {
    fn name(self) -> &'static str {
        match self {
            Dataset::HicoDet => "hico-det",
            Dataset::VCoco => "v-coco",
        }
    }

    fn classes(self) -> usize {
        match self {
            Dataset::HicoDet => hico::CLASSES,
            Dataset::VCoco => 263,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[arg(long, value_enum)]
    dataset: Dataset,
    /// HICO-DET: the PPDM-style test_hico.json. V-COCO: vcoco_test.json.
    #[arg(long)]
    annotations: PathBuf,
    /// V-COCO: instances_vcoco_all_2014.json (COCO boxes and file names).
    #[arg(long, required_if_eq("dataset", "v-coco"))]
    instances: Option<PathBuf>,
    /// V-COCO: vcoco_test.ids (one image id per line).
    #[arg(long, required_if_eq("dataset", "v-coco"))]
    ids: Option<PathBuf>,
    /// Folder of the test images (HICO-DET test2015, or COCO for V-COCO); file names come
    /// from the annotations. Needed unless --predictions is given.
    #[arg(long, required_unless_present = "predictions")]
    images: Option<PathBuf>,
    /// An official HOICLIP checkpoint or a file from `hoiclip convert`. Without it the demo
    /// model runs and the numbers mean nothing.
    #[arg(long, env = "HOICLIP_WEIGHTS")]
    weights: Option<PathBuf>,
    /// HICO-DET zero-shot split whose classes are "unseen": rare_first, non_rare_first,
    /// unseen_object, unseen_verb (also uc0..uc4).
    #[arg(long)]
    zero_shot: Option<String>,
    /// HICO-DET: `official` (ho-rcnn MATLAB, what papers report) or `gen-vlkt` (the
    /// GEN-VLKT/HOICLIP Python evaluator). V-COCO always follows vsrl_eval.py.
    #[arg(long, value_enum, default_value = "official")]
    protocol: ProtocolArg,
    /// HICO-DET AP: eleven-point (both HICO-DET evaluators) or all-point (VOC 2010+).
    #[arg(long, value_enum, default_value = "eleven-point")]
    ap: ApArg,
    /// HICO-DET classes with ground truth but no detection: `gen-vlkt` counts them as AP 0
    /// in every mean; `hoiclip` leaves them out of the Rare/Non-rare and Unseen/Seen means,
    /// as HOICLIP's own evaluator does (to reproduce its tables).
    #[arg(long, value_enum, default_value = "gen-vlkt")]
    no_detection: NoDetectionArg,
    /// Score these saved predictions instead of running the model.
    #[arg(long, conflicts_with = "save_predictions")]
    predictions: Option<PathBuf>,
    /// Also write the predictions to this file (reusable with --predictions).
    #[arg(long)]
    save_predictions: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// cpu, or cuda / cuda:N (build with --features cuda).
    #[arg(long, env = "HOICLIP_DEVICE", default_value = "cpu")]
    device: String,
    /// How the GPU runs convolutions (as `serve --gpu-conv`).
    #[arg(long, env = "HOICLIP_GPU_CONV", value_enum, default_value = "gemm")]
    gpu_conv: super::GpuConvArg,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// same-size (images of one size share a pass) or pad (images of one orientation share
    /// a pass, padded; exact: the same answers as alone).
    #[arg(long, value_enum, default_value = "same-size")]
    batch_policy: super::PolicyArg,
    /// Training-free enhancement with CLIP's top-K; the paper's 34.69 uses 10.
    #[arg(long)]
    tfe: Option<usize>,
    /// Only the first N images of the split (a quick look; not comparable to full runs).
    #[arg(long)]
    limit: Option<usize>,
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let dataset = args.dataset;
    let vocab = HicoVocabulary::official();
    check_flags(&args, &vocab)?;
    let mut ground_truth = match dataset {
        Dataset::HicoDet => Truth::Hico(HicoAnnotations::load(&args.annotations, &vocab)?),
        Dataset::VCoco => Truth::Vcoco(VcocoGroundTruth::load(
            &args.annotations,
            args.instances
                .as_deref()
                .context("--instances is required for v-coco")?,
            args.ids
                .as_deref()
                .context("--ids is required for v-coco")?,
        )?),
    };
    let mut file_names = match &ground_truth {
        Truth::Hico(gt) => gt.images.iter().map(|i| i.file_name.clone()).collect(),
        Truth::Vcoco(gt) => gt.test_images(),
    };
    if let Some(n) = args.limit {
        // Score only the images that are run.
        file_names.truncate(n);
        match &mut ground_truth {
            Truth::Hico(gt) => gt.images.truncate(n),
            Truth::Vcoco(gt) => gt.truncate(n),
        }
    }
    let (predictions, source) = match &args.predictions {
        Some(path) => (
            {
                let all = PredictionFile::load(path, dataset.name(), dataset.classes())?;
                // With --limit, only the kept images are scored; otherwise an image the
                // annotations lack stays an error (mismatched files).
                match args.limit {
                    Some(_) => keep_images(all, &file_names),
                    None => all,
                }
            },
            path.display().to_string(),
        ),
        None => {
            let images = args.images.as_deref().context("--images is required")?;
            let predictions = run_model(&args, images, &file_names)?;
            if let Some(out) = &args.save_predictions {
                predictions.save(out)?;
                eprintln!("predictions saved to {}", out.display());
            }
            (predictions, "the model's predictions".to_string())
        }
    };
    match &ground_truth {
        Truth::Hico(gt) => report_hico(gt, &predictions, &vocab, &args, &source),
        Truth::Vcoco(gt) => {
            let detections = vcoco_detections(&predictions, gt, &source)?;
            let report = vcoco::evaluate(gt, &detections);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(())
        }
    }
}

/// Refuses flag combinations that would only fail (or be ignored) after a long run.
fn check_flags(args: &EvalArgs, vocab: &HicoVocabulary) -> anyhow::Result<()> {
    if let Some(split) = &args.zero_shot {
        if args.dataset != Dataset::HicoDet {
            anyhow::bail!("--zero-shot applies to hico-det only");
        }
        vocab.zero_shot_split(split)?;
    }
    if args.dataset == Dataset::VCoco
        && (Protocol::from(args.protocol) != Protocol::Official
            || ApMethod::from(args.ap) != ApMethod::ElevenPoint
            || NoDetectionRule::from(args.no_detection) != NoDetectionRule::GenVlkt)
    {
        anyhow::bail!(
            "--protocol, --ap and --no-detection apply to hico-det; v-coco always follows vsrl_eval.py"
        );
    }
    if args.predictions.is_some() && args.weights.is_some() {
        tracing::warn!(
            "--predictions given: the weights (--weights / HOICLIP_WEIGHTS) are not used"
        );
    }
    Ok(())
}

enum Truth {
    Hico(HicoAnnotations),
    Vcoco(VcocoGroundTruth),
}

fn report_hico(
    gt: &HicoAnnotations,
    predictions: &PredictionFile,
    vocab: &HicoVocabulary,
    args: &EvalArgs,
    source: &str,
) -> anyhow::Result<()> {
    let report = hico::evaluate(
        gt,
        predictions,
        vocab,
        &HicoOptions {
            protocol: args.protocol.into(),
            ap: args.ap.into(),
            no_detection: args.no_detection.into(),
            zero_shot: args.zero_shot.clone(),
        },
        source,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// Builds the model on `--device` as `serve` does (composition root, an in-memory
/// vocabulary) and runs it over the split with a progress bar.
fn run_model(
    args: &EvalArgs,
    images: &Path,
    file_names: &[String],
) -> anyhow::Result<PredictionFile> {
    if args.weights.is_none() {
        tracing::warn!(
            "no --weights: evaluating the DEMO model (random weights); the numbers mean nothing"
        );
    }
    let batch = args.batch_size.max(1);
    let settings = Settings {
        model: ModelSource::from_weights(args.weights.clone()),
        database_url: "sqlite::memory:".into(),
        device: args.device.clone(),
        gpu_conv: args.gpu_conv.into(),
        engine: EngineOptions {
            max_queue: batch * 2,
            max_batch_size: batch,
            max_batch_delay: Duration::from_millis(20),
            policy: args.batch_policy.into(),
        },
        ..Settings::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let service = runtime.block_on(hoiclip::app::service(&settings))?;
    let vocabulary = &service.info().vocabulary;
    if vocabulary != args.dataset.name() {
        anyhow::bail!(
            "the model's classifier is {vocabulary}; evaluating {} needs a {} checkpoint",
            args.dataset.name(),
            args.dataset.name()
        );
    }
    let bar = indicatif::ProgressBar::new(file_names.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images  {per_sec}  elapsed {elapsed_precise}  ETA {eta_precise}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let predictions = runtime.block_on(predict(
        service,
        args.dataset.name(),
        images,
        file_names,
        args.tfe,
        |done, _| bar.set_position(done as u64),
    ))?;
    bar.finish();
    Ok(predictions)
}

/// The predictions of the images being scored (all of them unless `--limit` cut the list).
fn keep_images(mut predictions: PredictionFile, file_names: &[String]) -> PredictionFile {
    let kept: std::collections::HashSet<&String> = file_names.iter().collect();
    predictions
        .images
        .retain(|image| kept.contains(&image.file_name));
    predictions
}
