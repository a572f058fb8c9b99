//! The inference engine: one worker thread owns the model and its device, and is the
//! only code that runs tensor work. Everything else sends it a [`Command`] and awaits the
//! answer: detection jobs (through a bounded queue), text-tower passes for vocabulary
//! rebuilds, and building classifier sets. Async threads never compute tensors.
//!
//! For detections the worker takes the first waiting job, then keeps collecting until it
//! has `max_batch_size` jobs or `max_batch_delay` has passed, drops jobs whose deadline
//! passed or whose client left, and gives the rest to its [`Runner`] as one batch.
//!
//! Rebuild steps (text and image passes, set builds) go before waiting detections: a
//! replica busy with detections still takes a new vocabulary version within one batch,
//! not after its whole queue (clients waiting on `min_vocabulary_version` depend on it).
//! A rebuild sends its text in commands of [`TEXT_BATCH`] prompts, which the worker runs
//! in passes of [`TEXT_SLICE`] with one waiting detection batch between passes, so a
//! detection waits behind at most one pass and a rebuild cannot starve detections. A panic
//! inside the runner fails that command's callers only; the worker goes on.

mod classifier_sync;
pub mod detection;
pub mod examples;
mod runner;
mod service;
mod sets;

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::detector::{DetectOptions, ImageDetections};
use crate::vision::preprocess::Prepared;

pub use classifier_sync::{ClassifierSync, RebuildError};
pub use detection::{DetectError, DetectPlan, DetectRequest, ImageInput};
pub use runner::{BatchPolicy, DetectorRunner, Runner};
pub use service::{ModelHandle, Service};
pub use sets::{ClassifierHandle, ClassifierSets, SetSource};

/// Prompts per text command of a rebuild (one cache write each).
pub use crate::classifier::TEXT_BATCH;

/// Prompts per text-tower pass on the worker: a detection that arrives during a rebuild
/// waits behind at most one such pass.
pub const TEXT_SLICE: usize = 16;

/// How long the worker holds waiting detections for a rebuild's next step while a
/// rebuild is between steps (the gap is in-memory work, microseconds): without it a
/// rebuild of text pass + set build would wait behind two detection batches, not one.
const STEP_GAP: Duration = Duration::from_millis(10);

