//! The vocabulary in SQLite (sqlx): packs, verbs, objects, interactions, the text
//! embedding cache and the version counter. Every change is one transaction that bumps the
//! version; invalid input is refused before anything is written.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::pack::Pack;
use crate::model::clip::tokenizer::{ClipTokenizer, TokenizerError};

/// Longest accepted verb or object name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest accepted prompt, in characters (77 CLIP tokens never need more).
pub const MAX_PROMPT_CHARS: usize = 1024;
/// Name of the pack user entries go to unless another is named.
pub const USER_PACK: &str = "user";

#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{what} `{name}` already exists")]
    Duplicate { what: &'static str, name: String },
    #[error("no {what} `{key}`")]
    NotFound { what: &'static str, key: String },
    #[error("{what} `{key}` comes from the seed pack and cannot be removed")]
    SeedEntry { what: &'static str, key: String },
    #[error("prompt has {tokens} tokens; CLIP's text tower takes at most {max}: \"{prompt}\"")]
    PromptTooLong {
        prompt: String,
        tokens: usize,
        max: usize,
    },
    #[error(
        "{what} `{name}` already exists with a different {field} (`{existing}`, not `{given}`)"
    )]
    Mismatch {
        what: &'static str,
        name: String,
        field: &'static str,
        existing: String,
        given: String,
    },
    #[error("{what} `{name}` belongs to a seed pack, which users cannot change")]
    SeedPack { what: &'static str, name: String },
    /// Another writer held the database longer than the busy timeout.
    #[error("the vocabulary database is busy; retry shortly")]
    Busy,
    #[error("vocabulary database error: {0}")]
    Database(sqlx::Error),
    #[error("vocabulary database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Pack(#[from] super::pack::PackError),
}

impl From<sqlx::Error> for VocabError {
    fn from(e: sqlx::Error) -> Self {
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes: a transient
        // condition the client can retry, not an internal error.
        let busy = matches!(&e, sqlx::Error::Database(db)
            if db.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)));
        if busy {
            VocabError::Busy
        } else {
            VocabError::Database(e)
        }
    }
}

/// The first 80 characters of `text`, with "..." when cut.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

impl From<TokenizerError> for VocabError {
    fn from(e: TokenizerError) -> Self {
        match e {
            TokenizerError::TooLong {
                prompt,
                tokens,
                max,
            } => VocabError::PromptTooLong {
                // Quoted in the answer: a short excerpt, never the whole text.
                prompt: excerpt(&prompt),
                tokens,
                max,
            },
            other => VocabError::Invalid {
                field: "prompt",
                reason: other.to_string(),
            },
        }
    }
}

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

#[derive(Debug, Clone)]
pub struct VocabStore {
    pool: SqlitePool,
    tokenizer: std::sync::Arc<ClipTokenizer>,
}

/// "a" or "an" before a word, as the official prompt templates do.
pub fn article(word: &str) -> &'static str {
    match word.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// The official HOI prompt template.
pub fn interaction_prompt(ing: &str, object: &str) -> String {
    format!("a photo of a person {ing} {} {object}", article(object))
}

/// The two tables an import may add rows to.
#[derive(Debug, Clone, Copy)]
enum Table {
    Verbs,
    Objects,
}

/// Prompt of a verb's text-derived row (read by the verb adapter).
pub fn verb_prompt(ing: &str) -> String {
    format!("a photo of a person {ing}")
}

/// The official object prompt template.
pub fn object_prompt(object: &str) -> String {
    format!("a photo of {} {object}", article(object))
}

fn clean_name(field: &'static str, raw: &str) -> Result<String, VocabError> {
    // The limit holds for the text as sent (what the OpenAPI schema states), before
    // whitespace is collapsed.
    if raw.chars().count() > MAX_NAME_CHARS {
        return Err(VocabError::Invalid {
            field,
            reason: format!("at most {MAX_NAME_CHARS} characters"),
        });
    }
    // Invisible and direction-changing characters make one name look like another
    // ("ride" + zero-width space, or a right-to-left override that displays "ride").
    if raw.chars().any(invisible) {
        return Err(VocabError::Invalid {
            field,
            reason: "must not contain invisible or text-direction characters".into(),
        });
    }
    // Compatibility forms fold to their plain letters ("ｒｉｄｅ" is "ride"), as the
    // tokenizer folds them: two spellings of one name would be one class twice.
    let folded: String = unicode_normalization::UnicodeNormalization::nfkc(raw).collect();
    let name = folded.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        return Err(VocabError::Invalid {
            field,
            reason: "must not be empty".into(),
        });
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(VocabError::Invalid {
            field,
            reason: format!("at most {MAX_NAME_CHARS} characters"),
        });
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(VocabError::Invalid {
            field,
            reason: "must not contain control characters".into(),
        });
    }
    // A name of only invisible characters (zero-width space, joiners) looks empty in
    // every listing and cannot be typed back.
    if !name.chars().any(char::is_alphanumeric) {
        return Err(VocabError::Invalid {
            field,
            reason: "must contain at least one letter or digit".into(),
        });
    }
    // `verbs=` on /detect is a comma list: a name with a comma could never be selected.
    if name.contains(',') {
        return Err(VocabError::Invalid {
            field,
            reason: "must not contain a comma".into(),
        });
    }
    Ok(name)
}

