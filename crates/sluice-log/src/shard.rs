//! [`ShardLog`]: opening with recovery, appending, reading and lookups.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::commit::GroupCommit;
use crate::frame::{self, PendingFrame, HEADER_LEN};
use crate::index::{FrameMeta, Index, SegmentIndex, Span};
use crate::persist::{clean_marker_path, encode, index_path, write_atomically};
use crate::segment::{segment_path, sync_dir};
use crate::zeroing::ZeroAhead;
use crate::{AppendInfo, Entry, FsyncMode, LogConfig, LogError};

/// One shard's append-only log. See the crate docs for format, invariants and concurrency.
pub struct ShardLog {
    /// Process-unique id, the first half of this log's [`FileCache`](crate::FileCache) keys.
    pub(crate) id: u64,
    pub(crate) dir: PathBuf,
    pub(crate) cfg: LogConfig,
    /// Append state; held while a frame is written (and while a segment rolls).
    pub(crate) writer: Mutex<Writer>,
    /// Segments and frame index; written briefly by appends and retention, read by readers.
    pub(crate) index: RwLock<Index>,
    pub(crate) commit: GroupCommit,
    /// One past the last sequence readers may see.
    pub(crate) visible: AtomicU64,
    pub(crate) watch_tx: watch::Sender<u64>,
    pub(crate) closed: AtomicBool,
    /// Set after a failed fsync or an unrepairable failed write.
    pub(crate) poison: OnceLock<String>,
    /// Whether the files have been recovered (see `recovery.rs`); until then the fields above
    /// describe an empty log.
    pub(crate) recovered: AtomicBool,
    /// Held while recovering.
    pub(crate) recovery: Mutex<()>,
    /// Zeros written ahead of the active segment's data (see `zeroing.rs`).
    pub(crate) zeros: Arc<ZeroAhead>,
}

/// Progress of one [`ShardLog::read`] call.
struct ReadCursor {
    from_seq: u64,
    /// One past the last sequence the read may return.
    visible: u64,
    max_entries: usize,
    max_bytes: usize,
    /// Base sequence the next frame must have (`None` before the first frame).
    expected: Option<u64>,
    out: Vec<Entry>,
    /// Payload bytes in `out`.
    bytes: usize,
}

/// State of the active segment, owned by the append lock.
pub(crate) struct Writer {
    /// In [`FsyncMode::Always`], the handle the last write went through, kept (even if the file
    /// cache evicted it) until a sync covered that write, so that the sync goes through the very
    /// descriptor that wrote.
    pub unsynced: Option<Arc<File>>,
    pub base_seq: u64,
    pub size: u64,
    pub next_seq: u64,
    pub last_time: Option<i64>,
    /// System time of the active segment's first frame (drives rolling by age).
    pub first_time: Option<i64>,
}

impl ShardLog {
    /// Appends all payloads as ONE frame with consecutive sequences and one system time, and
    /// returns only after the frame is durable in [`FsyncMode::Always`] (concurrent appenders
    /// share one fsync). `system_time_ms` is clamped to be `>=` the last frame's time.
    pub fn append(&self, payloads: &[&[u8]], system_time_ms: i64) -> Result<AppendInfo, LogError> {
        let mut frame = PendingFrame::encode(payloads)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        self.ready()?;
        // Bounds the handles pinned by appends waiting for their sync (see `files.rs`).
        let _slot = (self.cfg.fsync == FsyncMode::Always).then(|| self.cfg.files.write_slot());
        let info = {
            let mut w = self.writer.lock();
            self.check_writable()?;
            let time = w
                .last_time
                .map_or(system_time_ms, |t| t.max(system_time_ms));
            if w.size > 0 && self.needs_roll(&w, frame.len(), time) {
                self.roll_locked(&mut w)?;
            }
            let base = w.next_seq;
            let offset = w.size;
            let file = self.active_file(&w)?;
            let zero_ahead = self.zero_ahead_bytes();
            if zero_ahead > 0 {
                self.zeros.before_write(offset + frame.len());
            }
            if let Err(e) = file.write_all_at(frame.finish(base, time), offset) {
                // Cut off whatever part of the frame reached the file, so that it cannot end up
                // inside a sealed segment later.
                self.zeros.quiesce();
                match file.set_len(offset) {
                    Ok(()) => self.zeros.cut_to(offset),
                    Err(e2) => {
                        self.set_poison(format!("write failed ({e}) and truncation failed ({e2})"))
                    }
                }
                return Err(e.into());
            }
            if self.cfg.fsync == FsyncMode::Always {
                w.unsynced = Some(file);
            }
            let end = base + u64::from(frame.count());
            let meta = FrameMeta {
                rel_seq: (base - w.base_seq) as u32,
                offset: offset as u32,
                time,
            };
            self.index.write().push_frame(meta, frame.len(), end);
            w.size += frame.len();
            w.next_seq = end;
            if zero_ahead > 0 {
                let seg_base = w.base_seq;
                self.zeros
                    .after_write(w.size, zero_ahead, self.segment_limit(), || {
                        segment_path(&self.dir, seg_base)
                    });
            }
            w.last_time = Some(time);
            w.first_time.get_or_insert(time);
            if self.cfg.fsync != FsyncMode::Always {
                self.publish(end);
            }
            AppendInfo {
                first_seq: base,
                last_seq: end - 1,
                system_time: time,
            }
        };
        match self.cfg.fsync {
            FsyncMode::Always => self.wait_durable(info.last_seq + 1)?,
            FsyncMode::Interval(d) => {
                if self.commit.sync_due(d) {
                    self.wait_durable(info.last_seq + 1)?;
                }
            }
            FsyncMode::Never => {}
        }
        Ok(info)
    }

