//! Examples of verbs: `POST /verbs/{id}/examples` (JSON with base64 images, or
//! multipart), `GET` to list them, `DELETE .../{example_id}` to remove one. Everything a
//! request carries is checked (count, verb, objects, images, boxes) before anything is
//! stored; the stored features then give the verb its row in the next rebuild.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;

use super::AppState;
use super::detect::{
    base64_image, body_error, content_type, decode_then, multipart_error, read_json,
};
use super::dto::{
    CreatedExamples, Deleted, ExampleOut, ExamplesIn, ExamplesMultipart, ExamplesParams,
};
use super::error::{ApiError, Problem};
use super::extract::{ApiPath, ApiQuery, within_body_timeout};
use super::vocab::{committed, rebuild, verb_out};
use crate::engine::examples::{ExampleCrops, MAX_EXAMPLES, check_count, image_id, learn};
use crate::vision::decode;
use crate::vision::decode::{exif_orientation, orient};
use crate::vocab::store::ExampleRecord;

/// One example as received, before its image is decoded.
struct Received {
    image: Bytes,
    human_box: [f32; 4],
    object_box: [f32; 4],
    object: String,
}

fn example_out(fingerprint: &str) -> impl Fn(ExampleRecord) -> ExampleOut + '_ {
    move |e| ExampleOut::new(e, fingerprint)
}

/// Teach a verb from example images. Each example is an image with a person's box, an
/// object's box and the object's name; the verb's row becomes the visual semantic
/// arithmetic of the examples' CLIP features (as HOICLIP's verb rows were made), live in
/// the next request. Verbs with a trained row keep it.
#[utoipa::path(post, path = "/verbs/{id}/examples", tag = "vocabulary", params(("id" = i64, Path), ExamplesParams),
    request_body(
        description = "application/json `{\"examples\": [{\"image\": base64, \"human_box\": [x1, y1, x2, y2], \"object_box\": [...], \"object\": name}]}`, or multipart/form-data with the fields `image`, `human_box` and `object_box` (\"x1,y1,x2,y2\") and `object`, once per example; 1 to 16 examples",
        content((ExamplesIn = "application/json"), (ExamplesMultipart = "multipart/form-data"))
    ),
    responses(
        (status = 201, description = "Stored; the verb's row is rebuilt from its examples", body = CreatedExamples),
        (status = 400, description = "Malformed body, base64 or box text, or an undecodable image", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "API key missing", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "API key wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such verb or object", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received in time", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body or image too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not an accepted content or image type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No examples, more than 16, or a box outside its image or under a pixel", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Other example uploads are being processed; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not ready, or timed out", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_examples(
    State(state): State<AppState>,
    ApiPath(verb_id): ApiPath<i64>,
    ApiQuery(params): ApiQuery<ExamplesParams>,
    request: Request,
) -> Result<(StatusCode, Json<CreatedExamples>), ApiError> {
    let deadline = Instant::now() + state.options.request_timeout;
    let content_type = content_type(&request);
    let received =
        within_body_timeout(&state, read_examples(request, &state, &content_type)).await??;
    check_count(received.len())?;
    // Bounded work at once: each upload holds up to 48 crops and the worker's passes.
    let _learning = state.learning.clone().try_acquire_owned().map_err(|_| {
        ApiError::Busy(format!(
            "{} example uploads are being processed; retry shortly",
            super::LEARNING_AT_ONCE
        ))
    })?;
    // Names first: a wrong verb or object must not cost decoding and image-tower passes.
    let objects: Vec<&str> = received.iter().map(|r| r.object.as_str()).collect();
    state
        .service
        .store()
        .check_example_targets(verb_id, &objects)
        .await?;
    let res = state.service.clip_resolution();
    let auto_orient = params.auto_orient.unwrap_or(true);
    let limits = state.options.decode;
    let mut crops = Vec::with_capacity(received.len());
    // One image at a time: only its crops outlive the decode.
    for r in received {
        let id = image_id(&r.image);
        let (human_box, object_box, object) = (r.human_box, r.object_box, r.object);
        crops.push(
            decode_then(&state, r.image, deadline, move |bytes, _permit| {
                let image = decode(bytes, limits)?;
                let image = match auto_orient {
                    true => orient(image, exif_orientation(bytes)),
                    false => image,
                };
                Ok(ExampleCrops::new(
                    &image, id, human_box, object_box, object, res,
                )?)
            })
            .await?,
        );
    }
    let replace = params.replace.unwrap_or(false);
    let (records, version) =
        learn(state.service.as_ref(), verb_id, crops, replace, deadline).await?;
    // Stored: the answer is 201 whatever happens next. The rebuild runs detached, so
    // waiting is only bounded here (and answered well before the request deadline, which
    // the image passes have used part of), not cut short.
    let answer_by = deadline
        .checked_sub(state.options.request_timeout / 8)
        .unwrap_or(deadline);
    let classifier_version = match tokio::time::timeout_at(answer_by.into(), rebuild(&state)).await
    {
        Ok(version) => version,
        Err(_) => state.service.classes().map(|c| c.version),
    };
    let verb = state.service.store().verb(verb_id).await?;
    let fingerprint = state.service.vision_fingerprint();
    Ok((
        StatusCode::CREATED,
        Json(CreatedExamples {
            verb: verb_out(&state)(verb),
            examples: records.into_iter().map(example_out(fingerprint)).collect(),
            vocabulary_version: version,
            classifier_version,
        }),
    ))
}

/// A verb's examples, oldest first.
#[utoipa::path(get, path = "/verbs/{id}/examples", tag = "vocabulary", params(("id" = i64, Path)),
    responses((status = 200, description = "OK", body = [ExampleOut]),
        (status = 404, description = "No such verb", body = Problem, content_type = "application/problem+json")))]