/// Queue and batching settings (`hoiclip serve` flags).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Jobs waiting for the worker (not counting the batch it is running); more get 429.
    pub max_queue: usize,
    /// Images per forward pass at most.
    pub max_batch_size: usize,
    /// How long the worker waits for more jobs after the first one of a batch.
    pub max_batch_delay: Duration,
    pub policy: BatchPolicy,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_queue: 32,
            max_batch_size: 8,
            max_batch_delay: Duration::ZERO,
            policy: BatchPolicy::SameSize,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EngineError {
    #[error("the detection queue is full ({0} waiting)")]
    QueueFull(usize),
    #[error("the request waited longer than its deadline")]
    DeadlineExceeded,
    #[error("the inference worker has stopped")]
    Stopped,
    #[error("the forward pass failed: {0}")]
    Failed(String),
    #[error("this runner does not compute {0}")]
    Unsupported(&'static str),
}

/// What the worker is asked to do.
enum Command {
    /// Requests sent together (one `/detect/batch`): the worker sees all of them at once,
    /// so those that can share a forward pass do, however it is scheduled.
    Detect(Vec<Job>),
    Rebuild(Step),
}

/// A step of a vocabulary rebuild; steps run before waiting detections.
enum Step {
    Embed {
        ids: Vec<Vec<u32>>,
        reply: oneshot::Sender<Result<Vec<Vec<f32>>, EngineError>>,
    },
    EmbedImages {
        crops: Vec<Vec<f32>>,
        reply: oneshot::Sender<Result<Vec<Vec<f32>>, EngineError>>,
    },
    Install {
        source: SetSource,
        reply: oneshot::Sender<Result<ClassifierHandle, RebuildError>>,
    },
    WarmUp {
        shape: WarmUpShape,
        classes: ClassifierHandle,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
}

/// One input shape to run before serving: `batch` images padded to `size` (h, w).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmUpShape {
    pub batch: usize,
    pub size: (usize, usize),
}

/// What a handler asks of the engine.
pub struct Request {
    pub input: Prepared,
    pub options: DetectOptions,
    /// The classifier set the request was validated against; it is scored with it.
    pub classes: ClassifierHandle,
    /// Past this instant the job is dropped instead of run.
    pub deadline: Instant,
}

struct Job {
    request: Request,
    enqueued: Instant,
    reply: oneshot::Sender<Result<ImageDetections, EngineError>>,
    /// Released when the worker takes the job.
    admission: Option<Admission>,
}

/// A count that is one higher while the guard lives (queue places, rebuilds in their
/// steps).
struct Counted(Arc<AtomicUsize>);

impl Counted {
    /// Holds a place already added to `counter`.
    fn held(counter: &Arc<AtomicUsize>) -> Self {
        Self(counter.clone())
    }

    fn add(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self::held(counter)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A place in the queue, held from the moment a request is admitted (before its body is
/// read or decoded) until the worker takes it; dropping it gives the place back.
pub struct Admission {
    _place: Counted,
}

/// A rebuild in the middle of its steps ([`Engine::rebuild_steps`]).
pub struct RebuildSteps {
    _rebuilding: Counted,
}

/// Counters for tests and `/info`.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub batches: AtomicU64,
    /// Forward passes of the model: fewer than images when images share passes.
    pub forward_passes: AtomicU64,
    pub jobs_run: AtomicU64,
    pub largest_batch: AtomicUsize,
    pub expired: AtomicU64,
    pub failed_batches: AtomicU64,
}

/// Handle to the worker. Cloning is cheap; the worker stops when every handle is gone.
#[derive(Clone)]
pub struct Engine {
    sender: Sender<Command>,
    waiting: Arc<AtomicUsize>,
    /// Rebuilds in the middle of their steps ([`Engine::rebuild_steps`]).
    rebuilding: Arc<AtomicUsize>,
    stats: Arc<EngineStats>,
    options: EngineOptions,
}

/// A submitted job's answer.
pub struct Ticket {
    receiver: oneshot::Receiver<Result<ImageDetections, EngineError>>,
    deadline: Instant,
}

impl Ticket {
    /// Waits for the answer, at most until the request's deadline.
    pub async fn wait(self) -> Result<ImageDetections, EngineError> {
        match tokio::time::timeout_at(self.deadline.into(), self.receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EngineError::Stopped),
            Err(_) => Err(EngineError::DeadlineExceeded),
        }
    }
}

impl Engine {
    /// Starts the worker thread; `make_runner` runs on it, so the runner (and the device
    /// state it creates) never leaves that thread.
    pub fn start<R, F>(make_runner: F, options: EngineOptions) -> Self
    where
        R: Runner,
        F: FnOnce() -> R + Send + 'static,
    {
        let options = EngineOptions {
            max_queue: options.max_queue.max(1),
            max_batch_size: options.max_batch_size.max(1),
            ..options
        };
        // Unbounded: detection jobs are bounded by admissions (`max_queue`), and a
        // rebuild has at most one command in flight.
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let rebuilding = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(EngineStats::default());
        let worker = Worker {
            receiver,
            rebuilding: rebuilding.clone(),
            jobs: VecDeque::new(),
            steps: VecDeque::new(),
            waiting: waiting.clone(),
            stats: stats.clone(),
            options: options.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("hoiclip-engine".into())
            .spawn(move || worker.run(make_runner()));
        if let Err(e) = spawned {
            // Without a worker every submit answers `Stopped` (the receiver is gone).
            tracing::error!(error = %e, "cannot start the inference worker");
        }
        Self {
            sender,
            waiting,
            rebuilding,
            stats,
            options,
        }
    }

    /// Marks a rebuild as sending steps until the guard is dropped: between its steps the
    /// worker waits up to [`STEP_GAP`] for the next one before starting a detection batch.
    /// Take it only around the steps themselves (not database reads), so detections are
    /// held microseconds, not for a round trip.
    pub fn rebuild_steps(&self) -> RebuildSteps {
        RebuildSteps {
            _rebuilding: Counted::add(&self.rebuilding),
        }
    }

    /// Queues a request, or refuses at once when the queue is full.
    pub fn submit(&self, request: Request) -> Result<Ticket, EngineError> {
        let admission = self.admit()?;
        self.submit_admitted(request, admission)
    }

    /// Takes a place in the queue, or refuses when all `max_queue` places are held.
    /// Handlers admit first, then read, decode and prepare, then submit: a full server
    /// refuses before spending memory on a request.
    pub fn admit(&self) -> Result<Admission, EngineError> {
        let max = self.options.max_queue;
        let taken = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_err() {
            metrics::counter!("hoiclip_detect_rejected_total", "reason" => "queue_full")
                .increment(1);
            return Err(EngineError::QueueFull(max));
        }
        // The place was taken by the update above.
        Ok(Admission {
            _place: Counted::held(&self.waiting),
        })
    }

    /// Queues an admitted request; fails only when the worker has stopped.
    pub fn submit_admitted(
        &self,
        request: Request,
        admission: Admission,
    ) -> Result<Ticket, EngineError> {
        let mut tickets = self.submit_all_admitted(vec![(request, admission)])?;
        tickets.pop().ok_or(EngineError::Stopped)
    }

    /// Queues admitted requests in one command (their tickets in the same order), so the
    /// worker takes them into its queue together; fails only when the worker has stopped.
    pub fn submit_all_admitted(
        &self,
        requests: Vec<(Request, Admission)>,
    ) -> Result<Vec<Ticket>, EngineError> {
        let mut jobs = Vec::with_capacity(requests.len());
        let mut tickets = Vec::with_capacity(requests.len());
        for (request, admission) in requests {
            let (reply, receiver) = oneshot::channel();
            tickets.push(Ticket {
                receiver,
                deadline: request.deadline,
            });
            jobs.push(Job {
                request,
                enqueued: Instant::now(),
                reply,
                admission: Some(admission),
            });
        }
        match self.sender.send(Command::Detect(jobs)) {
            Ok(()) => {
                metrics::gauge!("hoiclip_detect_queue_depth").set(self.queue_depth() as f64);
                Ok(tickets)
            }
            Err(_) => {
                metrics::counter!("hoiclip_detect_rejected_total", "reason" => "stopped")
                    .increment(1);
                Err(EngineError::Stopped)
            }
        }
    }

    /// Normalised text embeddings of tokenized prompts, computed by the worker in one
    /// pass (callers send at most [`TEXT_BATCH`] at a time so detections interleave).
    pub async fn embed_text(&self, ids: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>, EngineError> {
        self.ask(|reply| Step::Embed { ids, reply }).await
    }

    /// CLIP image embeddings of CLIP-ready crops (`vision::preprocess::clip_crop`),
    /// computed by the worker in passes of [`TEXT_SLICE`] with detections in between.
    pub async fn embed_images(&self, crops: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>, EngineError> {
        self.ask(|reply| Step::EmbedImages { crops, reply }).await
    }

    /// Has the worker build a classifier set on its device and register it; the view
    /// is what requests carry to be scored with it.
    pub async fn install(&self, source: SetSource) -> Result<ClassifierHandle, RebuildError> {
        self.ask(|reply| Step::Install { source, reply }).await
    }

    /// Runs one forward pass of `shape` (blank images) with `classes`, so that a GPU
    /// backend compiles that shape's kernels now rather than during a request.
    pub async fn warm_up(
        &self,
        shape: WarmUpShape,
        classes: ClassifierHandle,
    ) -> Result<(), EngineError> {
        self.ask(|reply| Step::WarmUp {
            shape,
            classes,
            reply,
        })
        .await
    }

    /// Sends the rebuild step `make` builds around a reply channel and awaits the answer;
    /// a stopped worker is [`EngineError::Stopped`].
    async fn ask<T, E: From<EngineError>>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, E>>) -> Step,
    ) -> Result<T, E> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Command::Rebuild(make(reply)))
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Requests admitted and not yet taken by the worker (being decoded, or waiting).
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }
}

/// Inputs of an embedding command: token ids (text tower) or CLIP-ready crops (image
/// tower), each a `Vec` of its element.
trait Embeddable: Sized {
    /// Which tower, for messages.
    const TOWER: &'static str;
    /// Histogram of pass times.
    const METRIC: &'static str;
    fn embed<R: Runner>(runner: &mut R, slice: &[Self]) -> Result<Vec<Vec<f32>>, EngineError>;
}

impl Embeddable for Vec<u32> {
    const TOWER: &'static str = "text";
    const METRIC: &'static str = "hoiclip_text_pass_seconds";
    fn embed<R: Runner>(runner: &mut R, slice: &[Self]) -> Result<Vec<Vec<f32>>, EngineError> {
        runner.embed_text(slice)
    }
}

impl Embeddable for Vec<f32> {
    const TOWER: &'static str = "image";
    const METRIC: &'static str = "hoiclip_image_pass_seconds";
    fn embed<R: Runner>(runner: &mut R, slice: &[Self]) -> Result<Vec<Vec<f32>>, EngineError> {
        runner.embed_images(slice)
    }
}

struct Worker {
    receiver: Receiver<Command>,
    /// Detections taken off the channel and not yet run; they keep their admissions
    /// until a batch takes them, so the queue depth still counts them.
    jobs: VecDeque<Job>,
    /// Rebuild steps taken off the channel; they run before waiting detections.
    steps: VecDeque<Step>,
    rebuilding: Arc<AtomicUsize>,
    waiting: Arc<AtomicUsize>,
    stats: Arc<EngineStats>,
    options: EngineOptions,
}

impl Worker {
    fn run<R: Runner>(mut self, mut runner: R) {
        loop {
            self.drain();
            if let Some(step) = self.steps.pop_front() {
                self.rebuild(&mut runner, step);
            } else if !self.jobs.is_empty() && self.next_step_arrives() {
                continue;
            } else if let Some(first) = self.jobs.pop_front() {
                self.detect(&mut runner, first);
            } else {
                match self.receiver.recv() {
                    Ok(command) => self.sort(command),
                    Err(_) => break,
                }
            }
        }
        tracing::info!("inference worker stopped");
    }

    fn sort(&mut self, command: Command) {
        match command {
            Command::Detect(jobs) => self.jobs.extend(jobs),
            Command::Rebuild(step) => self.steps.push_back(step),
        }
    }

    /// While a rebuild is between its steps, waits up to [`STEP_GAP`] for its next step
    /// (taking in whatever else arrives); true when a step is waiting.
    fn next_step_arrives(&mut self) -> bool {
        let until = Instant::now() + STEP_GAP;
        while self.steps.is_empty() && self.rebuilding.load(Ordering::Acquire) > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.receiver.recv_timeout(left) {
                Ok(command) => self.sort(command),
                Err(_) => break,
            }
        }
        !self.steps.is_empty()
    }

    /// Takes everything the channel holds now into the two queues.
    fn drain(&mut self) {
        while let Ok(command) = self.receiver.try_recv() {
            self.sort(command);
        }
    }

    fn rebuild<R: Runner>(&mut self, runner: &mut R, step: Step) {
        match step {
            Step::Embed { ids, reply } => {
                if !reply.is_closed() {
                    let result = self.sliced(runner, &ids);
                    let _ = reply.send(result);
                }
            }
            Step::EmbedImages { crops, reply } => {
                if !reply.is_closed() {
                    let result = self.sliced(runner, &crops);
                    let _ = reply.send(result);
                }
            }
            Step::Install { source, reply } => {
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| runner.install(source)));
                let result = match outcome {
                    Ok(r) => r.map_err(RebuildError::from),
                    Err(panic) => Err(EngineError::Failed(panic_message(panic.as_ref())).into()),
                };
                let _ = reply.send(result);
            }
            Step::WarmUp {
                shape,
                classes,
                reply,
            } => {
                let outcome =
                    std::panic::catch_unwind(AssertUnwindSafe(|| runner.warm_up(shape, &classes)));
                self.stats
                    .forward_passes
                    .store(runner.forward_passes(), Ordering::Relaxed);
                let result = match outcome {
                    Ok(r) => r,
                    Err(panic) => Err(EngineError::Failed(panic_message(panic.as_ref()))),
                };
                let _ = reply.send(result);
            }
        }
    }

    /// Collects a batch starting with `first` and runs it.
    fn detect<R: Runner>(&mut self, runner: &mut R, first: Job) {
        let batch = self.collect(first);
        let live = self.drop_stale(batch);
        if !live.is_empty() {
            self.execute(runner, live);
        }
    }

    /// One embedding command, in slices of [`TEXT_SLICE`] items; one waiting detection
    /// batch runs between slices, so a detection waits behind at most a slice, not the
    /// command, and under a load that never lets the queue empty, slices and batches
    /// alternate and the rebuild still finishes.
    fn sliced<R: Runner, T: Embeddable>(
        &mut self,
        runner: &mut R,
        items: &[T],
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut rows = Vec::with_capacity(items.len());
        for (i, slice) in items.chunks(TEXT_SLICE).enumerate() {
            if i > 0 {
                self.drain();
                if let Some(first) = self.jobs.pop_front() {
                    self.detect(runner, first);
                }
            }
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| T::embed(runner, slice)));
            metrics::histogram!(T::METRIC).record(started.elapsed().as_secs_f64());
            match outcome {
                Ok(Ok(part)) if part.len() == slice.len() => rows.extend(part),
                Ok(Ok(part)) => {
                    return Err(EngineError::Failed(format!(
                        "the {} tower returned {} rows for {} inputs",
                        T::TOWER,
                        part.len(),
                        slice.len()
                    )));
                }
                Ok(Err(e)) => return Err(e),
                Err(panic) => return Err(EngineError::Failed(panic_message(panic.as_ref()))),
            }
        }
        Ok(rows)
    }

    fn take(&self, mut job: Job) -> Job {
        job.admission = None;
        job
    }

    /// Gathers jobs after `first` until the batch is full or the delay has passed; a
    /// rebuild step that is waiting or arrives ends the collection, so it waits behind
    /// this batch only.
    fn collect(&mut self, first: Job) -> Vec<Job> {
        let mut batch = vec![self.take(first)];
        let until = Instant::now() + self.options.max_batch_delay;
        while batch.len() < self.options.max_batch_size && self.steps.is_empty() {
            if let Some(job) = self.jobs.pop_front() {
                batch.push(self.take(job));
                continue;
            }
            let left = until.saturating_duration_since(Instant::now());
            let next = if left.is_zero() {
                self.receiver
                    .try_recv()
                    .map_err(|_| RecvTimeoutError::Timeout)
            } else {
                self.receiver.recv_timeout(left)
            };
            match next {
                Ok(command) => self.sort(command),
                Err(_) => break,
            }
        }
        metrics::gauge!("hoiclip_detect_queue_depth")
            .set(self.waiting.load(Ordering::Acquire) as f64);
        batch
    }

    /// Answers expired jobs with `DeadlineExceeded` and forgets jobs nobody waits for.
    fn drop_stale(&self, batch: Vec<Job>) -> Vec<Job> {
        let now = Instant::now();
        let mut live = Vec::with_capacity(batch.len());
        for job in batch {
            metrics::histogram!("hoiclip_queue_wait_seconds")
                .record(now.duration_since(job.enqueued).as_secs_f64());
            if job.reply.is_closed() {
                continue;
            }
            if job.request.deadline <= now {
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("hoiclip_detect_rejected_total", "reason" => "deadline")
                    .increment(1);
                let _ = job.reply.send(Err(EngineError::DeadlineExceeded));
                continue;
            }
            live.push(job);
        }
        live
    }

    fn execute<R: Runner>(&self, runner: &mut R, jobs: Vec<Job>) {
        let n = jobs.len();
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.jobs_run.fetch_add(n as u64, Ordering::Relaxed);
        self.stats.largest_batch.fetch_max(n, Ordering::Relaxed);
        metrics::histogram!("hoiclip_batch_size").record(n as f64);
        let (requests, replies): (Vec<Request>, Vec<_>) =
            jobs.into_iter().map(|j| (j.request, j.reply)).unzip();
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| runner.run(&requests)));
        metrics::histogram!("hoiclip_forward_seconds").record(started.elapsed().as_secs_f64());
        self.stats
            .forward_passes
            .store(runner.forward_passes(), Ordering::Relaxed);
        let results: Vec<Result<ImageDetections, EngineError>> = match outcome {
            Ok(results) if results.len() == n => results,
            Ok(results) => failed(
                n,
                format!(
                    "the runner returned {} results for {n} images",
                    results.len()
                ),
            ),
            Err(panic) => failed(n, panic_message(panic.as_ref())),
        };
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("hoiclip_batch_failures_total").increment(1);
            tracing::error!(error = %e, images = n, "a forward pass failed; its requests get an error");
        }
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

pub(crate) fn failed(n: usize, message: String) -> Vec<Result<ImageDetections, EngineError>> {
    (0..n)
        .map(|_| Err(EngineError::Failed(message.clone())))
        .collect()
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}
