//! Stored examples of verbs (issue 13, item 3): their crops' features go in all or none,
//! are listed and removed per verb, are read back exactly per image-tower fingerprint,
//! and go with their verb.

use std::sync::Arc;

use hoiclip::model::clip::tokenizer::ClipTokenizer;
use hoiclip::vocab::Pack;
use hoiclip::vocab::store::{NewExample, NewVerb, VocabError, VocabStore};

const FP: &str = "crc32-vision-test";

async fn store() -> VocabStore {
    let store = VocabStore::open("sqlite::memory:", Arc::new(ClipTokenizer::new().unwrap()))
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
    let (verb, _, _) = store
        .add_verb(NewVerb {
            name: "juggle".into(),
            ing: "juggling".into(),
            objects: vec!["orange".into()],
            ..Default::default()
        })
        .await
        .unwrap();
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
