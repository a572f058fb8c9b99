//! Detection as one library call, for every front end (`POST /detect`, `/detect/batch`,
//! `hoiclip detect`, `hoiclip eval`): what a request means (its defaults and checks), the
//! classifier set it is scored with, and an image's way from bytes to the engine and back.
//! The front ends only read their input and write the answer in their own form.

use std::time::{Duration, Instant};

use image::RgbImage;

use super::{Admission, ClassifierHandle, EngineError, Request, Service, Ticket};
use crate::detector::{DetectOptions, ImageDetections};
use crate::vision::decode::{exif_orientation, orient};
use crate::vision::{DecodeLimits, Prepared, VisionError, decode};
use crate::vocab::store::name_key;

pub use crate::detector::DEFAULT_TOP_K;
pub use crate::postprocess::OFFICIAL_CANDIDATES;

/// Most triplets one answer may carry.
pub const MAX_TOP_K: usize = 10_000;
/// How long a detection may wait for the engine where no client is waiting on a
/// connection (`hoiclip detect`, `hoiclip eval`).
pub const OFFLINE_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// Seed packs other than the model's own are only scored when asked for by name: their
/// rows are text-only and would compete with the model's trained classes.
const SEED_PACKS: &[&str] = &["hico-det", "v-coco"];

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// An option that parses but means nothing, or names nothing in the vocabulary.
    #[error("{0}")]
    Invalid(String),
    #[error("the model is still loading")]
    NotReady,
    /// The vocabulary version asked for has not reached this replica in time.
    #[error("{0}")]
    StaleVocabulary(String),
    #[error(transparent)]
    Image(#[from] VisionError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What a detection request asks for, with its defaults: the one meaning of every
/// option, whichever front end it came through.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectRequest {
    /// Drop triplets scoring below this (scores lie in [0, 2]).
    pub score_threshold: f32,
    /// Return at most this many triplets.
    pub top_k: usize,
    /// Candidates kept before NMS (or as V-COCO's verb-level top-k); `None`: the
    /// official 100, or `top_k` when more results are asked for. The first results are
    /// the same either way: a wider pool only adds triplets after them.
    pub candidates: Option<usize>,
    /// Only interactions of this pack.
    pub pack: Option<String>,
    /// Only interactions of these verbs.
    pub verbs: Option<Vec<String>>,
    /// Training-free enhancement with CLIP's top-K image-level scores (the paper: 10).
    pub tfe_top_k: Option<usize>,
    /// Give each triplet its score terms.
    pub explain: bool,
    /// Turn the image as its EXIF orientation says before detecting.
    pub auto_orient: bool,
    /// Score with a vocabulary at least this new (read-your-writes across replicas).
    pub min_vocabulary_version: Option<i64>,
}

impl Default for DetectRequest {
    fn default() -> Self {
        Self {
            score_threshold: 0.0,
            top_k: DEFAULT_TOP_K,
            candidates: None,
            pack: None,
            verbs: None,
            tfe_top_k: None,
            explain: false,
            auto_orient: true,
            min_vocabulary_version: None,
        }
    }
}

