//! Hearing of changes made through other replicas: Postgres LISTEN on [`CHANNEL`]. Each
//! committed write announces its new version there (see `bump`); a listener that lost its
//! connection says so, since announcements made meanwhile are gone.

use std::time::Duration;

use sqlx::postgres::PgListener;

use super::*;

/// A live LISTEN on [`CHANNEL`] (Postgres stores only).
pub struct VocabListener(PgListener);

impl VocabStore {
    /// Listens for announced changes, waiting at most `timeout` for a connection. None for
    /// SQLite, which has no announcements (its writers are seen by polling the version).
    pub async fn listen(&self, timeout: Duration) -> Result<Option<VocabListener>, VocabError> {
        if self.database != Database::Postgres {
            return Ok(None);
        }
        let connect = async {
            let mut listener = PgListener::connect(&self.url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(listener) => Ok(Some(VocabListener(listener?))),
            Err(_) => Err(VocabError::Unavailable(
                "no connection for LISTEN within the timeout".into(),
            )),
        }
    }
}

impl VocabListener {
    /// The next announced version; `None` when the connection was lost (announcements
    /// may have been missed: check the store), or the payload was not a version. Safe to
    /// cancel. The call after a loss reconnects.
    pub async fn next(&mut self) -> Result<Option<i64>, VocabError> {
        Ok(self
            .0
            .try_recv()
            .await?
            .and_then(|n| n.payload().parse().ok()))
    }
}
