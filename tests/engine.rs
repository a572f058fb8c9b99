//! The inference engine: a full queue refuses at once without keeping payloads, deadlines
//! end waiting jobs, a failing batch fails only its own requests, and batched results
//! equal unbatched ones.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{B, Gate, Held, fixture};
use hoiclip::classifier::ClassifierSet;
use hoiclip::detector::{DetectOptions, Detection, Detector, ImageDetections};
use hoiclip::engine::{
    BatchPolicy, ClassifierHandle, ClassifierSets, DetectorRunner, Engine, EngineError,
    EngineOptions, Request, Runner,
};
use hoiclip::vision::preprocess::Prepared;

/// Answers each image with an empty result of its size; panics on a 13-pixel-wide image.
struct Echo;

impl Runner for Echo {
    fn run(&mut self, batch: &[Request]) -> Vec<Result<ImageDetections, EngineError>> {
        assert!(
            batch.iter().all(|r| r.input.original.0 != 13),
            "boom: a 13-pixel image"
        );
        batch
            .iter()
            .map(|r| {
                Ok(ImageDetections {
                    width: r.input.original.0,
                    height: r.input.original.1,
                    detections: Vec::new(),
                })
            })
            .collect()
    }
}

fn fake_input(width: u32, floats: usize) -> Prepared {
    Prepared {
        original: (width, 10),
        detr: vec![0.5; floats],
        detr_size: (10, width as usize),
        clip: Vec::new(),
    }
}

async fn some_classes() -> ClassifierHandle {
    // The echo runner scores nothing: a view of no registered set does.
    ClassifierHandle::detached(1, Vec::new())
}

fn request(input: Prepared, classes: &ClassifierHandle, deadline: Duration) -> Request {
    Request {
        input,
        options: DetectOptions::default(),
        classes: classes.clone(),
        deadline: Instant::now() + deadline,
    }
}

/// Held echo engine: every batch is reported on the receiver, then waits for the gate.
fn held_echo(options: EngineOptions) -> (Engine, Gate, std::sync::mpsc::Receiver<usize>) {
    let gate = Gate::closed();
    let (started, batches) = std::sync::mpsc::channel();
    let held = gate.clone();
    let engine = Engine::start(
        move || Held {
            inner: Echo,
            gate: held,
            started,
        },
        options,
    );
    (engine, gate, batches)
}

