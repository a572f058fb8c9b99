//! Vocabulary endpoints. Every write rebuilds the classifier before answering, so the new
//! categories are detectable in the very next request.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::dto::*;
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::classifier::RowSources;
use crate::vocab::store::{InteractionRecord, NewVerb, ObjectRecord, PackExport, VerbRecord};

/// Row sources of the classifier in service (empty before the first build).
fn sources(state: &AppState) -> Arc<RowSources> {
    state
        .service
        .classes()
        .map(|set| set.sources)
        .unwrap_or_default()
}

/// Verb records as the API shows them, with the row each is scored with now.
pub(super) fn verb_out(state: &AppState) -> impl Fn(VerbRecord) -> VerbOut + use<> {
    let sources = sources(state);
    move |v| VerbOut::new(v, &sources)
}

fn object_out(state: &AppState) -> impl Fn(ObjectRecord) -> ObjectRecordOut + use<> {
    let sources = sources(state);
    move |o| ObjectRecordOut::new(o, &sources)
}

/// Interaction records as the API shows them, marking the model's unseen classes.
fn interaction_out(state: &AppState) -> impl Fn(InteractionRecord) -> InteractionOut + use<> {
    let info = state.service.info().clone();
    let sources = sources(state);
    move |i| InteractionOut::new(i, &sources, Some(&info))
}

/// Runs a vocabulary write to its end whatever happens to the request: detached, so
/// neither a client that goes away nor the request deadline can cut a transaction off
/// between its statements and its commit, and the answer never contradicts what was
/// stored. The answer waits for it at most half the request timeout; past that (a
/// database that stopped answering, a lock held elsewhere), it is 503
/// `vocabulary-unavailable` saying that the outcome is not known yet.
pub(super) async fn committed<T, F>(state: &AppState, write: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, crate::vocab::store::VocabError>> + Send + 'static,
{
    let limit = state.options.request_timeout / 2;
    match tokio::time::timeout(limit, tokio::spawn(write)).await {
        Ok(Ok(result)) => Ok(result?),
        Ok(Err(e)) => Err(ApiError::Internal(format!("the write task failed: {e}"))),
        Err(_) => Err(crate::vocab::store::VocabError::Unavailable(format!(
            "the database did not finish the write within {} ms; it may still be applied: \
             GET /vocabulary shows the version, and a retry of the same import is answered \
             as the first",
            limit.as_millis()
        ))
        .into()),
    }
}

/// Rebuilds the classifier after a committed write, so the next request on this replica
/// scores with it, and returns the version of the classifier in service for the answer.
/// The write stands either way (it was validated in full before committing): the answer
/// waits for the rebuild at most a quarter of the request timeout (so a committed write is
/// never answered by the request deadline), and not at all once the database drops out of
/// reach; the rebuild itself runs on, detached, and the follower finishes it. A failed
/// rebuild is logged, keeps the previous set serving, and readiness reports it until a
/// retry succeeds.
pub(super) async fn rebuild(state: &AppState) -> Option<i64> {
    let failures = state.service.store_failures();
    let service = state.service.clone();
    let mut rebuilt = tokio::spawn(async move { service.refresh().await });
    let mut look = tokio::time::interval(Duration::from_millis(50));
    let until = tokio::time::sleep(state.options.request_timeout / 4);
    tokio::pin!(until);
    loop {
        tokio::select! {
            done = &mut rebuilt => {
                match done {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "classifier rebuild after a vocabulary write failed"),
                    Err(e) => tracing::error!(error = %e, "classifier rebuild after a vocabulary write stopped"),
                }
                break;
            }
            _ = &mut until => {
                tracing::warn!("the classifier rebuild after a write outlasts its wait; answering with the classifier still catching up");
                break;
            }
            _ = look.tick() => {
                if state.service.store_failures() != failures {
                    tracing::warn!("the vocabulary database went out of reach after a write; answering before the classifier is rebuilt");
                    break;
                }
            }
        }
    }
    state.service.classes().map(|c| c.version)
}

/// List verbs.
#[utoipa::path(get, path = "/verbs", tag = "vocabulary", responses((status = 200, description = "OK", body = [VerbOut])))]
pub async fn list_verbs(State(state): State<AppState>) -> Result<Json<Vec<VerbOut>>, ApiError> {
    Ok(Json(
        state
            .service
            .store()
            .verbs()
            .await?
            .into_iter()
            .map(verb_out(&state))
            .collect(),
    ))
}

