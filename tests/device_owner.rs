//! The engine's worker is the only code that computes tensors: text passes and classifier
//! builds run on its thread, never on the async runtime, and a rebuild's text passes
//! leave room for detections between them.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hoiclip::classifier::ClassifierError;
use hoiclip::detector::{DetectOptions, ImageDetections};
use hoiclip::engine::{
    ClassifierHandle, EngineError, Request, Runner, SetSource, TEXT_BATCH, TEXT_SLICE,
};
use hoiclip::vocab::store::NewVerb;

/// What ran, on which thread, and how many prompts (text passes).
type Log = Arc<Mutex<Vec<(&'static str, String, usize)>>>;

/// Records each command it runs with the thread it ran on; text passes are slowed down
/// so that detections queue up behind them.
struct Recording<R> {
    inner: R,
    log: Log,
}

impl<R> Recording<R> {
    fn note(&self, what: &'static str, prompts: usize) {
        let thread = std::thread::current().name().unwrap_or("?").to_string();
        self.log.lock().unwrap().push((what, thread, prompts));
    }
}

impl<R: Runner> Runner for Recording<R> {
    fn run(&mut self, batch: &[Request]) -> Vec<Result<ImageDetections, EngineError>> {
        self.note("detect", 0);
        self.inner.run(batch)
    }

    fn embed_text(&mut self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        self.note("embed", ids.len());
        std::thread::sleep(Duration::from_millis(30));
        self.inner.embed_text(ids)
    }

    fn install(&mut self, source: SetSource) -> Result<ClassifierHandle, ClassifierError> {
        // For a build, the number logged is the vocabulary version it is built from.
        let version = match &source {
            SetSource::Vocabulary { snapshot, .. } => snapshot.version as usize,
            SetSource::Checkpoint => 0,
        };
        self.note("install", version);
        self.inner.install(source)
    }

    fn embed_images(&mut self, crops: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        self.note("embed-images", crops.len());
        self.inner.embed_images(crops)
    }
}

/// The demo server with its runner recording, and the log (start-up included).
async fn recorded() -> (Arc<hoiclip::engine::Service>, Log) {
    let log: Log = Arc::default();
    let recorder = log.clone();
    let service =
        common::demo_service_with(&common::settings_at("sqlite::memory:"), move |inner| {
            Recording {
                inner,
                log: recorder,
            }
        })
        .await;
    (service, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensor_work_runs_on_the_worker_and_detections_interleave_with_a_rebuild() {
    let (service, log) = recorded().await;
    {
        let startup = log.lock().unwrap();
        assert!(startup.iter().any(|(w, _, _)| *w == "embed"), "{startup:?}");
        assert!(
            startup.iter().any(|(w, _, _)| *w == "install"),
            "{startup:?}"
        );
    }
    log.lock().unwrap().clear();

    // Four verbs with every object: 324 new prompts, at least 5 text passes.
    let objects: Vec<String> = service
        .store()
        .objects()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    for i in 0..4 {
        service
            .store()
            .add_verb(NewVerb {
                name: format!("verb{i}"),
                ing: format!("doing thing {i} with"),
                objects: objects.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let rebuild = {
        let service = service.clone();
        tokio::spawn(async move { service.refresh().await })
    };
    // Detections one after another for as long as the rebuild runs.
    let image = image::RgbImage::from_pixel(64, 48, image::Rgb([90, 120, 150]));
    let classes = service.classes().unwrap();
    let mut detections = 0;
    while !rebuild.is_finished() {
        let ticket = service
            .engine()
            .submit(Request {
                input: service.prepare(&image),
                options: DetectOptions::default(),
                classes: classes.clone(),
                deadline: Instant::now() + Duration::from_secs(60),
            })
            .unwrap();
        ticket.wait().await.unwrap();
        detections += 1;
    }
    let set = rebuild.await.unwrap().unwrap();
    assert_eq!(set.rows.len(), classes.rows.len() + 4 * objects.len());

    let log = log.lock().unwrap();
    for (what, thread, _) in log.iter() {
        assert_eq!(thread, "hoiclip-engine", "{what} ran off the worker");
    }
    let embeds: Vec<usize> = (0..log.len()).filter(|&i| log[i].0 == "embed").collect();
    assert!(embeds.len() >= 5, "{} text passes", embeds.len());
    assert!(
        log.iter()
            .all(|(w, _, n)| *w != "embed" || *n <= TEXT_SLICE),
        "a text pass longer than a slice"
    );
    // Detections ran between two slices of the same text command (commands are
    // TEXT_BATCH prompts; the async side awaits the cache write between commands, so a
    // detection there proves nothing about the worker).
    let mut prompts = 0;
    let mut inside = 0;
    for (i, (what, _, n)) in log.iter().enumerate() {
        match *what {
            "embed" => prompts += n,
            "detect" if prompts % TEXT_BATCH != 0 && embeds.iter().any(|&e| e > i) => inside += 1,
            _ => {}
        }
    }
    assert!(
        inside >= 1,
        "no detection ran inside a text command ({detections} detections, log {:?})",
        log.iter().map(|(w, _, n)| (*w, *n)).collect::<Vec<_>>()
    );
    // One set for the rebuild, of the final version. The server's follower may also have
    // looked at the store between the four writes and built a set for a version in
    // between (a poll the test cannot hold back); nothing else builds one.
    let installs: Vec<usize> = log
        .iter()
        .filter(|(w, _, _)| *w == "install")
        .map(|(_, _, version)| *version)
        .collect();
    let last = set.version as usize;
    let finals = installs.iter().filter(|&&v| v == last).count();
    assert_eq!(finals, 1, "one set built for one rebuild: {installs:?}");
    assert!(installs.iter().all(|&v| v <= last), "{installs:?}");
}

/// Example crops go through the image tower on the worker too, in slices, and give what
/// the model computes directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_features_are_computed_by_the_worker() {
    use hoiclip::classifier::arithmetic::union_box;
    use hoiclip::vision::preprocess::clip_crop;

    let (service, log) = recorded().await;
    log.lock().unwrap().clear();
    let detector = hoiclip::detector::Detector::<common::B>::demo(&Default::default()).unwrap();
    let res = detector.clip_resolution();
    let image = image::RgbImage::from_fn(80, 60, |x, y| {
        image::Rgb([(3 * x) as u8, (4 * y) as u8, 90])
    });
    let boxes: Vec<[f32; 4]> = (0..20)
        .map(|i| {
            let i = i as f32;
            let (h, o) = ([i, 2.0, 30.0 + i, 50.0], [40.0, i, 79.0, 20.0 + i]);
            [h, o, union_box(h, o)][(i as usize) % 3]
        })
        .collect();
    let crops: Vec<Vec<f32>> = boxes.iter().map(|&b| clip_crop(&image, b, res)).collect();
    let served = service.engine().embed_images(crops.clone()).await.unwrap();
    let direct = hoiclip::classifier::embed_images(
        &detector.model().clip_model,
        &crops,
        res,
        crops.len(),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(served.len(), crops.len());
    let diff = served
        .iter()
        .zip(&direct)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0f32, f32::max);
    assert!(diff <= 1e-5, "worker and direct features differ by {diff}");

    let log = log.lock().unwrap();
    let passes: Vec<usize> = log
        .iter()
        .filter(|(w, _, _)| *w == "embed-images")
        .map(|(_, _, n)| *n)
        .collect();
    assert_eq!(passes.iter().sum::<usize>(), crops.len());
    assert!(
        passes.len() >= 2 && passes.iter().all(|&n| n <= TEXT_SLICE),
        "{passes:?}"
    );
    for (what, thread, _) in log.iter() {
        assert_eq!(thread, "hoiclip-engine", "{what} ran off the worker");
    }
}
