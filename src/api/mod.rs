//! The REST API (axum + utoipa): detection, vocabulary, operations. Handlers never touch
//! tensors: they decode, validate and prepare images, then submit them to the engine's
//! bounded queue (`crate::engine`) and await the answer.

pub mod auth;
pub mod batch;
pub mod context;
pub mod detect;
pub mod dto;
pub mod error;
pub mod examples;
pub mod extract;
pub mod headers;
pub mod metrics;
pub mod ops;
pub mod schemas;
pub mod server;
pub mod ui;
pub mod vocab;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use utoipa::OpenApi;

use crate::engine::Service;
use crate::vision::DecodeLimits;
use auth::Scope;
pub use auth::{ApiKeys, RateLimit};
use error::ApiError;

/// Server settings (the CLI fills them from flags and HOICLIP_* variables).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Keys for `POST /detect` and for vocabulary writes (a scope without keys is open).
    pub keys: ApiKeys,
    pub max_body_bytes: usize,
    pub decode: DecodeLimits,
    /// Whole-request limit; a detection still waiting for the worker at this point
    /// answers 503 `timeout`.
    pub request_timeout: Duration,
    /// Time allowed to receive a whole request body; slower bodies get 408.
    pub body_timeout: Duration,
    /// Decoded pixels that may be in memory at once across all requests; decodes wait
    /// for room (bounding memory however many large images arrive together).
    pub decode_budget_pixels: u64,
    pub rate_limit: RateLimit,
    pub cors: bool,
    /// Longest a detection waits for the vocabulary version it names
    /// (`min_vocabulary_version`) before answering 503 `stale-vocabulary`.
    pub vocabulary_wait: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            keys: ApiKeys::default(),
            max_body_bytes: 16 << 20,
            decode: DecodeLimits::default(),
            request_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            decode_budget_pixels: 120_000_000,
            rate_limit: RateLimit::default(),
            cors: false,
            vocabulary_wait: Duration::from_secs(2),
        }
    }
}

pub struct Inner {
    /// Model, vocabulary and engine, whatever the backend.
    pub service: Arc<Service>,
    pub options: ServeOptions,
    pub ready: AtomicBool,
    /// Permits are decoded pixels (see [`ServeOptions::decode_budget_pixels`]).
    pub decode_budget: Arc<Semaphore>,
    /// Example uploads being decoded and embedded at once (each holds up to 48 crops and
    /// many image-tower passes); more get 429.
    pub learning: Arc<Semaphore>,
}

/// Example uploads (`POST /verbs/{id}/examples`) processed at once.
pub const LEARNING_AT_ONCE: usize = 2;

/// Shared state of every handler (cheap to clone); its fields are [`Inner`]'s.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(service: Arc<Service>, options: ServeOptions) -> Self {
        // Never below one image's worth, or the largest accepted image could never run.
        let budget = options
            .decode_budget_pixels
            .max(options.decode.max_pixels)
            .min(Semaphore::MAX_PERMITS as u64) as usize;
        Self(Arc::new(Inner {
            service,
            options,
            ready: AtomicBool::new(false),
            decode_budget: Arc::new(Semaphore::new(budget)),
            learning: Arc::new(Semaphore::new(LEARNING_AT_ONCE)),
        }))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "hoiclip", description = "Human-object interaction detection (HOICLIP) with a vocabulary users grow at run time."),
    paths(
        detect::detect, batch::detect_batch,
        vocab::list_verbs, vocab::get_verb, vocab::create_verb, vocab::delete_verb,
        examples::add_examples, examples::list_examples, examples::delete_example,
        vocab::list_objects, vocab::get_object, vocab::create_object, vocab::delete_object,
        vocab::list_interactions, vocab::get_interaction, vocab::create_interaction, vocab::delete_interaction,
        vocab::list_packs, vocab::export_pack, vocab::import_pack, vocab::vocabulary,
        ops::live, ops::ready, ops::info, metrics::render,
    ),
    components(schemas(
        dto::DetectJson, dto::DetectMultipart, dto::ImageBytes, dto::DetectResponse, dto::TripletOut, dto::ExplanationOut, dto::DetectBatchJson, dto::DetectBatchMultipart, dto::DetectBatchResponse, dto::BoxOut, dto::ObjectOut, dto::ModelOut, dto::TimingsOut,
        dto::NewVerbIn, dto::PromptIn, dto::NewObjectIn, dto::NewInteractionIn, dto::VerbOut, dto::ObjectRecordOut,
        dto::InteractionOut, dto::CreatedVerb, dto::CreatedObject, dto::CreatedInteraction, dto::Deleted, dto::PackOut,
        dto::VocabularyOut, dto::InfoOut,
        dto::RowKind, dto::RowSourceOut, dto::RowSourceCounts, dto::RowSourcesOut,
        dto::ExamplesIn, dto::ExampleIn, dto::ExamplesMultipart, dto::ExampleOut, dto::CreatedExamples, dto::StatusOut, error::Problem,
        dto::ScoringOut, dto::OutputOut, dto::ZeroShotOut,
        schemas::PackExportDoc, schemas::ExportVerbDoc, schemas::ExportObjectDoc,
        schemas::ExportInteractionDoc,
    )),
    tags((name = "detection"), (name = "vocabulary"), (name = "operations")),
    modifiers(&CommonErrors)
)]
pub struct ApiDoc;

