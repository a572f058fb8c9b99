//! What a vocabulary operation can refuse or fail with.

use super::*;

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
    /// The database cannot be reached (Postgres stopped, restarting, or the network
    /// down): nothing was written; the client can retry.
    #[error("the vocabulary database is unavailable ({0})")]
    Unavailable(String),
    #[error("vocabulary database error: {}", describe(.0))]
    Database(sqlx::Error),
    #[error("vocabulary database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Pack(#[from] crate::vocab::pack::PackError),
}

impl From<sqlx::Error> for VocabError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            let code = db.code().unwrap_or_default();
            // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
            // Postgres: serialization failure, deadlock, lock timeout. Transient
            // conditions the client can retry, not internal errors.
            let busy = code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
                || matches!(&*code, "40001" | "40P01" | "55P03");
            if busy {
                return VocabError::Busy;
            }
            // Postgres connection exceptions (08...), shutting down or starting up (57P..).
            if code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03") {
                return VocabError::Unavailable(db.message().to_string());
            }
        }
        match e {
            // The error's own text: its kind alone can be "uncategorized error" (DNS).
            sqlx::Error::Io(io) => VocabError::Unavailable(io.to_string()),
            sqlx::Error::PoolTimedOut => {
                VocabError::Unavailable("no database connection within the timeout".into())
            }
            sqlx::Error::Tls(tls) => VocabError::Unavailable(format!("TLS: {tls}")),
            other => VocabError::Database(other),
        }
    }
}

/// A database's own message for its errors (sqlx's text adds where in the server's
/// source it was raised), sqlx's text for the rest.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    }
}

/// The first 80 characters of `text`, with "..." when cut.
pub(super) fn excerpt(text: &str) -> String {
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
