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
        detail: None,
    })
}

/// Ready once the model is loaded, the classifier built and a warm-up forward pass ran,
/// and while the classifier in service matches the vocabulary (after a failed rebuild
/// this retries it, and answers 503 until it succeeds). While the vocabulary database is
/// out of reach the answer stays 200 with status `degraded`: detections are still
/// answered correctly from the classifier in memory (and every replica shares that
/// database, so taking them all out of a load balancer would stop detections too), while
/// writes answer 503 `vocabulary-unavailable`.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, description = "Ready, or degraded (detections served, vocabulary database unreachable)", body = StatusOut), (status = 503, description = "Unavailable", body = Problem, content_type = "application/problem+json")))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<StatusOut>, ApiError> {
    if !state.ready.load(Ordering::Acquire) {
        return Err(ApiError::Unavailable("warming up".into()));
    }
    // The follower retries an unreachable database every poll; a probe does not wait on
    // connection timeouts for it.
    if state.service.store_unreachable()
        && let Some(e) = state.service.rebuild_error()
    {
        return Ok(Json(StatusOut {
            status: "degraded".into(),
            detail: Some(format!(
                "{e}; detections use the vocabulary of version {}",
                state.service.classes().map_or(-1, |s| s.version)
            )),
        }));
    }
    if state.service.rebuild_error().is_some()
        && let Err(e) = state.service.refresh().await
        && !e.store_unreachable()
    {
        tracing::error!(error = %e, "classifier rebuild failed again");
        return Err(ApiError::Unavailable(
            "the classifier could not be rebuilt from the vocabulary; new entries are not detectable yet (see the server log)".into(),
        ));
    }
    Ok(Json(StatusOut {
        status: "ready".into(),
        detail: None,
    }))
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
        database: inner.service.store().database().name().to_string(),
        backend: inner.service.backend().to_string(),
        device: inner.service.device().to_string(),
        max_body_bytes: inner.options.max_body_bytes,
        max_pixels: inner.options.decode.max_pixels,
        max_queue: engine.max_queue,
        max_batch_size: engine.max_batch_size,
        max_batch_delay_ms: engine.max_batch_delay.as_secs_f64() * 1000.0,
        batch_policy: engine.policy.name().to_string(),
        scoring: (&info.scoring).into(),
        zero_shot: info.zero_shot.as_ref().map(Into::into),
    })
}