/// One verb.
#[utoipa::path(get, path = "/verbs/{id}", tag = "vocabulary", params(("id" = i64, Path)),
    responses((status = 200, description = "OK", body = VerbOut), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json")))]
pub async fn get_verb(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<VerbOut>, ApiError> {
    Ok(Json(verb_out(&state)(
        state.service.store().verb(id).await?,
    )))
}

/// Register a verb and its interactions; they are detectable in the next request.
#[utoipa::path(post, path = "/verbs", tag = "vocabulary", request_body = NewVerbIn,
    responses(
        (status = 201, description = "Created", body = CreatedVerb),
        (status = 401, description = "API key missing", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "API key wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "An object does not exist", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The verb or an interaction exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or prompt", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_verb(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewVerbIn>,
) -> Result<(StatusCode, Json<CreatedVerb>), ApiError> {
    let new = NewVerb {
        name: body.name,
        ing: body.ing,
        objects: body.objects,
        prompts: body
            .prompts
            .into_iter()
            .map(|p| (p.object, p.prompt))
            .collect(),
        pack: body.pack,
    };
    let store = state.service.store().clone();
    let (verb, interactions, version) =
        committed(&state, async move { store.add_verb(new).await }).await?;
    let classifier_version = rebuild(&state).await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedVerb {
            verb: verb_out(&state)(verb),
            interactions: interactions
                .into_iter()
                .map(interaction_out(&state))
                .collect(),
            vocabulary_version: version,
            classifier_version,
        }),
    ))
}

/// Remove a user verb and its interactions (seed verbs: 409).
#[utoipa::path(delete, path = "/verbs/{id}", tag = "vocabulary", params(("id" = i64, Path)),
    responses((status = 200, description = "OK", body = Deleted), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Seed entry", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_verb(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Deleted>, ApiError> {
    let store = state.service.store().clone();
    let version = committed(&state, async move { store.remove_verb(id).await }).await?;
    let classifier_version = rebuild(&state).await;
    Ok(Json(Deleted {
        vocabulary_version: version,
        classifier_version,
    }))
}

/// List objects.
#[utoipa::path(get, path = "/objects", tag = "vocabulary", responses((status = 200, description = "OK", body = [ObjectRecordOut])))]
pub async fn list_objects(
    State(state): State<AppState>,
) -> Result<Json<Vec<ObjectRecordOut>>, ApiError> {
    Ok(Json(
        state
            .service
            .store()
            .objects()
            .await?
            .into_iter()
            .map(object_out(&state))
            .collect(),
    ))
}

/// One object.
#[utoipa::path(get, path = "/objects/{id}", tag = "vocabulary", params(("id" = i64, Path)),
    responses((status = 200, description = "OK", body = ObjectRecordOut), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json")))]
pub async fn get_object(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ObjectRecordOut>, ApiError> {
    Ok(Json(object_out(&state)(
        state.service.store().object(id).await?,
    )))
}

/// Register an object (a new row of the object classifier).
#[utoipa::path(post, path = "/objects", tag = "vocabulary", request_body = NewObjectIn,
    responses((status = 201, description = "Created", body = CreatedObject), (status = 409, description = "Conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json")))]
pub async fn create_object(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewObjectIn>,
) -> Result<(StatusCode, Json<CreatedObject>), ApiError> {
    let store = state.service.store().clone();
    let (object, version) = committed(&state, async move {
        store.add_object(&body.name, body.prompt.as_deref()).await
    })
    .await?;
    let classifier_version = rebuild(&state).await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedObject {
            object: object_out(&state)(object),
            vocabulary_version: version,
            classifier_version,
        }),
    ))
}