/// Adds the error answers the layers give to every operation they wrap, so the document
/// lists every status the server really sends (generated clients can type them, and
/// schemathesis checks it): body and query errors, auth, rate limits, timeouts and
/// internal errors. Written once here instead of on each handler.
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            ContentBuilder, HeaderBuilder, Ref, ResponseBuilder, Type, schema::ObjectBuilder,
        };
        let problem = |description: &str, retry: bool| {
            let mut response = ResponseBuilder::new().description(description).content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            );
            if retry {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                        .description(Some("Seconds to wait before retrying"))
                        .build(),
                );
            }
            response.build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let guarded = path == "/detect"
                || !(path.starts_with("/health") || path == "/info" || path == "/metrics");
            let has_id = path.contains('{');
            for (method, op) in [
                ("get", item.get.as_mut()),
                ("post", item.post.as_mut()),
                ("delete", item.delete.as_mut()),
            ] {
                let Some(op) = op else { continue };
                let mut add = |status: &str, description: &str, retry: bool| {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| problem(description, retry).into());
                };
                add(
                    "500",
                    "Internal error (the body names a request id for the server log)",
                    false,
                );
                add(
                    "503",
                    "Not ready, shutting down, the database busy, or not answered in time",
                    true,
                );
                let write = method != "get";
                if guarded {
                    add(
                        "429",
                        "Rate limit exceeded (per API key, or per client address)",
                        true,
                    );
                }
                if has_id || path == "/interactions" || path == "/detect" {
                    add("400", "Malformed path or query parameter", false);
                }
                if write && guarded {
                    add("401", "API key missing", false);
                    add("403", "API key not valid for this endpoint", false);
                }
                if method == "post" {
                    add("400", "Malformed body", false);
                    add(
                        "408",
                        "The body was not received within the body timeout",
                        false,
                    );
                    add("413", "Body larger than the server accepts", false);
                    add("415", "Unsupported content type", false);
                    add("422", "The body is well-formed but invalid", false);
                }
            }
        }
    }
}

/// The OpenAPI document as pretty JSON (what `openapi/openapi.json` holds).
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

/// Rate limits (when on) below the key check, so each key is counted on its own; one
/// limiter for every guarded route, so a key's rate is the same wherever it is spent.
fn guarded(
    routes: Router<AppState>,
    guard: auth::Guard,
    limit: &Option<auth::RateLimitLayer>,
) -> Router<AppState> {
    let routes = match limit {
        Some(layer) => routes.route_layer(layer.clone()),
        None => routes,
    };
    routes.route_layer(axum::middleware::from_fn_with_state(guard, auth::require))
}

/// All routes, with auth, rate limits, body limits, deadlines, request ids, metrics,
/// tracing and (optionally) CORS.
pub fn router(state: AppState) -> Router {
    let options = state.options.clone();
    metrics::handle();
    let keys = Arc::new(options.keys.clone());
    let limit = auth::rate_limit_layer(options.rate_limit);
    let failures = auth::failure_limiter();
    let guard = |scope| auth::Guard {
        keys: keys.clone(),
        scope,
        failures: failures.clone(),
    };
    let detection = Router::new()
        .route("/detect", post(detect::detect))
        .route("/detect/batch", post(batch::detect_batch));
    let vocabulary = Router::new()
        .route("/verbs", get(vocab::list_verbs).post(vocab::create_verb))
        .route(
            "/verbs/{id}",
            get(vocab::get_verb).delete(vocab::delete_verb),
        )
        .route(
            "/verbs/{id}/examples",
            get(examples::list_examples).post(examples::add_examples),
        )
        .route(
            "/verbs/{id}/examples/{example_id}",
            axum::routing::delete(examples::delete_example),
        )
        .route(
            "/objects",
            get(vocab::list_objects).post(vocab::create_object),
        )
        .route(
            "/objects/{id}",
            get(vocab::get_object).delete(vocab::delete_object),
        )
        .route(
            "/interactions",
            get(vocab::list_interactions).post(vocab::create_interaction),
        )
        .route(
            "/interactions/{id}",
            get(vocab::get_interaction).delete(vocab::delete_interaction),
        )
        .route("/packs", get(vocab::list_packs))
        .route("/packs/import", post(vocab::import_pack))
        .route("/packs/{name}/export", get(vocab::export_pack))
        .route("/vocabulary", get(vocab::vocabulary));
    let mut app = Router::new()
        .merge(guarded(detection, guard(Scope::Detect), &limit))
        .merge(guarded(vocabulary, guard(Scope::AdminWrites), &limit))
        .route("/", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/style.css", get(ui::style))
        .route("/health/live", get(ops::live))
        .route("/health/ready", get(ops::ready))
        .route("/info", get(ops::info))
        .route("/metrics", get(metrics::render))
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi_json(),
                )
            }),
        )
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs").url("/docs/openapi.json", ApiDoc::openapi()),
        )
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("this route does not accept that method".into())
        })
        .with_state(state)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            options.max_body_bytes,
            context::declared_length,
        ))
        .layer(axum::middleware::from_fn_with_state(
            options.request_timeout + Duration::from_secs(1),
            context::deadline,
        ))
        .layer(axum::middleware::from_fn(context::request_id))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    if options.cors {
        app = app.layer(tower_http::cors::CorsLayer::permissive());
    }
    app
}