impl DetectRequest {
    /// Refuses options that parse but mean nothing (before any image is read).
    pub fn check(&self) -> Result<(), DetectError> {
        let t = self.score_threshold;
        if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
            return Err(DetectError::Invalid(format!(
                "score_threshold must be a number in [0, 2] (scores are sigmoid + sigmoid^2), not {t}"
            )));
        }
        let within = |k: usize| (1..=MAX_TOP_K).contains(&k);
        if !within(self.top_k) {
            return Err(DetectError::Invalid(format!(
                "top_k must be between 1 and {MAX_TOP_K}, not {}",
                self.top_k
            )));
        }
        if let Some(c) = self.candidates {
            if !within(c) {
                return Err(DetectError::Invalid(format!(
                    "candidates must be between 1 and {MAX_TOP_K}, not {c}"
                )));
            }
            if c < self.top_k {
                return Err(DetectError::Invalid(format!(
                    "top_k ({}) asks for more triplets than candidates ({c}) can give: \
                     raise candidates or leave it out",
                    self.top_k
                )));
            }
        }
        if let Some(verbs) = &self.verbs
            && verbs.iter().all(|v| v.trim().is_empty())
        {
            return Err(DetectError::Invalid(
                "verbs must name at least one verb (a comma-separated list)".into(),
            ));
        }
        if let Some(p) = &self.pack
            && p.trim().is_empty()
        {
            return Err(DetectError::Invalid("pack must not be empty".into()));
        }
        if let Some(v) = self.min_vocabulary_version
            && v < 0
        {
            return Err(DetectError::Invalid(format!(
                "min_vocabulary_version must be at least 0, not {v}"
            )));
        }
        Ok(())
    }

    /// The candidates in force (see [`DetectRequest::candidates`]).
    pub fn candidates(&self) -> usize {
        self.candidates
            .unwrap_or(self.top_k.max(OFFICIAL_CANDIDATES))
    }

    /// What the engine runs for this request against `set`, a model of pack `own_pack`:
    /// the classes it may score (unknown pack or verb names are refused) and its settings.
    pub fn options(
        &self,
        set: &ClassifierHandle,
        own_pack: &str,
    ) -> Result<DetectOptions, DetectError> {
        self.check()?;
        Ok(DetectOptions {
            score_threshold: self.score_threshold,
            max_results: self.top_k,
            candidates: self.candidates(),
            tfe_top_k: self.tfe_top_k,
            classes: Some(self.classes(set, own_pack)?),
            explain: self.explain,
        })
    }

    /// Class indices allowed by `pack` / `verbs`; by default the model's own pack and
    /// every user pack.
    fn classes(&self, set: &ClassifierHandle, own_pack: &str) -> Result<Vec<usize>, DetectError> {
        if self.pack.is_none() && self.verbs.is_none() {
            return Ok((0..set.rows.len())
                .filter(|&i| {
                    let pack = set.rows[i].pack.as_str();
                    pack == own_pack || !SEED_PACKS.contains(&pack)
                })
                .collect());
        }
        // Names are matched as the vocabulary matches them: in any spelling `name_key`
        // folds together ("JUGGLE" is "juggle").
        let verbs: Option<Vec<String>> = self.verbs.as_ref().map(|v| {
            v.iter()
                .map(|s| name_key(s))
                .filter(|s| !s.is_empty())
                .collect()
        });
        let pack_key = self.pack.as_deref().map(name_key);
        if let (Some(pack), Some(key)) = (&self.pack, &pack_key)
            && !set.rows.iter().any(|r| name_key(&r.pack) == *key)
        {
            return Err(DetectError::Invalid(format!(
                "no interactions in pack `{pack}`"
            )));
        }
        if let Some(verbs) = &verbs {
            for v in verbs {
                if !set.rows.iter().any(|r| name_key(&r.verb) == *v) {
                    return Err(DetectError::Invalid(format!(
                        "no interactions with verb `{v}`"
                    )));
                }
            }
        }
        Ok(set
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| pack_key.as_ref().is_none_or(|p| name_key(&r.pack) == *p))
            .filter(|(_, r)| {
                verbs
                    .as_ref()
                    .is_none_or(|vs| vs.contains(&name_key(&r.verb)))
            })
            .map(|(i, _)| i)
            .collect())
    }
}

/// One image decoded, turned as its EXIF orientation says (when asked), and prepared for
/// the model. Host work: build it off the async threads.
pub struct ImageInput {
    pub input: Prepared,
    /// The file's EXIF orientation (1: as stored).
    pub exif_orientation: u8,
    /// Whether the image was turned to that orientation.
    pub oriented: bool,
    pub decode_time: Duration,
    /// The decoded pixels, when kept (to draw the answer on).
    pub image: Option<RgbImage>,
}

impl ImageInput {
    pub fn decode(
        service: &Service,
        bytes: &[u8],
        limits: DecodeLimits,
        auto_orient: bool,
        keep_image: bool,
    ) -> Result<Self, VisionError> {
        let started = Instant::now();
        let image = decode(bytes, limits)?;
        let exif = exif_orientation(bytes);
        let oriented = auto_orient && exif != 1;
        let image = if oriented { orient(image, exif) } else { image };
        Ok(Self {
            input: service.prepare(&image),
            exif_orientation: exif,
            oriented,
            decode_time: started.elapsed(),
            image: keep_image.then_some(image),
        })
    }
}

