//! The stored rows as the rest of the program reads them, and the queries that read them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerbRecord {
    pub id: i64,
    pub name: String,
    pub ing: String,
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub id: i64,
    pub name: String,
    pub prompt: String,
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionRecord {
    pub id: i64,
    pub pack: String,
    pub verb_id: i64,
    pub verb: String,
    pub object_id: Option<i64>,
    pub object: Option<String>,
    pub prompt: String,
    /// Row in the pack's official classifier (seed entries only).
    pub seed_index: Option<i64>,
    pub origin: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRecord {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub origin: String,
    pub interactions: i64,
}

/// Everything a classifier is built from, read in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct VocabSnapshot {
    pub version: i64,
    pub verbs: Vec<VerbRecord>,
    pub objects: Vec<ObjectRecord>,
    /// Enabled interactions, seed rows in official order per pack, then user rows by id.
    pub interactions: Vec<InteractionRecord>,
    /// Official row order of each seed pack: verb ids and object ids.
    pub pack_verbs: HashMap<String, Vec<i64>>,
    pub pack_objects: HashMap<String, Vec<i64>>,
}

/// A new verb and the interactions to create with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewVerb {
    pub name: String,
    /// The -ing phrase for prompts ("juggling", "sitting on").
    pub ing: String,
    /// Existing objects it applies to; prompts come from the template
    /// "a photo of a person {ing} {a/an} {object}".
    #[serde(default)]
    pub objects: Vec<String>,
    /// Explicit (object, prompt) pairs instead of the template.
    #[serde(default)]
    pub prompts: Vec<(String, String)>,
    /// Pack to add the interactions to (default "user"; created if missing).
    #[serde(default)]
    pub pack: Option<String>,
}

impl VocabStore {
    pub async fn verbs(&self) -> Result<Vec<VerbRecord>, VocabError> {
        let rows = sqlx::query("SELECT id, name, ing, origin FROM verbs ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(Self::verb_row).collect())
    }

    pub async fn verb(&self, id: i64) -> Result<VerbRecord, VocabError> {
        Self::verb_in(&mut *self.pool.acquire().await?, id).await
    }

    pub(super) async fn verb_in(
        conn: &mut sqlx::AnyConnection,
        id: i64,
    ) -> Result<VerbRecord, VocabError> {
        let r = sqlx::query("SELECT id, name, ing, origin FROM verbs WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| VocabError::NotFound {
                what: "verb",
                key: id.to_string(),
            })?;
        Ok(Self::verb_row(&r))
    }

    pub async fn objects(&self) -> Result<Vec<ObjectRecord>, VocabError> {
        let rows = sqlx::query("SELECT id, name, prompt, origin FROM objects ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(Self::object_row).collect())
    }

    pub async fn object(&self, id: i64) -> Result<ObjectRecord, VocabError> {
        Self::object_in(&mut *self.pool.acquire().await?, id).await
    }

    pub(super) async fn object_in(
        conn: &mut sqlx::AnyConnection,
        id: i64,
    ) -> Result<ObjectRecord, VocabError> {
        let r = sqlx::query("SELECT id, name, prompt, origin FROM objects WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| VocabError::NotFound {
                what: "object",
                key: id.to_string(),
            })?;
        Ok(Self::object_row(&r))
    }

    pub(super) fn verb_row(r: &sqlx::any::AnyRow) -> VerbRecord {
        VerbRecord {
            id: r.get(0),
            name: r.get(1),
            ing: r.get(2),
            origin: r.get(3),
        }
    }

    pub(super) fn object_row(r: &sqlx::any::AnyRow) -> ObjectRecord {
        ObjectRecord {
            id: r.get(0),
            name: r.get(1),
            prompt: r.get(2),
            origin: r.get(3),
        }
    }

    const INTERACTION_SELECT: &'static str = "SELECT i.id, p.name, i.verb_id, v.name, i.object_id, o.name, i.prompt, \
         i.seed_index, i.origin, i.enabled FROM interactions i JOIN packs p ON p.id = i.pack_id \
         JOIN verbs v ON v.id = i.verb_id LEFT JOIN objects o ON o.id = i.object_id";