/// Remove a user object and its interactions.
#[utoipa::path(delete, path = "/objects/{id}", tag = "vocabulary", params(("id" = i64, Path)),
    responses((status = 200, description = "OK", body = Deleted), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_object(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Deleted>, ApiError> {
    let store = state.service.store().clone();
    let version = committed(&state, async move { store.remove_object(id).await }).await?;
    let classifier_version = rebuild(&state).await;
    Ok(Json(Deleted {
        vocabulary_version: version,
        classifier_version,
    }))
}

/// List interactions (optionally of one pack).
#[utoipa::path(get, path = "/interactions", tag = "vocabulary", params(PackFilter), responses((status = 200, description = "OK", body = [InteractionOut])))]
pub async fn list_interactions(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<PackFilter>,
) -> Result<Json<Vec<InteractionOut>>, ApiError> {
    Ok(Json(
        state
            .service
            .store()
            .interactions(filter.pack.as_deref())
            .await?
            .into_iter()
            .map(interaction_out(&state))
            .collect(),
    ))
}

/// One interaction.
#[utoipa::path(get, path = "/interactions/{id}", tag = "vocabulary", params(("id" = i64, Path)),
    responses((status = 200, description = "OK", body = InteractionOut), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json")))]
pub async fn get_interaction(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<InteractionOut>, ApiError> {
    Ok(Json(interaction_out(&state)(
        state.service.store().interaction(id).await?,
    )))
}

/// Register an interaction for an existing verb and object.
#[utoipa::path(post, path = "/interactions", tag = "vocabulary", request_body = NewInteractionIn,
    responses((status = 201, description = "Created", body = CreatedInteraction), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json")))]
pub async fn create_interaction(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewInteractionIn>,
) -> Result<(StatusCode, Json<CreatedInteraction>), ApiError> {
    let store = state.service.store().clone();
    let (interaction, version) = committed(&state, async move {
        store
            .add_interaction(
                &body.verb,
                &body.object,
                body.prompt.as_deref(),
                body.pack.as_deref(),
            )
            .await
    })
    .await?;
    let classifier_version = rebuild(&state).await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedInteraction {
            interaction: interaction_out(&state)(interaction),
            vocabulary_version: version,
            classifier_version,
        }),
    ))
}

/// Remove a user interaction.
#[utoipa::path(delete, path = "/interactions/{id}", tag = "vocabulary", params(("id" = i64, Path)),
    responses((status = 200, description = "OK", body = Deleted), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_interaction(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Deleted>, ApiError> {
    let store = state.service.store().clone();
    let version = committed(&state, async move { store.remove_interaction(id).await }).await?;
    let classifier_version = rebuild(&state).await;
    Ok(Json(Deleted {
        vocabulary_version: version,
        classifier_version,
    }))
}

/// List packs.
#[utoipa::path(get, path = "/packs", tag = "vocabulary", responses((status = 200, description = "OK", body = [PackOut])))]
pub async fn list_packs(State(state): State<AppState>) -> Result<Json<Vec<PackOut>>, ApiError> {
    Ok(Json(
        state
            .service
            .store()
            .packs()
            .await?
            .into_iter()
            .map(PackOut::from)
            .collect(),
    ))
}

/// Export a pack as JSON (the plugin unit).
#[utoipa::path(get, path = "/packs/{name}/export", tag = "vocabulary", params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = super::schemas::PackExportDoc), (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json")))]
pub async fn export_pack(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PackExport>, ApiError> {
    Ok(Json(state.service.store().export_pack(&name).await?))
}

/// Import a pack exported by `/packs/{name}/export`.
#[utoipa::path(post, path = "/packs/import", tag = "vocabulary", request_body = super::schemas::PackExportDoc,
    responses((status = 201, description = "Imported (or imported before: a retry of the same pack, entries in any order, is answered 201 again with the current version); the body holds the vocabulary version", body = Deleted),
        (status = 503, description = "The database did not finish the write in time; it may still be applied (a retry of the same pack is safe)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "An interaction names a verb or object that is neither in the pack nor in the vocabulary", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json")))]
pub async fn import_pack(
    State(state): State<AppState>,
    ApiJson(pack): ApiJson<PackExport>,
) -> Result<(StatusCode, Json<Deleted>), ApiError> {
    let store = state.service.store().clone();
    let version = committed(&state, async move { store.import_pack(&pack).await }).await?;
    let classifier_version = rebuild(&state).await;
    Ok((
        StatusCode::CREATED,
        Json(Deleted {
            vocabulary_version: version,
            classifier_version,
        }),
    ))
}

/// Vocabulary version and counts.
#[utoipa::path(get, path = "/vocabulary", tag = "vocabulary", responses((status = 200, description = "OK", body = VocabularyOut)))]
pub async fn vocabulary(State(state): State<AppState>) -> Result<Json<VocabularyOut>, ApiError> {
    let store = state.service.store();
    Ok(Json(VocabularyOut {
        version: store.version().await?,
        classifier_version: state.service.classes().map(|s| s.version),
        verbs: store.verbs().await?.len(),
        objects: store.objects().await?.len(),
        interactions: store.interactions(None).await?.len(),
        packs: store.packs().await?.len(),
        skipped: state.service.skipped_rows(),
        row_sources: row_source_counts(&sources(&state)),
    }))
}

/// How many rows of each kind a set has.
fn row_source_counts(sources: &RowSources) -> RowSourcesOut {
    use crate::classifier::RowSource;
    let count = |map: &std::collections::HashMap<i64, RowSource>| {
        let mut counts = RowSourceCounts::default();
        for source in map.values() {
            match source {
                RowSource::Trained => counts.trained += 1,
                RowSource::Examples { .. } => counts.examples += 1,
                RowSource::Text => counts.text += 1,
            }
        }
        counts
    };
    RowSourcesOut {
        verbs: count(&sources.verbs),
        objects: count(&sources.objects),
        interactions: count(&sources.interactions),
    }
}
