//! Opening a log: eagerly ([`ShardLog::open`]) or lazily ([`ShardLog::open_lazy`], recovered
//! on first use), and the recovery itself.
//!
//! Recovery lists the segments and, for each, loads its persisted index if it can be trusted
//! (sealed segments always; the active one only after a clean shutdown, see `persist.rs`), or
//! scans it (truncating a torn tail of the active segment) and rewrites the index of a sealed
//! one. A lazily opened log does no I/O until a call needs its state; then that call (and any
//! concurrent one on the same log) waits for the recovery of this log only. A failed recovery is
//! retried by the next call. Syncing or closing a log that was never recovered does nothing:
//! its files are as the last process left them.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::commit::GroupCommit;
use crate::index::{Index, SegmentIndex};
use crate::persist::{clean_marker_path, index_path, load_index, remove_file_if_any, write_index};
use crate::segment::{is_zeros, list_segments, scan_segment, segment_path, sync_dir};
use crate::shard::{create_segment, parent_of, ShardLog, Writer};
use crate::{FsyncMode, LogConfig, LogError};

/// What recovery found: the segments' indexes, the active segment's file and the writer state.
struct Recovered {
    segments: Vec<SegmentIndex>,
    active: File,
    writer: Writer,
}

impl ShardLog {
    /// Opens (creating if missing) the log in `dir` and recovers it now: every segment is
    /// loaded from its trusted persisted index or scanned, and a torn tail of the active
    /// segment is truncated (see the crate docs).
    pub fn open(dir: &Path, cfg: LogConfig) -> Result<ShardLog, LogError> {
        let log = ShardLog::open_lazy(dir, cfg);
        log.ready()?;
        Ok(log)
    }

    /// Returns a log for `dir` without touching the disk; the first call that needs its state
    /// recovers it as [`open`](Self::open) would (and returns its error if that fails).
    pub fn open_lazy(dir: &Path, cfg: LogConfig) -> ShardLog {
        ShardLog {
            id: crate::files::next_log_id(),
            dir: dir.to_path_buf(),
            cfg,
            writer: Mutex::new(Writer {
                unsynced: None,
                base_seq: 0,
                size: 0,
                next_seq: 0,
                last_time: None,
                first_time: None,
            }),
            index: RwLock::new(Index::default()),
            commit: GroupCommit::new(0),
            visible: AtomicU64::new(0),
            watch_tx: watch::Sender::new(0),
            closed: AtomicBool::new(false),
            poison: OnceLock::new(),
            recovered: AtomicBool::new(false),
            recovery: Mutex::new(()),
            zeros: crate::zeroing::ZeroAhead::new(),
        }
    }

    /// Whether the log's files have been recovered.
    pub fn is_recovered(&self) -> bool {
        self.recovered.load(Ordering::Acquire)
    }

    /// Recovers the log if that has not happened yet (waiting for a recovery under way).
    pub(crate) fn ready(&self) -> Result<(), LogError> {
        if self.is_recovered() {
            return Ok(());
        }
        let _guard = self.recovery.lock();
        if self.is_recovered() {
            return Ok(());
        }
        let r = recover(&self.dir, self.cfg)?;
        let next = r.writer.next_seq;
        tracing::debug!(dir = %self.dir.display(), segments = r.segments.len(), next_seq = next, "recovered shard log");
        self.cfg
            .files
            .insert(self.file_key(r.writer.base_seq), Arc::new(r.active));
        let total_bytes = r.segments.iter().map(|s| s.size).sum();
        *self.index.write() = Index {
            segments: r.segments,
            total_bytes,
        };
        // Recovery left the active segment exactly as long as its data.
        self.zeros.reset(r.writer.size);
        *self.writer.lock() = r.writer;
        self.commit.reset(next);
        self.visible.store(next, Ordering::Release);
        self.watch_tx.send_replace(next);
        self.recovered.store(true, Ordering::Release);
        Ok(())
    }

    /// [`ready`](Self::ready) for calls that cannot return an error: a failure is logged and
    /// the log looks empty to them (appends and reads return the error).
    pub(crate) fn ready_or_log(&self) {
        if let Err(e) = self.ready() {
            tracing::error!(dir = %self.dir.display(), error = %e, "shard log recovery failed");
        }
    }
}

