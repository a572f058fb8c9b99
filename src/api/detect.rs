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
use image::RgbImage;
use tokio::sync::OwnedSemaphorePermit;

use super::AppState;
use super::dto::{
    BoxOut, DetectJson, DetectMultipart, DetectParams, DetectResponse, ExplanationOut, ImageBytes,
    ModelOut, ObjectOut, TimingsOut, TripletOut,
};
use super::error::ApiError;
use super::extract::{ApiQuery, within_body_timeout};
use crate::detector::{DetectOptions, Detection, ImageDetections, ModelInfo, ScoreTerms};
use crate::engine::{self, ClassView, EngineError};
use crate::vision::decode::{exif_orientation, orient};
use crate::vision::{decode, probe, render::render};

/// The set to score with: `set`, or, when the client names a newer vocabulary version
/// (`min_vocabulary_version`), the set in service once it reaches that version, waited
/// for at most `vocabulary_wait` (and never past the request's deadline).
pub(super) async fn fresh_enough(
    state: &AppState,
    set: ClassView,
    min_version: Option<i64>,
    deadline: Instant,
) -> Result<ClassView, ApiError> {
    let Some(wanted) = min_version else {
        return Ok(set);
    };
    if wanted < 0 {
        return Err(ApiError::Unprocessable(format!(
            "min_vocabulary_version must be at least 0, not {wanted}"
        )));
    }
    if set.version >= wanted {
        return Ok(set);
    }
    let wait = state
        .0
        .options
        .vocabulary_wait
        .min(deadline.saturating_duration_since(Instant::now()));
    match state.0.service.classes_at_least(wanted, wait).await {
        Some(set) => Ok(set),
        None => {
            let have = state.0.service.classes().map_or(set.version, |s| s.version);
            metrics::counter!("hoiclip_stale_vocabulary_total").increment(1);
            Err(ApiError::StaleVocabulary(format!(
                "this replica scores with vocabulary version {have}; version {wanted} did not arrive within {} ms",
                wait.as_millis()
            )))
        }
    }
}

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
    let deadline = started + state.0.options.request_timeout;
    let Some(set) = state.0.service.classes() else {
        return Err(ApiError::Unavailable("the model is still loading".into()));
    };
    let engine = state.0.service.engine();
    // No place is reserved here: a slow upload must not hold one (it is taken below, once
    // the image is decoded).
    refuse_if_queue_full(engine)?;
    let content_type = content_type(&request);
    let (bytes, params) =
        within_body_timeout(&state, read_image(request, &state, &content_type, query.0)).await??;
    let set = fresh_enough(&state, set, params.min_vocabulary_version, deadline).await?;
    let options = detect_options(&params, &set, &state.0.service.info().vocabulary)?;
    let service = state.0.service.clone();
    let decode_started = Instant::now();
    let render_wanted = params.render.unwrap_or(false);
    let auto_orient = params.auto_orient.unwrap_or(true);
    let (image, input, permit, exif, oriented) =
        decoded(&state, bytes, deadline, move |image, exif, permit| {
            let oriented = auto_orient && exif != 1;
            let image = match oriented {
                true => orient(image, exif),
                false => image,
            };
            let input = service.prepare(&image);
            // Keep the decoded pixels (and their share of the budget) only when they will be
            // drawn on.
            let kept = render_wanted.then_some((image, permit));
            let (image, permit) = kept.unzip();
            Ok::<_, ApiError>((image, input, permit, exif, oriented))
        })
        .await?;
    let decode_ms = decode_started.elapsed().as_secs_f64() * 1000.0;

    let infer_started = Instant::now();
    let admission = engine.admit()?;
    let ticket = engine.submit_admitted(
        engine::Request {
            input,
            options,
            classes: set.clone(),
            deadline,
        },
        admission,
    )?;
    let result = ticket.wait().await?;
    let inference_ms = infer_started.elapsed().as_secs_f64() * 1000.0;
    metrics::histogram!("hoiclip_inference_seconds").record(inference_ms / 1000.0);
    metrics::gauge!("hoiclip_classifier_version").set(set.version as f64);

    if let Some(image) = image {
        let png = tokio::task::spawn_blocking(move || {
            let drawn = render(&image, &Detection::pairs(&result.detections));
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
    let timings = TimingsOut {
        decode_ms,
        inference_ms,
        total_ms: started.elapsed().as_secs_f64() * 1000.0,
    };
    let mut answer = response(state.0.service.info(), &set, result, timings);
    answer.exif_orientation = exif;
    answer.oriented = oriented;
    Ok(axum::Json(answer).into_response())
}

/// A request's options checked and turned into what the engine runs: the CLI uses this
/// too, so both score the same classes with the same settings.
pub fn detect_options(
    params: &DetectParams,
    set: &ClassView,
    own_pack: &str,
) -> Result<DetectOptions, ApiError> {
    check_params(params)?;
    Ok(DetectOptions {
        score_threshold: params.score_threshold.unwrap_or(0.0),
        max_results: params.top_k.unwrap_or(100),
        tfe_top_k: params
            .training_free_enhancement
            .unwrap_or(false)
            .then_some(10),
        classes: select_classes(set, params, own_pack)?,
        explain: params.explain.unwrap_or(false),
    })
}

/// The answer for one image (the API's schema; `hoiclip detect` prints the same).
pub fn response(
    info: &ModelInfo,
    set: &ClassView,
    result: ImageDetections,
    timings: TimingsOut,
) -> DetectResponse {
    let triplets = result
        .detections
        .into_iter()
        .map(|d| TripletOut {
            explanation: d.terms.map(|t| explanation(set, d.interaction_index, t)),
            human: BoxOut { bbox: d.human.bbox },
            object: ObjectOut {
                bbox: d.object.bbox,
                label: d.object.label,
            },
            verb: d.verb,
            interaction: d.interaction,
            interaction_id: set.rows[d.interaction_index].interaction_id,
            score: d.score,
        })
        .collect();
    DetectResponse {
        width: result.width,
        height: result.height,
        exif_orientation: 1,
        oriented: false,
        output: info.scoring.output,
        triplets,
        vocabulary_version: set.version,
        model: ModelOut {
            name: info.name.clone(),
            trained: info.trained,
        },
        timings,
    }
}

/// A triplet's score terms with the sources of the rows behind them.
fn explanation(set: &ClassView, class: usize, t: ScoreTerms) -> ExplanationOut {
    let row = &set.rows[class];
    let sources = &set.sources;
    ExplanationOut {
        text_logit: t.text_logit,
        interaction_row: sources
            .interactions
            .get(&row.interaction_id)
            .map(|&s| s.into()),
        verb_logit: t.verb_logit,
        verb_row: sources.verbs.get(&row.verb_id).map(|&s| s.into()),
        interaction_score: t.interaction,
        tfe_score: t.tfe,
        object_logit: t.object_logit,
        object_row: row
            .object_id
            .and_then(|o| sources.objects.get(&o))
            .map(|&s| s.into()),
        object_score: t.object,
    }
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

/// Decodes an image within the server's decode limits and pixel budget, then runs `then`
/// on it, with the file's EXIF orientation, off the async threads (header parsing
/// included). The budget is taken before decoding, so memory stays bounded however many
/// large images arrive at once (the rest wait their turn, until `deadline`); `then` gets
/// the permit and decides how long to hold it.
pub(super) async fn decoded<T: Send + 'static>(
    state: &AppState,
    bytes: Bytes,
    deadline: Instant,
    then: impl FnOnce(RgbImage, u8, OwnedSemaphorePermit) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let limits = state.0.options.decode;
    let (width, height) = probe(&bytes, limits)?;
    let pixels = u32::try_from(u64::from(width) * u64::from(height)).unwrap_or(u32::MAX);
    let permit = tokio::time::timeout_at(
        deadline.into(),
        state.0.decode_budget.clone().acquire_many_owned(pixels),
    )
    .await
    .map_err(|_| ApiError::Timeout("waited too long for room to decode the image".into()))?
    .map_err(|_| ApiError::Unavailable("the server is shutting down".into()))?;
    tokio::task::spawn_blocking(move || {
        let image = decode(&bytes, limits)?;
        then(image, exif_orientation(&bytes), permit)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Most triplets one answer may carry.
pub const MAX_TOP_K: usize = 10_000;

/// Options that parse but mean nothing are refused, not answered with an empty 200.
fn check_params(params: &DetectParams) -> Result<(), ApiError> {
    if let Some(t) = params.score_threshold
        && !(t.is_finite() && (0.0..=2.0).contains(&t))
    {
        return Err(ApiError::Unprocessable(format!(
            "score_threshold must be a number in [0, 2] (scores are sigmoid + sigmoid^2), not {t}"
        )));
    }
    if let Some(k) = params.top_k
        && !(1..=MAX_TOP_K).contains(&k)
    {
        return Err(ApiError::Unprocessable(format!(
            "top_k must be between 1 and {MAX_TOP_K}, not {k}"
        )));
    }
    if let Some(v) = &params.verbs
        && v.split(',').all(|s| s.trim().is_empty())
    {
        return Err(ApiError::Unprocessable(
            "verbs must name at least one verb (a comma-separated list)".into(),
        ));
    }
    if let Some(p) = &params.pack
        && p.trim().is_empty()
    {
        return Err(ApiError::Unprocessable("pack must not be empty".into()));
    }
    Ok(())
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
        pack: body.pack.or(query.pack),
        verbs: body.verbs.or(query.verbs),
        training_free_enhancement: body
            .training_free_enhancement
            .or(query.training_free_enhancement),
        render: body.render.or(query.render),
        explain: body.explain.or(query.explain),
        auto_orient: body.auto_orient.or(query.auto_orient),
        min_vocabulary_version: body
            .min_vocabulary_version
            .max(query.min_vocabulary_version),
    }
}

/// Seed packs other than the model's own are only scored when asked for by name: their
/// rows are text-only and would compete with the model's trained classes.
const SEED_PACKS: &[&str] = &["hico-det", "v-coco"];

/// Class indices allowed by `pack` / `verbs`; unknown names are a 422.
fn select_classes(
    set: &ClassView,
    params: &DetectParams,
    own_pack: &str,
) -> Result<Option<Vec<usize>>, ApiError> {
    if params.pack.is_none() && params.verbs.is_none() {
        let default: Vec<usize> = (0..set.rows.len())
            .filter(|&i| {
                let pack = set.rows[i].pack.as_str();
                pack == own_pack || !SEED_PACKS.contains(&pack)
            })
            .collect();
        return Ok(Some(default));
    }
    let verbs: Option<Vec<String>> = params.verbs.as_ref().map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    if let Some(pack) = &params.pack
        && !set.rows.iter().any(|r| &r.pack == pack)
    {
        return Err(ApiError::Unprocessable(format!(
            "no interactions in pack `{pack}`"
        )));
    }
    if let Some(verbs) = &verbs {
        for v in verbs {
            if !set.rows.iter().any(|r| &r.verb == v) {
                return Err(ApiError::Unprocessable(format!(
                    "no interactions with verb `{v}`"
                )));
            }
        }
    }
    Ok(Some(
        set.rows
            .iter()
            .enumerate()
            .filter(|(_, r)| params.pack.as_ref().is_none_or(|p| &r.pack == p))
            .filter(|(_, r)| verbs.as_ref().is_none_or(|vs| vs.contains(&r.verb)))
            .map(|(i, _)| i)
            .collect(),
    ))
}
