//! The in-memory sparse index: per segment, one point per [`INDEX_STRIDE`] bytes of frames,
//! plus the segment's last frame.
//!
//! A segment's first frame is always a point; a later frame becomes a point when it starts at
//! least [`INDEX_STRIDE`] bytes after the previous point. A point's *range* is the run of whole
//! frames from it to the next point (or the segment's end). Lookups find the range by binary
//! search and, when they need a single frame, walk the frame headers of that range in the
//! segment file (see `lookup.rs`): a range is under [`INDEX_STRIDE`] bytes plus one frame.

use std::fs::File;
use std::sync::Arc;

use crate::shard::ShardLog;

/// Bytes of frames per index point: 16 bytes of index per 4 KiB of data (0.4 %), so with
/// single-record frames of about 100 bytes one point covers about 40 frames.
pub(crate) const INDEX_STRIDE: u64 = 4096;

/// Index entry of one frame (16 bytes).
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentIndex {
    pub base_seq: u64,
    /// One past the last sequence in the segment.
    pub end_seq: u64,
    /// Bytes of frames in the segment file.
    pub size: u64,
    /// Sparse points, in file order; empty only for an empty segment.
    pub points: Vec<FrameMeta>,
    /// The segment's last frame (`None` for an empty segment).
    pub last: Option<FrameMeta>,
}

impl SegmentIndex {
    pub fn empty(base_seq: u64) -> SegmentIndex {
        SegmentIndex {
            base_seq,
            end_seq: base_seq,
            size: 0,
            points: Vec::new(),
            last: None,
        }
    }

    /// Adds a frame written at the segment's end; `len` is its length, `end_seq` one past its
    /// last sequence.
    pub fn push(&mut self, meta: FrameMeta, len: u64, end_seq: u64) {
        debug_assert_eq!(u64::from(meta.offset), self.size);
        let is_point = self
            .points
            .last()
            .is_none_or(|p| u64::from(meta.offset) >= u64::from(p.offset) + INDEX_STRIDE);
        if is_point {
            self.points.push(meta);
        }
        self.last = Some(meta);
        self.size += len;
        self.end_seq = end_seq;
    }

    /// First sequence of range `k`.
    pub fn range_base(&self, k: usize) -> u64 {
        self.base_seq + u64::from(self.points[k].rel_seq)
    }

    /// One past the last sequence of range `k`.
    pub fn range_end_seq(&self, k: usize) -> u64 {
        match self.points.get(k + 1) {
            Some(next) => self.base_seq + u64::from(next.rel_seq),
            None => self.end_seq,
        }
    }

    pub fn range_offset(&self, k: usize) -> u64 {
        u64::from(self.points[k].offset)
    }

    pub fn range_end_offset(&self, k: usize) -> u64 {
        match self.points.get(k + 1) {
            Some(next) => u64::from(next.offset),
            None => self.size,
        }
    }

    /// Index of the range holding `seq`, which must lie in `base_seq..end_seq`.
    pub fn range_of(&self, seq: u64) -> usize {
        debug_assert!(seq >= self.base_seq && seq < self.end_seq);
        let rel = seq - self.base_seq;
        self.points
            .partition_point(|f| u64::from(f.rel_seq) <= rel)
            .saturating_sub(1)
    }

    pub fn first_time(&self) -> Option<i64> {
        self.points.first().map(|f| f.time)
    }

    pub fn last_time(&self) -> Option<i64> {
        self.last.map(|f| f.time)
    }