/// Recovers the files of the log in `dir` (creating the directory and the first segment if
/// missing).
fn recover(dir: &Path, cfg: LogConfig) -> Result<Recovered, LogError> {
    let syncs = cfg.fsync != FsyncMode::Never;
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)?;
        if syncs {
            sync_dir(parent_of(dir))?;
        }
    }
    let marker = clean_marker_path(dir);
    let clean = marker.exists();
    let bases = list_segments(dir)?;
    let mut segments: Vec<SegmentIndex> = Vec::with_capacity(bases.len().max(1));
    let mut expected: Option<u64> = None;
    let mut last_time: Option<i64> = None;
    let mut dir_dirty = false;
    let mut active: Option<File> = None;
    let mut first_time: Option<i64> = None;
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base);
        let is_last = i + 1 == bases.len();
        if let Some(exp) = expected.filter(|&e| e != base) {
            return Err(LogError::Corrupt {
                segment: path,
                offset: 0,
                reason: format!("segment starts at sequence {base}, previous one ends at {exp}"),
            });
        }
        let file = OpenOptions::new().read(true).write(is_last).open(&path)?;
        // A sealed segment's index is trusted once checked; the active segment's only
        // after a clean shutdown (it is written by `close`).
        let persisted = if !is_last || clean {
            load_index(dir, base, &file)?.filter(|seg| {
                let in_order = last_time.is_none_or(|t| seg.first_time() >= Some(t));
                if !in_order {
                    tracing::warn!(segment = %path.display(), "segment index goes back in time; scanning");
                }
                in_order
            })
        } else {
            None
        };
        let seg = match persisted {
            Some(seg) => seg,
            None => {
                let scan = scan_segment(&file, base, last_time)?;
                if let Some((offset, reason)) = scan.bad {
                    if !is_last {
                        return Err(LogError::Corrupt {
                            segment: path,
                            offset,
                            reason,
                        });
                    }
                    let discarded = scan.file_len - offset;
                    // What a crash leaves of the zeros written ahead (see `zeroing.rs`) starts
                    // with zeros where a torn frame starts with its header; the first 64 KiB
                    // tell them apart (only the message depends on it, not what is cut).
                    if is_zeros(&file, offset, discarded.min(64 << 10))? {
                        tracing::debug!(segment = %path.display(), offset, discarded_bytes = discarded, "cutting zeros past the active segment's data");
                    } else {
                        tracing::warn!(
                            segment = %path.display(),
                            offset,
                            discarded_bytes = discarded,
                            %reason,
                            "truncating torn tail of shard log"
                        );
                    }
                    file.set_len(scan.index.size)?;
                    file.sync_all()?;
                }
                if !is_last && scan.index.points.is_empty() {
                    tracing::warn!(segment = %path.display(), "removing empty sealed segment");
                    std::fs::remove_file(&path)?;
                    remove_file_if_any(&index_path(dir, base))?;
                    dir_dirty = true;
                    continue;
                }
                if !is_last {
                    // Rewrite the missing or untrusted index so the next open is fast.
                    match write_index(dir, &scan.index, syncs) {
                        Ok(()) => dir_dirty = true,
                        Err(e) => {
                            tracing::warn!(segment = %path.display(), error = %e, "cannot write segment index")
                        }
                    }
                }
                scan.index
            }
        };
        if is_last {
            // The active segment grows from here on: its index would go stale. No directory
            // fsync is needed for this removal (nor the marker's): should they come back after
            // a crash, the index no longer matches the segment's length, or the segment is
            // exactly as it was when the index was written (see `ShardLog::close`).
            remove_file_if_any(&index_path(dir, base))?;
        }
        expected = Some(seg.end_seq);
        last_time = seg.last_time().or(last_time);
        first_time = seg.first_time();
        segments.push(seg);
        if is_last {
            active = Some(file);
        }
    }
    if clean {
        // From now on the active segment may change.
        std::fs::remove_file(&marker)?;
    }
    let active = match active {
        Some(f) => f,
        None => {
            let f = create_segment(dir, 0)?;
            dir_dirty = true;
            segments.push(SegmentIndex::empty(0));
            first_time = None;
            f
        }
    };
    if syncs {
        if dir_dirty {
            sync_dir(dir)?;
        }
        // Whatever a previous process left in the page cache is about to become visible.
        active.sync_data()?;
    }
    let seg = segments.last().expect("at least one segment");
    let writer = Writer {
        unsynced: None,
        base_seq: seg.base_seq,
        size: seg.size,
        next_seq: seg.end_seq,
        last_time,
        first_time,
    };
    Ok(Recovered {
        segments,
        active,
        writer,
    })
}
