//! Per-shard append-only log for Sluice.
//!
//! A [`ShardLog`] is one directory of segment files holding a dense sequence of opaque byte
//! payloads ("entries"). It knows nothing of records, topics or HTTP. Every append writes one
//! *frame* carrying one or more entries with consecutive sequences and one system time; appends
//! are acknowledged only once durable (group-committed `fdatasync`), recovery truncates a torn
//! tail, and retention deletes whole sealed segments.
//!
//! # On-disk format
//!
//! A log directory holds segment files named `<base>.log`, where `<base>` is the sequence of the
//! segment's first entry, zero-padded to 20 decimal digits (so lexical order is numeric order),
//! e.g. `00000000000000000000.log`, `00000000000000001742.log`, with their persisted indexes
//! (`<base>.idx`) and a clean-shutdown marker `CLEAN` (see below). Other files are ignored. The
//! segment with the highest base is the *active* segment; all others are *sealed* and never
//! written again.
//!
//! A segment file is a plain concatenation of frames, with no file header or footer. A frame
//! (all integers little-endian) is:
//!
//! | offset | size | field                                                               |
//! |-------:|-----:|---------------------------------------------------------------------|
//! |      0 |    3 | magic `b"SLG"`                                                      |
//! |      3 |    1 | format version, `1`                                                 |
//! |      4 |    4 | `len`: u32, total frame length in bytes, header included            |
//! |      8 |    4 | `crc`: CRC-32C (Castagnoli) of bytes `12..len` of the frame          |
//! |     12 |    8 | `base_seq`: u64, sequence of the frame's first entry                |
//! |     20 |    4 | `count`: u32, number of entries, at least 1                         |
//! |     24 |    8 | `system_time`: i64, milliseconds since the Unix epoch               |
//! |     32 |      | `count` times: u32 payload length, then the payload bytes           |
//!
//! so `len == 32 + Σ (4 + payload_len)`, and `len <=` [`MAX_FRAME_BYTES`]. Entry `i` of a frame
//! has sequence `base_seq + i` and the frame's system time.
//!
//! # Invariants
//!
//! * Sequences are dense: the first frame of a segment has `base_seq` equal to the file's base,
//!   each following frame starts where the previous one ended, and each segment starts where the
//!   previous segment ended. Sequences start at 0 for a new log and continue across segments,
//!   restarts and retention (retention only ever removes the oldest segments).
//! * System times are non-decreasing across the whole log: an append whose time is below the
//!   previous frame's is clamped up to it. (On open the clamp starts from the newest retained
//!   frame; if retention removed every frame, the next append's time is taken as given.)
//! * A frame never spans segments. Before a frame is written, if the active segment is not empty
//!   and the frame would take it past [`LogConfig::segment_bytes`], or the frame's system time is
//!   [`LogConfig::segment_max_age`] or more past the active segment's first frame, the active
//!   segment is fsync'd, sealed, and a new one named after the next sequence is created (and the
//!   directory fsync'd). A single frame larger than `segment_bytes` gets a segment of its own.
//! * Only the active segment can end in a torn or partial frame. Recovery (at
//!   [`ShardLog::open`], or at the first use after [`ShardLog::open_lazy`]) loads each sealed
//!   segment from its persisted index if that can be trusted (see below) and otherwise scans it,
//!   checking every frame (header, length, CRC, entry structure, sequence continuity, time
//!   order). The active segment is scanned unless the log was closed cleanly. A bad frame in the
//!   active segment, and everything after it, is cut off (`set_len` + fsync, with a `tracing`
//!   warning); it was never acknowledged. A bad frame found by the scan of a sealed segment is
//!   [`LogError::Corrupt`]: sealed segments were fsync'd before sealing. Frames of a segment
//!   loaded from its index are checked (CRC) when read.
//! * In [`FsyncMode::Always`], [`ShardLog::append`] returns only after `fdatasync` covered its
//!   frame, and readers ([`ShardLog::read`], [`ShardLog::next_seq`], [`ShardLog::watch`], time
//!   lookups) see only such durable frames, so nothing is visible that a crash could take back.
//!   Frames become visible whole, never partially.
//! * Segment creation and deletion are followed by an fsync of the directory.
//! * In [`FsyncMode::Always`] the active segment's file may extend past its data with zeros
//!   written ahead by a background thread ([`LogConfig::zero_ahead_bytes`], see `zeroing.rs`),
//!   so that a data sync commits no file-system metadata. Sealed segments never do: a roll cuts
//!   the zeros off before it syncs the segment, and a clean close before it writes the active
//!   index. Recovery cuts them like a torn tail, quietly when all it cuts is zeros.
//!
//! # Persisted indexes and the clean-shutdown marker
//!
//! When a segment seals, its sparse index (see below) is written to `<base>.idx` next to it
//! (temp file, fsync, rename; the directory fsync of the roll covers it): the points, then a
//! last entry with the segment's base, length, end sequence and last frame (offset, sequence,
//! time), then a CRC-32C of it all. Recovery trusts it only if the checksum and the structure
//! hold, the segment file has exactly the recorded length, and the frame at the recorded last
//! offset is whole, passes its CRC and has the recorded sequences and time; only that frame is
//! read. A missing, torn or stale index falls back to the scan and is rewritten.
//! [`ShardLog::close`] writes the active segment's index too and then a `CLEAN` marker (after
//! everything is synced; neither is fsync'd, since both are only hints checked like any index);
//! recovery uses the active index only if the marker is there, and removes both.
//!
//! # In memory
//!
//! The index is sparse: per segment, the first frame and then each frame starting at least
//! 4 KiB (`INDEX_STRIDE`) after the previous point, 16 bytes each (sequence and file offset
//! relative to the segment, system time), plus the segment's last frame. Sequence and time
//! lookups binary-search the points; when they need a single frame, they read the frame headers
//! of one range (under 4 KiB plus one frame) with positional reads. Reads start at the point at or
//! before their first sequence and skip the frames before it.
//! A log holds no file descriptor of its own: segment files, active and sealed, are opened on
//! demand through the process-wide [`FileCache`] (an LRU bounded by its capacity, see `files.rs`),
//! except that in [`FsyncMode::Always`] the handle of the last unsynced write is kept until a
//! sync covers it (appends in flight are bounded by the cache's write slots). No buffers
//! are kept between calls: a new, empty log costs about a kilobyte (mostly the watch channel).
//! Scanning a segment reads it once with a transient 256 KiB buffer.
//!
//! # Concurrency
//!
//! `ShardLog` is `Send + Sync`. In [`FsyncMode::Always`] an append first takes a write slot of
//! its [`FileCache`] (waiting if half the cache's capacity of appends are in flight,
//! process-wide). Appenders serialize only for the `pwrite` of their frame; then
//! each waits until a sync covers its frame. One waiter runs `fdatasync` for everybody written so
//! far while the others wait on a condition variable (group commit), so many concurrent appends
//! share few fsyncs. A process-wide [`CommitObserver`] ([`set_commit_observer`]), if installed,
//! hears each such fsync (its duration and the entries it made durable) for the server's
//! metrics. Readers plan under a short shared lock on the index and then read with positional
//! reads (`pread`) without holding any lock.
//! A log opened with [`ShardLog::open_lazy`] is recovered by the first call that needs it, under
//! a mutex of its own: concurrent first calls wait for that one recovery, other logs are not
//! involved.

