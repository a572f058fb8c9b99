//! The vocabulary store and classifier rebuilds: seeding, adding, removing, restarting,
//! concurrency and bad input. The text tower is the tiny CLIP fixture (fast); trained rows
//! come from the tiny HOICLIP fixture checkpoint.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use burn::prelude::*;
use common::{B, fixture};
use hoiclip::classifier::{
    ClassifierError, ClassifierSet, TEXT_BATCH, TrainedRows, assemble, embed_ids, embed_prompts,
    text_fingerprint,
};
use hoiclip::engine::{
    ClassifierHandle, ClassifierSets, ClassifierSync, Engine, EngineError, EngineOptions, Request,
    Runner, SetSource,
};
use hoiclip::model::clip::tokenizer::ClipTokenizer;
use hoiclip::model::clip::{Clip, ClipConfig, load_plan};
use hoiclip::model::hoiclip::{self as detector_model, HoiclipConfig};
use hoiclip::model::weights::Checkpoint;
use hoiclip::vocab::pack::{Interaction, NamedObject, Pack, Verb};
use hoiclip::vocab::store::{NewVerb, VocabError, VocabStore};

fn tokenizer() -> Arc<ClipTokenizer> {
    Arc::new(ClipTokenizer::new().unwrap())
}

fn tiny_clip() -> Clip<B> {
    let config: ClipConfig =
        serde_json::from_str(&std::fs::read_to_string(fixture("clip/tiny_config.json")).unwrap())
            .unwrap();
    let ckpt = Checkpoint::open(fixture("clip/hoiclip_layout.pth")).unwrap();
    let mut clip = config.init::<B>(&Default::default());
    ckpt.load_into(&mut clip, &load_plan(&ckpt)).unwrap();
    clip
}

/// The tiny detector's vocabulary as a seed pack (its checkpoint rows follow this order).
fn tiny_pack() -> Pack {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("hoiclip/config.json")).unwrap())
            .unwrap();
    let names: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("hoiclip/prompts.json")).unwrap())
            .unwrap();
    let strs = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let ing = ["carrying", "holding", "riding", "flying", "and"];
    Pack {
        zero_shot: Default::default(),
        correct_matrix: None,
        name: "tiny".into(),
        verbs: strs(&names["verbs"])
            .into_iter()
            .enumerate()
            .map(|(i, n)| Verb {
                index: i,
                name: n,
                ing: ing[i].into(),
            })
            .collect(),
        objects: strs(&names["objects"])
            .into_iter()
            .enumerate()
            .map(|(i, n)| NamedObject { index: i, name: n })
            .collect(),
        object_prompts: strs(&names["object"]),
        interactions: strs(&names["hoi"])
            .into_iter()
            .enumerate()
            .map(|(i, prompt)| Interaction {
                index: i,
                verb: cfg["hoi_verb"][i].as_u64().unwrap() as usize,
                object: cfg["hoi_object"][i].as_u64().unwrap() as usize,
                prompt,
            })
            .collect(),
    }
}

/// An engine whose worker holds only a text tower (and optionally trained rows): builds
/// classifier sets the way the server's runner does, without a detector.
struct TextRunner {
    clip: Clip<B>,
    trained: Option<TrainedRows<B>>,
    registry: ClassifierSets<B>,
}

impl Runner for TextRunner {
    fn run(
        &mut self,
        batch: &[Request],
    ) -> Vec<Result<hoiclip::detector::ImageDetections, EngineError>> {
        batch
            .iter()
            .map(|_| Err(EngineError::Unsupported("detection")))
            .collect()
    }

    fn embed_text(&mut self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        embed_ids(&self.clip, ids).map_err(|e| EngineError::Failed(e.to_string()))
    }

    fn install(&mut self, source: SetSource) -> Result<ClassifierHandle, ClassifierError> {
        let SetSource::Vocabulary {
            snapshot,
            embeddings,
            verb_rows,
        } = source
        else {
            return Err(ClassifierError::Unsupported("checkpoint sets"));
        };
        let dim = self.clip.text_projection.dims()[1];
        let set = assemble(
            &snapshot,
            &embeddings,
            &verb_rows,
            self.trained.as_ref(),
            dim,
            &Default::default(),
        )?;
        Ok(self.registry.register(Arc::new(set)))
    }
}

