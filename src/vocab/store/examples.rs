//! Example images of verbs: their crops' CLIP features, for verb rows made by visual
//! semantic arithmetic (`classifier::arithmetic`). Features are keyed by the image
//! tower's fingerprint; a write validates every example before anything is stored.

use super::*;
use sqlx::Row;

/// An example to store: what the caller measured on one image.
#[derive(Debug, Clone)]
pub struct NewExample {
    /// Name of the object in the example.
    pub object: String,
    /// Identifies the source image (examples of one image share it).
    pub image: String,
    pub human_box: [f32; 4],
    pub object_box: [f32; 4],
    /// CLIP image embeddings of the human, object and union crops.
    pub human: Vec<f32>,
    pub object_features: Vec<f32>,
    pub union: Vec<f32>,
}

/// A stored example, as listed (features left out).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExampleRecord {
    pub id: i64,
    pub verb: String,
    pub object: String,
    pub image: String,
    pub human_box: [f32; 4],
    pub object_box: [f32; 4],
    pub fingerprint: String,
    pub created_at: String,
}

/// A stored example's features, for building verb rows.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredExample {
    pub verb_id: i64,
    pub object_id: i64,
    pub image: String,
    pub human: Vec<f32>,
    pub object: Vec<f32>,
    pub union: Vec<f32>,
}

