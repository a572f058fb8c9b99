//! Health and information endpoints (never behind an API key).

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::dto::{InfoOut, ModelOut, StatusOut};
use super::error::{ApiError, Problem};

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "OK", body = StatusOut)))]
pub async fn live() -> Json<StatusOut> {
    Json(StatusOut {
        status: "live".into(),
    })
}

/// Ready once the model is loaded, the classifier built and a warm-up forward pass ran.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, description = "OK", body = StatusOut), (status = 503, description = "Unavailable", body = Problem, content_type = "application/problem+json")))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<StatusOut>, ApiError> {
    if state.0.ready.load(Ordering::Acquire) {
        Ok(Json(StatusOut {
            status: "ready".into(),
        }))
    } else {
        Err(ApiError::Unavailable("warming up".into()))
    }
}

/// Model, weights fingerprint, backend and limits.
#[utoipa::path(get, path = "/info", tag = "operations", responses((status = 200, description = "OK", body = InfoOut)))]
pub async fn info(State(state): State<AppState>) -> Json<InfoOut> {
    let inner = &state.0;
    let info = inner.service.info();
    let engine = inner.service.engine().options();
    Json(InfoOut {
        model: ModelOut {
            name: info.name.clone(),
            trained: info.trained,
        },
        vocabulary: info.vocabulary.clone(),
        weights: info.weights.as_ref().map(|p| p.display().to_string()),
        text_fingerprint: inner.service.text_fingerprint().to_string(),
        backend: inner.service.backend().to_string(),
        device: inner.service.device().to_string(),
        max_body_bytes: inner.options.max_body_bytes,
        max_pixels: inner.options.decode.max_pixels,
        max_queue: engine.max_queue,
        max_batch_size: engine.max_batch_size,
        max_batch_delay_ms: engine.max_batch_delay.as_secs_f64() * 1000.0,
        batch_policy: clap::ValueEnum::to_possible_value(&engine.policy)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default(),
    })
}
