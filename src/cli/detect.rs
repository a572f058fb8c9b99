//! `hoiclip detect`: images through the same service and detection call as `POST /detect`,
//! one answer per image in the API's schema plus the image's path, in the order given.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{EngineArgs, ModelArgs, runtime};
use hoiclip::api::dto::DetectResponse;
use hoiclip::detector::Detection;
use hoiclip::engine::detection::{OFFLINE_DEADLINE, PendingAnswer};
use hoiclip::engine::{DetectPlan, DetectRequest, ImageInput, Service};

#[derive(clap::Args, Debug)]
pub struct DetectArgs {
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
    /// Candidates kept per image before NMS (as `candidates`; default the official 100,
    /// or --top-k when larger).
    #[arg(long)]
    candidates: Option<usize>,
    /// Score only the interactions of this pack.
    #[arg(long)]
    pack: Option<String>,
    /// Score only these verbs (comma-separated).
    #[arg(long, value_delimiter = ',')]
    verbs: Option<Vec<String>>,
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
}

impl DetectArgs {
    /// The request these flags make (the API's defaults where a flag is not given).
    fn request(&self) -> DetectRequest {
        let defaults = DetectRequest::default();
        DetectRequest {
            score_threshold: self.score_threshold.unwrap_or(defaults.score_threshold),
            top_k: self.top_k.unwrap_or(defaults.top_k),
            candidates: self.candidates,
            pack: self.pack.clone(),
            verbs: self.verbs.clone(),
            tfe_top_k: self.tfe,
            explain: self.explain,
            auto_orient: !self.keep_orientation,
            min_vocabulary_version: None,
        }
    }
}

pub fn run(args: DetectArgs) -> anyhow::Result<()> {
    let settings = args.model.settings(&args.engine);
    let request = args.request();
    runtime()?.block_on(async {
        let service = hoiclip::app::service(&settings).await?;
        let started = Instant::now();
        let plan = DetectPlan::new(
            service.as_ref(),
            &request,
            started + OFFLINE_DEADLINE,
            Duration::ZERO,
        )
        .await?;
        let max_queue = service.engine().options().max_queue.max(1);
        let mut pending: VecDeque<(PathBuf, Instant, PendingAnswer)> = VecDeque::new();
        let mut render = args.render.as_ref();
        // An unreadable image stops the run, but the answers already computed for the
        // images before it are printed first.
        let mut failure = None;
        for (i, path) in args.images.iter().enumerate() {
            // Bounded like the server: the oldest answer first once the queue is full.
            if pending.len() >= max_queue {
                print_oldest(service.as_ref(), &plan, &mut pending, &mut render).await?;
            }
            let image_started = Instant::now();
            // The first image's pixels are kept when its detections are to be drawn.
            let keep = i == 0 && render.is_some();
            let input = std::fs::read(path)
                .with_context(|| format!("cannot read {}", path.display()))
                .and_then(|bytes| {
                    ImageInput::decode(
                        service.as_ref(),
                        &bytes,
                        settings.api.decode,
                        request.auto_orient,
                        keep,
                    )
                    .with_context(|| path.display().to_string())
                });
            let input = match input {
                Ok(input) => input,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let admission = service.engine().admit()?;
            let answer = plan.submit(service.as_ref(), input, admission)?;
            pending.push_back((path.clone(), image_started, answer));
        }
        while !pending.is_empty() {
            print_oldest(service.as_ref(), &plan, &mut pending, &mut render).await?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        anyhow::Ok(())
    })
}

/// Waits for the oldest image's answer and prints it (and, with --render, draws the
/// first image's detections).
async fn print_oldest(
    service: &Service,
    plan: &DetectPlan,
    pending: &mut VecDeque<(PathBuf, Instant, PendingAnswer)>,
    render: &mut Option<&PathBuf>,
) -> anyhow::Result<()> {
    let Some((path, started, answer)) = pending.pop_front() else {
        return Ok(());
    };
    let mut answer = answer
        .wait()
        .await
        .with_context(|| path.display().to_string())?;
    if let (Some(out), Some(image)) = (render.take(), answer.image.take()) {
        hoiclip::vision::render::render(&image, &Detection::pairs(&answer.detections.detections))
            .save(out)
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("rendered {}", out.display());
    }
    let answer = DetectResponse::new(service.info(), &plan.set, answer, started.elapsed());
    let mut line = serde_json::to_value(answer)?;
    if let Some(object) = line.as_object_mut() {
        object.insert("image".into(), path.display().to_string().into());
    }
    println!("{line}");
    Ok(())
}
