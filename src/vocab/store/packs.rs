//! Packs in their portable JSON form: export, and an import that validates everything
//! before writing.

use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

use super::*;

/// The two tables an import may add rows to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Table {
    Verbs,
    Objects,
}

/// The tables whose rows are found by name.
#[derive(Clone, Copy)]
pub(super) enum Named {
    Verbs,
    Objects,
    Packs,
}

impl VocabStore {
    /// A pack as JSON-ready data (the plugin unit): verbs, objects and interactions by name.
    pub async fn export_pack(&self, name: &str) -> Result<PackExport, VocabError> {
        // The pack's stored spelling: any spelling `name_key` folds to it finds it.
        let packs = self.packs().await?;
        let key = name_key(name);
        let Some(stored) = packs
            .iter()
            .find(|p| p.name == name)
            .or_else(|| packs.iter().find(|p| name_key(&p.name) == key))
        else {
            return Err(VocabError::NotFound {
                what: "pack",
                key: name.into(),
            });
        };
        let name = stored.name.as_str();
        let interactions = self.interactions(Some(name)).await?;
        let verbs = self.verbs().await?;
        let objects = self.objects().await?;
        let used_verbs: Vec<VerbRecord> = verbs
            .into_iter()
            .filter(|v| interactions.iter().any(|i| i.verb_id == v.id))
            .collect();
        let used_objects: Vec<ObjectRecord> = objects
            .into_iter()
            .filter(|o| interactions.iter().any(|i| i.object_id == Some(o.id)))
            .collect();
        Ok(PackExport {
            name: name.to_string(),
            verbs: used_verbs
                .into_iter()
                .map(|v| ExportVerb {
                    name: v.name,
                    ing: v.ing,
                })
                .collect(),
            objects: used_objects
                .into_iter()
                .map(|o| ExportObject {
                    name: o.name,
                    prompt: o.prompt,
                })
                .collect(),
            interactions: interactions
                .into_iter()
                .map(|i| ExportInteraction {
                    verb: i.verb,
                    object: i.object,
                    prompt: i.prompt,
                })
                .collect(),
        })
    }

    /// An existing verb or object name that is `name` spelled another way ("Ride" for
    /// "ride", see [`name_key`]): a second class under another spelling would only split
    /// the scores.
    pub(super) async fn same_but_case(
        tx: &mut Transaction<'_, Any>,
        table: Table,
        name: &str,
    ) -> Result<Option<String>, VocabError> {
        let named = match table {
            Table::Verbs => Named::Verbs,
            Table::Objects => Named::Objects,
        };
        Ok(Self::stored_name(tx, named, name)
            .await?
            .filter(|stored| stored != name))
    }

    /// Refuses `name` when another spelling of it exists (see [`Self::same_but_case`]).
    pub(super) async fn refuse_same_but_case(
        tx: &mut Transaction<'_, Any>,
        table: Table,
        name: &str,
    ) -> Result<(), VocabError> {
        match Self::same_but_case(tx, table, name).await? {
            Some(existing) => Err(VocabError::Duplicate {
                what: match table {
                    Table::Verbs => "verb",
                    Table::Objects => "object",
                },
                name: format!("{name}` (as `{existing}`"),
            }),
            None => Ok(()),
        }
    }