    /// Entries with `seq >= from_seq`, in order, at most `max_entries` of them, stopping once
    /// the payload total reaches `max_bytes` or before an entry that would take it past
    /// `max_bytes` (but always returning at least one entry if any exists and `max_entries > 0`). Only visible (acknowledged) entries
    /// are returned. `from_seq < first_seq()` is [`LogError::OutOfRange`]; `from_seq >=
    /// next_seq()` gives an empty vector.
    ///
    /// The payloads share the buffers they were read into.
    pub fn read(
        &self,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, LogError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        self.ready()?;
        let visible = self.visible.load(Ordering::Acquire);
        let spans = {
            let ix = self.index.read();
            let first = ix.first_seq().min(visible);
            if from_seq < first {
                return Err(LogError::OutOfRange {
                    requested: from_seq,
                    first,
                });
            }
            if from_seq >= visible || max_entries == 0 {
                return Ok(Vec::new());
            }
            ix.plan_read(self, from_seq, visible, max_entries, max_bytes)?
        };
        let mut cur = ReadCursor {
            from_seq,
            visible,
            max_entries,
            max_bytes,
            expected: None,
            out: Vec::new(),
            bytes: 0,
        };
        for span in spans {
            if !self.read_span(&span, &mut cur)? {
                break;
            }
        }
        Ok(cur.out)
    }