/// The engine's answer for one image, with what the front ends report beside it.
pub struct Answer {
    pub detections: ImageDetections,
    pub exif_orientation: u8,
    pub oriented: bool,
    pub decode_time: Duration,
    /// From the image's submission to its answer.
    pub inference_time: Duration,
    pub image: Option<RgbImage>,
}

/// An image in the engine, waiting for its answer.
pub struct PendingAnswer {
    ticket: Ticket,
    submitted: Instant,
    exif_orientation: u8,
    oriented: bool,
    decode_time: Duration,
    image: Option<RgbImage>,
}

impl PendingAnswer {
    pub async fn wait(self) -> Result<Answer, DetectError> {
        let detections = self.ticket.wait().await?;
        Ok(Answer {
            detections,
            exif_orientation: self.exif_orientation,
            oriented: self.oriented,
            decode_time: self.decode_time,
            inference_time: self.submitted.elapsed(),
            image: self.image,
        })
    }
}

/// A request made ready to run: the classifier set every image of it is scored with,
/// and the engine options checked against that set.
#[derive(Clone)]
pub struct DetectPlan {
    pub set: ClassifierHandle,
    pub options: DetectOptions,
    pub deadline: Instant,
}

impl DetectPlan {
    /// Checks `request`, finds the set to score with (the one in service, or when the
    /// request names a newer vocabulary version, the set in service once it has reached
    /// it, waited for at most `vocabulary_wait` and never past `deadline`), and the
    /// classes it may score.
    pub async fn new(
        service: &Service,
        request: &DetectRequest,
        deadline: Instant,
        vocabulary_wait: Duration,
    ) -> Result<Self, DetectError> {
        request.check()?;
        let set = service.classes().ok_or(DetectError::NotReady)?;
        let set = match request.min_vocabulary_version {
            Some(wanted) if set.version < wanted => {
                let wait = vocabulary_wait.min(deadline.saturating_duration_since(Instant::now()));
                match service.classes_at_least(wanted, wait).await {
                    Some(set) => set,
                    None => {
                        let have = service.classes().map_or(set.version, |s| s.version);
                        metrics::counter!("hoiclip_stale_vocabulary_total").increment(1);
                        return Err(DetectError::StaleVocabulary(format!(
                            "this replica scores with vocabulary version {have}; version {wanted} did not arrive within {} ms",
                            wait.as_millis()
                        )));
                    }
                }
            }
            _ => set,
        };
        let options = request.options(&set, &service.info().vocabulary)?;
        Ok(Self {
            set,
            options,
            deadline,
        })
    }

    /// A plan that scores every class of `set` (e.g. the checkpoint's own classifier,
    /// as the official evaluation does) with the request's settings.
    pub fn with_set(
        set: ClassifierHandle,
        request: &DetectRequest,
        deadline: Instant,
    ) -> Result<Self, DetectError> {
        request.check()?;
        Ok(Self {
            options: DetectOptions {
                score_threshold: request.score_threshold,
                max_results: request.top_k,
                candidates: request.candidates(),
                tfe_top_k: request.tfe_top_k,
                classes: None,
                explain: request.explain,
            },
            set,
            deadline,
        })
    }

    /// Queues one image in a place already taken in the engine's queue.
    pub fn submit(
        &self,
        service: &Service,
        image: ImageInput,
        admission: Admission,
    ) -> Result<PendingAnswer, DetectError> {
        let mut pending = self.submit_all(service, vec![image], vec![admission])?;
        pending
            .pop()
            .ok_or(DetectError::Engine(EngineError::Stopped))
    }

