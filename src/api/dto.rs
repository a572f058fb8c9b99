//! Request and response bodies (the OpenAPI schemas come from these types).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::classifier::RowSources;
use crate::detector::ModelInfo;
use crate::engine::ClassifierHandle;
use crate::engine::detection::{Answer, DetectRequest};
use crate::vocab::store::{ExampleRecord, InteractionRecord, ObjectRecord, PackRecord, VerbRecord};

/// Options of a detection request (query string, or fields of the JSON body).
#[derive(Debug, Clone, Default, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DetectParams {
    /// Drop triplets scoring below this (scores lie in [0, 2]: sigmoid + sigmoid^2).
    #[schema(minimum = 0, maximum = 2)]
    #[param(minimum = 0, maximum = 2)]
    pub score_threshold: Option<f32>,
    /// Return at most this many triplets (default 100).
    #[schema(minimum = 1, maximum = 10000)]
    #[param(minimum = 1, maximum = 10000)]
    pub top_k: Option<usize>,
    /// Candidates kept per image before triplet NMS (HICO-DET models), or as the
    /// verb-level top-k (V-COCO models). Default: the official 100, or `top_k` when that
    /// is larger; the first results are the same either way (a wider pool only adds
    /// triplets after them). Less than `top_k` is refused (422).
    #[schema(minimum = 1, maximum = 10000)]
    #[param(minimum = 1, maximum = 10000)]
    pub candidates: Option<usize>,
    /// Only interactions of this pack (e.g. `hico-det`, `v-coco`, `user`). Default: the
    /// model's own pack plus every user pack.
    #[schema(min_length = 1, max_length = 1024, pattern = "\\S")]
    #[param(min_length = 1, pattern = "\\S")]
    pub pack: Option<String>,
    /// Only interactions of these verbs (comma-separated in a query string).
    #[schema(min_length = 1, pattern = "[^,\\s]")]
    #[param(min_length = 1, pattern = "[^,\\s]")]
    pub verbs: Option<String>,
    /// Training-free enhancement with CLIP's top-10 image-level scores (the paper's 34.69 setting).
    pub training_free_enhancement: Option<bool>,
    /// Answer with a PNG with the detections drawn instead of JSON.
    pub render: Option<bool>,
    /// Give each triplet its score terms and the source of each row they come from.
    pub explain: Option<bool>,
    /// Turn the image as its EXIF orientation says it is shown (default true: boxes are
    /// in the picture the user sees); false keeps the stored orientation, as the official
    /// evaluation reads dataset images.
    pub auto_orient: Option<bool>,
    /// Read your writes across replicas: score with a vocabulary at least this new (the
    /// `vocabulary_version` a write answered with, on any replica). A replica behind it
    /// waits a bounded time for the change to arrive, then answers 503
    /// `stale-vocabulary` with Retry-After.
    #[schema(minimum = 0)]
    #[param(minimum = 0)]
    pub min_vocabulary_version: Option<i64>,
}

impl DetectParams {
    /// The request these options make (defaults in [`DetectRequest`]); `render` is the
    /// API's own and not part of it.
    pub fn request(&self) -> DetectRequest {
        let defaults = DetectRequest::default();
        DetectRequest {
            score_threshold: self.score_threshold.unwrap_or(defaults.score_threshold),
            top_k: self.top_k.unwrap_or(defaults.top_k),
            candidates: self.candidates,
            pack: self.pack.clone(),
            verbs: self
                .verbs
                .as_ref()
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
            tfe_top_k: self
                .training_free_enhancement
                .unwrap_or(false)
                .then_some(TFE_TOP_K),
            explain: self.explain.unwrap_or(defaults.explain),
            auto_orient: self.auto_orient.unwrap_or(defaults.auto_orient),
            min_vocabulary_version: self.min_vocabulary_version,
        }
    }
}

/// CLIP's top-K image-level scores the training-free enhancement adds (the paper's 34.69
/// setting), which `training_free_enhancement=true` turns on.
pub const TFE_TOP_K: usize = 10;

/// `POST /detect` with a JSON body: the image as base64, plus options.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DetectJson {
    /// JPEG, PNG, WebP, GIF (first frame), BMP or TIFF bytes, base64-encoded (standard alphabet; line breaks allowed).
    #[schema(min_length = 1)]
    pub image: String,
    #[serde(flatten)]
    pub params: DetectParams,
}