    /// Reads one span and adds its entries to the cursor; returns `false` once a limit is reached.
    fn read_span(&self, span: &Span, cur: &mut ReadCursor) -> Result<bool, LogError> {
        let corrupt = |pos: usize, reason: String| LogError::Corrupt {
            segment: segment_path(&self.dir, span.seg_base),
            offset: span.offset + pos as u64,
            reason,
        };
        let mut buf = vec![0u8; span.len as usize];
        span.file
            .read_exact_at(&mut buf, span.offset)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    corrupt(0, "segment file is shorter than indexed".into())
                }
                _ => LogError::Io(e),
            })?;
        let buf = Bytes::from(buf);
        let mut pos = 0;
        while pos < buf.len() {
            if buf.len() - pos < HEADER_LEN {
                return Err(corrupt(pos, "frame header cut short".into()));
            }
            let h = frame::parse_header(&buf[pos..]).map_err(|r| corrupt(pos, r))?;
            let end = pos + h.len as usize;
            if end > buf.len() {
                return Err(corrupt(pos, "frame longer than indexed".into()));
            }
            let fr = buf.slice(pos..end);
            frame::check_frame(&h, &fr).map_err(|r| corrupt(pos, r))?;
            let continuous = match cur.expected {
                Some(e) => h.base_seq == e,
                // The span starts at an index point at or before `from_seq`.
                None => h.base_seq <= cur.from_seq,
            };
            if !continuous {
                return Err(corrupt(
                    pos,
                    format!("unexpected frame base sequence {}", h.base_seq),
                ));
            }
            cur.expected = Some(h.end_seq());
            for (seq, payload) in (h.base_seq..).zip(frame::payloads(&fr, &h)) {
                if seq < cur.from_seq {
                    continue;
                }
                if seq >= cur.visible {
                    return Ok(false);
                }
                let bytes_full =
                    cur.bytes >= cur.max_bytes || cur.bytes + payload.len() > cur.max_bytes;
                if cur.out.len() >= cur.max_entries || (!cur.out.is_empty() && bytes_full) {
                    return Ok(false);
                }
                cur.bytes += payload.len();
                cur.out.push(Entry {
                    seq,
                    system_time: h.time,
                    payload,
                });
            }
            pos = end;
        }
        Ok(true)
    }

    /// Oldest retained sequence (equal to [`next_seq`](Self::next_seq) when the log is empty).
    pub fn first_seq(&self) -> u64 {
        self.ready_or_log();
        let ix = self.index.read();
        ix.first_seq().min(self.visible.load(Ordering::Acquire))
    }

    /// One past the last visible (durable, in [`FsyncMode::Always`]) sequence.
    pub fn next_seq(&self) -> u64 {
        self.ready_or_log();
        self.visible.load(Ordering::Acquire)
    }

    /// Total bytes of the segment files.
    pub fn size_bytes(&self) -> u64 {
        self.ready_or_log();
        self.index.read().total_bytes
    }

    /// Heap bytes of the in-memory index (for benchmarks and memory accounting).
    #[doc(hidden)]
    pub fn index_bytes(&self) -> usize {
        self.ready_or_log();
        self.index.read().heap_bytes()
    }

    /// Waits until no zeroing job of this log is queued or running, then returns how many bytes
    /// of zeros extend the active segment past its data (for tests and benchmarks).
    #[doc(hidden)]
    pub fn settle_zeros(&self) -> u64 {
        self.zeros.wait_idle();
        let w = self.writer.lock();
        self.zeros.zeros_past(w.size)
    }

    /// Number of segment files (sealed and active).
    pub fn segment_count(&self) -> usize {
        self.ready_or_log();
        self.index.read().segments.len()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.cfg
    }

    /// A receiver of [`next_seq`](Self::next_seq), updated after each durable append.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.ready_or_log();
        self.watch_tx.subscribe()
    }

    /// Seals the active segment if it holds any frame, so that retention may delete it; the next
    /// append goes to a new segment. Returns whether a segment was sealed.
    pub fn roll(&self) -> Result<bool, LogError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        self.ready()?;
        let mut w = self.writer.lock();
        self.check_writable()?;
        if w.size == 0 {
            return Ok(false);
        }
        self.roll_locked(&mut w)?;
        Ok(true)
    }

    /// Closes the log: later appends and reads fail with [`LogError::Closed`]; everything
    /// appended so far is synced (except in [`FsyncMode::Never`]). Then, unless the log is
    /// poisoned, the active segment's index and the clean-shutdown marker are written, so the
    /// next [`open`](Self::open) reads no segment in full.
    pub fn close(&self) -> Result<(), LogError> {
        {
            let _recovery = self.recovery.lock();
            if !self.is_recovered() {
                // Never used: the files are as the last process left them.
                self.closed.store(true, Ordering::Release);
                return Ok(());
            }
        }
        let target = {
            let w = self.writer.lock();
            self.closed.store(true, Ordering::Release);
            w.next_seq
        };
        let res = match self.cfg.fsync {
            FsyncMode::Never => Ok(()),
            _ => self.wait_durable(target),
        };
        // The active index records the segment's length: its data, without zeros past it.
        let res = res.and_then(|()| self.cut_zeros(&self.writer.lock(), true));
        self.zeros.quiesce();
        self.writer.lock().unsynced = None;
        self.cfg.files.remove_log(self.id);
        res?;
        if self.poison.get().is_none() {
            self.write_clean_marker()?;
        }
        Ok(())
    }

    /// Writes the active segment's index and then the clean-shutdown marker, after everything
    /// was synced. Neither is fsync'd: the marker only lets recovery try the active index, which
    /// is still checked (checksum, length, last frame), so a marker or index lost or torn by a
    /// crash costs a scan, never a wrong answer; and since the data was synced first, the
    /// marker cannot outlive frames that did not reach the disk.
    fn write_clean_marker(&self) -> Result<(), LogError> {
        let _w = self.writer.lock();
        let active = {
            let ix = self.index.read();
            ix.segments
                .last()
                .filter(|s| s.last.is_some())
                .map(|s| (s.base_seq, encode(s)))
        };
        if let Some((base, bytes)) = active {
            write_atomically(&index_path(&self.dir, base), &bytes, false)?;
        }
        write_atomically(&clean_marker_path(&self.dir), b"", false)?;
        Ok(())
    }

    /// The cache key of one of this log's segments.
    pub(crate) fn file_key(&self, base: u64) -> crate::files::FileKey {
        (self.id, base)
    }

    /// A handle on the active segment: the one of the last unsynced write, or the cached one.
    pub(crate) fn active_file(&self, w: &Writer) -> io::Result<Arc<File>> {
        match &w.unsynced {
            Some(f) => Ok(f.clone()),
            None => self.cfg.files.get(
                self.file_key(w.base_seq),
                || segment_path(&self.dir, w.base_seq),
                true,
            ),
        }
    }

    fn check_writable(&self) -> Result<(), LogError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        match self.poison.get() {
            Some(reason) => Err(LogError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn set_poison(&self, reason: String) {
        tracing::error!(dir = %self.dir.display(), %reason, "shard log poisoned");
        let _ = self.poison.set(reason);
    }

    /// [`LogConfig::zero_ahead_bytes`] where it applies ([`FsyncMode::Always`]), else 0.
    fn zero_ahead_bytes(&self) -> u64 {
        match self.cfg.fsync {
            FsyncMode::Always => self.cfg.zero_ahead_bytes,
            _ => 0,
        }
    }

    /// Size past which the active segment seals (a lone larger frame gets a segment of its own).
    fn segment_limit(&self) -> u64 {
        self.cfg.segment_bytes.min(u64::from(u32::MAX))
    }

    /// Stops zeroing ahead of the active segment and cuts the file back to its data if zeros
    /// extend it; with `sync` (unless in [`FsyncMode::Never`]) the cut is synced, so that no
    /// later state of the file has them back (a roll syncs the segment itself right after).
    fn cut_zeros(&self, w: &Writer, sync: bool) -> Result<(), LogError> {
        if self.zeros.quiesce() <= w.size {
            return Ok(());
        }
        let file = self.active_file(w)?;
        file.set_len(w.size)?;
        self.zeros.cut_to(w.size);
        if sync && self.cfg.fsync != FsyncMode::Never {
            self.fsync(&file)?;
        }
        Ok(())
    }

    fn needs_roll(&self, w: &Writer, frame_len: u64, time: i64) -> bool {
        let limit = self.segment_limit();
        let too_old = match (self.cfg.segment_max_age, w.first_time) {
            (Some(age), Some(first)) => {
                time.saturating_sub(first) >= i64::try_from(age.as_millis()).unwrap_or(i64::MAX)
            }
            _ => false,
        };
        w.size + frame_len > limit || w.next_seq - w.base_seq > u64::from(u32::MAX) || too_old
    }

    /// Seals the active segment (fsync'd first) and starts a new one at `w.next_seq`.
    fn roll_locked(&self, w: &mut Writer) -> Result<(), LogError> {
        let syncs = self.cfg.fsync != FsyncMode::Never;
        // A sealed segment holds frames only; with zeros cut, its sync below covers the length.
        self.cut_zeros(w, false)?;
        if syncs {
            let file = self.active_file(w)?;
            self.fsync(&file)?;
        }
        // Persist the sealed segment's index (made durable by the directory sync below). If
        // that fails, the next open scans the segment instead.
        let sealed_index = self
            .index
            .read()
            .segments
            .last()
            .filter(|s| s.last.is_some())
            .map(encode);
        if let Some(bytes) = sealed_index {
            let path = index_path(&self.dir, w.base_seq);
            if let Err(e) = write_atomically(&path, &bytes, syncs) {
                tracing::warn!(index = %path.display(), error = %e, "cannot write segment index");
            }
        }
        let base = w.next_seq;
        let file = create_segment(&self.dir, base)?;
        if syncs {
            if let Err(e) = sync_dir(&self.dir) {
                let _ = std::fs::remove_file(segment_path(&self.dir, base));
                return Err(e.into());
            }
        }
        self.cfg.files.insert(self.file_key(base), Arc::new(file));
        self.zeros.reset(0);
        {
            let mut ix = self.index.write();
            if let Some(old) = ix.segments.last_mut() {
                old.points.shrink_to_fit();
            }
            ix.segments.push(SegmentIndex::empty(base));
        }
        w.unsynced = None;
        w.base_seq = base;
        w.size = 0;
        w.first_time = None;
        if syncs {
            // Everything up to the new base is in the sealed, fsync'd segment.
            self.mark_synced(base);
        }
        tracing::debug!(dir = %self.dir.display(), base, "rolled to a new segment");
        Ok(())
    }
}

impl Drop for ShardLog {
    fn drop(&mut self) {
        // No zeroing job may outlive the log: another instance may open its files next.
        self.zeros.quiesce();
        if matches!(self.cfg.fsync, FsyncMode::Interval(_)) && self.poison.get().is_none() {
            if let Err(e) = self.sync() {
                tracing::warn!(dir = %self.dir.display(), error = %e, "sync on drop failed");
            }
        }
        self.cfg.files.remove_log(self.id);
    }
}

/// Creates an empty segment file (the caller fsyncs the directory).
pub(crate) fn create_segment(dir: &Path, base: u64) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(segment_path(dir, base))
}

/// The directory holding `p` (`.` for a bare relative name).
pub(crate) fn parent_of(p: &Path) -> &Path {
    match p.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}