fn blob(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn floats(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn parse_box(text: &str) -> Result<[f32; 4], VocabError> {
    serde_json::from_str(text).map_err(|e| VocabError::Invalid {
        field: "stored example box",
        reason: format!("`{text}`: {e}"),
    })
}

/// Refuses an example whose features or boxes could not have come from the image tower.
fn check(e: &NewExample, dim: usize) -> Result<(), VocabError> {
    let bad = |reason: String| VocabError::Invalid {
        field: "example",
        reason,
    };
    for (name, values) in [
        ("human", &e.human),
        ("object", &e.object_features),
        ("union", &e.union),
    ] {
        if values.len() != dim || values.is_empty() {
            return Err(bad(format!(
                "{name} features have {} values, the others {dim}",
                values.len()
            )));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(bad(format!("{name} features are not finite")));
        }
    }
    for (name, b) in [("human_box", e.human_box), ("object_box", e.object_box)] {
        if b.iter().any(|v| !v.is_finite()) || b[2] <= b[0] || b[3] <= b[1] {
            return Err(bad(format!("{name} {b:?} is not a box of positive area")));
        }
    }
    Ok(())
}

impl VocabStore {
    async fn verb_name(tx: &mut Transaction<'_, Any>, id: i64) -> Result<String, VocabError> {
        sqlx::query_scalar("SELECT name FROM verbs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| VocabError::NotFound {
                what: "verb",
                key: id.to_string(),
            })
    }

    /// Stores examples of verb `verb_id` with features from the image tower of
    /// `fingerprint`, all or none: every example is checked (verb and objects known,
    /// features whole and finite, boxes of positive area) before the first is written.
    /// Returns the stored examples and the new vocabulary version.
    pub async fn add_examples(
        &self,
        verb_id: i64,
        fingerprint: &str,
        examples: &[NewExample],
    ) -> Result<(Vec<ExampleRecord>, i64), VocabError> {
        self.store_examples(verb_id, fingerprint, examples, false)
            .await
    }

    /// As [`Self::add_examples`], removing the verb's earlier examples in the same
    /// transaction: the verb goes from its old examples to the new ones with no state
    /// in between, and keeps the old ones if the new ones are refused.
    pub async fn replace_examples(
        &self,
        verb_id: i64,
        fingerprint: &str,
        examples: &[NewExample],
    ) -> Result<(Vec<ExampleRecord>, i64), VocabError> {
        self.store_examples(verb_id, fingerprint, examples, true)
            .await
    }

    async fn store_examples(
        &self,
        verb_id: i64,
        fingerprint: &str,
        examples: &[NewExample],
        replace: bool,
    ) -> Result<(Vec<ExampleRecord>, i64), VocabError> {
        let Some(first) = examples.first() else {
            return Err(VocabError::Invalid {
                field: "examples",
                reason: "no examples given".into(),
            });
        };
        for e in examples {
            check(e, first.human.len())?;
        }
        let mut tx = self.write_tx().await?;
        Self::verb_name(&mut tx, verb_id).await?;
        let mut object_ids = Vec::with_capacity(examples.len());
        for e in examples {
            object_ids.push(Self::object_id(&mut tx, &e.object).await?);
        }
        if replace {
            sqlx::query("DELETE FROM verb_examples WHERE verb_id = $1")
                .bind(verb_id)
                .execute(&mut *tx)
                .await?;
        }
        let mut ids = Vec::with_capacity(examples.len());
        for (e, object_id) in examples.iter().zip(object_ids) {
            let box_json = |b: [f32; 4]| serde_json::json!(b).to_string();
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO verb_examples (verb_id, object_id, image, human_box, object_box, \
                 fingerprint, human, object, union_crop) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(verb_id)
            .bind(object_id)
            .bind(&e.image)
            .bind(box_json(e.human_box))
            .bind(box_json(e.object_box))
            .bind(fingerprint)
            .bind(blob(&e.human))
            .bind(blob(&e.object_features))
            .bind(blob(&e.union))
            .fetch_one(&mut *tx)
            .await?;
            ids.push(id);
        }
        let version = Self::bump(&mut tx).await?;
        let records = Self::example_records(&mut tx, verb_id).await?;
        tx.commit().await?;
        Ok((
            records
                .into_iter()
                .filter(|r| ids.contains(&r.id))
                .collect(),
            version,
        ))
    }

    async fn example_records(
        tx: &mut Transaction<'_, Any>,
        verb_id: i64,
    ) -> Result<Vec<ExampleRecord>, VocabError> {
        let rows = sqlx::query(
            "SELECT e.id, v.name, o.name, e.image, e.human_box, e.object_box, e.fingerprint, \
             e.created_at FROM verb_examples e JOIN verbs v ON v.id = e.verb_id \
             JOIN objects o ON o.id = e.object_id WHERE e.verb_id = $1 ORDER BY e.id",
        )
        .bind(verb_id)
        .fetch_all(&mut **tx)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ExampleRecord {
                    id: r.get(0),
                    verb: r.get(1),
                    object: r.get(2),
                    image: r.get(3),
                    human_box: parse_box(r.get(4))?,
                    object_box: parse_box(r.get(5))?,
                    fingerprint: r.get(6),
                    created_at: r.get(7),
                })
            })
            .collect()
    }

    /// Checks, writing nothing, that verb `verb_id` and every named object exist: callers
    /// run it before the costly crop embedding (`add_examples` checks again as it writes).
    pub async fn check_example_targets(
        &self,
        verb_id: i64,
        objects: &[&str],
    ) -> Result<(), VocabError> {
        let mut tx = self.pool.begin().await?;
        Self::verb_name(&mut tx, verb_id).await?;
        for object in objects {
            Self::object_id(&mut tx, object).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The examples of verb `verb_id`, oldest first.
    pub async fn examples(&self, verb_id: i64) -> Result<Vec<ExampleRecord>, VocabError> {
        let mut tx = self.pool.begin().await?;
        Self::verb_name(&mut tx, verb_id).await?;
        let records = Self::example_records(&mut tx, verb_id).await?;
        tx.commit().await?;
        Ok(records)
    }

    /// Removes example `example_id` of verb `verb_id`; returns the new version.
    pub async fn remove_example(&self, verb_id: i64, example_id: i64) -> Result<i64, VocabError> {
        let mut tx = self.write_tx().await?;
        Self::verb_name(&mut tx, verb_id).await?;
        let removed = sqlx::query("DELETE FROM verb_examples WHERE id = $1 AND verb_id = $2")
            .bind(example_id)
            .bind(verb_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 0 {
            return Err(VocabError::NotFound {
                what: "example",
                key: format!("{example_id} of verb {verb_id}"),
            });
        }
        let version = Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Every stored example's features from the image tower of `fingerprint`.
    pub async fn example_features(
        &self,
        fingerprint: &str,
    ) -> Result<Vec<StoredExample>, VocabError> {
        let rows = sqlx::query(
            "SELECT verb_id, object_id, image, human, object, union_crop FROM verb_examples \
             WHERE fingerprint = $1 ORDER BY id",
        )
        .bind(fingerprint)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredExample {
                verb_id: r.get(0),
                object_id: r.get(1),
                image: r.get(2),
                human: floats(r.get::<&[u8], _>(3)),
                object: floats(r.get::<&[u8], _>(4)),
                union: floats(r.get::<&[u8], _>(5)),
            })
            .collect())
    }
}
