//! Seeding, adding and removing: each one transaction that validates first and bumps
//! the version.

use sqlx::{Any, Transaction};

use super::*;

impl VocabStore {
    /// Inserts a seed pack (verbs, objects, interactions in official order). Idempotent:
    /// a pack already present is left as it is. Returns whether anything was written.
    pub async fn seed(&self, pack: &Pack) -> Result<bool, VocabError> {
        let mut tx = self.write_tx().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM packs WHERE name = $1")
            .bind(&pack.name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Ok(false);
        }
        let pack_id: i64 = sqlx::query_scalar(
            "INSERT INTO packs (name, description, origin) VALUES ($1, $2, 'seed') RETURNING id",
        )
        .bind(&pack.name)
        .bind(format!("official {} vocabulary", pack.name))
        .fetch_one(&mut *tx)
        .await?;
        let mut verb_ids = Vec::with_capacity(pack.verbs.len());
        for v in &pack.verbs {
            sqlx::query("INSERT INTO verbs (name, ing, origin) VALUES ($1, $2, 'seed') ON CONFLICT (name) DO NOTHING")
                .bind(&v.name)
                .bind(&v.ing)
                .execute(&mut *tx)
                .await?;
            let id: i64 = sqlx::query_scalar("SELECT id FROM verbs WHERE name = $1")
                .bind(&v.name)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO pack_verbs (pack_id, verb_id, seed_index) VALUES ($1, $2, $3)",
            )
            .bind(pack_id)
            .bind(id)
            .bind(v.index as i64)
            .execute(&mut *tx)
            .await?;
            verb_ids.push(id);
        }
        let mut object_ids = Vec::with_capacity(pack.objects.len());
        for o in &pack.objects {
            sqlx::query("INSERT INTO objects (name, prompt, origin) VALUES ($1, $2, 'seed') ON CONFLICT (name) DO NOTHING")
                .bind(&o.name)
                .bind(object_prompt(&o.name))
                .execute(&mut *tx)
                .await?;
            let id: i64 = sqlx::query_scalar("SELECT id FROM objects WHERE name = $1")
                .bind(&o.name)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO pack_objects (pack_id, object_id, seed_index) VALUES ($1, $2, $3)",
            )
            .bind(pack_id)
            .bind(id)
            .bind(o.index as i64)
            .execute(&mut *tx)
            .await?;
            object_ids.push(id);
        }
        for it in &pack.interactions {
            sqlx::query(
                "INSERT INTO interactions (pack_id, verb_id, object_id, prompt, seed_index, origin) VALUES ($1, $2, $3, $4, $5, 'seed')",
            )
            .bind(pack_id)
            .bind(verb_ids[it.verb])
            .bind(object_ids.get(it.object).copied())
            .bind(&it.prompt)
            .bind(it.index as i64)
            .execute(&mut *tx)
            .await?;
        }
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The stored spelling of `name` in `table`: the name itself when stored so, else the
    /// one stored name with the same [`name_key`] (creating refuses a second), else None.
    pub(super) async fn stored_name(
        tx: &mut Transaction<'_, Any>,
        table: Named,
        name: &str,
    ) -> Result<Option<String>, VocabError> {
        let (exact, all) = match table {
            Named::Verbs => (
                "SELECT name FROM verbs WHERE name = $1",
                "SELECT name FROM verbs",
            ),
            Named::Objects => (
                "SELECT name FROM objects WHERE name = $1",
                "SELECT name FROM objects",
            ),
            Named::Packs => (
                "SELECT name FROM packs WHERE name = $1",
                "SELECT name FROM packs",
            ),
        };
        // The usual case, by the name's index: a large import looks names up per row.
        let found: Option<String> = sqlx::query_scalar(exact)
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
        if found.is_some() {
            return Ok(found);
        }
        let names: Vec<String> = sqlx::query_scalar(all).fetch_all(&mut **tx).await?;
        let key = name_key(name);
        Ok(names.into_iter().find(|n| name_key(n) == key))
    }

    pub(super) async fn pack_id(
        tx: &mut Transaction<'_, Any>,
        name: &str,
        create: bool,
    ) -> Result<i64, VocabError> {
        let stored = Self::stored_name(tx, Named::Packs, name).await?;
        let name = stored.as_deref().unwrap_or(name);
        if let Some((id, origin)) =
            sqlx::query_as::<_, (i64, String)>("SELECT id, origin FROM packs WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?
        {
            // Seed packs mirror a checkpoint's trained classes; user rows there would be
            // scored as if they were part of the official vocabulary.
            if create && origin == "seed" {
                return Err(VocabError::SeedPack {
                    what: "pack",
                    name: name.into(),
                });
            }
            return Ok(id);
        }
        if !create {
            return Err(VocabError::NotFound {
                what: "pack",
                key: name.into(),
            });
        }
        Ok(
            sqlx::query_scalar("INSERT INTO packs (name, origin) VALUES ($1, 'user') RETURNING id")
                .bind(name)
                .fetch_one(&mut **tx)
                .await?,
        )
    }

    pub(super) async fn object_id(
        tx: &mut Transaction<'_, Any>,
        name: &str,
    ) -> Result<i64, VocabError> {
        let stored = Self::stored_name(tx, Named::Objects, name).await?;
        sqlx::query_scalar("SELECT id FROM objects WHERE name = $1")
            .bind(stored.as_deref().unwrap_or(name))
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| VocabError::NotFound {
                what: "object",
                key: name.into(),
            })
    }

    /// A verb's id and -ing phrase by name; an unknown name is `NotFound`.
    pub(super) async fn verb_by_name(
        tx: &mut Transaction<'_, Any>,
        name: &str,
    ) -> Result<(i64, String), VocabError> {
        let stored = Self::stored_name(tx, Named::Verbs, name).await?;
        sqlx::query_as("SELECT id, ing FROM verbs WHERE name = $1")
            .bind(stored.as_deref().unwrap_or(name))
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| VocabError::NotFound {
                what: "verb",
                key: name.into(),
            })
    }

    /// Adds a verb with its interactions. Returns the verb, the new interactions and the
    /// new vocabulary version.
    pub async fn add_verb(
        &self,
        new: NewVerb,
    ) -> Result<(VerbRecord, Vec<InteractionRecord>, i64), VocabError> {
        let name = clean_name("name", &new.name)?;
        let ing = clean_name("ing", &new.ing)?;
        let pack = clean_name("pack", new.pack.as_deref().unwrap_or(USER_PACK))?;
        // Prompts first: nothing is written unless every prompt a rebuild will embed,
        // the verb's own row included, is valid.
        self.check_prompt(&verb_prompt(&ing))?;
        let mut planned: Vec<(String, String)> = Vec::new();
        for object in &new.objects {
            let object = clean_name("objects", object)?;
            let prompt = self.check_prompt(&interaction_prompt(&ing, &object))?;
            planned.push((object, prompt));
        }
        for (object, prompt) in &new.prompts {
            planned.push((clean_name("objects", object)?, self.check_prompt(prompt)?));
        }
        let mut tx = self.write_tx().await?;
        Self::refuse_same_but_case(&mut tx, Table::Verbs, &name).await?;
        let verb_id: i64 = match sqlx::query_scalar(
            "INSERT INTO verbs (name, ing, origin) VALUES ($1, $2, 'user') RETURNING id",
        )
        .bind(&name)
        .bind(&ing)
        .fetch_one(&mut *tx)
        .await
        {
            Ok(id) => id,
            Err(e) if unique_violation(&e) => {
                return Err(VocabError::Duplicate { what: "verb", name });
            }
            Err(e) => return Err(e.into()),
        };
        let pack_id = Self::pack_id(&mut tx, &pack, true).await?;
        let mut ids = Vec::new();
        for (object, prompt) in &planned {
            let object_id = Self::object_id(&mut tx, object).await?;
            let id: i64 = match sqlx::query_scalar(
                "INSERT INTO interactions (pack_id, verb_id, object_id, prompt, origin) VALUES ($1, $2, $3, $4, 'user') RETURNING id",
            )
            .bind(pack_id)
            .bind(verb_id)
            .bind(object_id)
            .bind(prompt)
            .fetch_one(&mut *tx)
            .await
            {
                Ok(id) => id,
                Err(e) if unique_violation(&e) => {
                    return Err(VocabError::Duplicate { what: "interaction", name: format!("{name} {object}") })
                }
                Err(e) => return Err(e.into()),
            };
            ids.push(id);
        }
        let version = Self::bump(&mut tx).await?;
        // Read back before committing: a concurrent delete cannot turn a committed write
        // into an error answer.
        let verb = Self::verb_in(&mut tx, verb_id).await?;
        let mut interactions = Vec::new();
        for id in ids {
            interactions.push(Self::interaction_in(&mut tx, id).await?);
        }
        tx.commit().await?;
        Ok((verb, interactions, version))
    }

    /// Adds an object (a new row of the object classifier).
    pub async fn add_object(
        &self,
        name: &str,
        prompt: Option<&str>,
    ) -> Result<(ObjectRecord, i64), VocabError> {
        let name = clean_name("name", name)?;
        let prompt = self.check_prompt(
            &prompt
                .map(str::to_string)
                .unwrap_or_else(|| object_prompt(&name)),
        )?;
        let mut tx = self.write_tx().await?;
        Self::refuse_same_but_case(&mut tx, Table::Objects, &name).await?;
        let id: i64 = match sqlx::query_scalar(
            "INSERT INTO objects (name, prompt, origin) VALUES ($1, $2, 'user') RETURNING id",
        )
        .bind(&name)
        .bind(&prompt)
        .fetch_one(&mut *tx)
        .await
        {
            Ok(id) => id,
            Err(e) if unique_violation(&e) => {
                return Err(VocabError::Duplicate {
                    what: "object",
                    name,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let version = Self::bump(&mut tx).await?;
        let object = Self::object_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok((object, version))
    }

    /// Adds an interaction for an existing verb and object.
    pub async fn add_interaction(
        &self,
        verb: &str,
        object: &str,
        prompt: Option<&str>,
        pack: Option<&str>,
    ) -> Result<(InteractionRecord, i64), VocabError> {
        let verb = clean_name("verb", verb)?;
        let object = clean_name("object", object)?;
        let pack = clean_name("pack", pack.unwrap_or(USER_PACK))?;
        let explicit = prompt.map(|p| self.check_prompt(p)).transpose()?;
        let mut tx = self.write_tx().await?;
        let (verb_id, ing) = Self::verb_by_name(&mut tx, &verb).await?;
        let object_id = Self::object_id(&mut tx, &object).await?;
        let prompt = match explicit {
            Some(p) => p,
            None => self.check_prompt(&interaction_prompt(&ing, &object))?,
        };
        let pack_id = Self::pack_id(&mut tx, &pack, true).await?;
        let id: i64 = match sqlx::query_scalar(
            "INSERT INTO interactions (pack_id, verb_id, object_id, prompt, origin) VALUES ($1, $2, $3, $4, 'user') RETURNING id",
        )
        .bind(pack_id)
        .bind(verb_id)
        .bind(object_id)
        .bind(&prompt)
        .fetch_one(&mut *tx)
        .await
        {
            Ok(id) => id,
            Err(e) if unique_violation(&e) => {
                return Err(VocabError::Duplicate { what: "interaction", name: format!("{verb} {object} in {pack}") })
            }
            Err(e) => return Err(e.into()),
        };
        let version = Self::bump(&mut tx).await?;
        let interaction = Self::interaction_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok((interaction, version))
    }

    pub(super) async fn remove(
        &self,
        table: &'static str,
        what: &'static str,
        id: i64,
    ) -> Result<i64, VocabError> {
        let mut tx = self.write_tx().await?;
        let origin: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT origin FROM {table} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        match origin.as_deref() {
            None => {
                return Err(VocabError::NotFound {
                    what,
                    key: id.to_string(),
                });
            }
            Some("seed") => {
                return Err(VocabError::SeedEntry {
                    what,
                    key: id.to_string(),
                });
            }
            _ => {}
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE id = $1"
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let version = Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Removes a user verb and its interactions. Seed verbs cannot be removed.
    pub async fn remove_verb(&self, id: i64) -> Result<i64, VocabError> {
        self.remove("verbs", "verb", id).await
    }

    /// Removes a user object and its interactions.
    pub async fn remove_object(&self, id: i64) -> Result<i64, VocabError> {
        self.remove("objects", "object", id).await
    }

    pub async fn remove_interaction(&self, id: i64) -> Result<i64, VocabError> {
        self.remove("interactions", "interaction", id).await
    }
}