    pub(super) fn interaction_row(r: &sqlx::any::AnyRow) -> InteractionRecord {
        InteractionRecord {
            id: r.get(0),
            pack: r.get(1),
            verb_id: r.get(2),
            verb: r.get(3),
            object_id: r.get(4),
            object: r.get(5),
            prompt: r.get(6),
            seed_index: r.get(7),
            origin: r.get(8),
            enabled: r.get::<i64, _>(9) != 0,
        }
    }

    /// Interactions, optionally of one pack; seed rows in official order first.
    pub async fn interactions(
        &self,
        pack: Option<&str>,
    ) -> Result<Vec<InteractionRecord>, VocabError> {
        let sql = format!(
            "{} WHERE ($1 IS NULL OR p.name = $1) ORDER BY i.seed_index IS NULL, p.id, i.seed_index, i.id",
            Self::INTERACTION_SELECT
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(pack)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(Self::interaction_row).collect())
    }

    pub async fn interaction(&self, id: i64) -> Result<InteractionRecord, VocabError> {
        Self::interaction_in(&mut *self.pool.acquire().await?, id).await
    }

    pub(super) async fn interaction_in(
        conn: &mut sqlx::AnyConnection,
        id: i64,
    ) -> Result<InteractionRecord, VocabError> {
        let sql = format!("{} WHERE i.id = $1", Self::INTERACTION_SELECT);
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| VocabError::NotFound {
                what: "interaction",
                key: id.to_string(),
            })?;
        Ok(Self::interaction_row(&r))
    }

    pub async fn packs(&self) -> Result<Vec<PackRecord>, VocabError> {
        let rows = sqlx::query(
            "SELECT p.id, p.name, p.description, p.origin, COUNT(i.id) FROM packs p \
             LEFT JOIN interactions i ON i.pack_id = p.id GROUP BY p.id ORDER BY p.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| PackRecord {
                id: r.get(0),
                name: r.get(1),
                description: r.get(2),
                origin: r.get(3),
                interactions: r.get(4),
            })
            .collect())
    }

    /// Everything the classifier needs, consistent with one version.
    pub async fn snapshot(&self) -> Result<VocabSnapshot, VocabError> {
        let mut tx = self.read_tx().await?;
        let version: i64 =
            sqlx::query_scalar("SELECT version FROM vocabulary_version WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
        let verbs = sqlx::query("SELECT id, name, ing, origin FROM verbs ORDER BY id")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(Self::verb_row)
            .collect();
        let objects = sqlx::query("SELECT id, name, prompt, origin FROM objects ORDER BY id")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(Self::object_row)
            .collect();
        let sql = format!(
            "{} WHERE i.enabled = 1 ORDER BY i.seed_index IS NULL, p.id, i.seed_index, i.id",
            Self::INTERACTION_SELECT
        );
        let interactions = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(Self::interaction_row)
            .collect();
        let mut pack_verbs: HashMap<String, Vec<i64>> = HashMap::new();
        for r in sqlx::query("SELECT p.name, pv.verb_id FROM pack_verbs pv JOIN packs p ON p.id = pv.pack_id ORDER BY p.id, pv.seed_index")
            .fetch_all(&mut *tx)
            .await?
        {
            pack_verbs.entry(r.get(0)).or_default().push(r.get(1));
        }
        let mut pack_objects: HashMap<String, Vec<i64>> = HashMap::new();
        for r in sqlx::query("SELECT p.name, po.object_id FROM pack_objects po JOIN packs p ON p.id = po.pack_id ORDER BY p.id, po.seed_index")
            .fetch_all(&mut *tx)
            .await?
        {
            pack_objects.entry(r.get(0)).or_default().push(r.get(1));
        }
        tx.commit().await?;
        Ok(VocabSnapshot {
            version,
            verbs,
            objects,
            interactions,
            pack_verbs,
            pack_objects,
        })
    }
}