    /// Creates a verb or object for an import, or reuses an existing one with the same
    /// `ing` / prompt; a different one is a conflict (never silently kept).
    pub(super) async fn reuse_or_insert(
        tx: &mut Transaction<'_, Any>,
        table: Table,
        name: &str,
        value: &str,
    ) -> Result<(), VocabError> {
        let (what, field, select, insert) = match table {
            Table::Verbs => (
                "verb",
                "ing",
                "SELECT ing FROM verbs WHERE name = $1",
                "INSERT INTO verbs (name, ing, origin) VALUES ($1, $2, 'user')",
            ),
            Table::Objects => (
                "object",
                "prompt",
                "SELECT prompt FROM objects WHERE name = $1",
                "INSERT INTO objects (name, prompt, origin) VALUES ($1, $2, 'user')",
            ),
        };
        // Another spelling of a stored name is that name (see `name_key`).
        let named = match table {
            Table::Verbs => Named::Verbs,
            Table::Objects => Named::Objects,
        };
        let stored = Self::stored_name(tx, named, name).await?;
        let name = stored.as_deref().unwrap_or(name);
        let existing: Option<String> = sqlx::query_scalar(select)
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
        match existing {
            Some(old) if old != value => Err(VocabError::Mismatch {
                what,
                name: name.to_string(),
                field,
                existing: old,
                given: value.to_string(),
            }),
            Some(_) => Ok(()),
            // No spelling of it is stored (`stored_name` found none): a new entry.
            None => {
                sqlx::query(insert)
                    .bind(name)
                    .bind(value)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
        }
    }

    /// Imports a pack exported by [`export_pack`](Self::export_pack) as user entries, in one
    /// transaction: missing verbs and objects are created, existing ones reused when they
    /// agree. Everything a rebuild will embed is checked before anything is written, and
    /// any refusal rolls the whole import back.
    pub async fn import_pack(&self, pack: &PackExport) -> Result<i64, VocabError> {
        let name = clean_name("name", &pack.name)?;
        let mut verbs: Vec<(String, String)> = Vec::with_capacity(pack.verbs.len());
        for v in &pack.verbs {
            let (vname, ing) = (
                clean_name("verbs[].name", &v.name)?,
                clean_name("verbs[].ing", &v.ing)?,
            );
            self.check_prompt(&verb_prompt(&ing))?;
            verbs.push((vname, ing));
        }
        let mut objects: Vec<(String, String)> = Vec::with_capacity(pack.objects.len());
        for o in &pack.objects {
            objects.push((
                clean_name("objects[].name", &o.name)?,
                self.check_prompt(&o.prompt)?,
            ));
        }
        let mut interactions: Vec<(String, Option<String>, String)> =
            Vec::with_capacity(pack.interactions.len());
        for i in &pack.interactions {
            interactions.push((
                clean_name("interactions[].verb", &i.verb)?,
                i.object
                    .as_deref()
                    .map(|o| clean_name("interactions[].object", o))
                    .transpose()?,
                self.check_prompt(&i.prompt)?,
            ));
        }
        let mut tx = self.write_tx().await?;
        // A pack of this name in any spelling (see `name_key`): "HICO-DET" is the seed pack.
        let existing = Self::stored_name(&mut tx, Named::Packs, &name).await?;
        if let Some(stored) = existing {
            let name = stored;
            // Nothing was written: the transaction rolls back as it is dropped.
            drop(tx);
            // A retry of an import that committed (its answer lost to a timeout or a
            // dropped connection) finds exactly its own pack, and is answered as the first
            // was; any other pack of that name is a conflict.
            let asked = PackExport {
                name: name.clone(),
                verbs: verbs
                    .iter()
                    .map(|(name, ing)| ExportVerb {
                        name: name.clone(),
                        ing: ing.clone(),
                    })
                    .collect(),
                objects: objects
                    .iter()
                    .map(|(name, prompt)| ExportObject {
                        name: name.clone(),
                        prompt: prompt.clone(),
                    })
                    .collect(),
                interactions: interactions
                    .iter()
                    .map(|(verb, object, prompt)| ExportInteraction {
                        verb: verb.clone(),
                        object: object.clone(),
                        prompt: prompt.clone(),
                    })
                    .collect(),
            };
            if same_content(&self.export_pack(&name).await?, &asked) {
                return self.version().await;
            }
            return Err(VocabError::Duplicate { what: "pack", name });
        }
        let pack_id = Self::pack_id(&mut tx, &name, true).await?;
        for (vname, ing) in &verbs {
            Self::reuse_or_insert(&mut tx, Table::Verbs, vname, ing).await?;
        }
        for (oname, prompt) in &objects {
            Self::reuse_or_insert(&mut tx, Table::Objects, oname, prompt).await?;
        }
        for (verb, object, prompt) in &interactions {
            let (verb_id, _) = Self::verb_by_name(&mut tx, verb).await?;
            let object_id = match object {
                Some(o) => Some(Self::object_id(&mut tx, o).await?),
                None => None,
            };
            sqlx::query("INSERT INTO interactions (pack_id, verb_id, object_id, prompt, origin) VALUES ($1, $2, $3, $4, 'user')")
                .bind(pack_id)
                .bind(verb_id)
                .bind(object_id)
                .bind(prompt)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if unique_violation(&e) {
                        VocabError::Duplicate {
                            what: "interaction",
                            name: format!("{verb} {}", object.as_deref().unwrap_or("(no object)")),
                        }
                    } else {
                        e.into()
                    }
                })?;
        }
        let version = Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(version)
    }
}

/// Whether two exports of one pack hold the same entries, in any order, names compared
/// as the vocabulary compares them ([`name_key`]: an import that spelled a stored verb
/// another way reused it, and its retry must still be recognised).
fn same_content(a: &PackExport, b: &PackExport) -> bool {
    fn sorted<K: Ord>(keys: impl Iterator<Item = K>) -> Vec<K> {
        let mut keys: Vec<K> = keys.collect();
        keys.sort();
        keys
    }
    let verbs = |p: &PackExport| sorted(p.verbs.iter().map(|v| (name_key(&v.name), v.ing.clone())));
    let objects = |p: &PackExport| {
        sorted(
            p.objects
                .iter()
                .map(|o| (name_key(&o.name), o.prompt.clone())),
        )
    };
    let interactions = |p: &PackExport| {
        sorted(p.interactions.iter().map(|i| {
            (
                name_key(&i.verb),
                i.object.as_deref().map(name_key),
                i.prompt.clone(),
            )
        }))
    };
    verbs(a) == verbs(b) && objects(a) == objects(b) && interactions(a) == interactions(b)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportVerb {
    pub name: String,
    pub ing: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportObject {
    pub name: String,
    pub prompt: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportInteraction {
    pub verb: String,
    pub object: Option<String>,
    pub prompt: String,
}

/// A pack in its portable JSON form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackExport {
    pub name: String,
    pub verbs: Vec<ExportVerb>,
    pub objects: Vec<ExportObject>,
    pub interactions: Vec<ExportInteraction>,
}
