//! `POST /detect`: an image as multipart field `image`, a raw `image/*` body, or JSON with
//! a base64 `image`; options in the query string (or the JSON body).

use std::io::Cursor;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::multipart::Field;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::sync::OwnedSemaphorePermit;

use super::AppState;
use super::dto::{DetectJson, DetectMultipart, DetectParams, DetectResponse, ImageBytes};
use super::error::ApiError;
use super::extract::{ApiQuery, within_body_timeout};
use crate::detector::Detection;
use crate::engine::{self, DetectError, DetectPlan, EngineError, ImageInput};
use crate::vision::{probe, render::render};

/// Detect human-object interactions in one image.
#[utoipa::path(
    post,
    path = "/detect",
    tag = "detection",
    params(DetectParams),
    request_body(
        description = "multipart/form-data with an `image` file field; raw image bytes (application/octet-stream, or image/*: JPEG, PNG, WebP, GIF, BMP, TIFF); or application/json `{\"image\": base64, ...options}`",
        content(
            (DetectJson = "application/json"),
            (DetectMultipart = "multipart/form-data"),
            (ImageBytes = "application/octet-stream"),
        )
    ),
    responses(
        (status = 200, description = "Triplets, or a PNG with the detections drawn when `render=true`", content(
            (DetectResponse = "application/json"),
            (ImageBytes = "image/png"),
        )),
        (status = 400, description = "Bad request or undecodable image", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "API key missing", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "API key wrong", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received in time", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body or image too large", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not an accepted content or image type", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid option (threshold, top_k, unknown pack or verb)", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Queue full or rate limit exceeded; retry after `Retry-After` seconds", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error (the body names a request id)", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not ready, timed out, or the vocabulary version asked for (`min_vocabulary_version`) has not reached this replica (`stale-vocabulary`)", body = super::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn detect(
    State(state): State<AppState>,
    query: ApiQuery<DetectParams>,
    request: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let deadline = started + state.options.request_timeout;
    let service = state.service.clone();
    if service.classes().is_none() {
        return Err(DetectError::NotReady.into());
    }
    let engine = service.engine();
    // No place is reserved here: a slow upload must not hold one (it is taken below, once
    // the image is decoded).
    refuse_if_queue_full(engine)?;
    let content_type = content_type(&request);
    let (bytes, params) =
        within_body_timeout(&state, read_image(request, &state, &content_type, query.0)).await??;
    let detect = params.request();
    let plan = DetectPlan::new(
        service.as_ref(),
        &detect,
        deadline,
        state.options.vocabulary_wait,
    )
    .await?;
    let render_wanted = params.render.unwrap_or(false);
    let (image, permit) =
        decoded(&state, bytes, deadline, detect.auto_orient, render_wanted).await?;
    let admission = engine.admit()?;
    let mut answer = plan
        .submit(service.as_ref(), image, admission)?
        .wait()
        .await?;
    metrics::histogram!("hoiclip_inference_seconds").record(answer.inference_time.as_secs_f64());
    metrics::gauge!("hoiclip_classifier_version").set(plan.set.version as f64);

    if let Some(image) = answer.image.take() {
        let pairs = Detection::pairs(&answer.detections.detections);
        let png = tokio::task::spawn_blocking(move || {
            let drawn = render(&image, &pairs);
            let mut png = Cursor::new(Vec::new());
            drawn
                .write_to(&mut png, image::ImageFormat::Png)
                .map(|_| png.into_inner())
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        drop(permit);
        return Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response());
    }
    let answer = DetectResponse::new(service.info(), &plan.set, answer, started.elapsed());
    Ok(axum::Json(answer).into_response())
}

/// Reads the image and the options from whichever body form the client sent.
async fn read_image(
    request: Request,
    state: &AppState,
    content_type: &str,
    query: DetectParams,
) -> Result<(Bytes, DetectParams), ApiError> {
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, state)
            .await
            .map_err(|e| multipart_error(e.status(), &e.body_text()))?;
        let mut image = None;
        let mut options = FormOptions::default();
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(e.status(), &e.body_text()))?
        {
            if field.name() == Some("image") {
                // One image per /detect: a second would be silently dropped otherwise.
                if image.is_some() {
                    return Err(ApiError::Unprocessable(
                        "more than one `image` field: /detect takes one image (send several to /detect/batch)"
                            .into(),
                    ));
                }
                image = Some(
                    field
                        .bytes()
                        .await
                        .map_err(|e| body_error(e.status(), &e.body_text()))?,
                );
            } else {
                options.add(field).await?;
            }
        }
        let image = image
            .ok_or_else(|| ApiError::BadRequest("multipart body has no `image` field".into()))?;
        Ok((image, options.over(query)?))
    } else if content_type.starts_with("application/json") {
        let json: DetectJson = read_json(request, state).await?;
        Ok((
            base64_image("image", &json.image)?,
            merge(query, json.params),
        ))
    } else if content_type.starts_with("image/")
        || content_type.starts_with("application/octet-stream")
    {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| body_error(e.status(), &e.body_text()))?;
        Ok((bytes, query))
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "content type `{content_type}`: send multipart/form-data, image/* (JPEG, PNG, WebP, GIF, BMP, TIFF) or application/json"
        )))
    }
}

/// A full queue answers at once, before the body is read.
pub(super) fn refuse_if_queue_full(engine: &engine::Engine) -> Result<(), ApiError> {
    if engine.queue_depth() >= engine.options().max_queue {
        metrics::counter!("hoiclip_detect_rejected_total", "reason" => "queue_full").increment(1);
        return Err(EngineError::QueueFull(engine.options().max_queue).into());
    }
    Ok(())
}