pub mod codec;
mod commit;
mod files;
mod frame;
mod index;
mod lookup;
mod persist;
mod recovery;
mod retention;
mod segment;
mod shard;
pub mod store;
mod zeroing;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

pub use crate::commit::{set_commit_observer, CommitObserver};
pub use crate::files::{FileCache, DEFAULT_MAX_OPEN_FILES};
pub use crate::frame::MAX_FRAME_BYTES;
pub use crate::retention::remove_log;
pub use crate::shard::ShardLog;

/// When appends are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncMode {
    /// Every append is fsync'd (group-committed) before it returns and becomes visible.
    Always,
    /// Relaxed: appends are acknowledged and visible once written to the OS, before fsync. The
    /// first append (or [`ShardLog::sync_if_due`] call) after the interval has elapsed since the
    /// last sync performs one; [`ShardLog::sync`] and dropping the log sync too.
    Interval(Duration),
    /// No fsync at all, not even by [`ShardLog::sync`]. For tests only.
    Never,
}

/// [`LogConfig::zero_ahead_bytes`] of [`LogConfig::default`]: off. On this project's
/// machines it measured no better for the put tail than growing files (bench/README.md,
/// "Issue 12, eighth pass"); a disk whose journal commits are slow may gain from 4 MiB.
pub const DEFAULT_ZERO_AHEAD_BYTES: u64 = 0;

