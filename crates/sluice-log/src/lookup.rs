//! Lookups by SEQUENCE and SYSTEM_TIME on the sparse index.
//!
//! The index finds the range of frames that holds the answer (under a short shared lock, which
//! also takes the segment's file handle, so retention cannot delete it in between); when the
//! index alone cannot tell, the frame headers of that one range are read from the segment
//! file (a range is under [`INDEX_STRIDE`](crate::index::INDEX_STRIDE) bytes plus one frame).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::frame::{self, FrameHeader, HEADER_LEN};
use crate::index::SegmentIndex;
use crate::segment::segment_path;
use crate::shard::ShardLog;
use crate::LogError;

/// Read size while walking frame headers.
const WALK_CHUNK: u64 = 64 << 10;

/// One range of frames whose headers must be read.
struct Probe {
    file: Arc<File>,
    seg_base: u64,
    offset: u64,
    end: u64,
    first_seq: u64,
    /// First sequence after the range.
    first_seq_after: u64,
}

/// What a lookup needs after the index: an answer, or a walk of one range.
enum Plan<T> {
    Done(Option<T>),
    Walk(Probe),
}

impl ShardLog {
    /// System time of a retained, visible sequence. An I/O error while reading the frame's
    /// header is logged and gives `None`; see [`try_time_of`](Self::try_time_of).
    pub fn time_of(&self, seq: u64) -> Option<i64> {
        self.try_time_of(seq).unwrap_or_else(|e| {
            tracing::warn!(dir = %self.dir.display(), seq, error = %e, "time lookup failed");
            None
        })
    }

    /// First retained, visible sequence whose system time is `>= t_ms`. An I/O error while
    /// reading frame headers is logged and gives `None`; see
    /// [`try_seq_at_or_after_time`](Self::try_seq_at_or_after_time).
    pub fn seq_at_or_after_time(&self, t_ms: i64) -> Option<u64> {
        self.try_seq_at_or_after_time(t_ms).unwrap_or_else(|e| {
            tracing::warn!(dir = %self.dir.display(), t_ms, error = %e, "time lookup failed");
            None
        })
    }

    /// System time of the last retained, visible entry.
    pub fn last_time(&self) -> Option<i64> {
        self.ready_or_log();
        self.time_of(self.visible.load(Ordering::Acquire).checked_sub(1)?)
    }

    /// [`time_of`](Self::time_of), with read errors returned.
    pub fn try_time_of(&self, seq: u64) -> Result<Option<i64>, LogError> {
        self.ready()?;
        let probe = {
            let ix = self.index.read();
            if seq >= self.visible.load(Ordering::Acquire) {
                return Ok(None);
            }
            let Some((si, k)) = ix.locate(seq) else {
                return Ok(None);
            };
            let seg = &ix.segments[si];
            let last = seg
                .last
                .expect("a segment holding a sequence has a last frame");
            let range_last_time = seg.points.get(k + 1).map_or(last.time, |p| p.time);
            if seq >= seg.base_seq + u64::from(last.rel_seq) {
                return Ok(Some(last.time));
            }
            if seg.points[k].time == range_last_time {
                // Times are non-decreasing: every frame of the range has this time.
                return Ok(Some(range_last_time));
            }
            self.probe(seg, k, si + 1 == ix.segments.len())?
        };
        let mut found = None;
        self.walk(&probe, |h| {
            if seq < h.end_seq() {
                found = Some(h.time);
                return false;
            }
            true
        })?;
        match found {
            Some(t) => Ok(Some(t)),
            None => Err(self.walk_corrupt(&probe, format!("sequence {seq} not in its range"))),
        }
    }

    /// [`seq_at_or_after_time`](Self::seq_at_or_after_time), with read errors returned.
    pub fn try_seq_at_or_after_time(&self, t_ms: i64) -> Result<Option<u64>, LogError> {
        self.ready()?;
        let (plan, visible) = {
            let ix = self.index.read();
            let visible = self.visible.load(Ordering::Acquire);
            (self.plan_time(&ix.segments, t_ms)?, visible)
        };
        let seq = match plan {
            Plan::Done(seq) => seq,
            Plan::Walk(probe) => {
                let mut found = None;
                self.walk(&probe, |h| {
                    if h.time >= t_ms {
                        found = Some(h.base_seq);
                        return false;
                    }
                    true
                })?;
                // Not in the range: the next range starts the answer.
                Some(found.unwrap_or(probe.first_seq_after))
            }
        };
        Ok(seq.filter(|&s| s < visible))
    }

