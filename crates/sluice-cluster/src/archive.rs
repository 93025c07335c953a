//! The shard archive: older entries as objects in object storage, indexed by PostgreSQL rows.
//!
//! # Tables
//!
//! | table             | columns                                                           | key |
//! |-------------------|-------------------------------------------------------------------|-----|
//! | `archive_segment` | `shard_key, first_seq, last_seq, first_time, last_time, object_key, bytes` | `(shard_key, first_seq)` |
//! | `archive_orphan`  | `object_key, shard_key, since timestamptz`                        | `object_key` |
//!
//! Objects are named `<prefix>/<shard_key>/<first_seq>-<last_seq>-e<epoch>-<random>.sla`
//! (sequences zero-padded to 20 digits) and hold the format of [`crate::archive_format`].
//!
//! # Invariants
//!
//! * Upload first, then commit: [`Archive::write_segment`] records the object key in
//!   `archive_orphan` (`since = now()`), uploads the object, and only then, in one transaction,
//!   inserts the `archive_segment` row with the archiver's [`Fence`] checked in the same
//!   statement and removes the orphan row. A zombie archiver's commit is fenced, so a segment row
//!   only ever points at a whole object uploaded by the lease holder.
//! * Every object this crate uploads has, at every moment, either a segment row or an orphan
//!   row. An orphan (uploaded and never committed, or retired by [`Archive::retire_before`]) is
//!   deleted by [`crate::archive_gc`] once its orphan row is older than the grace period, judged
//!   by PostgreSQL's clock; readers and writers in flight get that long to finish. A writer
//!   commits only while its orphan row is younger than half the grace, so the collector never
//!   deletes an object that is about to be committed.
//! * A shard's segments are contiguous and never overlap: a new segment starts right after the
//!   shard's last archived sequence (any start if the shard has none).
//! * Readers trust neither the row nor the object blindly: the footer must pass its CRC and
//!   agree with the row (sequences, length), and each fetched frame its own CRC. Objects never
//!   change once uploaded (every upload has a fresh key), so checked footers are cached.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hashlink::LruCache;
use object_store::path::{Path, PathPart};
use object_store::{ObjectStore, PutPayload};
use sluice_log::Entry;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

use crate::archive_format::{decode_range, Footer, FormatError, SegmentBuilder, TRAILER_LEN};
use crate::lease::{create_schema, Fence, LeaseError};

/// What went wrong in the archive.
#[derive(thiserror::Error, Debug)]
pub enum ArchiveError {
    /// The object store failed.
    #[error("archive object store: {0}")]
    Store(#[from] object_store::Error),
    /// PostgreSQL failed, or the fence no longer holds ([`LeaseError::Fenced`]).
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// An object fails its checks (or disagrees with its segment row).
    #[error("archive object {object_key}: {source}")]
    Corrupt {
        object_key: String,
        source: FormatError,
    },
    /// The entries to archive are not dense or go back in time.
    #[error(transparent)]
    Input(FormatError),
    /// The segment would not continue the shard's archive right after its last sequence.
    #[error(
        "segment of {shard_key} from {first_seq} does not follow the archived end {archived_last}"
    )]
    NotContiguous {
        shard_key: String,
        first_seq: u64,
        archived_last: u64,
    },
    /// The upload took so long that its object may already be collected as an orphan.
    #[error("upload of {object_key} outlived half the orphan grace period; not committed")]
    UploadTooSlow { object_key: String },
    /// An invalid archive configuration (the field is named).
    #[error("invalid archive config: {0}")]
    Config(String),
}

impl From<sqlx::Error> for ArchiveError {
    fn from(e: sqlx::Error) -> Self {
        ArchiveError::Lease(LeaseError::Db(e))
    }
}

/// Archive settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// Objects go below this prefix of the bucket (may be empty).
    pub prefix: String,
    /// How long an orphaned object is kept before it is deleted.
    pub orphan_grace: Duration,
    /// Bytes between footer index points.
    pub index_stride: u64,
    /// Frame bytes one [`Archive::read`] fetches at most (at least one index interval).
    pub read_max_bytes: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            prefix: String::new(),
            orphan_grace: Duration::from_secs(3600),
            index_stride: crate::archive_format::DEFAULT_STRIDE,
            read_max_bytes: 4 << 20,
        }
    }
}

