//! Stored examples of verbs (issue 13, item 3): their crops' features go in all or none,
//! are listed and removed per verb, are read back exactly per image-tower fingerprint,
//! and go with their verb.

mod common;

use std::sync::Arc;

use hoiclip::model::clip::tokenizer::ClipTokenizer;
use hoiclip::vocab::Pack;
use hoiclip::vocab::store::{NewExample, NewVerb, VocabError, VocabStore};

const FP: &str = "crc32-vision-test";

async fn store() -> VocabStore {
    let store = VocabStore::open(
        &common::test_db("examples"),
        Arc::new(ClipTokenizer::new().unwrap()),
    )
    .await
    .unwrap();
    store.seed(&Pack::hico_det()).await.unwrap();
    store
}

fn example(object: &str, image: &str, seed: f32) -> NewExample {
    let feat = |k: f32| {
        (0..8)
            .map(|i| seed + k + i as f32 * 0.25)
            .collect::<Vec<f32>>()
    };
    NewExample {
        object: object.into(),
        image: image.into(),
        human_box: [1.0, 2.0, 30.5, 40.0],
        object_box: [20.0, 10.0, 60.0, 35.25],
        human: feat(0.0),
        object_features: feat(100.0),
        union: feat(200.0),
    }
}

async fn verb_id(store: &VocabStore, name: &str) -> i64 {
    store
        .verbs()
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap()
        .id
}

/// A user verb "juggle" with interactions for `objects`.
async fn juggle(store: &VocabStore, objects: &[&str]) -> hoiclip::vocab::store::VerbRecord {
    let new = NewVerb {
        name: "juggle".into(),
        ing: "juggling".into(),
        objects: objects.iter().map(|o| o.to_string()).collect(),
        ..Default::default()
    };
    store.add_verb(new).await.unwrap().0
}

async fn count(store: &VocabStore) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM verb_examples")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn examples_are_stored_listed_read_back_and_removed() {
    let store = store().await;
    let ride = verb_id(&store, "ride").await;
    let before = store.version().await.unwrap();
    let given = [
        example("horse", "img-a", 1.0),
        example("bicycle", "img-b", 2.0),
    ];
    let (records, version) = store.add_examples(ride, FP, &given).await.unwrap();
    assert_eq!(version, before + 1);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].verb, "ride");
    assert_eq!(records[1].object, "bicycle");
    assert_eq!(records[0].human_box, given[0].human_box);
    assert_eq!(records[1].object_box, given[1].object_box);
    assert_eq!(store.examples(ride).await.unwrap(), records);

    let stored = store.example_features(FP).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].image, "img-b");
    assert_eq!(stored[1].human, given[1].human);
    assert_eq!(stored[1].object, given[1].object_features);
    assert_eq!(stored[1].union, given[1].union);
    assert!(
        store
            .example_features("another-tower")
            .await
            .unwrap()
            .is_empty()
    );

    // Removing needs the example's own verb.
    let hold = verb_id(&store, "hold").await;
    let err = store.remove_example(hold, records[0].id).await.unwrap_err();
    assert!(matches!(err, VocabError::NotFound { .. }), "{err}");
    assert_eq!(store.version().await.unwrap(), version);
    let after = store.remove_example(ride, records[0].id).await.unwrap();
    assert_eq!(after, version + 1);
    assert_eq!(store.examples(ride).await.unwrap(), records[1..].to_vec());
}

#[tokio::test]
async fn a_refused_write_stores_nothing() {
    let store = store().await;
    let ride = verb_id(&store, "ride").await;
    let version = store.version().await.unwrap();
    let mut short = example("horse", "img", 0.0);
    short.union.pop();
    let mut flat = example("horse", "img", 0.0);
    flat.object_box = [5.0, 5.0, 5.0, 9.0];
    let mut nan = example("horse", "img", 0.0);
    nan.human[3] = f32::NAN;
    let cases: Vec<(&str, i64, Vec<NewExample>)> = vec![
        (
            "unknown object in the second example",
            ride,
            vec![example("horse", "a", 0.0), example("unicorn", "a", 0.0)],
        ),
        (
            "features of different lengths",
            ride,
            vec![example("horse", "a", 0.0), short],
        ),
        ("a box of zero area", ride, vec![flat]),
        ("non-finite features", ride, vec![nan]),
        ("no examples", ride, vec![]),
        ("unknown verb", 999_999, vec![example("horse", "a", 0.0)]),
    ];
    for (what, verb, examples) in cases {
        let err = store.add_examples(verb, FP, &examples).await.unwrap_err();
        assert!(
            matches!(
                err,
                VocabError::Invalid { .. } | VocabError::NotFound { .. }
            ),
            "{what}: {err}"
        );
        assert_eq!(
            store.version().await.unwrap(),
            version,
            "{what}: version moved"
        );
        assert_eq!(count(&store).await, 0, "{what}: something was stored");
    }
}