/// A classifier service over `store` whose text passes run `clip` on an engine worker;
/// the registry holds the sets it builds.
fn text_service(
    store: VocabStore,
    clip: &Clip<B>,
    trained: Option<TrainedRows<B>>,
) -> (ClassifierSync, ClassifierSets<B>) {
    let registry = ClassifierSets::default();
    let fingerprint = text_fingerprint(clip).unwrap();
    let pack = trained.as_ref().map(|t| t.pack.clone());
    let runner = TextRunner {
        clip: clip.clone(),
        trained,
        registry: registry.clone(),
    };
    let engine = Engine::start(move || runner, EngineOptions::default());
    (
        ClassifierSync::new(store, tokenizer(), fingerprint, pack, engine),
        registry,
    )
}

/// The tensors behind a view.
fn tensors(registry: &ClassifierSets<B>, view: &ClassifierHandle) -> Arc<ClassifierSet<B>> {
    registry.get(view).expect("the view's set is registered")
}

async fn memory_store() -> VocabStore {
    VocabStore::open(&common::test_db("vocab"), tokenizer())
        .await
        .unwrap()
}

#[tokio::test]
async fn seeding_is_idempotent() {
    let store = memory_store().await;
    assert!(store.seed(&Pack::hico_det()).await.unwrap());
    let v1 = store.version().await.unwrap();
    assert!(!store.seed(&Pack::hico_det()).await.unwrap());
    assert_eq!(store.version().await.unwrap(), v1);
    assert_eq!(store.verbs().await.unwrap().len(), 117);
    assert_eq!(store.objects().await.unwrap().len(), 80);
    let hico = store.interactions(Some("hico-det")).await.unwrap();
    assert_eq!(hico.len(), 600);
    // Official order: row i is HOI i.
    for (i, it) in hico.iter().enumerate() {
        assert_eq!(it.seed_index, Some(i as i64));
        assert_eq!(it.prompt, Pack::hico_det().interactions[i].prompt);
    }
    // V-COCO shares objects, adds its own verbs and interactions.
    assert!(store.seed(&Pack::v_coco()).await.unwrap());
    assert_eq!(store.objects().await.unwrap().len(), 80);
    assert_eq!(store.interactions(Some("v-coco")).await.unwrap().len(), 263);
}

