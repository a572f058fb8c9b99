//! The vocabulary in SQLite or Postgres (sqlx, chosen by the URL): packs, verbs, objects,
//! interactions, the text embedding cache and the version counter. Every change is one
//! transaction that bumps the version; invalid input is refused before anything is
//! written. Queries are written once, for sqlx's `Any` driver (numbered `$N` parameters,
//! SQL both databases speak); each has its own migrations (`migrations/<database>`).
//! On Postgres a committed change also notifies [`CHANNEL`], so every replica sharing the
//! database hears of it (`ClassifierSync::follow` in the engine listens).
//!
//! Parts: `names` (cleaning and checking names and prompts), `writes` (seeding, adding,
//! removing), `records` (the rows and the queries that read them), `packs` (export and
//! import), `embeddings` (the text-embedding cache), `error`.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor, Transaction};

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
mod notify;
mod packs;
mod records;
mod writes;

// Helpers the parts share (each `pub(super)` in its own file).
#[allow(unused_imports)]
use {embeddings::*, error::*, names::*, packs::*, records::*, writes::*};

pub use error::VocabError;
pub use examples::{ExampleRecord, NewExample, StoredExample};
pub use names::{article, interaction_prompt, name_key, object_prompt, verb_prompt};
pub use notify::VocabListener;
pub use packs::{ExportInteraction, ExportObject, ExportVerb, PackExport};
pub use records::{
    InteractionRecord, NewVerb, ObjectRecord, PackRecord, VerbRecord, VocabSnapshot,
};

/// The Postgres channel every committed vocabulary change is announced on (payload: the
/// new version).
pub const CHANNEL: &str = "hoiclip_vocabulary";

/// The kind of database behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

impl Database {
    /// The kind of database a URL names (`sqlite:` or `postgres:`/`postgresql:`).
    pub fn of(url: &str) -> Result<Self, VocabError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            // A value without a scheme is not echoed: it may be a misplaced password.
            let given = match url.split_once("://") {
                Some(_) => format!("`{}`", redact_url(url)),
                None => "the value given".to_string(),
            };
            Err(VocabError::Invalid {
                field: "database_url",
                reason: format!("{given} is neither a sqlite: nor a postgres:// URL"),
            })
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A database URL without its password (for messages and logs).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct VocabStore {
    pool: AnyPool,
    database: Database,
    url: String,
    tokenizer: std::sync::Arc<ClipTokenizer>,
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl VocabStore {
    /// Opens the database at `url` and applies that engine's embedded migrations.
    /// SQLite: created if needed, WAL mode, foreign keys on. Postgres: the database must
    /// exist; a connection is waited for at most a few seconds, so that writes answer 503
    /// promptly while the server is down.
    pub async fn open(
        url: &str,
        tokenizer: std::sync::Arc<ClipTokenizer>,
    ) -> Result<Self, VocabError> {
        install_default_drivers();
        let database = Database::of(url)?;
        let pool = match database {
            Database::Sqlite => Self::open_sqlite(url).await?,
            Database::Postgres => AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(3))
                .connect(url)
                .await
                .map_err(VocabError::from)?,
        };
        match database {
            Database::Sqlite => Self::migrate_sqlite(&pool).await?,
            // Replicas starting together are serialised by the migrator's advisory lock.
            Database::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Self {
            pool,
            database,
            url: url.to_string(),
            tokenizer,
        })
    }

    /// SQLite's migrator takes no lock: two processes opening a new file together (two
    /// servers, or a server and the CLI) both try to apply a migration, and the one that
    /// commits second fails ("table ... already exists"). Each migration is one
    /// transaction, so the loser wrote nothing; run again, it finds them applied.
    async fn migrate_sqlite(pool: &AnyPool) -> Result<(), VocabError> {
        let migrator = sqlx::migrate!("./migrations/sqlite");
        let mut attempt = 0;
        loop {
            match migrator.run(pool).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 10 => {
                    tracing::debug!(error = %e, "migration raced another process; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn open_sqlite(url: &str) -> Result<AnyPool, VocabError> {
        let (path, query) = match url.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (url, None),
        };
        let file = path
            .strip_prefix("sqlite://")
            .or_else(|| path.strip_prefix("sqlite:"))
            .unwrap_or(path);
        let memory = file.starts_with(':') || query.is_some_and(|q| q.contains("mode=memory"));
        if !memory
            && let Some(dir) = std::path::Path::new(file).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| VocabError::Database(sqlx::Error::Io(e)))?;
        }
        // Created if missing unless the URL chooses a mode itself.
        let url = match query {
            _ if memory => url.to_string(),
            Some(q) if q.contains("mode=") => url.to_string(),
            Some(_) => format!("{url}&mode=rwc"),
            None => format!("{url}?mode=rwc"),
        };
        // In-memory databases are per connection: keep exactly one.
        let max = if memory { 1 } else { 4 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL + NORMAL: no fsync per commit; the database stays consistent, and
                    // only the last commits can be lost to a power cut (not to a crash of
                    // this process). sqlx turns foreign keys on and waits 5 s when busy.
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000")
                        .await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(pool)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn database(&self) -> Database {
        self.database
    }

    /// The URL the store was opened with (the password is in it: never log it as is).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A write transaction that excludes every other writer from its start, so the checks
    /// it makes before writing still hold when it commits. SQLite: BEGIN IMMEDIATE takes
    /// the write lock (a deferred one that reads first fails with "database is locked"
    /// when another writer commits in between). Postgres: the version row is locked
    /// first, so writers on every replica queue behind one another.
    pub(super) async fn write_tx(&self) -> Result<Transaction<'static, Any>, VocabError> {
        match self.database {
            Database::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Database::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT version FROM vocabulary_version WHERE id = 1 FOR UPDATE")
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// A read transaction that sees one consistent state (SQLite's deferred transaction
    /// reads one snapshot; Postgres needs REPEATABLE READ for that).
    pub(super) async fn read_tx(&self) -> Result<Transaction<'static, Any>, VocabError> {
        match self.database {
            Database::Sqlite => Ok(self.pool.begin().await?),
            Database::Postgres => Ok(self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?),
        }
    }

    /// Bumps the version inside a write; on Postgres the change is announced to the other
    /// replicas when (and only if) the transaction commits.
    pub(super) async fn bump(tx: &mut Transaction<'_, Any>) -> Result<i64, VocabError> {
        let v: i64 = sqlx::query_scalar(
            "UPDATE vocabulary_version SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut **tx)
        .await?;
        if tx.backend_name() == "PostgreSQL" {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(v.to_string())
                .execute(&mut **tx)
                .await?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_told_apart_without_showing_passwords() {
        assert_eq!(Database::of("sqlite::memory:").ok(), Some(Database::Sqlite));
        assert_eq!(
            Database::of("postgresql://u:pw@db/x").ok(),
            Some(Database::Postgres)
        );
        for (value, hidden, shown) in [
            ("hunter2", "hunter2", "the value given"),
            ("mysql://me:s3cret@db/x", "s3cret", "mysql://me:***@db/x"),
        ] {
            let message = Database::of(value).err().map(|e| e.to_string());
            let message = message.as_deref().unwrap_or("");
            assert!(message.contains(shown), "{message}");
            assert!(!message.contains(hidden), "{message}");
        }
        assert_eq!(
            redact_url("postgres://me:s3cret@db:5432/x"),
            "postgres://me:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://me@db/x"), "postgres://me@db/x");
    }
}
