//! The text-embedding cache, keyed by the text tower's fingerprint.

use std::collections::HashMap;

use sqlx::Row;

use super::*;

impl VocabStore {
    /// Cached embeddings of `prompts` under `fingerprint` (missing ones are absent).
    pub async fn cached_embeddings(
        &self,
        fingerprint: &str,
        prompts: &[String],
    ) -> Result<HashMap<String, Vec<f32>>, VocabError> {
        let mut out = HashMap::new();
        for chunk in prompts.chunks(500) {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let marks = marks.join(",");
            let sql = format!(
                "SELECT prompt, embedding FROM text_embeddings WHERE fingerprint = $1 AND prompt IN ({marks})"
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
        // Upserts of a cache: on Postgres they need not queue behind vocabulary writers.
        let mut tx = match self.database {
            Database::Sqlite => self.write_tx().await?,
            Database::Postgres => self.pool.begin().await?,
        };
        // One order for every writer: replicas caching overlapping prompts at once then
        // wait for each other instead of deadlocking.
        let mut rows: Vec<&(String, Vec<f32>)> = rows.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        for (prompt, values) in rows {
            let blob: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            sqlx::query(
                "INSERT INTO text_embeddings (fingerprint, prompt, embedding) VALUES ($1, $2, $3) \
                 ON CONFLICT (fingerprint, prompt) DO UPDATE SET embedding = excluded.embedding",
            )
            .bind(fingerprint)
            .bind(prompt)
            .bind(blob)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