/// The request's content type, lower-case ("" when it has none or it is not text).
pub(super) fn content_type(request: &Request) -> String {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// A JSON body read whole (within the body limit) and parsed; a malformed one is a 400.
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    request: Request,
    state: &AppState,
) -> Result<T, ApiError> {
    let body = Bytes::from_request(request, state)
        .await
        .map_err(|e| body_error(e.status(), &e.body_text()))?;
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}")))
}

/// Image bytes from base64 text (standard alphabet); line-wrapped base64 (76 columns, as
/// `base64` and MIME write it) is fine.
pub(super) fn base64_image(field: &str, text: &str) -> Result<Bytes, ApiError> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map(Bytes::from)
        .map_err(|e| ApiError::BadRequest(format!("`{field}` is not valid base64: {e}")))
}

/// Decodes an image within the server's decode limits and pixel budget, turns it as its
/// EXIF orientation says (with `auto_orient`) and prepares it for the model. The budget is
/// handed back with the input when the pixels are kept (`keep_image`, to draw on) and
/// released at once otherwise.
pub(super) async fn decoded(
    state: &AppState,
    bytes: Bytes,
    deadline: Instant,
    auto_orient: bool,
    keep_image: bool,
) -> Result<(ImageInput, Option<OwnedSemaphorePermit>), ApiError> {
    let service = state.service.clone();
    let limits = state.options.decode;
    decode_then(state, bytes, deadline, move |bytes, permit| {
        let input = ImageInput::decode(service.as_ref(), bytes, limits, auto_orient, keep_image)?;
        Ok((input, keep_image.then_some(permit)))
    })
    .await
}

/// Runs `then` on an image's bytes once its decoded pixels fit the server's pixel budget,
/// off the async threads (header parsing included). The budget is taken before decoding,
/// so memory stays bounded however many large images arrive at once (the rest wait their
/// turn, until `deadline`); `then` decodes within the server's limits (`probe` has
/// checked the header against them) and decides how long to hold the permit.
pub(super) async fn decode_then<T: Send + 'static>(
    state: &AppState,
    bytes: Bytes,
    deadline: Instant,
    then: impl FnOnce(&[u8], OwnedSemaphorePermit) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let limits = state.options.decode;
    let (width, height) = probe(&bytes, limits)?;
    let pixels = u32::try_from(u64::from(width) * u64::from(height)).unwrap_or(u32::MAX);
    let permit = tokio::time::timeout_at(
        deadline.into(),
        state.decode_budget.clone().acquire_many_owned(pixels),
    )
    .await
    .map_err(|_| ApiError::Timeout("waited too long for room to decode the image".into()))?
    .map_err(|_| ApiError::Unavailable("the server is shutting down".into()))?;
    tokio::task::spawn_blocking(move || then(&bytes, permit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// A multipart body that could not be parsed (or exceeded the body limit).
pub(super) fn multipart_error(status: axum::http::StatusCode, message: &str) -> ApiError {
    body_error(status, &format!("bad multipart body: {message}"))
}

/// A body that could not be read: too large (the body limit) or broken.
pub(super) fn body_error(status: axum::http::StatusCode, message: &str) -> ApiError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!("request body too large: {message}"))
    } else {
        ApiError::BadRequest(format!("cannot read the request body: {message}"))
    }
}

/// The option fields of a multipart body (text fields beside the images), read as a
/// query string is read: the same names and values, each at most once.
#[derive(Default)]
pub(super) struct FormOptions(Vec<(String, String)>);

impl FormOptions {
    /// Keeps a text field; files under other names than `image` are skipped unread.
    pub(super) async fn add(&mut self, field: Field<'_>) -> Result<(), ApiError> {
        let (Some(name), None) = (field.name().map(str::to_owned), field.file_name()) else {
            return Ok(());
        };
        let value = field
            .text()
            .await
            .map_err(|e| body_error(e.status(), &e.body_text()))?;
        self.0.push((name, value));
        Ok(())
    }

    /// These options over the query's (as a JSON body's are).
    pub(super) fn over(self, query: DetectParams) -> Result<DetectParams, ApiError> {
        if self.0.is_empty() {
            return Ok(query);
        }
        let bad =
            |e: &dyn std::fmt::Display| ApiError::BadRequest(format!("bad option field: {e}"));
        let encoded = serde_urlencoded::to_string(&self.0).map_err(|e| bad(&e))?;
        let form: DetectParams = serde_urlencoded::from_str(&encoded).map_err(|e| bad(&e))?;
        Ok(merge(query, form))
    }
}

/// Body options (JSON or multipart fields) override query options, except
/// `min_vocabulary_version`, where the newer of the two is the one both ask for.
pub(super) fn merge(query: DetectParams, body: DetectParams) -> DetectParams {
    DetectParams {
        score_threshold: body.score_threshold.or(query.score_threshold),
        top_k: body.top_k.or(query.top_k),
        candidates: body.candidates.or(query.candidates),
        pack: body.pack.or(query.pack),
        verbs: body.verbs.or(query.verbs),
        training_free_enhancement: body
            .training_free_enhancement
            .or(query.training_free_enhancement),
        render: body.render.or(query.render),
        explain: body.explain.or(query.explain),
        auto_orient: body.auto_orient.or(query.auto_orient),
        // A bad value on either side is kept, so the request's check refuses it instead of
        // the newer valid one hiding it.
        min_vocabulary_version: match (body.min_vocabulary_version, query.min_vocabulary_version) {
            (Some(v), _) | (_, Some(v)) if v < 0 => Some(v),
            (b, q) => b.max(q),
        },
    }
}