/// Configuration of one shard log.
#[derive(Clone, Copy, Debug)]
pub struct LogConfig {
    /// Roll to a new segment when the next frame would take the active one past this size.
    pub segment_bytes: u64,
    /// Durability mode.
    pub fsync: FsyncMode,
    /// Roll to a new segment when the next frame's system time is this much (or more) past the
    /// active segment's first frame, so that retention, which deletes whole sealed segments,
    /// can remove old records of a slow shard. `None`: roll by size only.
    pub segment_max_age: Option<Duration>,
    /// The open-file cache the log takes its segment handles from (see [`FileCache`]).
    pub files: &'static FileCache,
    /// In [`FsyncMode::Always`], bytes of zeros kept written and synced past the active
    /// segment's data by a background thread, so that the group commit's data sync has no file
    /// size or block allocation to commit (see `zeroing.rs`); 0 (the default) turns it off.
    /// Each shard's active segment may then take up to this much disk beyond its data, and
    /// the disk writes every byte twice (zeros, then data).
    pub zero_ahead_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 << 20,
            fsync: FsyncMode::Always,
            segment_max_age: Some(Duration::from_secs(3600)),
            files: FileCache::global(),
            zero_ahead_bytes: DEFAULT_ZERO_AHEAD_BYTES,
        }
    }
}

impl PartialEq for LogConfig {
    fn eq(&self, other: &Self) -> bool {
        self.segment_bytes == other.segment_bytes
            && self.fsync == other.fsync
            && self.segment_max_age == other.segment_max_age
            && std::ptr::eq(self.files, other.files)
            && self.zero_ahead_bytes == other.zero_ahead_bytes
    }
}

impl Eq for LogConfig {}

/// Errors of the log.
#[derive(thiserror::Error, Debug)]
pub enum LogError {
    /// An operating-system I/O error.
    #[error("log I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Invalid data where valid data must be: a bad frame in a sealed segment, a gap between
    /// segments, or a frame that fails its check when read.
    #[error("corrupt log segment {segment:?} at offset {offset}: {reason}")]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The requested sequence is older than the oldest retained one.
    #[error("sequence {requested} is out of range: the oldest retained sequence is {first}")]
    OutOfRange { requested: u64, first: u64 },
    /// The append would produce a frame larger than [`MAX_FRAME_BYTES`].
    #[error("append of {size} encoded bytes exceeds the frame limit of {max} bytes")]
    EntryTooLarge { size: u64, max: u64 },
    /// An append with no payloads.
    #[error("append with no entries")]
    EmptyAppend,
    /// The log was closed with [`ShardLog::close`].
    #[error("log is closed")]
    Closed,
    /// An earlier fsync or write failed in a way that leaves durability unknown; the log refuses
    /// further appends until it is reopened (which re-validates the files).
    #[error("log refuses writes after an earlier failure: {0}")]
    Poisoned(String),
    /// A shared store refused a put checked against an older catalog version than its own
    /// ([`store::StoreError::CatalogMoved`]); nothing was appended. The local log never gives it.
    #[error("the shared catalog moved past version {seen}, which the put was checked against")]
    CatalogMoved { seen: i64 },
}

/// One entry read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    /// System time of the frame the entry was appended in (milliseconds since the epoch).
    pub system_time: i64,
    /// The payload, a zero-copy slice of the buffer it was read into.
    pub payload: Bytes,
}

/// Result of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Sequence of the first payload.
    pub first_seq: u64,
    /// Sequence of the last payload (`first_seq + payloads.len() - 1`).
    pub last_seq: u64,
    /// The system time stored for all payloads (the requested one, clamped to be non-decreasing).
    pub system_time: i64,
}