pub async fn list_examples(
    State(state): State<AppState>,
    ApiPath(verb_id): ApiPath<i64>,
) -> Result<Json<Vec<ExampleOut>>, ApiError> {
    let records = state.service.store().examples(verb_id).await?;
    let fingerprint = state.service.vision_fingerprint();
    Ok(Json(
        records.into_iter().map(example_out(fingerprint)).collect(),
    ))
}

/// Remove one example; the verb's row is recomputed from the rest (its text row when
/// none is left).
#[utoipa::path(delete, path = "/verbs/{id}/examples/{example_id}", tag = "vocabulary",
    params(("id" = i64, Path), ("example_id" = i64, Path)),
    responses((status = 200, description = "OK", body = Deleted),
        (status = 404, description = "No such verb, or no such example of it", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_example(
    State(state): State<AppState>,
    ApiPath((verb_id, example_id)): ApiPath<(i64, i64)>,
) -> Result<Json<Deleted>, ApiError> {
    let store = state.service.store().clone();
    let version = committed(&state, async move {
        store.remove_example(verb_id, example_id).await
    })
    .await?;
    let classifier_version = rebuild(&state).await;
    Ok(Json(Deleted {
        vocabulary_version: version,
        classifier_version,
    }))
}

/// The examples of a JSON or multipart body, at most one more than allowed (enough to
/// refuse too many without reading them all into memory).
async fn read_examples(
    request: Request,
    state: &AppState,
    content_type: &str,
) -> Result<Vec<Received>, ApiError> {
    if content_type.starts_with("application/json") {
        let json: ExamplesIn = read_json(request, state).await?;
        check_count(json.examples.len())?;
        json.examples
            .into_iter()
            .enumerate()
            .map(|(k, e)| {
                Ok(Received {
                    image: base64_image(&format!("examples[{k}].image"), &e.image)?,
                    human_box: e.human_box,
                    object_box: e.object_box,
                    object: e.object,
                })
            })
            .collect()
    } else if content_type.starts_with("multipart/form-data") {
        read_multipart(request, state).await
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "content type `{content_type}`: send application/json or multipart/form-data"
        )))
    }
}

/// Multipart fields `image`, `human_box`, `object_box` and `object`, once per example;
/// the k-th of each go together.
async fn read_multipart(request: Request, state: &AppState) -> Result<Vec<Received>, ApiError> {
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| multipart_error(e.status(), &e.body_text()))?;
    let (mut images, mut humans, mut objects_boxes, mut objects) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e.status(), &e.body_text()))?
    {
        let name = field.name().unwrap_or("").to_string();
        if !matches!(
            name.as_str(),
            "image" | "human_box" | "object_box" | "object"
        ) {
            continue;
        }
        let bytes = field
            .bytes()
            .await
            .map_err(|e| body_error(e.status(), &e.body_text()))?;
        let text = || {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::BadRequest(format!("field `{name}` is not UTF-8 text")))
        };
        match name.as_str() {
            "image" => images.push(bytes.clone()),
            "human_box" => humans.push(parse_box("human_box", &text()?)?),
            "object_box" => objects_boxes.push(parse_box("object_box", &text()?)?),
            _ => objects.push(text()?.trim().to_string()),
        }
        if images.len() > MAX_EXAMPLES {
            check_count(images.len())?;
        }
    }
    let n = images.len();
    if [humans.len(), objects_boxes.len(), objects.len()] != [n, n, n] {
        return Err(ApiError::BadRequest(format!(
            "each example needs one each of `image`, `human_box`, `object_box` and `object`: got {n}, {}, {} and {}",
            humans.len(),
            objects_boxes.len(),
            objects.len()
        )));
    }
    Ok(images
        .into_iter()
        .zip(humans)
        .zip(objects_boxes)
        .zip(objects)
        .map(|(((image, human_box), object_box), object)| Received {
            image,
            human_box,
            object_box,
            object,
        })
        .collect())
}

/// "x1,y1,x2,y2" as a box, or a 400 naming the field.
fn parse_box(field: &str, text: &str) -> Result<[f32; 4], ApiError> {
    crate::engine::examples::parse_box(text).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`{field}` must be four numbers \"x1,y1,x2,y2\", not {text:?}"
        ))
    })
}
