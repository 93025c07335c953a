//! The archiver: moves a shard's older `log_entry` rows into one archive object, under the
//! shard's lease (kind [`LEASE_KIND`], key the shard key).
//!
//! # When, and what
//!
//! A shard's unarchived rows are those from `shard_head.archived_seq` on. A step cuts a segment
//! when the shard is CLOSED, or its unarchived rows hold at least
//! [`ArchiverConfig::segment_bytes`] (the rows' stored bytes), or the oldest of them is at least
//! [`ArchiverConfig::max_age`] old by PostgreSQL's clock. The segment is the unarchived rows
//! from `archived_seq` on, whole rows only, until they reach `segment_bytes` (at least one row),
//! so a segment always ends at a row boundary and whole rows are deleted.
//!
//! # Crash safety
//!
//! [`Archiver::prepare`] reads the rows and uploads the object (the archive records it as an
//! orphan first). [`Archiver::commit`] then runs ONE transaction: the fenced segment row
//! ([`Archive::commit_in`], which also clears the orphan row), `archived_seq` raised from the
//! segment's first sequence to one past its last (fenced, and only if it still equals the
//! first), and the delete of exactly the archived rows. So a crash, a lost lease or a failed
//! statement anywhere leaves either all of it or none of it: rows are never lost (they are in
//! PostgreSQL or behind a committed segment row) and never archived twice (the next segment
//! must start at `archived_seq`). An upload that is never committed stays an orphan, deleted
//! by the archive's collector after the grace period.

use std::time::Duration;

use sqlx::postgres::PgPool;
use sqlx::Row;

use crate::archive::{Archive, ArchiveError, SegmentRow};
use crate::archive_format::SegmentBuilder;
use crate::lease::{Fence, LeaseError, LeaseStore};
use crate::log::{to_i64, to_u64, PgLog, PgLogError};

/// The lease kind of a shard's archiver.
pub const LEASE_KIND: &str = "archive";

/// Rows fetched per statement while gathering a segment.
const ROWS_PER_STATEMENT: i64 = 256;

/// What went wrong in an archiver step.
#[derive(thiserror::Error, Debug)]
pub enum ArchiverError {
    /// The shard log (PostgreSQL) failed.
    #[error(transparent)]
    Log(#[from] PgLogError),
    /// The archive (object store, segment commit) failed, or its fence no longer holds.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The lease store failed, or the fence no longer holds ([`LeaseError::Fenced`]).
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The unarchived rows do not continue densely from `archived_seq` (e.g. retention dropped
    /// a partition before they were archived).
    #[error(
        "shard {shard_key:?}: expected a log_entry row at sequence {expected}, found {found:?}"
    )]
    Gap {
        shard_key: String,
        expected: u64,
        found: Option<u64>,
    },
    /// `archived_seq` or the rows changed under a commit (another archiver); rolled back.
    #[error("shard {shard_key:?}: archive state moved under the commit: {reason}")]
    Conflict { shard_key: String, reason: String },
    /// An invalid archiver configuration (the field is named).
    #[error("invalid archiver config: {0}")]
    Config(String),
}

impl From<sqlx::Error> for ArchiverError {
    fn from(e: sqlx::Error) -> Self {
        ArchiverError::Log(PgLogError::Db(e))
    }
}

impl ArchiverError {
    /// Whether the error means this archiver lost its lease (a zombie).
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            ArchiverError::Lease(LeaseError::Fenced { .. })
                | ArchiverError::Archive(ArchiveError::Lease(LeaseError::Fenced { .. }))
        )
    }
}

/// When segments are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiverConfig {
    /// Unarchived bytes that trigger a segment, and the most one segment takes.
    pub segment_bytes: u64,
    /// Age of the oldest unarchived entry that triggers a segment.
    pub max_age: Duration,
    /// Segments one [`Archiver::run_shard`] writes at most (a closed shard's backlog is moved
    /// over several passes beyond that).
    pub max_segments_per_pass: usize,
}

impl Default for ArchiverConfig {
    fn default() -> Self {
        ArchiverConfig {
            segment_bytes: 8 << 20,
            max_age: Duration::from_secs(600),
            max_segments_per_pass: 16,
        }
    }
}

impl ArchiverConfig {
    pub fn validate(&self) -> Result<(), ArchiverError> {
        if self.segment_bytes == 0 {
            return Err(ArchiverError::Config(
                "segment_bytes must be above 0".into(),
            ));
        }
        if self.max_segments_per_pass == 0 {
            return Err(ArchiverError::Config(
                "max_segments_per_pass must be above 0".into(),
            ));
        }
        Ok(())
    }