/// A held echo engine (batches of one, `max_queue` places) whose worker is busy with a
/// 1-pixel-wide job, held at the gate.
fn held_with_one_running(
    max_queue: usize,
    classes: &ClassifierHandle,
) -> (
    Engine,
    Gate,
    std::sync::mpsc::Receiver<usize>,
    hoiclip::engine::Ticket,
) {
    let (engine, gate, batches) = held_echo(EngineOptions {
        max_queue,
        max_batch_size: 1,
        ..EngineOptions::default()
    });
    let minute = Duration::from_secs(60);
    let running = engine
        .submit(request(fake_input(1, 1), classes, minute))
        .unwrap();
    batches.recv_timeout(minute).unwrap();
    (engine, gate, batches, running)
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_keeps_no_payloads() {
    let classes = some_classes().await;
    let minute = Duration::from_secs(60);
    let (engine, gate, _batches, running) = held_with_one_running(2, &classes);
    let queued: Vec<_> = (2..4)
        .map(|w| {
            engine
                .submit(request(fake_input(w, 1), &classes, minute))
                .unwrap()
        })
        .collect();
    assert_eq!(engine.queue_depth(), 2);
    assert!(matches!(engine.admit(), Err(EngineError::QueueFull(2))));

    // 500 refused requests of 4 MB each: 2 GB if the engine kept them.
    let before = resident_bytes();
    for _ in 0..500 {
        let refused = engine.submit(request(fake_input(5, 1 << 20), &classes, minute));
        assert!(matches!(refused, Err(EngineError::QueueFull(2))));
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");
    assert_eq!(engine.queue_depth(), 2);

    gate.open();
    assert_eq!(running.wait().await.unwrap().width, 1);
    for (ticket, width) in queued.into_iter().zip(2..) {
        assert_eq!(ticket.wait().await.unwrap().width, width);
    }
    assert_eq!(engine.queue_depth(), 0);
}

#[test]
fn an_admission_holds_its_place_until_dropped() {
    let engine = Engine::start(
        || Echo,
        EngineOptions {
            max_queue: 1,
            ..EngineOptions::default()
        },
    );
    let place = engine.admit().unwrap();
    assert_eq!(engine.queue_depth(), 1);
    assert!(matches!(engine.admit(), Err(EngineError::QueueFull(1))));
    // A handler that fails after admission (say, an undecodable body) drops its place.
    drop(place);
    assert_eq!(engine.queue_depth(), 0);
    assert!(engine.admit().is_ok());
}

#[tokio::test]
async fn deadlines_end_waiting_requests_and_expired_jobs_never_run() {
    let classes = some_classes().await;
    let minute = Duration::from_secs(60);
    let (engine, gate, batches, running) = held_with_one_running(32, &classes);

    // The handler side gives up at the deadline...
    let waited = engine
        .submit(request(
            fake_input(2, 1),
            &classes,
            Duration::from_millis(50),
        ))
        .unwrap();
    assert_eq!(waited.wait().await, Err(EngineError::DeadlineExceeded));
    // ...and the worker drops a job whose deadline passed while it waited.
    let expired = engine
        .submit(request(
            fake_input(3, 1),
            &classes,
            Duration::from_millis(50),
        ))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.open();
    assert_eq!(running.wait().await.unwrap().width, 1);
    // Keep the expired ticket alive (a dropped one is skipped silently) until the worker
    // has answered it.
    let until = Instant::now() + minute;
    while engine.stats().expired.load(Ordering::Relaxed) == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(expired.wait().await, Err(EngineError::DeadlineExceeded));
    let after = engine
        .submit(request(fake_input(4, 1), &classes, minute))
        .unwrap();
    assert_eq!(after.wait().await.unwrap().width, 4);
    // Only the first and the last job reached the runner.
    let mut ran = Vec::new();
    while let Ok(n) = batches.try_recv() {
        ran.push(n);
    }
    assert_eq!(ran, vec![1], "batches started after the first");
    assert_eq!(engine.stats().jobs_run.load(Ordering::Relaxed), 2);
    assert_eq!(engine.stats().expired.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_panicking_batch_fails_only_its_requests_and_the_worker_goes_on() {
    let classes = some_classes().await;
    let engine = Engine::start(
        || Echo,
        EngineOptions {
            max_batch_size: 4,
            max_batch_delay: Duration::from_millis(500),
            ..EngineOptions::default()
        },
    );
    let minute = Duration::from_secs(60);
    let bad = engine
        .submit(request(fake_input(13, 1), &classes, minute))
        .unwrap();
    let neighbour = engine
        .submit(request(fake_input(14, 1), &classes, minute))
        .unwrap();
    for ticket in [bad, neighbour] {
        match ticket.wait().await {
            Err(EngineError::Failed(message)) => assert!(message.contains("boom"), "{message}"),
            other => panic!("expected a failed batch, got {other:?}"),
        }
    }
    let next = engine
        .submit(request(fake_input(15, 1), &classes, minute))
        .unwrap();
    assert_eq!(next.wait().await.unwrap().width, 15);
    assert_eq!(engine.stats().failed_batches.load(Ordering::Relaxed), 1);
}

/// Writes down what it runs: `detect:W` per batch (W: the first image's width),
/// `text:N` per text pass of N prompts, `install` per set build.
struct Journal(Arc<std::sync::Mutex<Vec<String>>>);

impl Journal {
    fn note(&self, entry: String) {
        if let Ok(mut log) = self.0.lock() {
            log.push(entry);
        }
    }
}

impl Runner for Journal {
    fn run(&mut self, batch: &[Request]) -> Vec<Result<ImageDetections, EngineError>> {
        self.note(format!("detect:{}", batch[0].input.original.0));
        Echo.run(batch)
    }

    fn embed_text(&mut self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        self.note(format!("text:{}", ids.len()));
        Ok(ids.iter().map(|_| vec![0.0; 4]).collect())
    }

    fn install(
        &mut self,
        _source: hoiclip::engine::SetSource,
    ) -> Result<ClassifierHandle, hoiclip::classifier::ClassifierError> {
        self.note("install".into());
        Ok(ClassifierHandle::detached(2, Vec::new()))
    }
}

type Log = Arc<std::sync::Mutex<Vec<String>>>;

/// A held journal engine (batches of one) busy with a 1-pixel-wide job held at the gate,
/// and `queued` more jobs (widths 2, 3, ...) waiting behind it.
fn busy_journal(
    classes: &ClassifierHandle,
    queued: u32,
) -> (
    Engine,
    Gate,
    Log,
    hoiclip::engine::Ticket,
    Vec<hoiclip::engine::Ticket>,
) {
    let minute = Duration::from_secs(60);
    let log = Log::default();
    let gate = Gate::closed();
    let (started, batches) = std::sync::mpsc::channel();
    let (held, journal) = (gate.clone(), log.clone());
    let engine = Engine::start(
        move || Held {
            inner: Journal(journal),
            gate: held,
            started,
        },
        EngineOptions {
            max_batch_size: 1,
            ..EngineOptions::default()
        },
    );
    let running = engine
        .submit(request(fake_input(1, 1), classes, minute))
        .unwrap();
    batches.recv_timeout(minute).unwrap();
    let waiting: Vec<_> = (2..2 + queued)
        .map(|w| {
            engine
                .submit(request(fake_input(w, 1), classes, minute))
                .unwrap()
        })
        .collect();
    (engine, gate, log, running, waiting)
}

#[tokio::test]
async fn rebuild_steps_go_before_waiting_detections_and_alternate_with_them() {
    use hoiclip::engine::{SetSource, TEXT_SLICE};
    let classes = some_classes().await;
    // Three detections wait, then a rebuild sends two text passes and a set build.
    let (engine, gate, log, running, waiting) = busy_journal(&classes, 3);
    let text = tokio::spawn({
        let engine = engine.clone();
        async move { engine.embed_text(vec![vec![7]; 2 * TEXT_SLICE]).await }
    });
    let install = tokio::spawn({
        let engine = engine.clone();
        async move { engine.install(SetSource::Checkpoint).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.open();
    assert_eq!(text.await.unwrap().unwrap().len(), 2 * TEXT_SLICE);
    assert_eq!(install.await.unwrap().unwrap().version, 2);
    assert_eq!(running.wait().await.unwrap().width, 1);
    for (ticket, width) in waiting.into_iter().zip(2..) {
        assert_eq!(ticket.wait().await.unwrap().width, width);
    }
    let text_pass = format!("text:{TEXT_SLICE}");
    let order: Vec<String> = log.lock().unwrap().clone();
    assert_eq!(
        order,
        [
            "detect:1", &text_pass, "detect:2", &text_pass, "install", "detect:3", "detect:4"
        ],
        "a rebuild waits behind the running batch only, and its passes alternate with waiting batches"
    );
}

#[tokio::test]
async fn a_rebuild_between_its_steps_is_not_overtaken_by_waiting_detections() {
    use hoiclip::engine::SetSource;
    let classes = some_classes().await;
    let (engine, gate, log, running, waiting) = busy_journal(&classes, 2);
    // A text pass, then (after a moment of other work) the set build, as a rebuild
    // sends them: the worker holds the waiting detections for the second step.
    let rebuild = tokio::spawn({
        let engine = engine.clone();
        async move {
            let _steps = engine.rebuild_steps();
            engine.embed_text(vec![vec![7]]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            engine.install(SetSource::Checkpoint).await.unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.open();
    assert_eq!(rebuild.await.unwrap().version, 2);
    assert_eq!(running.wait().await.unwrap().width, 1);
    for ticket in waiting {
        ticket.wait().await.unwrap();
    }
    let order: Vec<String> = log.lock().unwrap().clone();
    assert_eq!(
        order,
        ["detect:1", "text:1", "install", "detect:2", "detect:3"]
    );
}

fn photo(name: &str) -> image::RgbImage {
    image::open(fixture(name)).unwrap().to_rgb8()
}

/// Same triplets in the same order; scores within 1e-4, boxes within 1e-2 px.
fn assert_same(batched: &ImageDetections, alone: &ImageDetections, what: &str) -> f32 {
    assert_eq!(
        (batched.width, batched.height),
        (alone.width, alone.height),
        "{what}"
    );
    assert_eq!(
        batched.detections.len(),
        alone.detections.len(),
        "{what}: count"
    );
    let mut worst = 0f32;
    for (a, b) in batched.detections.iter().zip(&alone.detections) {
        let Detection {
            interaction_index,
            score,
            human,
            object,
            ..
        } = a;
        assert_eq!(*interaction_index, b.interaction_index, "{what}: class");
        worst = worst.max((score - b.score).abs());
        for (x, y) in human
            .bbox
            .iter()
            .chain(&object.bbox)
            .zip(b.human.bbox.iter().chain(&b.object.bbox))
        {
            assert!((x - y).abs() < 1e-2, "{what}: box {x} vs {y}");
        }
    }
    assert!(worst < 1e-4, "{what}: score differs by {worst}");
    worst
}

/// Submits every image (scored with its set) to an engine that batches them all in one
/// pass under `policy`, and returns the answers in order.
async fn run_batched(
    detector: &Arc<Detector<B>>,
    policy: BatchPolicy,
    images: &[image::RgbImage],
    sets: &[&Arc<ClassifierSet<B>>],
    options: &DetectOptions,
) -> (Engine, Vec<ImageDetections>) {
    let registry = ClassifierSets::default();
    let views: Vec<ClassifierHandle> = sets
        .iter()
        .map(|set| registry.register((*set).clone()))
        .collect();
    // The worker owns a copy of the same seeded demo model; `detector` stays here for
    // preparing inputs and direct comparisons.
    let engine = Engine::start(
        move || DetectorRunner::new(common::demo_detector(), policy, registry),
        EngineOptions {
            max_batch_size: images.len(),
            max_batch_delay: Duration::from_secs(2),
            ..EngineOptions::default()
        },
    );
    // Prepared before submitting, so all of them reach the worker within its window.
    let inputs: Vec<_> = images.iter().map(|img| detector.prepare(img)).collect();
    let tickets: Vec<_> = inputs
        .into_iter()
        .zip(&views)
        .map(|(input, view)| {
            engine
                .submit(Request {
                    input,
                    options: options.clone(),
                    classes: view.clone(),
                    deadline: Instant::now() + Duration::from_secs(600),
                })
                .unwrap()
        })
        .collect();
    let mut out = Vec::new();
    for t in tickets {
        out.push(t.wait().await.unwrap());
    }
    (engine, out)
}

#[tokio::test]
async fn batched_results_equal_unbatched_across_sizes_and_classifier_versions() {
    let (service, sets) = common::demo_service_and_sets(&common::test_db("batched")).await;
    let detector = Arc::new(common::demo_detector());
    let classifiers = service.classifiers();
    let first_view = classifiers.current().unwrap();
    let first: Arc<ClassifierSet<B>> = sets.get(&first_view).unwrap();
    classifiers
        .store()
        .add_interaction(
            "ride",
            "dog",
            Some("a photo of a person riding a dog"),
            Some("mine"),
        )
        .await
        .unwrap();
    let second = sets.get(&classifiers.refresh().await.unwrap()).unwrap();
    assert_ne!(first.version, second.version);

    let base = photo("hoiclip/img0.png");
    let images = [
        base.clone(),
        image::imageops::flip_horizontal(&base),
        image::imageops::colorops::brighten(&base, 30),
        photo("hoiclip/img1.png"),
        photo("hoiclip/img2.jpg"),
    ];
    let sets = [&first, &second, &second, &first, &second];
    let options = DetectOptions {
        max_results: 20,
        ..DetectOptions::default()
    };
    let (engine, batched) =
        run_batched(&detector, BatchPolicy::SameSize, &images, &sets, &options).await;
    assert_eq!(engine.stats().largest_batch.load(Ordering::Relaxed), 5);
    assert_eq!(engine.stats().batches.load(Ordering::Relaxed), 1);
    for (i, (img, set)) in images.iter().zip(sets).enumerate() {
        let alone = detector
            .detect_with_set(std::slice::from_ref(img), &options, set)
            .unwrap();
        assert_same(&batched[i], &alone[0], &format!("image {i}"));
    }
}

/// Images of several sizes share passes under `pad` (one per orientation) and each is
/// answered as it is alone: same triplets in the same order, scores within 1e-5, boxes
/// within 0.01 px.
#[tokio::test]
async fn the_pad_policy_answers_mixed_sizes_as_each_image_alone() {
    let (service, sets) = common::demo_service_and_sets(&common::test_db("pad")).await;
    let detector = Arc::new(common::demo_detector());
    let set = sets.get(&service.classifiers().current().unwrap()).unwrap();
    let landscape = photo("hoiclip/img0.png");
    let portrait = photo("hoiclip/img1.png");
    let images = [
        landscape.clone(),
        photo("hoiclip/img2.jpg"),
        portrait.clone(),
        image::imageops::resize(&landscape, 120, 61, image::imageops::FilterType::Triangle),
        image::imageops::resize(&portrait, 66, 97, image::imageops::FilterType::Triangle),
    ];
    let sizes: std::collections::HashSet<_> = images
        .iter()
        .map(|i| detector.prepare(i).detr_size)
        .collect();
    assert_eq!(sizes.len(), images.len(), "every image its own size");
    let options = DetectOptions {
        max_results: 20,
        ..DetectOptions::default()
    };
    let sets: Vec<_> = images.iter().map(|_| &set).collect();
    let (engine, padded) = run_batched(&detector, BatchPolicy::Pad, &images, &sets, &options).await;
    assert_eq!(engine.stats().batches.load(Ordering::Relaxed), 1);
    assert_eq!(
        engine.stats().forward_passes.load(Ordering::Relaxed),
        2,
        "one pass for the landscape images, one for the portrait ones"
    );
    for (i, result) in padded.iter().enumerate() {
        let alone = detector
            .detect_with_set(std::slice::from_ref(&images[i]), &options, &set)
            .unwrap();
        let worst = assert_same(result, &alone[0], &format!("image {i}"));
        assert!(worst <= 1e-5, "image {i}: scores moved by {worst}");
    }
    let (same_size, _) =
        run_batched(&detector, BatchPolicy::SameSize, &images, &sets, &options).await;
    assert_eq!(same_size.stats().forward_passes.load(Ordering::Relaxed), 5);
}
