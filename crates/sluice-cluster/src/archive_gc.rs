//! Collection of orphaned archive objects after the grace period.
//!
//! An orphan is an object with an `archive_orphan` row and no `archive_segment` row: uploaded
//! and never committed (the archiver died or was fenced), or retired by retention. Once the
//! orphan row is older than [`crate::archive::ArchiveConfig::orphan_grace`] by PostgreSQL's
//! clock, the collector deletes the row and then the object (deleting a missing object is not
//! an error). The row goes first: a crash in between leaks one object, never deletes an object
//! a segment row points at (writers only commit while their orphan row is younger than half the
//! grace, see [`crate::archive`]). Any node may run it; concurrent collectors skip each other's
//! rows (`FOR UPDATE SKIP LOCKED`).

use crate::archive::{object_path, Archive, ArchiveError};

/// Orphans collected per transaction.
const BATCH: i64 = 256;

impl Archive {
    /// Deletes the orphaned objects whose grace period is over; returns their keys.
    pub async fn collect_orphans(&self) -> Result<Vec<String>, ArchiveError> {
        let mut deleted = Vec::new();
        loop {
            let mut tx = self.pool.begin().await?;
            let keys: Vec<String> = sqlx::query_scalar(
                "DELETE FROM archive_orphan WHERE object_key IN (
                     SELECT o.object_key FROM archive_orphan o
                     WHERE o.since < now() - $1 * interval '1 millisecond'
                       AND NOT EXISTS (SELECT 1 FROM archive_segment s
                                       WHERE s.object_key = o.object_key)
                     ORDER BY o.since LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING object_key",
            )
            .bind(self.config.grace_ms())
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            let n = keys.len();
            for key in keys {
                match self.store.delete(&object_path(&key)?).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        tracing::warn!(object = %key, error = %e, "orphan delete failed; object leaked");
                        return Err(e.into());
                    }
                }
                deleted.push(key);
            }
            if (n as i64) < BATCH {
                return Ok(deleted);
            }
        }
    }
}