    /// Finds the range where the first frame with time `>= t` lies.
    fn plan_time(&self, segments: &[SegmentIndex], t: i64) -> Result<Plan<u64>, LogError> {
        // Times are non-decreasing across the whole log, so the first segment whose last time
        // reaches `t` holds the answer (empty segments are skipped).
        let Some(si) = segments
            .iter()
            .position(|s| s.last_time().is_some_and(|lt| lt >= t))
        else {
            return Ok(Plan::Done(None));
        };
        let seg = &segments[si];
        let k = seg.points.partition_point(|p| p.time < t);
        if k == 0 {
            return Ok(Plan::Done(Some(seg.base_seq)));
        }
        // Range k - 1 starts below `t`; the answer is in it or is range k's first frame.
        let last = seg.last.expect("non-empty segment");
        if k == seg.points.len() && seg.base_seq + u64::from(last.rel_seq) == seg.range_base(k - 1)
        {
            return Ok(Plan::Done(Some(seg.range_base(k - 1))));
        }
        let probe = self.probe(seg, k - 1, si + 1 == segments.len())?;
        Ok(Plan::Walk(probe))
    }

    /// A probe of range `k` of `seg`.
    fn probe(&self, seg: &SegmentIndex, k: usize, active: bool) -> Result<Probe, LogError> {
        let file = self.cfg.files.get(
            self.file_key(seg.base_seq),
            || segment_path(&self.dir, seg.base_seq),
            active,
        )?;
        Ok(Probe {
            file,
            seg_base: seg.base_seq,
            offset: seg.range_offset(k),
            end: seg.range_end_offset(k),
            first_seq: seg.range_base(k),
            first_seq_after: seg.range_end_seq(k),
        })
    }

    /// Calls `f` on the header of each frame of the probe's range in order, until it returns
    /// `false`. Headers are checked for sanity and sequence continuity (the frames' CRCs were
    /// checked when the segment was recovered and are checked again by reads).
    fn walk(&self, p: &Probe, mut f: impl FnMut(&FrameHeader) -> bool) -> Result<(), LogError> {
        let mut buf = vec![0u8; (p.end - p.offset).min(WALK_CHUNK) as usize];
        let mut buf_at = p.offset;
        let mut buf_len = 0usize;
        let mut pos = p.offset;
        let mut expected = p.first_seq;
        while pos < p.end {
            if pos + HEADER_LEN as u64 > buf_at + buf_len as u64 || pos < buf_at {
                if p.end - pos < HEADER_LEN as u64 {
                    return Err(self.walk_corrupt_at(p, pos, "frame header cut short".into()));
                }
                buf_at = pos;
                buf_len = (p.end - pos).min(buf.len() as u64) as usize;
                read_at(&p.file, &mut buf[..buf_len], pos).map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => {
                        self.walk_corrupt_at(p, pos, "segment file is shorter than indexed".into())
                    }
                    _ => LogError::Io(e),
                })?;
            }
            let at = (pos - buf_at) as usize;
            let h = frame::parse_header(&buf[at..at + HEADER_LEN])
                .map_err(|r| self.walk_corrupt_at(p, pos, r))?;
            if h.base_seq != expected {
                return Err(self.walk_corrupt_at(
                    p,
                    pos,
                    format!("unexpected frame base sequence {}", h.base_seq),
                ));
            }
            if !f(&h) {
                return Ok(());
            }
            expected = h.end_seq();
            pos += u64::from(h.len);
        }
        Ok(())
    }

    fn walk_corrupt(&self, p: &Probe, reason: String) -> LogError {
        self.walk_corrupt_at(p, p.offset, reason)
    }

    fn walk_corrupt_at(&self, p: &Probe, offset: u64, reason: String) -> LogError {
        LogError::Corrupt {
            segment: segment_path(&self.dir, p.seg_base),
            offset,
            reason,
        }
    }
}

fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}