/// `POST /detect/batch` with a JSON body: the images as base64, plus options for all.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DetectBatchJson {
    /// 1 to 16 images: JPEG, PNG, WebP, GIF (first frame), BMP or TIFF bytes, base64.
    #[schema(min_items = 1, max_items = 16)]
    pub images: Vec<String>,
    #[serde(flatten)]
    pub params: DetectParams,
}

/// `POST /detect/batch` as multipart/form-data: one `image` field per image, and the
/// options as text fields (they override the query string's).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct DetectBatchMultipart {
    /// 1 to 16 image files, in the order the results come back.
    #[schema(value_type = Vec<String>, format = Binary)]
    pub image: Vec<Vec<u8>>,
    #[serde(flatten)]
    pub params: DetectParams,
}

/// One answer per image, in the order they were sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct DetectBatchResponse {
    pub results: Vec<DetectResponse>,
}

/// `POST /detect` as multipart/form-data: the image file, and the options as text
/// fields (they override the query string's).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct DetectMultipart {
    /// The image file (JPEG, PNG, WebP, GIF, BMP or TIFF).
    #[schema(value_type = String, format = Binary)]
    pub image: Vec<u8>,
    #[serde(flatten)]
    pub params: DetectParams,
}

/// Raw image bytes (JPEG, PNG, WebP, GIF, BMP or TIFF).
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct ImageBytes(pub Vec<u8>);

