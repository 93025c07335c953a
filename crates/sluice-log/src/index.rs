//! The in-memory index: one small entry per frame, grouped by segment.

use std::fs::File;
use std::sync::Arc;

use crate::frame::frame_payload_bytes;
use crate::shard::ShardLog;

/// Index entry of one frame (16 bytes). The frame's entry count and length follow from the next
/// frame's entry (or the segment's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameMeta {
    /// First sequence of the frame minus the segment's base sequence.
    pub rel_seq: u32,
    /// Byte offset of the frame in the segment file.
    pub offset: u32,
    /// System time of the frame.
    pub time: i64,
}

/// One segment as the index knows it.
#[derive(Debug)]
pub(crate) struct SegmentIndex {
    pub base_seq: u64,
    /// One past the last sequence in the segment.
    pub end_seq: u64,
    /// Bytes of frames in the segment file.
    pub size: u64,
    pub frames: Vec<FrameMeta>,
}

impl SegmentIndex {
    pub fn frame_base(&self, i: usize) -> u64 {
        self.base_seq + u64::from(self.frames[i].rel_seq)
    }

    pub fn frame_end_seq(&self, i: usize) -> u64 {
        match self.frames.get(i + 1) {
            Some(next) => self.base_seq + u64::from(next.rel_seq),
            None => self.end_seq,
        }
    }

    pub fn frame_offset(&self, i: usize) -> u64 {
        u64::from(self.frames[i].offset)
    }

    pub fn frame_end_offset(&self, i: usize) -> u64 {
        match self.frames.get(i + 1) {
            Some(next) => u64::from(next.offset),
            None => self.size,
        }
    }

    /// Payload bytes of frame `i`.
    pub fn frame_payload(&self, i: usize) -> u64 {
        let len = self.frame_end_offset(i) - self.frame_offset(i);
        frame_payload_bytes(len, self.frame_end_seq(i) - self.frame_base(i))
    }

    /// Index of the frame holding `seq`, which must lie in `base_seq..end_seq`.
    fn frame_of(&self, seq: u64) -> usize {
        debug_assert!(seq >= self.base_seq && seq < self.end_seq);
        let rel = seq - self.base_seq;
        self.frames
            .partition_point(|f| u64::from(f.rel_seq) <= rel)
            .saturating_sub(1)
    }

    pub fn last_time(&self) -> Option<i64> {
        self.frames.last().map(|f| f.time)
    }
}

/// Where a read must fetch bytes from: a contiguous run of whole frames in one segment.
pub(crate) struct Span {
    pub seg_base: u64,
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
}

/// All segments of a log, oldest first; the last one is the active segment.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub segments: Vec<SegmentIndex>,
    pub total_bytes: u64,
}

