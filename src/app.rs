//! The composition root: the one place that turns [`Settings`] into a running server.
//! The binary, the tests and the benches all build through these functions, so what is
//! tested is what runs.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::server::{ServerLimits, effective_max_connections, serve as serve_http};
use crate::api::{AppState, router};
use crate::config::{ConfigError, DeviceChoice, ModelSource, Settings};
use crate::detector::{DetectOptions, Detector, DetectorError};
use crate::engine::{
    ClassifierSets, DetectorRunner, EngineError, RebuildError, Request, Runner, Service,
    WarmUpShape,
};
use crate::model::clip::tokenizer::{ClipTokenizer, TokenizerError};
use crate::model::kernels::ModelBackend;
use crate::vocab::Pack;
use crate::vocab::store::{VocabError, VocabStore};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("device cuda:{0} needs a build with `--features cuda`")]
    NoCuda(usize),
    #[error("device cuda:{index} cannot be used: {reason}")]
    CudaUnavailable { index: usize, reason: String },
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Vocab(#[from] VocabError),
    #[error("cannot build the first classifier: {0}")]
    Rebuild(#[from] RebuildError),
    #[error("the warm-up forward pass failed: {0}")]
    WarmUp(EngineError),
    #[error("cannot use the kernel cache: {0}")]
    KernelCache(String),
    #[error("model loading stopped: {0}")]
    Loading(String),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

/// A built server: its handlers' state, the limits of its HTTP loop, and the input shapes
/// it runs before it says ready.
pub struct App {
    pub state: AppState,
    pub limits: ServerLimits,
    pub warm_up: Vec<WarmUpShape>,
}

impl App {
    pub fn service(&self) -> &Arc<Service> {
        &self.state.service
    }

    /// Runs the warm-up passes, then marks the server ready.
    pub async fn make_ready(&self) -> Result<(), StartError> {
        warm_up(self.service().as_ref()).await?;
        warm_up_shapes(self.service().as_ref(), &self.warm_up).await?;
        self.state
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}

/// Model, vocabulary and engine on the device the settings name.
pub async fn service(settings: &Settings) -> Result<Arc<Service>, StartError> {
    settings.check()?;
    let settings = &settings.normalized();
    let service: Arc<Service> = match settings.device.parse::<DeviceChoice>()? {
        DeviceChoice::Cpu => {
            service_on::<crate::backend::Cpu, _, _>(
                settings,
                Default::default(),
                "cpu",
                crate::backend::cpu_backend_name(),
                |runner| runner,
            )
            .await?
        }
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda(index) => {
            crate::backend::check_cuda(index)
                .map_err(|reason| StartError::CudaUnavailable { index, reason })?;
            // Before the model exists: one choice for every forward pass of the process,
            // and where compiled kernels are kept.
            crate::model::kernels::set_gpu_conv(settings.gpu_conv);
            if let Some(dir) = &settings.kernel_cache {
                crate::backend::use_kernel_cache(dir).map_err(StartError::KernelCache)?;
            }
            service_on::<crate::backend::Cuda, _, _>(
                settings,
                burn::backend::cuda::CudaDevice::new(index),
                &format!("cuda:{index}"),
                &format!("cuda ({} convolutions)", settings.gpu_conv.name()),
                |runner| runner,
            )
            .await?
        }
        #[cfg(not(feature = "cuda"))]
        DeviceChoice::Cuda(index) => return Err(StartError::NoCuda(index)),
    };
    Ok(service)
}

/// As [`service`], on backend `B`, with the worker's runner wrapped by `wrap` (tests use
/// it to hold or break batches; the binary passes the runner through). Loads the model
/// off the async threads, opens and seeds the vocabulary, starts the engine and builds
/// the first classifier set through it.
pub async fn service_on<B, R, W>(
    settings: &Settings,
    device: B::Device,
    device_name: &str,
    backend_name: &str,
    wrap: W,
) -> Result<Arc<Service>, StartError>
where
    B: ModelBackend,
    R: Runner,
    W: FnOnce(DetectorRunner<B>) -> R + Send + 'static,
{
    let settings = &settings.normalized();
    let source = settings.model.clone();
    let load_on = device.clone();
    let mut detector = tokio::task::spawn_blocking(move || match source {
        ModelSource::Weights(path) => Detector::<B>::from_weights(&path, &load_on),
        ModelSource::Random(config) => {
            tracing::warn!(
                "no --weights: running the DEMO model (random weights, detections are meaningless, \"trained\": false)"
            );
            Detector::<B>::random(*config, &load_on)
        }
    })
    .await
    .map_err(|e| StartError::Loading(e.to_string()))??;
    detector.set_size_bucket(settings.effective_size_bucket());
    let tokenizer = Arc::new(ClipTokenizer::new()?);
    let store = VocabStore::open(&settings.database_url, tokenizer.clone()).await?;
    store.seed(&Pack::hico_det()).await?;
    store.seed(&Pack::v_coco()).await?;
    let policy = settings.engine.policy;
    let service = Service::with_runner(
        detector,
        store,
        tokenizer,
        settings.engine.clone(),
        device_name,
        backend_name,
        move |detector| {
            wrap(DetectorRunner::new(
                detector,
                policy,
                ClassifierSets::default(),
            ))
        },
    )
    .await?;
    service.follow(settings.vocabulary_poll);
    Ok(Arc::new(service))
}

/// The handlers' state and loop limits for a service (not yet marked ready).
pub fn assemble(service: Arc<Service>, settings: &Settings) -> App {
    let settings = &settings.normalized();
    let mut limits = settings.server;
    limits.max_connections = effective_max_connections(settings.server.max_connections);
    if limits.max_connections < settings.server.max_connections {
        tracing::warn!(
            requested = settings.server.max_connections,
            used = limits.max_connections,
            "max connections lowered to fit the open-file limit (ulimit -n)"
        );
    }
    App {
        state: AppState::new(service, settings.api.clone()),
        limits,
        warm_up: settings.warm_up_shapes(&crate::vision::PreprocessConfig::default()),
    }
}

/// The whole server, warmed up and ready: what `hoiclip serve` runs.
pub async fn build(settings: &Settings) -> Result<App, StartError> {
    let app = assemble(service(settings).await?, settings);
    app.make_ready().await?;
    Ok(app)
}

/// One blank image through the whole path (queue, worker, device): readiness means a
/// forward pass has run.
pub async fn warm_up(service: &Service) -> Result<(), StartError> {
    let Some(classes) = service.classes() else {
        return Err(StartError::Loading("no classifier set".into()));
    };
    let blank = image::RgbImage::from_pixel(64, 48, image::Rgb([127, 127, 127]));
    let ticket = service
        .engine()
        .submit(Request {
            input: service.prepare(&blank),
            options: DetectOptions::default(),
            classes,
            deadline: Instant::now() + Duration::from_secs(600),
        })
        .map_err(StartError::WarmUp)?;
    ticket.wait().await.map_err(StartError::WarmUp)?;
    Ok(())
}

/// Runs every shape once (blank images, the service's classifier set), so that a GPU
/// backend compiles their kernels before the first request; logs its progress.
pub async fn warm_up_shapes(service: &Service, shapes: &[WarmUpShape]) -> Result<(), StartError> {
    if shapes.is_empty() {
        return Ok(());
    }
    let Some(classes) = service.classes() else {
        return Err(StartError::Loading("no classifier set".into()));
    };
    let started = Instant::now();
    tracing::info!(
        shapes = shapes.len(),
        "warming up: one pass per input shape before ready"
    );
    for (i, &shape) in shapes.iter().enumerate() {
        let pass = Instant::now();
        service
            .engine()
            .warm_up(shape, classes.clone())
            .await
            .map_err(StartError::WarmUp)?;
        tracing::debug!(
            batch = shape.batch,
            height = shape.size.0,
            width = shape.size.1,
            ms = pass.elapsed().as_millis() as u64,
            "warm-up pass"
        );
        if (i + 1) % 32 == 0 || i + 1 == shapes.len() {
            tracing::info!(
                done = i + 1,
                of = shapes.len(),
                seconds = started.elapsed().as_secs_f64(),
                "warming up"
            );
        }
    }
    Ok(())
}

/// Builds the server, listens on `settings.listen` and serves until `shutdown`.
pub async fn serve(
    settings: &Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let app = build(settings).await?;
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .map_err(|source| StartError::Listen {
            address: settings.listen.clone(),
            source,
        })?;
    let service = app.service();
    tracing::info!(listen = %settings.listen, model = %service.info().name, device = %service.device(), "serving; OpenAPI UI at /docs");
    serve_http(listener, router(app.state.clone()), app.limits, shutdown)
        .await
        .map_err(StartError::Serve)
}