    fn max_age_ms(&self) -> i64 {
        i64::try_from(self.max_age.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A segment uploaded and not yet committed (see the module docs). Dropping it leaves the
/// object as an orphan, like a crash would.
#[derive(Debug)]
pub struct Prepared {
    pub row: SegmentRow,
    /// The `log_entry` rows the segment holds (all deleted by the commit).
    pub log_rows: u64,
}

/// One node's archiver.
#[derive(Clone, Debug)]
pub struct Archiver {
    pool: PgPool,
    archive: Archive,
    leases: LeaseStore,
    config: ArchiverConfig,
}

/// The head fields a step needs.
struct HeadState {
    closed: bool,
    next_seq: u64,
    archived_seq: u64,
    now_ms: i64,
}

impl Archiver {
    /// An archiver over `log`'s tables and `archive` (both in the same database), taking
    /// leases through `leases`.
    pub fn new(
        log: &PgLog,
        archive: Archive,
        leases: LeaseStore,
        config: ArchiverConfig,
    ) -> Result<Archiver, ArchiverError> {
        config.validate()?;
        Ok(Archiver {
            pool: log.pool().clone(),
            archive,
            leases,
            config,
        })
    }

    /// One pass over a shard: takes (or renews) its archive lease and, if this node holds it,
    /// archives segments while a threshold is met, at most
    /// [`ArchiverConfig::max_segments_per_pass`]. Returns the segments committed; `None` when
    /// another node holds the lease.
    pub async fn run_shard(
        &self,
        shard_key: &str,
    ) -> Result<Option<Vec<SegmentRow>>, ArchiverError> {
        let Some(fence) = self.leases.try_acquire(LEASE_KIND, shard_key).await? else {
            return Ok(None);
        };
        let mut done = Vec::new();
        while done.len() < self.config.max_segments_per_pass {
            match self.step(&fence, shard_key).await? {
                Some(row) => done.push(row),
                None => break,
            }
        }
        Ok(Some(done))
    }

    /// Retention: under the shard's lease, retires the committed segments whose newest
    /// record is older than `cutoff_ms` (their rows go, fenced; their objects become orphans,
    /// deleted after the grace period). Returns how many; `None` when another node holds the
    /// lease. System times only grow along a shard, so the retired segments are a prefix.
    pub async fn retire_expired(
        &self,
        shard_key: &str,
        cutoff_ms: i64,
    ) -> Result<Option<u64>, ArchiverError> {
        let Some(fence) = self.leases.try_acquire(LEASE_KIND, shard_key).await? else {
            return Ok(None);
        };
        let segments = self.archive.segments(shard_key).await?;
        let Some(last) = segments
            .iter()
            .filter(|s| s.last_time < cutoff_ms)
            .map(|s| s.last_seq)
            .max()
        else {
            return Ok(Some(0));
        };
        Ok(Some(
            self.archive
                .retire_before(&fence, shard_key, last + 1)
                .await?,
        ))
    }

    /// The archive this archiver writes to.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// One segment, if a threshold is met: [`Archiver::prepare`] then [`Archiver::commit`].
    pub async fn step(
        &self,
        fence: &Fence,
        shard_key: &str,
    ) -> Result<Option<SegmentRow>, ArchiverError> {
        let Some(prepared) = self.prepare(fence, shard_key).await? else {
            return Ok(None);
        };
        self.commit(fence, &prepared).await?;
        Ok(Some(prepared.row))
    }

    /// Reads the next segment's rows if a threshold is met and uploads them as an object (an
    /// orphan until [`Archiver::commit`]). `None`: nothing to archive yet.
    pub async fn prepare(
        &self,
        fence: &Fence,
        shard_key: &str,
    ) -> Result<Option<Prepared>, ArchiverError> {
        let Some(head) = self.head(shard_key).await? else {
            return Err(PgLogError::NotFound(shard_key.to_string()).into());
        };
        if head.archived_seq >= head.next_seq || !self.due(shard_key, &head).await? {
            return Ok(None);
        }
        let (entries, log_rows) = self.gather(shard_key, &head).await?;
        let mut builder = SegmentBuilder::new(self.archive.config().index_stride);
        builder.push(&entries).map_err(ArchiveError::Input)?;
        drop(entries);
        let Some((bytes, footer)) = builder.finish().map_err(ArchiveError::Input)? else {
            return Ok(None);
        };
        let row = SegmentRow {
            shard_key: shard_key.to_string(),
            first_seq: footer.first_seq,
            last_seq: footer.end_seq - 1,
            first_time: footer.first_time,
            last_time: footer.last_time,
            object_key: String::new(),
            bytes: bytes.len() as u64,
        };
        let object_key = self.archive.upload(fence, &row, bytes).await?;
        Ok(Some(Prepared {
            row: SegmentRow { object_key, ..row },
            log_rows,
        }))
    }

    /// Commits a prepared segment: the fenced segment row, `archived_seq` and the delete of
    /// its rows, in one transaction (see the module docs).
    pub async fn commit(&self, fence: &Fence, prepared: &Prepared) -> Result<(), ArchiverError> {
        let row = &prepared.row;
        let conflict = |reason: String| ArchiverError::Conflict {
            shard_key: row.shard_key.clone(),
            reason,
        };
        let mut tx = self.pool.begin().await?;
        self.archive.commit_in(&mut tx, fence, row).await?;
        let advance = format!(
            "UPDATE shard_head SET archived_seq = $3
              WHERE shard_key = $1 AND archived_seq = $2 AND {}",
            Fence::condition(4)
        );
        let q = sqlx::query(&advance)
            .bind(&row.shard_key)
            .bind(to_i64(row.first_seq))
            .bind(to_i64(row.last_seq + 1));
        if let Err(e) = fence.execute(&mut *tx, q).await {
            return Err(match e {
                // The segment insert above passed the same fence and holds its lease row
                // lock, so zero rows here means archived_seq moved.
                LeaseError::Fenced { .. } => {
                    conflict(format!("archived_seq is no longer {}", row.first_seq))
                }
                other => other.into(),
            });
        }
        let deleted = sqlx::query(
            "DELETE FROM log_entry WHERE shard_key = $1 AND base_seq >= $2 AND base_seq <= $3",
        )
        .bind(&row.shard_key)
        .bind(to_i64(row.first_seq))
        .bind(to_i64(row.last_seq))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted != prepared.log_rows {
            return Err(conflict(format!(
                "{deleted} log_entry rows to delete where the segment holds {}",
                prepared.log_rows
            )));
        }
        tx.commit().await?;
        tracing::debug!(
            shard = %row.shard_key, first_seq = row.first_seq, last_seq = row.last_seq,
            object = %row.object_key, "archived segment"
        );
        Ok(())
    }

    async fn head(&self, shard_key: &str) -> Result<Option<HeadState>, ArchiverError> {
        let row = sqlx::query(
            "SELECT state = 'CLOSED', next_seq, archived_seq,
                    (extract(epoch FROM clock_timestamp()) * 1000)::bigint
               FROM shard_head WHERE shard_key = $1",
        )
        .bind(shard_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| HeadState {
            closed: r.get(0),
            next_seq: to_u64(r.get(1)),
            archived_seq: to_u64(r.get(2)),
            now_ms: r.get(3),
        }))
    }

    /// Whether a threshold is met (the head has unarchived sequences).
    async fn due(&self, shard_key: &str, head: &HeadState) -> Result<bool, ArchiverError> {
        if head.closed {
            return Ok(true);
        }
        let row = sqlx::query(
            "SELECT COALESCE(sum(octet_length(bytes)), 0)::bigint, min(system_time_ms)
               FROM log_entry WHERE shard_key = $1 AND base_seq >= $2 AND base_seq < $3",
        )
        .bind(shard_key)
        .bind(to_i64(head.archived_seq))
        .bind(to_i64(head.next_seq))
        .fetch_one(&self.pool)
        .await?;
        let bytes = to_u64(row.get(0));
        let oldest: Option<i64> = row.get(1);
        let aged =
            oldest.is_some_and(|t| t <= head.now_ms.saturating_sub(self.config.max_age_ms()));
        Ok(bytes >= self.config.segment_bytes || aged)
    }

    /// The whole rows from `archived_seq` on, until `segment_bytes` (at least one row), as
    /// entries; and how many rows they were.
    async fn gather(
        &self,
        shard_key: &str,
        head: &HeadState,
    ) -> Result<(Vec<sluice_log::Entry>, u64), ArchiverError> {
        let mut entries = Vec::new();
        let mut rows_taken = 0u64;
        let mut bytes = 0u64;
        let mut next = head.archived_seq;
        'pages: while next < head.next_seq && bytes < self.config.segment_bytes {
            let rows = sqlx::query(
                "SELECT base_seq, count, system_time_ms, bytes FROM log_entry
                  WHERE shard_key = $1 AND base_seq >= $2 AND base_seq < $3
                  ORDER BY base_seq LIMIT $4",
            )
            .bind(shard_key)
            .bind(to_i64(next))
            .bind(to_i64(head.next_seq))
            .bind(ROWS_PER_STATEMENT)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let stored: usize = row.try_get::<&[u8], _>(3)?.len();
                let (base, time, payloads) = crate::log_read::decode_row(shard_key, row)?;
                if base != next {
                    return Err(ArchiverError::Gap {
                        shard_key: shard_key.to_string(),
                        expected: next,
                        found: Some(base),
                    });
                }
                for (seq, payload) in (base..).zip(payloads) {
                    entries.push(sluice_log::Entry {
                        seq,
                        system_time: time,
                        payload,
                    });
                    next = seq + 1;
                }
                rows_taken += 1;
                bytes += stored as u64;
                if bytes >= self.config.segment_bytes {
                    break 'pages;
                }
            }
        }
        if entries.is_empty() {
            return Err(ArchiverError::Gap {
                shard_key: shard_key.to_string(),
                expected: head.archived_seq,
                found: None,
            });
        }
        Ok((entries, rows_taken))
    }
}