    /// Queues images in places already taken, in one command to the worker, so that
    /// those that can share forward passes do.
    fn submit_all(
        &self,
        service: &Service,
        images: Vec<ImageInput>,
        admissions: Vec<Admission>,
    ) -> Result<Vec<PendingAnswer>, DetectError> {
        let mut requests = Vec::with_capacity(images.len());
        let mut rest = Vec::with_capacity(images.len());
        for (image, admission) in images.into_iter().zip(admissions) {
            requests.push((
                Request {
                    input: image.input,
                    options: self.options.clone(),
                    classes: self.set.clone(),
                    deadline: self.deadline,
                },
                admission,
            ));
            rest.push((
                image.exif_orientation,
                image.oriented,
                image.decode_time,
                image.image,
            ));
        }
        let tickets = service.engine().submit_all_admitted(requests)?;
        let submitted = Instant::now();
        Ok(tickets
            .into_iter()
            .zip(rest)
            .map(
                |(ticket, (exif_orientation, oriented, decode_time, image))| PendingAnswer {
                    ticket,
                    submitted,
                    exif_orientation,
                    oriented,
                    decode_time,
                    image,
                },
            )
            .collect())
    }

    /// Every image queued at once (so those that can share forward passes do), in places
    /// already taken, then their answers in order.
    pub async fn run(
        &self,
        service: &Service,
        images: Vec<ImageInput>,
        admissions: Vec<Admission>,
    ) -> Result<Vec<Answer>, DetectError> {
        let pending = self.submit_all(service, images, admissions)?;
        let mut answers = Vec::with_capacity(pending.len());
        for p in pending {
            answers.push(p.wait().await?);
        }
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::ClassRow;

    fn row(pack: &str, verb: &str) -> ClassRow {
        ClassRow {
            interaction_id: 0,
            pack: pack.into(),
            verb_id: 0,
            object_id: None,
            verb: verb.into(),
            object: "thing".into(),
            prompt: String::new(),
        }
    }

    #[test]
    fn candidates_follow_top_k_unless_given_and_never_fall_below_it() {
        let request = DetectRequest::default();
        assert_eq!((request.top_k, request.candidates()), (100, 100));
        let more = DetectRequest {
            top_k: 500,
            ..DetectRequest::default()
        };
        assert_eq!(more.candidates(), 500);
        let fewer = DetectRequest {
            top_k: 5,
            ..DetectRequest::default()
        };
        assert_eq!(fewer.candidates(), OFFICIAL_CANDIDATES);
        let short = DetectRequest {
            top_k: 200,
            candidates: Some(150),
            ..DetectRequest::default()
        };
        assert!(matches!(short.check(), Err(DetectError::Invalid(m)) if m.contains("candidates")));
    }

    #[test]
    fn options_that_mean_nothing_are_refused() {
        for bad in [
            DetectRequest {
                score_threshold: f32::NAN,
                ..Default::default()
            },
            DetectRequest {
                score_threshold: 2.5,
                ..Default::default()
            },
            DetectRequest {
                top_k: 0,
                ..Default::default()
            },
            DetectRequest {
                top_k: MAX_TOP_K + 1,
                ..Default::default()
            },
            DetectRequest {
                verbs: Some(vec![" ".into()]),
                ..Default::default()
            },
            DetectRequest {
                pack: Some("".into()),
                ..Default::default()
            },
            DetectRequest {
                min_vocabulary_version: Some(-1),
                ..Default::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn classes_default_to_the_own_pack_and_user_packs() {
        let set = ClassifierHandle::detached(
            1,
            vec![
                row("hico-det", "ride"),
                row("v-coco", "ride"),
                row("user", "juggle"),
                row("mine", "ride"),
            ],
        );
        let all = DetectRequest::default();
        assert_eq!(all.classes(&set, "hico-det").unwrap(), vec![0, 2, 3]);
        let pack = DetectRequest {
            pack: Some("v-coco".into()),
            ..Default::default()
        };
        assert_eq!(pack.classes(&set, "hico-det").unwrap(), vec![1]);
        let verbs = DetectRequest {
            verbs: Some(vec!["ride".into()]),
            ..Default::default()
        };
        assert_eq!(verbs.classes(&set, "hico-det").unwrap(), vec![0, 1, 3]);
        let unknown = DetectRequest {
            verbs: Some(vec!["fly".into()]),
            ..Default::default()
        };
        assert!(unknown.classes(&set, "hico-det").is_err());
    }
}
