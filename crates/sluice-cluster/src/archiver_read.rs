//! [`TieredShardStore`]: one shard's [`ShardStore`] over PostgreSQL and the archive together.
//!
//! Sequences below `shard_head.archived_seq` are read from the archive, the others from
//! `log_entry`; one read may span both. Appends, `first_seq`, `next_seq`, the watch and close
//! are the PostgreSQL store's, unchanged.
//!
//! The archiver moves rows while reads run (see [`crate::archiver`]: the segment row, the new
//! `archived_seq` and the delete of the rows commit together). So a read from PostgreSQL that
//! finds its rows gone (a gap) reads the head again and, if `archived_seq` moved past it, goes
//! on from the archive; and a SYSTEM_TIME lookup asks PostgreSQL first and the archive second,
//! so an entry moved between the two is still found.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sluice_log::store::{ShardStore, StoreError};
use sluice_log::{AppendInfo, Entry};
use sqlx::Row;
use tokio::sync::watch;

use crate::archive::{Archive, ArchiveCursor, ArchiveError};
use crate::log::{to_u64, PgLogError, PgShardStore};

/// How many times a read retries after the archiver moved its rows under it.
const MOVED_RETRIES: usize = 8;

/// One shard over PostgreSQL (recent entries) and the archive (older ones).
pub struct TieredShardStore {
    pg: Arc<PgShardStore>,
    archive: Archive,
}

/// The head's sequences as a read needs them.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    first: u64,
    next: u64,
    archived: u64,
}

fn backend(e: ArchiveError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl TieredShardStore {
    /// `archive` must live in the same database as `pg`'s log.
    pub fn new(pg: Arc<PgShardStore>, archive: Archive) -> Arc<TieredShardStore> {
        Arc::new(TieredShardStore { pg, archive })
    }

    /// The PostgreSQL store underneath.
    pub fn pg(&self) -> &Arc<PgShardStore> {
        &self.pg
    }

    async fn bounds(&self) -> Result<Bounds, StoreError> {
        let row = sqlx::query(
            "SELECT start_seq, next_seq, archived_seq FROM shard_head WHERE shard_key = $1",
        )
        .bind(self.pg.key())
        .fetch_optional(&self.pg.log.pool)
        .await
        .map_err(PgLogError::from)?
        .ok_or(StoreError::NotFound)?;
        let (start, next) = (to_u64(row.get(0)), to_u64(row.get(1)));
        self.pg.state.publish(next);
        Ok(Bounds {
            first: start.min(next),
            next,
            archived: to_u64(row.get(2)),
        })
    }

    /// Archived entries from exactly `from` on (a gap is [`StoreError::OutOfRange`]).
    async fn read_archive(
        &self,
        from: u64,
        max_entries: usize,
        first: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        let got = self
            .archive
            .read(self.pg.key(), ArchiveCursor::Sequence(from), max_entries)
            .await
            .map_err(backend)?;
        match got.first() {
            Some(e) if e.seq == from => Ok(got),
            // The archive no longer holds `from` (retired by retention).
            _ => Err(StoreError::OutOfRange {
                requested: from,
                first,
            }),
        }
    }
}

#[async_trait]
impl ShardStore for TieredShardStore {
    async fn append_checked(
        self: Arc<Self>,
        payloads: Vec<Bytes>,
        system_time_ms: i64,
        catalog_seen: Option<i64>,
    ) -> Result<AppendInfo, StoreError> {
        self.pg
            .clone()
            .append_checked(payloads, system_time_ms, catalog_seen)
            .await
    }

    async fn read(
        self: Arc<Self>,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut bounds = self.bounds().await?;
        if from_seq < bounds.first {
            return Err(StoreError::OutOfRange {
                requested: from_seq,
                first: bounds.first,
            });
        }
        let mut out: Vec<Entry> = Vec::new();
        let mut bytes = 0usize;
        let mut next = from_seq;
        let mut retries = 0;
        while next < bounds.next && out.len() < max_entries && (out.is_empty() || bytes < max_bytes)
        {
            let want = max_entries - out.len();
            let page = if next < bounds.archived {
                self.read_archive(next, want, bounds.first).await?
            } else {
                match self
                    .pg
                    .clone()
                    .read(next, want, max_bytes.saturating_sub(bytes))
                    .await
                {
                    Ok(page) => page,
                    Err(StoreError::OutOfRange { .. }) if retries < MOVED_RETRIES => {
                        // Rows gone: archived meanwhile, or dropped by retention.
                        retries += 1;
                        let fresh = self.bounds().await?;
                        if fresh.archived <= next {
                            return Err(StoreError::OutOfRange {
                                requested: next,
                                first: fresh.first,
                            });
                        }
                        bounds = Bounds {
                            next: bounds.next,
                            ..fresh
                        };
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            if page.is_empty() {
                break;
            }
            for entry in page {
                if entry.seq >= bounds.next {
                    return Ok(out);
                }
                let len = entry.payload.len();
                if !out.is_empty() && bytes + len > max_bytes {
                    return Ok(out);
                }
                bytes += len;
                next = entry.seq + 1;
                out.push(entry);
                if out.len() >= max_entries || bytes >= max_bytes {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    async fn first_seq(self: Arc<Self>) -> Result<u64, StoreError> {
        self.pg.clone().first_seq().await
    }

    async fn next_seq(self: Arc<Self>) -> Result<u64, StoreError> {
        self.pg.clone().next_seq().await
    }

    async fn seq_at_or_after_time(self: Arc<Self>, t_ms: i64) -> Result<Option<u64>, StoreError> {
        // PostgreSQL first: an entry the archiver moves after this lookup is in the archive
        // by the time the archive is asked (times do not decrease with sequences).
        let in_pg = self.pg.clone().seq_at_or_after_time(t_ms).await?;
        let bounds = self.bounds().await?;
        let in_archive = self
            .archive
            .read(self.pg.key(), ArchiveCursor::SystemTime(t_ms), 1)
            .await
            .map_err(backend)?
            .first()
            .map(|e| e.seq.max(bounds.first))
            .filter(|s| *s < bounds.next);
        Ok(match (in_pg, in_archive) {
            (Some(p), Some(a)) => Some(p.min(a)),
            (p, a) => p.or(a),
        })
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.pg.watch()
    }

    async fn close(self: Arc<Self>) -> Result<(), StoreError> {
        self.pg.clone().close().await
    }
}