#[tokio::test]
async fn new_verb_is_in_the_next_set_with_its_text_embedding_and_removal_takes_it_out() {
    let store = memory_store().await;
    store.seed(&tiny_pack()).await.unwrap();
    let clip = tiny_clip();
    let (service, registry) = text_service(store.clone(), &clip, None);
    let before = service.refresh().await.unwrap();
    assert_eq!(before.rows.len(), 10);

    let (verb, interactions, version) = store
        .add_verb(NewVerb {
            name: "juggle".into(),
            ing: "juggling".into(),
            objects: vec!["cup".into(), "kite".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(verb.origin, "user");
    assert_eq!(interactions.len(), 2);
    assert_eq!(interactions[0].prompt, "a photo of a person juggling a cup");
    let view = service.refresh().await.unwrap();
    let after = tensors(&registry, &view);
    assert_eq!(after.version, version);
    assert_eq!(after.rows.len(), 12);
    let row = after
        .rows
        .iter()
        .position(|r| r.prompt == "a photo of a person juggling a cup")
        .unwrap();
    // The row is the normalised text-tower embedding of the prompt, with bias 0.
    let expected = embed_prompts(
        &clip,
        &tokenizer(),
        &["a photo of a person juggling a cup".to_string()],
        TEXT_BATCH,
    )
    .unwrap();
    let col: Vec<f32> = after
        .classifier
        .hoi_weight
        .clone()
        .narrow(1, row, 1)
        .into_data()
        .to_vec()
        .unwrap();
    let diff = col
        .iter()
        .zip(&expected[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-6, "{diff}");
    let bias: Vec<f32> = after
        .classifier
        .hoi_bias
        .clone()
        .into_data()
        .to_vec()
        .unwrap();
    assert_eq!(bias[row], 0.0);
    assert_eq!(after.object_labels[after.hoi_object[row]], "cup");
    // Only the new prompts were embedded on the second build.
    let (_, embedded) = service.text_passes();
    assert_eq!(embedded, 10 + 5 + 6 + 1 + 2 + 1); // first build: 10 HOI + 5 verb + 6 object + nothing; then 2 HOI + 1 verb

    let version = store.remove_verb(verb.id).await.unwrap();
    drop(view);
    let removed = service.refresh().await.unwrap();
    assert_eq!(removed.version, version);
    assert_eq!(removed.rows.len(), 10);
    assert!(!removed.rows.iter().any(|r| r.verb == "juggle"));
    // The set the first request held is untouched, and still registered; the replaced
    // middle one is freed once nothing refers to it.
    assert_eq!(before.rows.len(), 10);
    assert_eq!(tensors(&registry, &before).rows.len(), 10);
    drop(after);
    assert_eq!(registry.len(), 2, "the first and the last set");
}

#[tokio::test]
async fn trained_rows_come_from_the_checkpoint_and_new_rows_from_text() {
    let config: HoiclipConfig =
        serde_json::from_str(&std::fs::read_to_string(fixture("hoiclip/config.json")).unwrap())
            .unwrap();
    let ckpt = Checkpoint::open(fixture("hoiclip/checkpoint.pth")).unwrap();
    let (model, _) = detector_model::load::<B>(&config, &ckpt, &Default::default()).unwrap();
    let trained = model.trained_classifier();
    let store = memory_store().await;
    store.seed(&tiny_pack()).await.unwrap();
    store
        .add_interaction("ride", "kite", None, None)
        .await
        .unwrap();
    let (service, registry) = text_service(
        store.clone(),
        &model.clip_model,
        Some(TrainedRows {
            pack: "tiny".into(),
            classifier: trained.clone(),
            correct_matrix: None,
        }),
    );
    let set = tensors(&registry, &service.refresh().await.unwrap());
    assert_eq!(set.rows.len(), 11);
    let cols = |t: &Tensor<B, 2>, n: usize| {
        t.clone()
            .narrow(1, 0, n)
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    // Seed rows: exactly the checkpoint's (weights and bias), verbs and objects too.
    let ours: Vec<f32> = set
        .classifier
        .hoi_weight
        .clone()
        .narrow(1, 0, 10)
        .into_data()
        .to_vec()
        .unwrap();
    assert_eq!(ours, cols(&trained.hoi_weight, 10));
    let bias: Vec<f32> = set
        .classifier
        .hoi_bias
        .clone()
        .into_data()
        .to_vec()
        .unwrap();
    let trained_bias: Vec<f32> = trained.hoi_bias.clone().into_data().to_vec().unwrap();
    assert_eq!(&bias[..10], &trained_bias[..]);
    assert_eq!(bias[10], 0.0);
    assert_eq!(
        cols(&set.classifier.verb_weight, 5),
        cols(&trained.verb_weight, 5)
    );
    assert_eq!(
        cols(&set.classifier.obj_weight, 6),
        cols(&trained.obj_weight, 6)
    );
    // With the trained classifier, the detector's logits are unchanged for seed classes.
    assert_eq!(
        set.classifier.verb2hoi.clone().narrow(1, 0, 10).into_data(),
        trained.verb2hoi.clone().into_data()
    );
}

#[tokio::test]
async fn restart_keeps_user_vocabulary_and_needs_no_text_tower_for_cached_prompts() {
    let dir = std::env::temp_dir().join(format!("hoiclip-vocab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}/data/vocab.db", dir.display());
    let clip = tiny_clip();
    {
        let store = VocabStore::open(&url, tokenizer()).await.unwrap();
        store.seed(&tiny_pack()).await.unwrap();
        store
            .add_verb(NewVerb {
                name: "kick".into(),
                ing: "kicking".into(),
                objects: vec!["cup".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let (service, _) = text_service(store, &clip, None);
        service.refresh().await.unwrap();
        assert!(service.text_passes().0 > 0);
    }
    let store = VocabStore::open(&url, tokenizer()).await.unwrap();
    assert!(!store.seed(&tiny_pack()).await.unwrap());
    assert!(
        store
            .verbs()
            .await
            .unwrap()
            .iter()
            .any(|v| v.name == "kick")
    );
    let (service, _) = text_service(store, &clip, None);
    let set = service.refresh().await.unwrap();
    assert_eq!(set.rows.len(), 11);
    assert_eq!(
        service.text_passes(),
        (0, 0),
        "every prompt came from the cache"
    );
    // Other weights: another fingerprint, so nothing stale is reused.
    let mut other = tiny_clip();
    other.text_projection = burn::module::Param::from_tensor(other.text_projection.val() * 2.0);
    assert_ne!(
        text_fingerprint(&other).unwrap(),
        text_fingerprint(&clip).unwrap()
    );
    let store = VocabStore::open(&url, tokenizer()).await.unwrap();
    let (service, _) = text_service(store, &other, None);
    service.refresh().await.unwrap();
    assert!(service.text_passes().1 > 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_never_expose_a_half_built_set() {
    let store = memory_store().await;
    store.seed(&tiny_pack()).await.unwrap();
    let (service, registry) = text_service(store.clone(), &tiny_clip(), None);
    let service = Arc::new(service);
    service.refresh().await.unwrap();
    let writer = {
        let (store, service) = (store.clone(), service.clone());
        tokio::spawn(async move {
            for i in 0..8 {
                store
                    .add_verb(NewVerb {
                        name: format!("verb{i}"),
                        ing: format!("doing{i}"),
                        objects: vec!["cup".into()],
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                service.refresh().await.unwrap();
            }
        })
    };
    let mut last = 0;
    let mut seen = 0;
    while !writer.is_finished() {
        let set = tensors(&registry, &service.current().unwrap());
        let c = set.rows.len();
        assert_eq!(set.classifier.hoi_weight.dims()[1], c);
        assert_eq!(set.classifier.hoi_bias.dims()[0], c);
        assert_eq!(set.hoi_object.len(), c);
        assert_eq!(set.classifier.verb2hoi.dims()[1], c);
        assert!(set.version >= last, "versions never go back");
        last = set.version;
        seen += 1;
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert!(seen > 0);
    assert_eq!(service.current().unwrap().rows.len(), 18);
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_writes_nothing() {
    let store = memory_store().await;
    store.seed(&tiny_pack()).await.unwrap();
    let version = store.version().await.unwrap();
    let add = |name: &str, ing: &str, objects: &[&str]| NewVerb {
        name: name.into(),
        ing: ing.into(),
        objects: objects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let cases = [
        (add("", "x", &["cup"]), "empty name"),
        (add(&"v".repeat(65), "x", &["cup"]), "long name"),
        (add("ok", "   ", &["cup"]), "empty ing"),
        (
            NewVerb {
                name: "ok".into(),
                ing: "ok".into(),
                prompts: vec![("cup".into(), "a photo of a very ".repeat(20))],
                ..Default::default()
            },
            "long prompt",
        ),
        (add("ride", "riding", &["cup"]), "duplicate"),
        (add("fresh", "freshing", &["unicorn"]), "unknown object"),
        (add("tab\tname\u{7}", "x", &["cup"]), "control char"),
    ];
    for (input, why) in cases {
        let err = store.add_verb(input).await.unwrap_err();
        let ok = match why {
            "duplicate" => matches!(err, VocabError::Duplicate { .. }),
            "unknown object" => matches!(err, VocabError::NotFound { what: "object", .. }),
            "long prompt" => matches!(err, VocabError::PromptTooLong { .. }),
            _ => matches!(err, VocabError::Invalid { .. }),
        };
        assert!(ok, "{why}: {err:?}");
    }
    assert_eq!(store.version().await.unwrap(), version, "nothing written");
    assert!(
        !store
            .verbs()
            .await
            .unwrap()
            .iter()
            .any(|v| v.name == "fresh"),
        "rolled back"
    );
    // Seed entries cannot be removed; unknown ids are not found.
    let ride = store
        .verbs()
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.name == "ride")
        .unwrap();
    assert!(matches!(
        store.remove_verb(ride.id).await,
        Err(VocabError::SeedEntry { .. })
    ));
    assert!(matches!(
        store.remove_object(9999).await,
        Err(VocabError::NotFound { .. })
    ));
    assert!(matches!(
        store.add_object("kite", None).await,
        Err(VocabError::Duplicate { .. })
    ));
    // Seed packs take no user entries.
    assert!(matches!(
        store
            .add_interaction("ride", "horse", None, Some("tiny"))
            .await,
        Err(VocabError::SeedPack { .. })
    ));
    assert_eq!(store.version().await.unwrap(), version);
    store
        .add_interaction("ride", "horse", None, Some("mine"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .add_interaction("ride", "horse", None, Some("mine"))
            .await,
        Err(VocabError::Duplicate { .. })
    ));
}

#[tokio::test]
async fn packs_export_and_import() {
    let store = memory_store().await;
    store.seed(&tiny_pack()).await.unwrap();
    store.add_object("frisbee", None).await.unwrap();
    store
        .add_verb(NewVerb {
            name: "throw".into(),
            ing: "throwing".into(),
            prompts: vec![(
                "frisbee".into(),
                "a photo of a person throwing a frisbee in a park".into(),
            )],
            pack: Some("sports".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let export = store.export_pack("sports").await.unwrap();
    assert_eq!(export.interactions.len(), 1);
    assert_eq!(export.objects[0].name, "frisbee");
    let json = serde_json::to_string(&export).unwrap();

    let other = memory_store().await;
    other.seed(&tiny_pack()).await.unwrap();
    other
        .import_pack(&serde_json::from_str(&json).unwrap())
        .await
        .unwrap();
    let imported = other.interactions(Some("sports")).await.unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(
        imported[0].prompt,
        "a photo of a person throwing a frisbee in a park"
    );
    // Importing the same pack again is a retry: nothing is written, the version stays.
    let version = other.version().await.unwrap();
    assert_eq!(other.import_pack(&export).await.unwrap(), version);
    let mut changed = export.clone();
    changed.interactions[0].prompt = "a photo of a person throwing a frisbee on a beach".into();
    assert!(matches!(
        other.import_pack(&changed).await,
        Err(VocabError::Duplicate { what: "pack", .. })
    ));
    assert_eq!(other.version().await.unwrap(), version);
    assert!(matches!(
        store.export_pack("nope").await,
        Err(VocabError::NotFound { .. })
    ));
    let packs: HashMap<String, i64> = other
        .packs()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.interactions))
        .collect();
    assert_eq!(packs["sports"], 1);
    assert_eq!(packs["tiny"], 10);
}

#[tokio::test]
async fn a_registered_interaction_is_detectable_in_the_next_request() {
    let device = Default::default();
    let detector = hoiclip::detector::Detector::<B>::demo(&device).unwrap();
    let store = memory_store().await;
    store.seed(&Pack::hico_det()).await.unwrap();
    let (service, registry) = text_service(
        store.clone(),
        &detector.model().clip_model,
        detector.trained_rows(),
    );
    let set = service.refresh().await.unwrap();
    assert_eq!(set.rows.len(), 600);
    store
        .add_verb(NewVerb {
            name: "juggle".into(),
            ing: "juggling".into(),
            objects: vec!["orange".into(), "apple".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let set = tensors(&registry, &service.refresh().await.unwrap());
    assert_eq!(set.rows.len(), 602);
    let img = hoiclip::vision::decode(
        &std::fs::read(fixture("hoiclip/img0.png")).unwrap(),
        Default::default(),
    )
    .unwrap();
    // Restricted to the new verb, the detections are the new interactions.
    let new: Vec<usize> = (0..set.rows.len())
        .filter(|&i| set.rows[i].verb == "juggle")
        .collect();
    assert_eq!(new.len(), 2);
    let options = hoiclip::detector::DetectOptions {
        classes: Some(new.clone()),
        ..Default::default()
    };
    let out = detector.detect_with_set(&[img], &options, &set).unwrap();
    assert!(!out[0].detections.is_empty());
    for d in &out[0].detections {
        assert!(new.contains(&d.interaction_index));
        assert_eq!(d.verb, "juggle");
        assert!(
            d.interaction == "a photo of a person juggling an orange"
                || d.interaction == "a photo of a person juggling an apple"
        );
    }
}
