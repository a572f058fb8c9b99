//! The REST API (axum + utoipa): detection, vocabulary, operations. Handlers never touch
//! tensors: they decode, validate and prepare images, then submit them to the engine's
//! bounded queue (`crate::engine`) and await the answer.

pub mod detect;
pub mod dto;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod ops;
pub mod vocab;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::engine::Inference;
use crate::vision::DecodeLimits;
use error::ApiError;

/// Server settings (the CLI fills them from flags and HOICLIP_* variables).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Required for `POST /detect` when set.
    pub api_key: Option<String>,
    /// Required for vocabulary writes when set.
    pub admin_key: Option<String>,
    pub max_body_bytes: usize,
    pub decode: DecodeLimits,
    /// Whole-request limit; a detection still waiting for the worker at this point
    /// answers 503 `timeout`.
    pub request_timeout: Duration,
    pub cors: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            api_key: None,
            admin_key: None,
            max_body_bytes: 16 << 20,
            decode: DecodeLimits::default(),
            request_timeout: Duration::from_secs(60),
            cors: false,
        }
    }
}

pub struct Inner {
    /// Model, vocabulary and engine, whatever the backend.
    pub service: Arc<dyn Inference>,
    pub options: ServeOptions,
    pub ready: AtomicBool,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl AppState {
    pub fn new(service: Arc<dyn Inference>, options: ServeOptions) -> Self {
        Self(Arc::new(Inner {
            service,
            options,
            ready: AtomicBool::new(false),
        }))
    }
}

/// Checks `Authorization: Bearer KEY` or `X-API-Key: KEY` against `expected`.
pub fn authorize(headers: &HeaderMap, expected: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string)
        });
    match given {
        None => Err(ApiError::Unauthorized(
            "this endpoint needs an API key (X-API-Key or Authorization: Bearer)".into(),
        )),
        Some(k) if k == expected => Ok(()),
        Some(_) => Err(ApiError::Forbidden(
            "the API key is not valid for this endpoint".into(),
        )),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "hoiclip", description = "Human-object interaction detection (HOICLIP) with a vocabulary users grow at run time."),
    paths(
        detect::detect,
        vocab::list_verbs, vocab::get_verb, vocab::create_verb, vocab::delete_verb,
        vocab::list_objects, vocab::get_object, vocab::create_object, vocab::delete_object,
        vocab::list_interactions, vocab::get_interaction, vocab::create_interaction, vocab::delete_interaction,
        vocab::list_packs, vocab::export_pack, vocab::import_pack, vocab::vocabulary,
        ops::live, ops::ready, ops::info, metrics::render,
    ),
    components(schemas(
        dto::DetectJson, dto::DetectMultipart, dto::ImageBytes, dto::DetectResponse, dto::TripletOut, dto::BoxOut, dto::ObjectOut, dto::ModelOut, dto::TimingsOut,
        dto::NewVerbIn, dto::PromptIn, dto::NewObjectIn, dto::NewInteractionIn, dto::VerbOut, dto::ObjectRecordOut,
        dto::InteractionOut, dto::CreatedVerb, dto::CreatedObject, dto::CreatedInteraction, dto::Deleted, dto::PackOut,
        dto::VocabularyOut, dto::InfoOut, dto::StatusOut, error::Problem,
        crate::vocab::store::PackExport, crate::vocab::store::ExportVerb, crate::vocab::store::ExportObject,
        crate::vocab::store::ExportInteraction,
    )),
    tags((name = "detection"), (name = "vocabulary"), (name = "operations"))
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON (what `openapi/openapi.json` holds).
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

/// All routes, with body limits, timeouts, tracing and (optionally) CORS.
pub fn router(state: AppState) -> Router {
    let options = state.0.options.clone();
    metrics::handle();
    let mut app = Router::new()
        .route("/detect", post(detect::detect))
        .route("/verbs", get(vocab::list_verbs).post(vocab::create_verb))
        .route(
            "/verbs/{id}",
            get(vocab::get_verb).delete(vocab::delete_verb),
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
        .route("/vocabulary", get(vocab::vocabulary))
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
        .with_state(state)
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        // A backstop: detection answers its own deadline with problem+json first.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            options.request_timeout + Duration::from_secs(1),
        ));
    if options.cors {
        app = app.layer(tower_http::cors::CorsLayer::permissive());
    }
    app
}