#[derive(Debug, Serialize, ToSchema)]
pub struct BoxOut {
    /// `[x1, y1, x2, y2]` in the original image's pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectOut {
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub label: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TripletOut {
    /// The human-object pair (decoder query) it belongs to: the triplets of one pair share
    /// their boxes, and the number matches the official model's query index.
    pub pair: usize,
    pub human: BoxOut,
    pub object: ObjectOut,
    pub verb: String,
    /// The interaction's prompt text.
    pub interaction: String,
    /// Id of the interaction in the vocabulary (`/interactions/{id}`).
    pub interaction_id: i64,
    pub score: f32,
    /// What the score is made of (`explain=true` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<ExplanationOut>,
}

/// A triplet's score terms: `score` = `interaction_score` + `tfe_score` (when on) +
/// `object_score`; verb-level output (`output` = `verbs`) scores 0 instead when the verb
/// does not go with the pair's predicted object.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplanationOut {
    /// HOI text term of the interaction logit: logit scale x (cosine of the pair's
    /// interaction feature with the interaction's row + the row's bias).
    pub text_logit: f32,
    /// Where the interaction's row comes from.
    pub interaction_row: Option<RowSourceOut>,
    /// Verb term of the interaction logit: verb weight x logit scale x the cosine of the
    /// pair's verb feature with the verb's row (through the verb-to-interaction map).
    pub verb_logit: f32,
    /// Where the verb's row comes from.
    pub verb_row: Option<RowSourceOut>,
    /// sigmoid(text_logit + verb_logit).
    pub interaction_score: f32,
    /// Training-free enhancement term (`training_free_enhancement=true` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tfe_score: Option<f32>,
    /// The object classifier's logit for the interaction's object.
    pub object_logit: f32,
    /// Where the object's row comes from.
    pub object_row: Option<RowSourceOut>,
    /// sigmoid(object_logit)^2.
    pub object_score: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelOut {
    pub name: String,
    /// False for the demo model: random weights, meaningless detections.
    pub trained: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimingsOut {
    pub decode_ms: f64,
    pub inference_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DetectResponse {
    /// Size of the image as the model saw it (turned, when `auto_orient` applied an EXIF
    /// orientation); boxes are in its pixels.
    pub width: u32,
    pub height: u32,
    /// The file's EXIF orientation (1: as stored; 2 to 8: mirrored and/or turned).
    pub exif_orientation: u8,
    /// Whether the image was turned to its EXIF orientation before detection.
    pub oriented: bool,
    /// What each triplet is: `interactions` (HICO-DET models: one per HOI class, after
    /// triplet NMS) or `verbs` (V-COCO models, as V-COCO's evaluation scores them: one per
    /// (human-object pair, verb), the best of the verb's interactions times the verb's
    /// validity for the pair's predicted object, whose name is `object.label`; no NMS).
    pub output: OutputOut,
    pub triplets: Vec<TripletOut>,
    /// The vocabulary version the classifier was built from.
    pub vocabulary_version: i64,
    pub model: ModelOut,
    pub timings: TimingsOut,
}

impl DetectResponse {
    /// The answer for one image, scored with `set` by a model described by `info`, its
    /// whole request having taken `total` so far.
    pub fn new(
        info: &ModelInfo,
        set: &ClassifierHandle,
        answer: Answer,
        total: std::time::Duration,
    ) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let result = answer.detections;
        let triplets = result
            .detections
            .into_iter()
            .map(|d| TripletOut {
                explanation: d
                    .terms
                    .map(|t| ExplanationOut::new(set, d.interaction_index, t)),
                pair: d.query,
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
        Self {
            width: result.width,
            height: result.height,
            exif_orientation: answer.exif_orientation,
            oriented: answer.oriented,
            output: info.scoring.output.into(),
            triplets,
            vocabulary_version: set.version,
            model: ModelOut {
                name: info.name.clone(),
                trained: info.trained,
            },
            timings: TimingsOut {
                decode_ms: ms(answer.decode_time),
                inference_ms: ms(answer.inference_time),
                total_ms: ms(total),
            },
        }
    }
}

impl ExplanationOut {
    /// A triplet's score terms with the sources of the rows behind them.
    fn new(set: &ClassifierHandle, class: usize, t: crate::detector::ScoreTerms) -> Self {
        let row = &set.rows[class];
        let sources = &set.sources;
        Self {
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
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewVerbIn {
    /// At most 64 characters, at least one letter or digit, no comma.
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    pub name: String,
    /// The -ing phrase used in prompts ("juggling", "sitting on").
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    pub ing: String,
    /// Existing objects it applies to (prompts from the official template).
    #[serde(default)]
    pub objects: Vec<String>,
    /// Explicit prompts per object.
    #[serde(default)]
    pub prompts: Vec<PromptIn>,
    /// A user pack (default `user`; created if missing). Seed packs are refused.
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    pub pack: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PromptIn {
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    pub object: String,
    /// At most 77 CLIP tokens with start and end tokens.
    #[schema(min_length = 1, max_length = 1024, pattern = "\\S")]
    pub prompt: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewObjectIn {
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    pub name: String,
    /// Object-classifier prompt (default "a photo of {a/an} {name}"); at most 77 CLIP tokens.
    #[schema(min_length = 1, max_length = 1024, pattern = "\\S")]
    pub prompt: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewInteractionIn {
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    pub verb: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    pub object: String,
    /// At most 77 CLIP tokens (default from the official template).
    #[schema(min_length = 1, max_length = 1024, pattern = "\\S")]
    pub prompt: Option<String>,
    #[schema(min_length = 1, max_length = 64, pattern = "^[^,]*$")]
    pub pack: Option<String>,
}

/// Where a classifier row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// The checkpoint's trained row.
    Trained,
    /// Visual semantic arithmetic on stored example images (verbs only).
    Examples,
    /// The CLIP text embedding of the prompt (zero-shot).
    Text,
}

/// The row a verb, object or interaction is scored with in the classifier in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RowSourceOut {
    pub kind: RowKind,
    /// How many example images the row rests on (`kind` = `examples` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples: Option<usize>,
}

impl From<crate::classifier::RowSource> for RowSourceOut {
    fn from(s: crate::classifier::RowSource) -> Self {
        use crate::classifier::RowSource;
        match s {
            RowSource::Trained => Self {
                kind: RowKind::Trained,
                examples: None,
            },
            RowSource::Examples { examples } => Self {
                kind: RowKind::Examples,
                examples: Some(examples),
            },
            RowSource::Text => Self {
                kind: RowKind::Text,
                examples: None,
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerbOut {
    pub id: i64,
    pub name: String,
    pub ing: String,
    /// `seed` (official packs) or `user`.
    pub origin: String,
    /// Its row in the classifier in service; absent while that set does not include it
    /// (before the first build, or a row that cannot be embedded).
    pub row_source: Option<RowSourceOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectRecordOut {
    pub id: i64,
    pub name: String,
    pub prompt: String,
    pub origin: String,
    /// Its row in the classifier in service (`trained` or `text`).
    pub row_source: Option<RowSourceOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InteractionOut {
    pub id: i64,
    pub pack: String,
    pub verb: String,
    pub object: Option<String>,
    pub prompt: String,
    pub origin: String,
    pub enabled: bool,
    /// True for an interaction of the model's own pack that the loaded checkpoint was
    /// trained without (a zero-shot checkpoint's unseen classes, `GET /info`'s
    /// `zero_shot`); its HOI row is CLIP's text embedding, like a user interaction's.
    pub unseen_in_training: bool,
    /// Its HOI row in the classifier in service (`trained` or `text`).
    pub row_source: Option<RowSourceOut>,
}

/// `POST /verbs/{id}/examples` with a JSON body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ExamplesIn {
    /// 1 to 16 examples.
    #[schema(min_items = 1, max_items = 16)]
    pub examples: Vec<ExampleIn>,
}

/// Options of `POST /verbs/{id}/examples`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExamplesParams {
    /// Replace the verb's earlier examples with these, in one step (default: add them).
    pub replace: Option<bool>,
    /// Boxes are in the image as its EXIF orientation shows it (default true), as
    /// `POST /detect` answers them; false: in the stored pixels.
    pub auto_orient: Option<bool>,
}

/// One example image of a verb: a person doing it to an object.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ExampleIn {
    /// JPEG, PNG, WebP, GIF (first frame), BMP or TIFF bytes, base64-encoded (standard alphabet; line breaks allowed).
    #[schema(min_length = 1)]
    pub image: String,
    /// `[x1, y1, x2, y2]` of the person, in the image's pixels.
    pub human_box: [f32; 4],
    /// `[x1, y1, x2, y2]` of the object, in the image's pixels.
    pub object_box: [f32; 4],
    /// Name of a registered object (`GET /objects`).
    #[schema(min_length = 1)]
    pub object: String,
}

/// `POST /verbs/{id}/examples` as multipart/form-data: the fields repeat once per
/// example, and the k-th of each go together.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ExamplesMultipart {
    /// Image files (JPEG, PNG, WebP, GIF, BMP or TIFF).
    #[schema(value_type = Vec<String>, format = Binary)]
    pub image: Vec<Vec<u8>>,
    /// "x1,y1,x2,y2" of each person.
    pub human_box: Vec<String>,
    /// "x1,y1,x2,y2" of each object.
    pub object_box: Vec<String>,
    /// Name of each object.
    pub object: Vec<String>,
}

/// A stored example (its crops' features are kept, not the image).
#[derive(Debug, Serialize, ToSchema)]
pub struct ExampleOut {
    pub id: i64,
    pub verb: String,
    pub object: String,
    /// Checksum of the source image's bytes.
    pub image: String,
    pub human_box: [f32; 4],
    pub object_box: [f32; 4],
    pub created_at: String,
    /// False when its features came from another image tower than the loaded model's
    /// (they are kept, but not used by this model).
    pub used_by_model: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedExamples {
    /// The verb, with the row it is scored with now.
    pub verb: VerbOut,
    pub examples: Vec<ExampleOut>,
    pub vocabulary_version: i64,
    /// The version of the classifier in service when this answer was sent: at or above
    /// `vocabulary_version` once this write is live in detections. A write waits for its
    /// rebuild for at most a quarter of the request timeout; below it, the write is
    /// committed and the classifier is catching up (pass `vocabulary_version` to
    /// `/detect` as `min_vocabulary_version` to wait for it). Null where no classifier
    /// serves the vocabulary (the CLI's vocabulary commands other than `examples`).
    pub classifier_version: Option<i64>,
}

/// How many rows of each kind the classifier in service has.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RowSourceCounts {
    pub trained: usize,
    pub examples: usize,
    pub text: usize,
}

/// Row sources of the classifier in service.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RowSourcesOut {
    pub verbs: RowSourceCounts,
    pub objects: RowSourceCounts,
    pub interactions: RowSourceCounts,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedVerb {
    pub verb: VerbOut,
    pub interactions: Vec<InteractionOut>,
    pub vocabulary_version: i64,
    /// The version of the classifier in service when this answer was sent: at or above
    /// `vocabulary_version` once this write is live in detections. A write waits for its
    /// rebuild for at most a quarter of the request timeout; below it, the write is
    /// committed and the classifier is catching up (pass `vocabulary_version` to
    /// `/detect` as `min_vocabulary_version` to wait for it). Null where no classifier
    /// serves the vocabulary (the CLI's vocabulary commands other than `examples`).
    pub classifier_version: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedObject {
    pub object: ObjectRecordOut,
    pub vocabulary_version: i64,
    /// The version of the classifier in service when this answer was sent: at or above
    /// `vocabulary_version` once this write is live in detections. A write waits for its
    /// rebuild for at most a quarter of the request timeout; below it, the write is
    /// committed and the classifier is catching up (pass `vocabulary_version` to
    /// `/detect` as `min_vocabulary_version` to wait for it). Null where no classifier
    /// serves the vocabulary (the CLI's vocabulary commands other than `examples`).
    pub classifier_version: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedInteraction {
    pub interaction: InteractionOut,
    pub vocabulary_version: i64,
    /// The version of the classifier in service when this answer was sent: at or above
    /// `vocabulary_version` once this write is live in detections. A write waits for its
    /// rebuild for at most a quarter of the request timeout; below it, the write is
    /// committed and the classifier is catching up (pass `vocabulary_version` to
    /// `/detect` as `min_vocabulary_version` to wait for it). Null where no classifier
    /// serves the vocabulary (the CLI's vocabulary commands other than `examples`).
    pub classifier_version: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub vocabulary_version: i64,
    /// The version of the classifier in service when this answer was sent: at or above
    /// `vocabulary_version` once this write is live in detections. A write waits for its
    /// rebuild for at most a quarter of the request timeout; below it, the write is
    /// committed and the classifier is catching up (pass `vocabulary_version` to
    /// `/detect` as `min_vocabulary_version` to wait for it). Null where no classifier
    /// serves the vocabulary (the CLI's vocabulary commands other than `examples`).
    pub classifier_version: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PackOut {
    pub name: String,
    pub description: String,
    pub origin: String,
    pub interactions: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VocabularyOut {
    pub version: i64,
    /// Version of the classifier in service (equal to `version` once rebuilt).
    pub classifier_version: Option<i64>,
    pub verbs: usize,
    pub objects: usize,
    pub interactions: usize,
    pub packs: usize,
    /// Rows left out of the classifier because they can no longer be embedded (e.g.
    /// after a tokenizer change), one description each; empty normally.
    pub skipped: Vec<String>,
    /// Where the rows of the classifier in service come from.
    pub row_sources: RowSourcesOut,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InfoOut {
    pub model: ModelOut,
    pub vocabulary: String,
    pub weights: Option<String>,
    pub text_fingerprint: String,
    /// Where the vocabulary lives: `sqlite` (this server's own file) or `postgres`
    /// (shared by every replica on the same database).
    pub database: String,
    pub backend: String,
    pub device: String,
    pub max_body_bytes: usize,
    pub max_pixels: u64,
    /// Requests that may wait for the inference worker; more get 429.
    pub max_queue: usize,
    pub max_batch_size: usize,
    pub max_batch_delay_ms: f64,
    /// `same-size` (batched results equal unbatched ones) or `pad`.
    pub batch_policy: String,
    /// Scoring settings in use (from the checkpoint's saved arguments when present).
    pub scoring: ScoringOut,
    /// Set when the checkpoint was trained for a zero-shot split: which classes it never
    /// saw in training (it scores every class with CLIP text rows, as the official
    /// evaluation does).
    pub zero_shot: Option<ZeroShotOut>,
}

/// What a triplet is about: an HOI class (HICO-DET's evaluation) or a verb with the
/// predicted object (V-COCO's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = Output)]
pub enum OutputOut {
    Interactions,
    Verbs,
}

impl From<crate::postprocess::Output> for OutputOut {
    fn from(o: crate::postprocess::Output) -> Self {
        match o {
            crate::postprocess::Output::Interactions => Self::Interactions,
            crate::postprocess::Output::Verbs => Self::Verbs,
        }
    }
}

/// How raw outputs become scores and triplets: from the checkpoint's saved training
/// arguments when it has them, else the dataset's defaults.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Scoring)]
pub struct ScoringOut {
    /// Weight of the verb branch in the HOI logits (HICO-DET 0.5, V-COCO 0.1).
    pub verb_weight: f64,
    /// `interactions` (HICO-DET: one triplet per HOI class, triplet NMS) or `verbs`
    /// (V-COCO: one per verb with the predicted object, validity matrix, no NMS).
    pub output: OutputOut,
    /// Triplet NMS: applied to interactions output only, so always false for verbs.
    pub nms: bool,
    pub nms_threshold: f32,
    pub nms_alpha: f32,
    pub nms_beta: f32,
    /// `checkpoint args` or `dataset defaults`.
    pub source: String,
}

impl From<&crate::detector::Scoring> for ScoringOut {
    fn from(s: &crate::detector::Scoring) -> Self {
        Self {
            verb_weight: s.verb_weight,
            output: s.output.into(),
            nms: s.nms,
            nms_threshold: s.nms_threshold,
            nms_alpha: s.nms_alpha,
            nms_beta: s.nms_beta,
            source: s.source.clone(),
        }
    }
}

/// A checkpoint trained for a zero-shot split.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ZeroShot)]
pub struct ZeroShotOut {
    /// The saved `args.zero_shot_type` (`rare_first`, `non_rare_first`, `unseen_object`,
    /// `unseen_verb`, `uc0`..`uc4`), if any.
    pub split: Option<String>,
    /// Rows of the trained (seen-only) classifier.
    pub seen_classes: usize,
    /// Rows of the evaluation classifier the model scores with (all classes).
    pub classes: usize,
    /// The interactions unseen in training: 0-based indices in the vocabulary's official
    /// order; null where the split is unknown or disagrees with the checkpoint's shapes.
    pub unseen: Option<Vec<usize>>,
}

impl From<&crate::detector::ZeroShot> for ZeroShotOut {
    fn from(z: &crate::detector::ZeroShot) -> Self {
        Self {
            split: z.split.clone(),
            seen_classes: z.seen_classes,
            classes: z.classes,
            unseen: z.unseen.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusOut {
    /// `live`, `ready`, or `degraded` (ready for detections, but the vocabulary database
    /// is out of reach: writes answer 503 until it is back).
    pub status: String,
    /// Why the status is `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PackFilter {
    /// Only interactions of this pack.
    pub pack: Option<String>,
}

// Wire shapes from domain records: the API's handlers and the CLI build them here, so
// both write the same shapes.

impl VerbOut {
    /// A verb with the row it is scored with in the classifier whose rows are `sources`.
    pub fn new(v: VerbRecord, sources: &RowSources) -> Self {
        Self {
            row_source: sources.verbs.get(&v.id).map(|&s| s.into()),
            id: v.id,
            name: v.name,
            ing: v.ing,
            origin: v.origin,
        }
    }
}

impl ObjectRecordOut {
    pub fn new(o: ObjectRecord, sources: &RowSources) -> Self {
        Self {
            row_source: sources.objects.get(&o.id).map(|&s| s.into()),
            id: o.id,
            name: o.name,
            prompt: o.prompt,
            origin: o.origin,
        }
    }
}

impl InteractionOut {
    /// An interaction, marked when it is one of the unseen classes of `model` (when a
    /// model is loaded).
    pub fn new(i: InteractionRecord, sources: &RowSources, model: Option<&ModelInfo>) -> Self {
        let unseen = model.is_some_and(|info| {
            i.pack == info.vocabulary
                && info
                    .zero_shot
                    .as_ref()
                    .and_then(|z| z.unseen.as_ref())
                    .is_some_and(|u| {
                        i.seed_index
                            .is_some_and(|s| u.iter().any(|&c| i64::try_from(c) == Ok(s)))
                    })
        });
        Self {
            row_source: sources.interactions.get(&i.id).map(|&s| s.into()),
            unseen_in_training: unseen,
            id: i.id,
            pack: i.pack,
            verb: i.verb,
            object: i.object,
            prompt: i.prompt,
            origin: i.origin,
            enabled: i.enabled,
        }
    }
}

impl ExampleOut {
    /// An example, marked by whether `fingerprint`'s image tower made its features.
    pub fn new(e: ExampleRecord, fingerprint: &str) -> Self {
        Self {
            used_by_model: e.fingerprint == fingerprint,
            id: e.id,
            verb: e.verb,
            object: e.object,
            image: e.image,
            human_box: e.human_box,
            object_box: e.object_box,
            created_at: e.created_at,
        }
    }
}

impl From<PackRecord> for PackOut {
    fn from(p: PackRecord) -> Self {
        Self {
            name: p.name,
            description: p.description,
            origin: p.origin,
            interactions: p.interactions,
        }
    }
}