#[tokio::test]
async fn a_removed_verb_takes_its_examples_along() {
    let store = store().await;
    let verb = juggle(&store, &["orange"]).await;
    store
        .add_examples(verb.id, FP, &[example("orange", "img", 0.5)])
        .await
        .unwrap();
    assert_eq!(count(&store).await, 1);
    store.remove_verb(verb.id).await.unwrap();
    assert_eq!(count(&store).await, 0);
    let err = store.examples(verb.id).await.unwrap_err();
    assert!(matches!(err, VocabError::NotFound { .. }), "{err}");
}

/// Column `name` of the verb rows of the set in service.
fn verb_column(
    service: &hoiclip::engine::Service,
    sets: &hoiclip::engine::ClassifierSets<common::B>,
    name: &str,
) -> Vec<f32> {
    let view = service.classes().unwrap();
    let set = sets.get(&view).unwrap();
    let v = set.verb_labels.iter().position(|l| l == name).unwrap();
    let w = set.classifier.verb_weight.clone();
    let [e, _] = w.dims();
    w.slice([0..e, v..v + 1])
        .into_data()
        .to_vec::<f32>()
        .unwrap()
}

/// A verb without a trained row takes its row from its examples, once they are stored,
/// and its text row again once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_verbs_row_comes_from_its_examples() {
    use hoiclip::classifier::arithmetic::{rows_by_verb, union_box};
    use hoiclip::vision::preprocess::clip_crop;

    let (service, sets) = common::demo_service_and_sets(&common::test_db("rows")).await;
    let store = service.store();
    let verb = juggle(store, &["orange", "person"]).await;
    service.refresh().await.unwrap();
    let text_row = verb_column(&service, &sets, "juggle");

    let res = service.clip_resolution();
    let image = image::RgbImage::from_fn(96, 64, |x, y| {
        image::Rgb([(2 * x) as u8, (3 * y) as u8, ((x * y) % 255) as u8])
    });
    let boxes = [
        ("orange", [4.0, 6.0, 40.0, 60.0], [30.0, 10.0, 60.0, 30.0]),
        ("orange", [50.0, 2.0, 90.0, 62.0], [10.0, 40.0, 45.0, 63.0]),
        ("person", [2.0, 2.0, 30.0, 50.0], [60.0, 5.0, 95.0, 60.0]),
    ];
    let mut crops = Vec::new();
    for (_, h, o) in &boxes {
        crops.extend([h, o, &union_box(*h, *o)].map(|b| clip_crop(&image, *b, res)));
    }
    let feats = service.engine().embed_images(crops).await.unwrap();
    let examples: Vec<NewExample> = boxes
        .iter()
        .zip(feats.chunks(3))
        .map(|((object, h, o), f)| NewExample {
            object: (*object).into(),
            image: "the-image".into(),
            human_box: *h,
            object_box: *o,
            human: f[0].clone(),
            object_features: f[1].clone(),
            union: f[2].clone(),
        })
        .collect();
    let fingerprint = service.vision_fingerprint().to_string();
    let (records, _) = store
        .add_examples(verb.id, &fingerprint, &examples)
        .await
        .unwrap();
    service.refresh().await.unwrap();
    let learned = verb_column(&service, &sets, "juggle");
    let person = store
        .objects()
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.name == "person")
        .map(|o| o.id);
    let expected = rows_by_verb(&store.example_features(&fingerprint).await.unwrap(), person)
        .remove(&verb.id)
        .unwrap();
    let diff = learned
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff <= 1e-6,
        "the set's row differs from the examples' by {diff}"
    );
    assert_ne!(learned, text_row, "the examples did not change the row");

    // Examples of another image tower are not used.
    let ride = verb_id(store, "ride").await;
    let ride_before = verb_column(&service, &sets, "ride");
    store
        .add_examples(ride, "another-tower", &examples[..1])
        .await
        .unwrap();
    service.refresh().await.unwrap();
    assert_eq!(verb_column(&service, &sets, "ride"), ride_before);

    for r in records {
        store.remove_example(verb.id, r.id).await.unwrap();
    }
    service.refresh().await.unwrap();
    assert_eq!(
        verb_column(&service, &sets, "juggle"),
        text_row,
        "back to the text row"
    );
}