    /// Heap bytes this segment's index takes.
    pub fn heap_bytes(&self) -> usize {
        self.points.capacity() * std::mem::size_of::<FrameMeta>()
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

    /// Segment and range holding `seq`, if it is retained and written.
    pub fn locate(&self, seq: u64) -> Option<(usize, usize)> {
        let si = self
            .segments
            .partition_point(|s| s.base_seq <= seq)
            .checked_sub(1)?;
        let seg = &self.segments[si];
        (seq < seg.end_seq).then(|| (si, seg.range_of(seq)))
    }

    /// Appends a frame to the active (last) segment.
    pub fn push_frame(&mut self, meta: FrameMeta, len: u64, end_seq: u64) {
        let seg = self.segments.last_mut().expect("log has an active segment");
        seg.push(meta, len, end_seq);
        self.total_bytes += len;
    }

    /// Plans a read of entries `from..visible`, bounded by `max_entries` entries and (at least)
    /// `max_bytes` of payload, as spans of whole frames (whole index ranges: a span may start
    /// before `from` and end past `visible`; the reader skips what it must not return).
    /// `from` must be retained and `< visible`. Segment files are taken from the log's file
    /// cache here, so call with the index lock held: retention cannot delete a file between
    /// planning and opening it.
    pub fn plan_read(
        &self,
        log: &ShardLog,
        from: u64,
        visible: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> std::io::Result<Vec<Span>> {
        let mut spans: Vec<Span> = Vec::new();
        let Some((mut si, mut k)) = self.locate(from) else {
            return Ok(spans);
        };
        let (mut entries, mut bytes) = (0u64, 0u64);
        while si < self.segments.len() {
            let seg = &self.segments[si];
            if k >= seg.points.len() {
                si += 1;
                k = 0;
                continue;
            }
            let base = seg.range_base(k);
            if base >= visible {
                break;
            }
            let (off, end) = (seg.range_offset(k), seg.range_end_offset(k));
            match spans.last_mut() {
                Some(sp) if sp.seg_base == seg.base_seq => sp.len = end - sp.offset,
                _ => {
                    // The last segment is the active one: opened read-write, for the writer.
                    let file = log.cfg.files.get(
                        log.file_key(seg.base_seq),
                        || crate::segment::segment_path(&log.dir, seg.base_seq),
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
            let range_entries = seg.range_end_seq(k).min(visible) - base.max(from);
            entries += range_entries;
            // Payload of a range is at least its length minus a header and a length prefix
            // per entry (a frame holds at least one entry). The part of a partially read first
            // range is unknown; count whole ranges only.
            if base >= from {
                let n = seg.range_end_seq(k) - base;
                bytes += (end - off).saturating_sub(n * (crate::frame::HEADER_LEN as u64 + 4));
            }
            if entries >= max_entries as u64 || bytes >= max_bytes as u64 {
                break;
            }
            k += 1;
        }
        Ok(spans)
    }

    /// Heap bytes of the whole index.
    pub fn heap_bytes(&self) -> usize {
        self.segments.capacity() * std::mem::size_of::<SegmentIndex>()
            + self
                .segments
                .iter()
                .map(SegmentIndex::heap_bytes)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(rel_seq: u32, offset: u32, time: i64) -> FrameMeta {
        FrameMeta {
            rel_seq,
            offset,
            time,
        }
    }

    #[test]
    fn points_are_sparse_and_ranges_cover_the_segment() {
        let mut seg = SegmentIndex::empty(100);
        // 300 frames of 100 bytes with one entry each, then a huge one, then two small ones.
        for i in 0..300u32 {
            seg.push(meta(i, i * 100, i64::from(i)), 100, 100 + u64::from(i) + 1);
        }
        seg.push(meta(300, 30_000, 300), 10_000, 402);
        seg.push(meta(302, 40_000, 301), 100, 403);
        seg.push(meta(303, 40_100, 301), 100, 404);
        // A point at 0, 4100, 8200, ... (every 41st frame), then the huge frame, then the one
        // after it (it starts 10 000 bytes after the huge frame's point).
        let offsets: Vec<u32> = seg.points.iter().map(|p| p.offset).collect();
        assert_eq!(
            offsets,
            vec![0, 4100, 8200, 12300, 16400, 20500, 24600, 28700, 40000]
        );
        assert_eq!(seg.last, Some(meta(303, 40_100, 301)));
        assert_eq!(seg.range_of(100), 0);
        assert_eq!(seg.range_of(140), 0);
        assert_eq!(seg.range_of(141), 1);
        assert_eq!(seg.range_of(401), 7);
        assert_eq!(seg.range_of(402), 8);
        assert_eq!(seg.range_end_seq(8), 404);
        assert_eq!(seg.range_end_offset(7), 40_000);
        assert_eq!(seg.range_end_offset(8), 40_200);
        for k in 0..seg.points.len() {
            assert!(seg.range_end_offset(k) - seg.range_offset(k) < INDEX_STRIDE + 10_000);
        }
    }

    #[test]
    fn locate_across_segments() {
        let mut a = SegmentIndex::empty(10);
        a.push(meta(0, 0, 5), 100, 12);
        a.push(meta(2, 100, 7), 50, 13);
        let mut b = SegmentIndex::empty(13);
        b.push(meta(0, 0, 7), 60, 16);
        let ix = Index {
            segments: vec![a, b, SegmentIndex::empty(16)],
            total_bytes: 210,
        };
        assert_eq!(ix.first_seq(), 10);
        assert_eq!(ix.locate(9), None);
        assert_eq!(ix.locate(10), Some((0, 0)));
        assert_eq!(ix.locate(12), Some((0, 0)));
        assert_eq!(ix.locate(15), Some((1, 0)));
        assert_eq!(ix.locate(16), None);
    }
}