/// Zero-width, soft-hyphen, word-joiner, byte-order and bidirectional control characters.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}')
}

/// CLIP's special tokens: written in a prompt they would end it early (the text feature
/// is read at the first end-of-text token), silently dropping the rest.
const SPECIAL_TOKENS: [&str; 2] = ["<|startoftext|>", "<|endoftext|>"];

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl VocabStore {
    /// Opens (creating if needed) a SQLite database, in WAL mode with foreign keys on, and
    /// applies the embedded migrations.
    pub async fn open(
        url: &str,
        tokenizer: std::sync::Arc<ClipTokenizer>,
    ) -> Result<Self, VocabError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            && !path.starts_with(':')
            && let Some(dir) = std::path::Path::new(path.split('?').next().unwrap_or(path)).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| VocabError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: no fsync per commit; the database stays consistent, and only
            // the last commits can be lost to a power cut (not to a crash of this process).
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // In-memory databases are per connection: keep exactly one.
        let max = if url.contains(":memory:") { 1 } else { 4 };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool, tokenizer })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction that takes SQLite's write lock at once (BEGIN IMMEDIATE): a
    /// deferred one that reads first fails with "database is locked" when another writer
    /// commits in between, instead of waiting out the busy timeout.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, VocabError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn bump(tx: &mut Transaction<'_, Sqlite>) -> Result<i64, VocabError> {
        let v: i64 = sqlx::query_scalar(
            "UPDATE vocabulary_version SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut **tx)
        .await?;
        Ok(v)
    }

    pub async fn version(&self) -> Result<i64, VocabError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM vocabulary_version WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    fn check_prompt(&self, prompt: &str) -> Result<String, VocabError> {
        // Bounded before tokenizing: a 16 MB "prompt" must not cost seconds of CPU.
        if prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(VocabError::Invalid {
                field: "prompt",
                reason: format!("at most {MAX_PROMPT_CHARS} characters"),
            });
        }
        let prompt = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
        if prompt.is_empty() {
            return Err(VocabError::Invalid {
                field: "prompt",
                reason: "must not be empty".into(),
            });
        }
        // Judged on the token ids, after the tokenizer's own cleaning (HTML entities,
        // full-width forms, invisible characters): any spelling that becomes a special
        // token is caught, not just the literal one.
        let ids = self.tokenizer.encode_raw(&prompt)?;
        if ids
            .iter()
            .any(|&id| id == self.tokenizer.sot_id() || id == self.tokenizer.eot_id())
        {
            return Err(VocabError::Invalid {
                field: "prompt",
                reason: format!(
                    "must not contain CLIP's special tokens ({})",
                    SPECIAL_TOKENS.join(", ")
                ),
            });
        }
        self.tokenizer.encode(&prompt)?;
        Ok(prompt)
    }

    /// Inserts a seed pack (verbs, objects, interactions in official order). Idempotent:
    /// a pack already present is left as it is. Returns whether anything was written.
    pub async fn seed(&self, pack: &Pack) -> Result<bool, VocabError> {
        let mut tx = self.write_tx().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM packs WHERE name = ?")
            .bind(&pack.name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Ok(false);
        }
        let pack_id: i64 = sqlx::query_scalar(
            "INSERT INTO packs (name, description, origin) VALUES (?, ?, 'seed') RETURNING id",
        )
        .bind(&pack.name)
        .bind(format!("official {} vocabulary", pack.name))
        .fetch_one(&mut *tx)
        .await?;
        let mut verb_ids = Vec::with_capacity(pack.verbs.len());
        for v in &pack.verbs {
            sqlx::query("INSERT INTO verbs (name, ing, origin) VALUES (?, ?, 'seed') ON CONFLICT (name) DO NOTHING")
                .bind(&v.name)
                .bind(&v.ing)
                .execute(&mut *tx)
                .await?;
            let id: i64 = sqlx::query_scalar("SELECT id FROM verbs WHERE name = ?")
                .bind(&v.name)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO pack_verbs (pack_id, verb_id, seed_index) VALUES (?, ?, ?)")
                .bind(pack_id)
                .bind(id)
                .bind(v.index as i64)
                .execute(&mut *tx)
                .await?;
            verb_ids.push(id);
        }
        let mut object_ids = Vec::with_capacity(pack.objects.len());
        for o in &pack.objects {
            sqlx::query("INSERT INTO objects (name, prompt, origin) VALUES (?, ?, 'seed') ON CONFLICT (name) DO NOTHING")
                .bind(&o.name)
                .bind(object_prompt(&o.name))
                .execute(&mut *tx)
                .await?;
            let id: i64 = sqlx::query_scalar("SELECT id FROM objects WHERE name = ?")
                .bind(&o.name)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO pack_objects (pack_id, object_id, seed_index) VALUES (?, ?, ?)",
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
                "INSERT INTO interactions (pack_id, verb_id, object_id, prompt, seed_index, origin) VALUES (?, ?, ?, ?, ?, 'seed')",
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

    async fn pack_id(
        tx: &mut Transaction<'_, Sqlite>,
        name: &str,
        create: bool,
    ) -> Result<i64, VocabError> {
        if let Some((id, origin)) =
            sqlx::query_as::<_, (i64, String)>("SELECT id, origin FROM packs WHERE name = ?")
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
            sqlx::query_scalar("INSERT INTO packs (name, origin) VALUES (?, 'user') RETURNING id")
                .bind(name)
                .fetch_one(&mut **tx)
                .await?,
        )
    }

    async fn object_id(tx: &mut Transaction<'_, Sqlite>, name: &str) -> Result<i64, VocabError> {
        sqlx::query_scalar("SELECT id FROM objects WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| VocabError::NotFound {
                what: "object",
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
            "INSERT INTO verbs (name, ing, origin) VALUES (?, ?, 'user') RETURNING id",
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
                "INSERT INTO interactions (pack_id, verb_id, object_id, prompt, origin) VALUES (?, ?, ?, ?, 'user') RETURNING id",
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
            "INSERT INTO objects (name, prompt, origin) VALUES (?, ?, 'user') RETURNING id",
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
        let (verb_id, ing): (i64, String) =
            sqlx::query_as("SELECT id, ing FROM verbs WHERE name = ?")
                .bind(&verb)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| VocabError::NotFound {
                    what: "verb",
                    key: verb.clone(),
                })?;
        let object_id = Self::object_id(&mut tx, &object).await?;
        let prompt = match explicit {
            Some(p) => p,
            None => self.check_prompt(&interaction_prompt(&ing, &object))?,
        };
        let pack_id = Self::pack_id(&mut tx, &pack, true).await?;
        let id: i64 = match sqlx::query_scalar(
            "INSERT INTO interactions (pack_id, verb_id, object_id, prompt, origin) VALUES (?, ?, ?, ?, 'user') RETURNING id",
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

    async fn remove(
        &self,
        table: &'static str,
        what: &'static str,
        id: i64,
    ) -> Result<i64, VocabError> {
        let mut tx = self.write_tx().await?;
        let origin: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT origin FROM {table} WHERE id = ?"
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
            "DELETE FROM {table} WHERE id = ?"
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

    pub async fn verbs(&self) -> Result<Vec<VerbRecord>, VocabError> {
        let rows = sqlx::query("SELECT id, name, ing, origin FROM verbs ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(Self::verb_row).collect())
    }

    pub async fn verb(&self, id: i64) -> Result<VerbRecord, VocabError> {
        Self::verb_in(&mut *self.pool.acquire().await?, id).await
    }

    async fn verb_in(conn: &mut sqlx::SqliteConnection, id: i64) -> Result<VerbRecord, VocabError> {
        let r = sqlx::query("SELECT id, name, ing, origin FROM verbs WHERE id = ?")
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

    async fn object_in(
        conn: &mut sqlx::SqliteConnection,
        id: i64,
    ) -> Result<ObjectRecord, VocabError> {
        let r = sqlx::query("SELECT id, name, prompt, origin FROM objects WHERE id = ?")
            .bind(id)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| VocabError::NotFound {
                what: "object",
                key: id.to_string(),
            })?;
        Ok(Self::object_row(&r))
    }

    fn verb_row(r: &sqlx::sqlite::SqliteRow) -> VerbRecord {
        VerbRecord {
            id: r.get(0),
            name: r.get(1),
            ing: r.get(2),
            origin: r.get(3),
        }
    }

    fn object_row(r: &sqlx::sqlite::SqliteRow) -> ObjectRecord {
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

    fn interaction_row(r: &sqlx::sqlite::SqliteRow) -> InteractionRecord {
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
            "{} WHERE (?1 IS NULL OR p.name = ?1) ORDER BY i.seed_index IS NULL, p.id, i.seed_index, i.id",
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

    async fn interaction_in(
        conn: &mut sqlx::SqliteConnection,
        id: i64,
    ) -> Result<InteractionRecord, VocabError> {
        let sql = format!("{} WHERE i.id = ?", Self::INTERACTION_SELECT);
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
        let mut tx = self.pool.begin().await?;
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

    /// Cached embeddings of `prompts` under `fingerprint` (missing ones are absent).
    pub async fn cached_embeddings(
        &self,
        fingerprint: &str,
        prompts: &[String],
    ) -> Result<HashMap<String, Vec<f32>>, VocabError> {
        let mut out = HashMap::new();
        for chunk in prompts.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "SELECT prompt, embedding FROM text_embeddings WHERE fingerprint = ? AND prompt IN ({marks})"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(fingerprint);
            for p in chunk {
                q = q.bind(p);
            }
            for r in q.fetch_all(&self.pool).await? {
                let blob: Vec<u8> = r.get(1);
                let values = blob
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                out.insert(r.get(0), values);
            }
        }
        Ok(out)
    }

    pub async fn store_embeddings(
        &self,
        fingerprint: &str,
        rows: &[(String, Vec<f32>)],
    ) -> Result<(), VocabError> {
        let mut tx = self.write_tx().await?;
        for (prompt, values) in rows {
            let blob: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            sqlx::query("INSERT OR REPLACE INTO text_embeddings (fingerprint, prompt, embedding) VALUES (?, ?, ?)")
                .bind(fingerprint)
                .bind(prompt)
                .bind(blob)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A pack as JSON-ready data (the plugin unit): verbs, objects and interactions by name.
    pub async fn export_pack(&self, name: &str) -> Result<PackExport, VocabError> {
        let interactions = self.interactions(Some(name)).await?;
        if interactions.is_empty() && !self.packs().await?.iter().any(|p| p.name == name) {
            return Err(VocabError::NotFound {
                what: "pack",
                key: name.into(),
            });
        }
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

    /// An existing verb or object name equal to `name` but for letter case ("Ride" for
    /// "ride"): a second class under another spelling would only split the scores.
    async fn same_but_case(
        tx: &mut Transaction<'_, Sqlite>,
        table: Table,
        name: &str,
    ) -> Result<Option<String>, VocabError> {
        let sql = match table {
            Table::Verbs => "SELECT name FROM verbs",
            Table::Objects => "SELECT name FROM objects",
        };
        let names: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut **tx).await?;
        let key = name.to_lowercase();
        Ok(names
            .into_iter()
            .find(|n| n != name && n.to_lowercase() == key))
    }

    /// Refuses `name` when another spelling of it exists (see [`Self::same_but_case`]).
    async fn refuse_same_but_case(
        tx: &mut Transaction<'_, Sqlite>,
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
    async fn reuse_or_insert(
        tx: &mut Transaction<'_, Sqlite>,
        table: Table,
        name: &str,
        value: &str,
    ) -> Result<(), VocabError> {
        let (what, field, select, insert) = match table {
            Table::Verbs => (
                "verb",
                "ing",
                "SELECT ing FROM verbs WHERE name = ?",
                "INSERT INTO verbs (name, ing, origin) VALUES (?, ?, 'user')",
            ),
            Table::Objects => (
                "object",
                "prompt",
                "SELECT prompt FROM objects WHERE name = ?",
                "INSERT INTO objects (name, prompt, origin) VALUES (?, ?, 'user')",
            ),
        };
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
            None => {
                Self::refuse_same_but_case(tx, table, name).await?;
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
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM packs WHERE name = ?")
            .bind(&name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
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
            let verb_id: i64 = sqlx::query_scalar("SELECT id FROM verbs WHERE name = ?")
                .bind(verb)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| VocabError::NotFound {
                    what: "verb",
                    key: verb.clone(),
                })?;
            let object_id = match object {
                Some(o) => Some(Self::object_id(&mut tx, o).await?),
                None => None,
            };
            sqlx::query("INSERT INTO interactions (pack_id, verb_id, object_id, prompt, origin) VALUES (?, ?, ?, ?, 'user')")
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