impl ArchiveConfig {
    pub fn validate(&self) -> Result<(), ArchiveError> {
        if self.orphan_grace < Duration::from_millis(100) {
            return Err(ArchiveError::Config(
                "orphan_grace must be at least 100ms".into(),
            ));
        }
        if self.index_stride == 0 || self.read_max_bytes == 0 {
            return Err(ArchiveError::Config(
                "index_stride and read_max_bytes must be above 0".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn grace_ms(&self) -> i64 {
        i64::try_from(self.orphan_grace.as_millis()).unwrap_or(i64::MAX)
    }
}

/// One committed segment row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRow {
    pub shard_key: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_time: i64,
    pub last_time: i64,
    pub object_key: String,
    pub bytes: u64,
}

/// Where a read starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveCursor {
    /// The first archived entry with this sequence or a later one.
    Sequence(u64),
    /// The first archived entry whose system time (ms) is at or after this one.
    SystemTime(i64),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS archive_segment (
    shard_key text NOT NULL,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    first_time bigint NOT NULL,
    last_time bigint NOT NULL,
    object_key text NOT NULL UNIQUE,
    bytes bigint NOT NULL,
    PRIMARY KEY (shard_key, first_seq)
);
CREATE INDEX IF NOT EXISTS archive_segment_last ON archive_segment (shard_key, last_seq);
CREATE TABLE IF NOT EXISTS archive_orphan (
    object_key text PRIMARY KEY,
    shard_key text NOT NULL,
    since timestamptz NOT NULL
);
";

const TAIL_FETCH: u64 = 64 << 10;

/// The object store path of a stored `object_key` (which is kept percent-encoded, as
/// [`Path`]'s `Display` writes it).
pub fn object_path(object_key: &str) -> Result<Path, ArchiveError> {
    Ok(Path::parse(object_key).map_err(object_store::Error::from)?)
}

/// Footers kept in memory (objects never change once written, so a cached footer never goes
/// stale; an object that is deleted simply stops being read).
const FOOTER_CACHE: usize = 256;

type FooterCache = Arc<Mutex<LruCache<String, Arc<Footer>>>>;

/// The archive of all shards: an object store plus the segment rows.
#[derive(Clone, Debug)]
pub struct Archive {
    pub(crate) pool: PgPool,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) config: ArchiveConfig,
    footers: FooterCache,
}

fn seq_i64(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn row_to_segment(r: &PgRow) -> SegmentRow {
    SegmentRow {
        shard_key: r.get(0),
        first_seq: r.get::<i64, _>(1) as u64,
        last_seq: r.get::<i64, _>(2) as u64,
        first_time: r.get(3),
        last_time: r.get(4),
        object_key: r.get(5),
        bytes: r.get::<i64, _>(6) as u64,
    }
}

const SEGMENT_COLUMNS: &str =
    "shard_key, first_seq, last_seq, first_time, last_time, object_key, bytes";

impl Archive {
    /// Creates the tables if missing.
    pub async fn open(
        pool: PgPool,
        store: Arc<dyn ObjectStore>,
        config: ArchiveConfig,
    ) -> Result<Archive, ArchiveError> {
        config.validate()?;
        create_schema(&pool, SCHEMA).await?;
        Ok(Archive {
            pool,
            store,
            config,
            footers: Arc::new(Mutex::new(LruCache::new(FOOTER_CACHE))),
        })
    }

    pub fn config(&self) -> &ArchiveConfig {
        &self.config
    }

    fn object_path(&self, shard_key: &str, name: &str) -> Path {
        let mut parts: Vec<PathPart<'static>> = Path::from(self.config.prefix.as_str())
            .parts()
            .map(|p| PathPart::from(p.as_ref().to_string()))
            .collect();
        parts.push(PathPart::from(shard_key.to_string()));
        parts.push(PathPart::from(name.to_string()));
        Path::from_iter(parts)
    }

    /// Archives `entries` (dense, of one shard) as one object: records the intent, uploads,
    /// then commits the segment row under `fence`. On any failure after the upload the object
    /// stays an orphan and is collected after the grace period.
    pub async fn write_segment(
        &self,
        fence: &Fence,
        shard_key: &str,
        entries: &[Entry],
    ) -> Result<Option<SegmentRow>, ArchiveError> {
        let mut builder = SegmentBuilder::new(self.config.index_stride);
        builder.push(entries).map_err(ArchiveError::Input)?;
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
        let object_key = self.upload(fence, &row, bytes).await?;
        let row = SegmentRow { object_key, ..row };
        self.commit(fence, &row).await?;
        Ok(Some(row))
    }

    /// Step one of [`Archive::write_segment`]: records the object as an orphan and uploads it.
    /// Returns its key.
    pub async fn upload(
        &self,
        fence: &Fence,
        row: &SegmentRow,
        bytes: Bytes,
    ) -> Result<String, ArchiveError> {
        let name = format!(
            "{:020}-{:020}-e{}-{:016x}.sla",
            row.first_seq,
            row.last_seq,
            fence.epoch,
            rand::random::<u64>()
        );
        let path = self.object_path(&row.shard_key, &name);
        let object_key = path.to_string();
        sqlx::query(
            "INSERT INTO archive_orphan (object_key, shard_key, since) VALUES ($1, $2, now())",
        )
        .bind(&object_key)
        .bind(&row.shard_key)
        .execute(&self.pool)
        .await?;
        self.store.put(&path, PutPayload::from(bytes)).await?;
        Ok(object_key)
    }

    /// Step two of [`Archive::write_segment`]: inserts the segment row, fenced, and clears the
    /// object's orphan row, in one transaction.
    pub async fn commit(&self, fence: &Fence, row: &SegmentRow) -> Result<(), ArchiveError> {
        let mut tx = self.pool.begin().await?;
        self.commit_in(&mut tx, fence, row).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Archive::commit`] inside the caller's transaction, so that other writes (the
    /// archiver's `shard_head.archived_seq` and `log_entry` delete) commit with the segment row
    /// or not at all. The caller commits.
    pub async fn commit_in(
        &self,
        tx: &mut sqlx::PgConnection,
        fence: &Fence,
        row: &SegmentRow,
    ) -> Result<(), ArchiveError> {
        let archived_last: Option<i64> =
            sqlx::query_scalar("SELECT max(last_seq) FROM archive_segment WHERE shard_key = $1")
                .bind(&row.shard_key)
                .fetch_one(&mut *tx)
                .await?;
        if let Some(last) = archived_last {
            if row.first_seq != last as u64 + 1 {
                return Err(ArchiveError::NotContiguous {
                    shard_key: row.shard_key.clone(),
                    first_seq: row.first_seq,
                    archived_last: last as u64,
                });
            }
        }
        let insert = format!(
            "INSERT INTO archive_segment ({SEGMENT_COLUMNS})
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE {}",
            Fence::condition(8)
        );
        let q = sqlx::query(&insert)
            .bind(&row.shard_key)
            .bind(seq_i64(row.first_seq))
            .bind(seq_i64(row.last_seq))
            .bind(row.first_time)
            .bind(row.last_time)
            .bind(&row.object_key)
            .bind(seq_i64(row.bytes));
        fence.execute(&mut *tx, q).await?;
        let cleared = sqlx::query(
            "DELETE FROM archive_orphan WHERE object_key = $1
             AND since > now() - $2 * interval '1 millisecond'",
        )
        .bind(&row.object_key)
        .bind(self.config.grace_ms() / 2)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if cleared == 0 {
            return Err(ArchiveError::UploadTooSlow {
                object_key: row.object_key.clone(),
            });
        }
        Ok(())
    }

    /// Retires (for retention) the segments of `shard_key` that end before `seq`: their rows
    /// go, fenced, and their objects become orphans collected after the grace period. Returns
    /// how many were retired.
    pub async fn retire_before(
        &self,
        fence: &Fence,
        shard_key: &str,
        seq: u64,
    ) -> Result<u64, ArchiveError> {
        let sql = format!(
            "WITH gone AS (
                 DELETE FROM archive_segment WHERE shard_key = $1 AND last_seq < $2 AND {}
                 RETURNING object_key, shard_key)
             INSERT INTO archive_orphan (object_key, shard_key, since)
             SELECT object_key, shard_key, now() FROM gone",
            Fence::condition(3)
        );
        let q = sqlx::query(&sql).bind(shard_key).bind(seq_i64(seq));
        match fence.execute(&self.pool, q).await {
            Ok(n) => Ok(n),
            // Zero rows: nothing to retire, or fenced; tell them apart.
            Err(LeaseError::Fenced { .. }) => {
                let held: bool = sqlx::query_scalar(&format!("SELECT {}", Fence::condition(1)))
                    .bind(&fence.kind)
                    .bind(&fence.key)
                    .bind(&fence.owner)
                    .bind(fence.epoch)
                    .fetch_one(&self.pool)
                    .await?;
                if held {
                    Ok(0)
                } else {
                    Err(fence.fenced().into())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Retires the segments of shards that no longer exist (their topic was deleted: no
    /// `shard_head` row): their rows go and their objects become orphans, deleted after the
    /// grace period. Any node may run it. Returns how many segments were retired.
    pub async fn retire_deleted_shards(&self) -> Result<u64, ArchiveError> {
        let done = sqlx::query(
            "WITH gone AS (
                 DELETE FROM archive_segment s
                 WHERE NOT EXISTS (SELECT 1 FROM shard_head h WHERE h.shard_key = s.shard_key)
                 RETURNING object_key, shard_key)
             INSERT INTO archive_orphan (object_key, shard_key, since)
             SELECT object_key, shard_key, now() FROM gone
             ON CONFLICT DO NOTHING",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The committed segments of `shard_key`, oldest first.
    pub async fn segments(&self, shard_key: &str) -> Result<Vec<SegmentRow>, ArchiveError> {
        let rows = sqlx::query(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM archive_segment WHERE shard_key = $1 ORDER BY first_seq"
        ))
        .bind(shard_key)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row_to_segment).collect())
    }

    /// The first segment holding entries at or after `cursor`.
    async fn segment_for(
        &self,
        shard_key: &str,
        cursor: ArchiveCursor,
    ) -> Result<Option<SegmentRow>, ArchiveError> {
        let (cond, value) = match cursor {
            ArchiveCursor::Sequence(s) => ("last_seq >= $2", seq_i64(s)),
            ArchiveCursor::SystemTime(t) => ("last_time >= $2", t),
        };
        let row = sqlx::query(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM archive_segment
             WHERE shard_key = $1 AND {cond} ORDER BY first_seq LIMIT 1"
        ))
        .bind(shard_key)
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(row_to_segment))
    }

    async fn get_range(&self, path: &Path, range: Range<u64>) -> Result<Bytes, ArchiveError> {
        Ok(self.store.get_range(path, range).await?)
    }

    /// A segment's footer, from the cache or fetched and checked (one ranged GET of the
    /// object's tail, a second one only if the footer is longer than that).
    pub async fn footer(&self, seg: &SegmentRow) -> Result<Arc<Footer>, ArchiveError> {
        let cached = self
            .footers
            .lock()
            .expect("footer cache")
            .get(&seg.object_key)
            .cloned();
        if let Some(f) = cached {
            return Ok(f);
        }
        let footer = Arc::new(self.fetch_footer(seg).await?);
        self.footers
            .lock()
            .expect("footer cache")
            .insert(seg.object_key.clone(), footer.clone());
        Ok(footer)
    }

    async fn fetch_footer(&self, seg: &SegmentRow) -> Result<Footer, ArchiveError> {
        let corrupt = |source| ArchiveError::Corrupt {
            object_key: seg.object_key.clone(),
            source,
        };
        let path = object_path(&seg.object_key)?;
        let tail_start = seg.bytes.saturating_sub(TAIL_FETCH);
        let tail = self.get_range(&path, tail_start..seg.bytes).await?;
        if tail.len() as u64 != seg.bytes - tail_start {
            return Err(corrupt(FormatError::Corrupt(
                "object shorter than its row".into(),
            )));
        }
        let trailer = &tail[tail.len().saturating_sub(TRAILER_LEN)..];
        let (start, len, crc) = Footer::locate(trailer, seg.bytes).map_err(corrupt)?;
        let footer_bytes = if start >= tail_start {
            let at = (start - tail_start) as usize;
            tail.slice(at..at + len)
        } else {
            self.get_range(&path, start..start + len as u64).await?
        };
        let footer = Footer::decode(&footer_bytes, crc, start).map_err(corrupt)?;
        if footer.first_seq != seg.first_seq || footer.end_seq != seg.last_seq + 1 {
            return Err(corrupt(FormatError::Corrupt(format!(
                "footer holds {}..{}, the row {}..={}",
                footer.first_seq, footer.end_seq, seg.first_seq, seg.last_seq
            ))));
        }
        Ok(footer)
    }

    /// Reads up to `max_entries` archived entries of `shard_key` from `cursor` on, across
    /// segments, fetching only the footers and the byte ranges of the frames needed, and
    /// stopping once [`ArchiveConfig::read_max_bytes`] of frames were fetched (at least one
    /// range is). An empty answer means nothing is archived at or after the cursor; to read on,
    /// continue from the last entry's sequence plus one.
    pub async fn read(
        &self,
        shard_key: &str,
        cursor: ArchiveCursor,
        max_entries: usize,
    ) -> Result<Vec<Entry>, ArchiveError> {
        let mut out: Vec<Entry> = Vec::new();
        let mut cursor = cursor;
        let mut fetched = 0u64;
        while out.len() < max_entries && fetched < self.config.read_max_bytes {
            let Some(seg) = self.segment_for(shard_key, cursor).await? else {
                break;
            };
            let footer = self.footer(&seg).await?;
            let path = object_path(&seg.object_key)?;
            let (mut point, from_seq) = match cursor {
                ArchiveCursor::Sequence(s) => {
                    let s = s.max(seg.first_seq);
                    (footer.point_for_seq(s), s)
                }
                ArchiveCursor::SystemTime(t) => {
                    let p = footer.point_for_time(t);
                    (p, footer.points[p].seq)
                }
            };
            while point < footer.points.len()
                && out.len() < max_entries
                && fetched < self.config.read_max_bytes
            {
                let remaining = (max_entries - out.len()) as u64;
                let at_seq = from_seq.max(footer.points[point].seq);
                let budget = self.config.read_max_bytes - fetched;
                let (b, e) = footer.range_from(point, at_seq, remaining, budget);
                let frames = self.get_range(&path, b..e).await?;
                fetched += e - b;
                let entries = decode_range(&frames).map_err(|source| ArchiveError::Corrupt {
                    object_key: seg.object_key.clone(),
                    source,
                })?;
                let wanted = entries.into_iter().filter(|x| match cursor {
                    ArchiveCursor::Sequence(_) => x.seq >= from_seq,
                    ArchiveCursor::SystemTime(t) => x.system_time >= t,
                });
                out.extend(wanted.take(max_entries - out.len()));
                point = footer.points.partition_point(|p| p.offset < e);
            }
            // Continue in the next segment, right after this one.
            cursor = ArchiveCursor::Sequence(seg.last_seq + 1);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::aws::AmazonS3Builder;

    #[tokio::test]
    async fn secrets_stay_out_of_debug_output() {
        let pool = PgPool::connect_lazy("postgres://sluice:pg-secret-1@127.0.0.1:1/db").unwrap();
        let store = AmazonS3Builder::new()
            .with_bucket_name("b")
            .with_region("us-east-1")
            .with_access_key_id("ak")
            .with_secret_access_key("s3-secret-2")
            .build()
            .unwrap();
        let archive = Archive {
            pool: pool.clone(),
            store: Arc::new(store),
            config: ArchiveConfig::default(),
            footers: Arc::new(Mutex::new(LruCache::new(1))),
        };
        let shown = format!("{archive:?}");
        assert!(
            !shown.contains("s3-secret-2") && !shown.contains("pg-secret-1"),
            "{shown}"
        );
        let leases = crate::lease::LeaseStore::for_tests(pool);
        let shown = format!("{leases:?}");
        assert!(!shown.contains("pg-secret-1"), "{shown}");
    }
}