impl Index {
    /// Oldest retained sequence.
    pub fn first_seq(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.base_seq)
    }

    /// Segment and frame holding `seq`, if it is retained and written.
    pub fn locate(&self, seq: u64) -> Option<(usize, usize)> {
        let si = self
            .segments
            .partition_point(|s| s.base_seq <= seq)
            .checked_sub(1)?;
        let seg = &self.segments[si];
        (seq < seg.end_seq).then(|| (si, seg.frame_of(seq)))
    }

    /// System time of `seq` if it is retained and below `visible`.
    pub fn time_of(&self, seq: u64, visible: u64) -> Option<i64> {
        if seq >= visible {
            return None;
        }
        let (si, fi) = self.locate(seq)?;
        Some(self.segments[si].frames[fi].time)
    }

    /// First retained sequence below `visible` whose system time is `>= t`.
    pub fn seq_at_or_after_time(&self, t: i64, visible: u64) -> Option<u64> {
        // Times are non-decreasing across the whole log, so the first segment whose last time
        // reaches `t` holds the answer (segments without frames are skipped).
        let seg = self
            .segments
            .iter()
            .find(|s| s.last_time().is_some_and(|lt| lt >= t))?;
        let fi = seg.frames.partition_point(|f| f.time < t);
        let seq = seg.frame_base(fi);
        (seq < visible).then_some(seq)
    }

    /// Appends a frame to the active (last) segment.
    pub fn push_frame(&mut self, meta: FrameMeta, len: u64, end_seq: u64) {
        let seg = self.segments.last_mut().expect("log has an active segment");
        debug_assert_eq!(u64::from(meta.offset), seg.size);
        seg.frames.push(meta);
        seg.size += len;
        seg.end_seq = end_seq;
        self.total_bytes += len;
    }

    /// Plans a read of entries `from..visible`, bounded by `max_entries` entries and (at least)
    /// `max_bytes` of payload, as spans of whole frames. `from` must be retained and `< visible`.
    /// Segment files are taken from the log's file cache here, so call with the index lock held:
    /// retention cannot delete a file between planning and opening it.
    pub fn plan_read(
        &self,
        log: &ShardLog,
        from: u64,
        visible: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> std::io::Result<Vec<Span>> {
        let mut spans: Vec<Span> = Vec::new();
        let Some((mut si, mut fi)) = self.locate(from) else {
            return Ok(spans);
        };
        let (mut entries, mut bytes) = (0u64, 0u64);
        while si < self.segments.len() {
            let seg = &self.segments[si];
            if fi >= seg.frames.len() {
                si += 1;
                fi = 0;
                continue;
            }
            let base = seg.frame_base(fi);
            if base >= visible {
                break;
            }
            let (off, end) = (seg.frame_offset(fi), seg.frame_end_offset(fi));
            match spans.last_mut() {
                Some(sp) if sp.seg_base == seg.base_seq => sp.len = end - sp.offset,
                _ => {
                    // The last segment is the active one: opened read-write, for the writer.
                    let file = log.cfg.files.get(
                        log.file_key(seg.base_seq),
                        &crate::segment::segment_path(&log.dir, seg.base_seq),
                        si + 1 == self.segments.len(),
                    )?;
                    spans.push(Span {
                        seg_base: seg.base_seq,
                        file,
                        offset: off,
                        len: end - off,
                    });
                }
            }
            entries += seg.frame_end_seq(fi) - base.max(from);
            // The part of a partially read first frame is unknown; count whole frames only.
            if base >= from {
                bytes += seg.frame_payload(fi);
            }
            if entries >= max_entries as u64 || bytes >= max_bytes as u64 {
                break;
            }
            fi += 1;
        }
        Ok(spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: u64, frames: &[(u32, u32, i64)], end_seq: u64, size: u64) -> SegmentIndex {
        SegmentIndex {
            base_seq: base,
            end_seq,
            size,
            frames: frames
                .iter()
                .map(|&(rel_seq, offset, time)| FrameMeta {
                    rel_seq,
                    offset,
                    time,
                })
                .collect(),
        }
    }

    fn sample() -> Index {
        // Segment 10: frames [10,12) t=5 and [12,13) t=7; segment 13: [13,16) t=7, [16,17) t=9;
        // segment 17: empty (active).
        Index {
            segments: vec![
                seg(10, &[(0, 0, 5), (2, 100, 7)], 13, 150),
                seg(13, &[(0, 0, 7), (3, 60, 9)], 17, 100),
                seg(17, &[], 17, 0),
            ],
            total_bytes: 250,
        }
    }

    #[test]
    fn locate_and_times() {
        let ix = sample();
        assert_eq!(ix.first_seq(), 10);
        assert_eq!(ix.locate(9), None);
        assert_eq!(ix.locate(10), Some((0, 0)));
        assert_eq!(ix.locate(11), Some((0, 0)));
        assert_eq!(ix.locate(12), Some((0, 1)));
        assert_eq!(ix.locate(15), Some((1, 0)));
        assert_eq!(ix.locate(16), Some((1, 1)));
        assert_eq!(ix.locate(17), None);
        assert_eq!(ix.time_of(12, 17), Some(7));
        assert_eq!(ix.time_of(16, 16), None);
        assert_eq!(ix.seq_at_or_after_time(i64::MIN, 17), Some(10));
        assert_eq!(ix.seq_at_or_after_time(6, 17), Some(12));
        assert_eq!(ix.seq_at_or_after_time(7, 17), Some(12));
        assert_eq!(ix.seq_at_or_after_time(8, 17), Some(16));
        assert_eq!(ix.seq_at_or_after_time(8, 16), None);
        assert_eq!(ix.seq_at_or_after_time(10, 17), None);
        assert_eq!(ix.segments[0].frame_payload(0), 100 - 32 - 8);
        assert_eq!(ix.segments[1].frame_payload(0), 60 - 32 - 12);
        assert_eq!(ix.segments[1].frame_payload(1), 40 - 32 - 4);
    }
}
