//! `POST /detect/batch`: several images in one request (multipart `image` fields, or JSON
//! with base64 `images`), one answer each, in order. The request takes a place in the
//! queue for every image, decodes them all, then submits them at once, so images of one
//! size share forward passes.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};

use super::AppState;
use super::detect::{
    FormOptions, base64_image, body_error, content_type, decoded, merge, multipart_error,
    read_json, refuse_if_queue_full,
};
use super::dto::{
    DetectBatchJson, DetectBatchMultipart, DetectBatchResponse, DetectParams, DetectResponse,
};
use super::error::{ApiError, Problem};
use super::extract::{ApiQuery, within_body_timeout};
use crate::engine::{DetectError, DetectPlan, EngineError};

/// Images one batch request may carry.
pub const MAX_BATCH_IMAGES: usize = 16;

/// Detect human-object interactions in several images; one answer per image, in order.
#[utoipa::path(
    post,
    path = "/detect/batch",
    tag = "detection",
    params(DetectParams),
    request_body(
        description = "multipart/form-data with one `image` file field per image, or application/json `{\"images\": [base64, ...], ...options}`; 1 to 16 images; the options apply to every image (`render` is not available here)",
        content((DetectBatchJson = "application/json"), (DetectBatchMultipart = "multipart/form-data"))
    ),
    responses(
        (status = 200, description = "One answer per image, in order", body = DetectBatchResponse),
        (status = 400, description = "Bad request or an undecodable image (the detail names which)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "API key missing", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "API key wrong", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received in time", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body or an image too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not an accepted content or image type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No images, more than 16, `render`, or an invalid option", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Not enough room in the queue for every image; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not ready, timed out, or the vocabulary version asked for has not reached this replica (`stale-vocabulary`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn detect_batch(
    State(state): State<AppState>,
    query: ApiQuery<DetectParams>,
    request: Request,
) -> Result<Json<DetectBatchResponse>, ApiError> {
    let started = Instant::now();
    let deadline = started + state.options.request_timeout;
    let service = state.service.clone();
    if service.classes().is_none() {
        return Err(DetectError::NotReady.into());
    }
    let engine = service.engine();
    refuse_if_queue_full(engine)?;
    let content_type = content_type(&request);
    let (images, params) =
        within_body_timeout(&state, read_images(request, &state, &content_type, query.0)).await??;
    check_count(images.len())?;
    let max_queue = engine.options().max_queue;
    if images.len() > max_queue {
        // It could never be admitted: 429 would invite retries without end.
        return Err(ApiError::Unprocessable(format!(
            "this server queues at most {max_queue} images (--max-queue); send at most that many per batch"
        )));
    }
    if params.render == Some(true) {
        return Err(ApiError::Unprocessable(
            "render is not available for batches: send the image to /detect".into(),
        ));
    }
    let detect = params.request();
    let plan = DetectPlan::new(
        service.as_ref(),
        &detect,
        deadline,
        state.options.vocabulary_wait,
    )
    .await?;

    // A place in the queue for every image before any is decoded, as `/detect` takes one
    // before decoding: prepared inputs stay bounded by the queue however many batches
    // arrive. Without room for all, none is taken.
    let admissions = (0..images.len())
        .map(|_| engine.admit())
        .collect::<Result<Vec<_>, EngineError>>()?;

    // Decode and prepare every image: a bad one refuses the request before any forward
    // pass runs. Decoded pixels are dropped once prepared.
    let mut prepared = Vec::with_capacity(images.len());
    for (k, bytes) in images.into_iter().enumerate() {
        let (input, _) = decoded(&state, bytes, deadline, detect.auto_orient, false)
            .await
            .map_err(|e| e.for_item(&format!("images[{k}]")))?;
        prepared.push(input);
    }
    // Submitted together: images that can share forward passes do.
    let answers = plan.run(service.as_ref(), prepared, admissions).await?;
    let results = answers
        .into_iter()
        .map(|answer| DetectResponse::new(service.info(), &plan.set, answer, started.elapsed()))
        .collect();
    Ok(Json(DetectBatchResponse { results }))
}

fn check_count(n: usize) -> Result<(), ApiError> {
    // Reading stops one image past the limit, so `n` is not the count sent then.
    if n == 0 {
        return Err(ApiError::Unprocessable(
            "send at least one image per batch".into(),
        ));
    }
    if n > MAX_BATCH_IMAGES {
        return Err(ApiError::Unprocessable(format!(
            "send at most {MAX_BATCH_IMAGES} images per batch (this one has more)"
        )));
    }
    Ok(())
}

/// The images and options of a multipart or JSON body.
async fn read_images(
    request: Request,
    state: &AppState,
    content_type: &str,
    query: DetectParams,
) -> Result<(Vec<Bytes>, DetectParams), ApiError> {
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, state)
            .await
            .map_err(|e| multipart_error(e.status(), &e.body_text()))?;
        let mut images = Vec::new();
        let mut options = FormOptions::default();
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(e.status(), &e.body_text()))?
        {
            if field.name() == Some("image") {
                images.push(
                    field
                        .bytes()
                        .await
                        .map_err(|e| body_error(e.status(), &e.body_text()))?,
                );
                if images.len() > MAX_BATCH_IMAGES {
                    check_count(images.len())?;
                }
            } else {
                options.add(field).await?;
            }
        }
        Ok((images, options.over(query)?))
    } else if content_type.starts_with("application/json") {
        let json: DetectBatchJson = read_json(request, state).await?;
        check_count(json.images.len())?;
        let images = json
            .images
            .iter()
            .enumerate()
            .map(|(k, text)| base64_image(&format!("images[{k}]"), text))
            .collect::<Result<_, _>>()?;
        Ok((images, merge(query, json.params)))
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "content type `{content_type}`: send multipart/form-data or application/json"
        )))
    }
}
