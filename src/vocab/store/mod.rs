//! The vocabulary in SQLite (sqlx): packs, verbs, objects, interactions, the text
//! embedding cache and the version counter. Every change is one transaction that bumps the
//! version; invalid input is refused before anything is written.
//!
//! Parts: `names` (cleaning and checking names and prompts), `writes` (seeding, adding,
//! removing), `records` (the rows and the queries that read them), `packs` (export and
//! import), `embeddings` (the text-embedding cache), `error`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::pack::Pack;
use crate::model::clip::tokenizer::{ClipTokenizer, TokenizerError};

/// Longest accepted verb or object name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest accepted prompt, in characters (77 CLIP tokens never need more).
pub const MAX_PROMPT_CHARS: usize = 1024;
/// Name of the pack user entries go to unless another is named.
pub const USER_PACK: &str = "user";

mod embeddings;
mod error;
mod examples;
mod names;
mod packs;
mod records;
mod writes;

// Helpers the parts share (each `pub(super)` in its own file).
#[allow(unused_imports)]
use {embeddings::*, error::*, names::*, packs::*, records::*, writes::*};

pub use error::VocabError;
pub use examples::{ExampleRecord, NewExample, StoredExample};
pub use names::{article, interaction_prompt, object_prompt, verb_prompt};
pub use packs::{ExportInteraction, ExportObject, ExportVerb, PackExport};
pub use records::{
    InteractionRecord, NewVerb, ObjectRecord, PackRecord, VerbRecord, VocabSnapshot,
};

#[derive(Debug, Clone)]
pub struct VocabStore {
    pool: SqlitePool,
    tokenizer: std::sync::Arc<ClipTokenizer>,
}

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
    pub(super) async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, VocabError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub(super) async fn bump(tx: &mut Transaction<'_, Sqlite>) -> Result<i64, VocabError> {
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
}
