//! The archive object format: one shard range's frames plus a footer index.
//!
//! # Layout (all integers little-endian)
//!
//! | part    | size              | content                                                  |
//! |---------|-------------------|----------------------------------------------------------|
//! | frames  | `frames_len`      | the log's frames, byte for byte as in a segment file (see `sluice_log` crate docs) |
//! | footer  | `footer_len`      | the header below, then `point_count` index points        |
//! | trailer | 16                | `footer_len` u32, CRC-32C of the footer u32, magic `b"SLUARC01"` |
//!
//! Footer header (48 bytes): `version` u32 (= 1), `first_seq` u64, `end_seq` u64 (one past the
//! last), `first_time` i64, `last_time` i64, `frames_len` u64, `point_count` u32 (at least 1);
//! then the points, 24 bytes each: `seq` u64 (a frame's base sequence), `time` i64 (its system
//! time), `offset` u64 (where it starts in the object).
//!
//! # Invariants
//!
//! * Sequences are dense from `first_seq` to `end_seq - 1`; times never decrease.
//! * The first point is the first frame (offset 0, `first_seq`); then one point per frame that
//!   starts at least `stride` bytes after the previous point. Points are strictly increasing in
//!   sequence and offset, so a reader finds the frames holding a sequence (or the first time at or
//!   after a time) by binary search and fetches only that byte range.
//! * A reader trusts nothing before checking it: the trailer's magic, the footer's CRC and
//!   structure against the object's length, and then each fetched frame's own CRC.

use bytes::{Bytes, BytesMut};
use sluice_log::codec::{decode_frames, encode_frame};
use sluice_log::Entry;

/// The last 8 bytes of every archive object.
pub const MAGIC: [u8; 8] = *b"SLUARC01";
/// Bytes of the fixed trailer.
pub const TRAILER_LEN: usize = 16;
const VERSION: u32 = 1;
const HEADER_LEN: usize = 4 + 8 + 8 + 8 + 8 + 8 + 4;
const POINT_LEN: usize = 24;
/// Default bytes between index points.
pub const DEFAULT_STRIDE: u64 = 4096;
/// Largest frame the builder makes out of entries sharing a system time.
const MAX_FRAME_PAYLOAD: usize = 1 << 20;

/// Why an archive object or its input is unusable.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The object's trailer, footer or frames fail their checks.
    #[error("corrupt archive object: {0}")]
    Corrupt(String),
    /// Entries given to the builder are not dense or go back in time.
    #[error("invalid archive input: {0}")]
    Input(String),
}

/// One index point: a frame's first sequence, its time and its offset in the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    pub seq: u64,
    pub time: i64,
    pub offset: u64,
}

/// The decoded footer of an archive object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footer {
    pub first_seq: u64,
    /// One past the last sequence.
    pub end_seq: u64,
    pub first_time: i64,
    pub last_time: i64,
    pub frames_len: u64,
    pub points: Vec<Point>,
}

/// Builds one archive object from dense entries.
pub struct SegmentBuilder {
    frames: Vec<u8>,
    points: Vec<Point>,
    stride: u64,
    next_seq: Option<u64>,
    last_time: i64,
    pending: Vec<Entry>,
    pending_bytes: usize,
}

impl SegmentBuilder {
    /// A builder placing an index point at least every `stride` bytes.
    pub fn new(stride: u64) -> SegmentBuilder {
        SegmentBuilder {
            frames: Vec::new(),
            points: Vec::new(),
            stride: stride.max(1),
            next_seq: None,
            last_time: i64::MIN,
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// Adds entries; they must continue the sequence densely and never go back in time.
    /// Consecutive entries with one system time share a frame (up to 1 MiB of payload).
    pub fn push(&mut self, entries: &[Entry]) -> Result<(), FormatError> {
        for e in entries {
            if let Some(next) = self.next_seq {
                if e.seq != next {
                    return Err(FormatError::Input(format!(
                        "sequence {} where {next} was expected",
                        e.seq
                    )));
                }
            }
            if e.system_time < self.last_time {
                return Err(FormatError::Input(format!(
                    "time {} before {} at sequence {}",
                    e.system_time, self.last_time, e.seq
                )));
            }
            let same_frame = self
                .pending
                .last()
                .is_some_and(|p| p.system_time == e.system_time)
                && self.pending_bytes + e.payload.len() <= MAX_FRAME_PAYLOAD;
            if !same_frame {
                self.flush()?;
            }
            self.pending_bytes += e.payload.len();
            self.pending.push(e.clone());
            self.next_seq = Some(e.seq + 1);
            self.last_time = e.system_time;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), FormatError> {
        let Some(first) = self.pending.first() else {
            return Ok(());
        };
        let (seq, time) = (first.seq, first.system_time);
        let payloads: Vec<&[u8]> = self.pending.iter().map(|e| &e.payload[..]).collect();
        let frame = encode_frame(&payloads, seq, time)
            .map_err(|e| FormatError::Input(format!("frame at sequence {seq}: {e}")))?;
        let offset = self.frames.len() as u64;
        if self
            .points
            .last()
            .is_none_or(|p| offset - p.offset >= self.stride)
        {
            self.points.push(Point { seq, time, offset });
        }
        self.frames.extend_from_slice(&frame);
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Whether no entry was pushed.
    pub fn is_empty(&self) -> bool {
        self.next_seq.is_none()
    }

    /// Finishes the object: its bytes and its footer. `None` if no entry was pushed.
    pub fn finish(mut self) -> Result<Option<(Bytes, Footer)>, FormatError> {
        self.flush()?;
        let (Some(first), Some(end_seq)) = (self.points.first(), self.next_seq) else {
            return Ok(None);
        };
        let footer = Footer {
            first_seq: first.seq,
            end_seq,
            first_time: first.time,
            last_time: self.last_time,
            frames_len: self.frames.len() as u64,
            points: self.points,
        };
        let mut out = BytesMut::from(&self.frames[..]);
        let encoded = footer.encode();
        out.extend_from_slice(&encoded);
        out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&encoded).to_le_bytes());
        out.extend_from_slice(&MAGIC);
        Ok(Some((out.freeze(), footer)))
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Footer {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + POINT_LEN * self.points.len());
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&self.first_seq.to_le_bytes());
        b.extend_from_slice(&self.end_seq.to_le_bytes());
        b.extend_from_slice(&self.first_time.to_le_bytes());
        b.extend_from_slice(&self.last_time.to_le_bytes());
        b.extend_from_slice(&self.frames_len.to_le_bytes());
        b.extend_from_slice(&(self.points.len() as u32).to_le_bytes());
        for p in &self.points {
            b.extend_from_slice(&p.seq.to_le_bytes());
            b.extend_from_slice(&p.time.to_le_bytes());
            b.extend_from_slice(&p.offset.to_le_bytes());
        }
        b
    }

    /// Where the footer starts and how long it is, from the object's last [`TRAILER_LEN`]
    /// bytes and its total length; checks the magic and the bounds.
    pub fn locate(trailer: &[u8], object_len: u64) -> Result<(u64, usize, u32), FormatError> {
        let corrupt = |m: String| FormatError::Corrupt(m);
        if trailer.len() != TRAILER_LEN || object_len < TRAILER_LEN as u64 {
            return Err(corrupt(format!(
                "object of {object_len} bytes has no trailer"
            )));
        }
        if trailer[8..16] != MAGIC {
            return Err(corrupt("bad trailer magic (torn or foreign object)".into()));
        }
        let footer_len = u32_at(trailer, 0) as usize;
        let crc = u32_at(trailer, 4);
        let start = object_len
            .checked_sub(TRAILER_LEN as u64 + footer_len as u64)
            .ok_or_else(|| corrupt(format!("footer of {footer_len} bytes past object start")))?;
        Ok((start, footer_len, crc))
    }

    /// Decodes and checks a footer (`bytes`, whose CRC-32C the trailer says is `crc`) of an
    /// object whose footer starts at `footer_start`.
    pub fn decode(bytes: &[u8], crc: u32, footer_start: u64) -> Result<Footer, FormatError> {
        let corrupt = |m: String| FormatError::Corrupt(m);
        let computed = crc32c::crc32c(bytes);
        if computed != crc {
            return Err(corrupt(format!(
                "footer CRC mismatch: stored {crc:08x}, computed {computed:08x}"
            )));
        }
        if bytes.len() < HEADER_LEN {
            return Err(corrupt("footer shorter than its header".into()));
        }
        if u32_at(bytes, 0) != VERSION {
            return Err(corrupt(format!("unsupported version {}", u32_at(bytes, 0))));
        }
        let count = u32_at(bytes, 44) as usize;
        if count == 0 || bytes.len() != HEADER_LEN + count * POINT_LEN {
            return Err(corrupt(format!(
                "footer of {} bytes with {count} points",
                bytes.len()
            )));
        }
        let points: Vec<Point> = (0..count)
            .map(|i| {
                let at = HEADER_LEN + i * POINT_LEN;
                Point {
                    seq: u64_at(bytes, at),
                    time: u64_at(bytes, at + 8) as i64,
                    offset: u64_at(bytes, at + 16),
                }
            })
            .collect();
        let f = Footer {
            first_seq: u64_at(bytes, 4),
            end_seq: u64_at(bytes, 12),
            first_time: u64_at(bytes, 20) as i64,
            last_time: u64_at(bytes, 28) as i64,
            frames_len: u64_at(bytes, 36),
            points,
        };
        let first = f.points[0];
        let ordered = f
            .points
            .windows(2)
            .all(|w| w[0].seq < w[1].seq && w[0].offset < w[1].offset && w[0].time <= w[1].time);
        let last = f.points[count - 1];
        if f.frames_len != footer_start
            || first.offset != 0
            || first.seq != f.first_seq
            || first.time != f.first_time
            || f.end_seq <= f.first_seq
            || !ordered
            || last.seq >= f.end_seq
            || last.offset >= f.frames_len
            || last.time > f.last_time
        {
            return Err(corrupt("footer index inconsistent with the object".into()));
        }
        Ok(f)
    }

    /// The index of the point to start reading at for sequence `seq` (the last point at or
    /// before it).
    pub fn point_for_seq(&self, seq: u64) -> usize {
        self.points
            .partition_point(|p| p.seq <= seq)
            .saturating_sub(1)
    }

    /// The index of the point to start reading at for the first entry with a system time at or
    /// after `time` (the last point whose time is before it: every frame before that point is
    /// older too).
    pub fn point_for_time(&self, time: i64) -> usize {
        self.points
            .partition_point(|p| p.time < time)
            .saturating_sub(1)
    }

    /// The byte range to fetch to read at least `max_entries` entries from point `start`
    /// (whole point intervals), stopping early once `max_bytes` is covered (always at least one
    /// interval).
    pub fn range_from(
        &self,
        start: usize,
        from_seq: u64,
        max_entries: u64,
        max_bytes: u64,
    ) -> (u64, u64) {
        let begin = self.points[start].offset;
        let want_end = from_seq.saturating_add(max_entries);
        let mut end_point = start + 1;
        while end_point < self.points.len() {
            let p = self.points[end_point];
            if p.seq >= want_end || p.offset - begin >= max_bytes {
                break;
            }
            end_point += 1;
        }
        let end = self
            .points
            .get(end_point)
            .map_or(self.frames_len, |p| p.offset);
        (begin, end)
    }
}

/// Decodes fetched frame bytes (checking every frame's CRC) into entries.
pub fn decode_range(bytes: &Bytes) -> Result<Vec<Entry>, FormatError> {
    decode_frames(bytes).map_err(|e| FormatError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entries(first: u64, n: u64) -> Vec<Entry> {
        (first..first + n)
            .map(|s| Entry {
                seq: s,
                system_time: 1_000 + (s / 3) as i64,
                payload: Bytes::from(format!("payload-{s}-{}", "x".repeat((s % 50) as usize))),
            })
            .collect()
    }

    fn build(es: &[Entry], stride: u64) -> (Bytes, Footer) {
        let mut b = SegmentBuilder::new(stride);
        b.push(es).unwrap();
        b.finish().unwrap().unwrap()
    }

    fn footer_of(obj: &[u8]) -> Result<Footer, FormatError> {
        let len = obj.len() as u64;
        let (start, flen, crc) = Footer::locate(&obj[obj.len() - TRAILER_LEN..], len)?;
        Footer::decode(&obj[start as usize..start as usize + flen], crc, start)
    }

    #[test]
    fn footer_points_find_sequences_and_times() {
        let es = entries(100, 500);
        let (obj, footer) = build(&es, 256);
        assert_eq!(footer_of(&obj).unwrap(), footer);
        assert!(footer.points.len() > 10, "{} points", footer.points.len());
        for target in [100u64, 101, 250, 599] {
            let i = footer.point_for_seq(target);
            let (b, e) = footer.range_from(i, target, 1, u64::MAX);
            let got = decode_range(&obj.slice(b as usize..e as usize)).unwrap();
            let hit = got
                .iter()
                .find(|x| x.seq == target)
                .expect("range holds the seq");
            assert_eq!(hit, &es[(target - 100) as usize]);
        }
        for t in [1_000i64, 1_050, 1_100, 1_199] {
            let i = footer.point_for_time(t);
            let (b, e) = footer.range_from(i, footer.points[i].seq, u64::MAX, u64::MAX);
            let got = decode_range(&obj.slice(b as usize..e as usize)).unwrap();
            let want = es.iter().find(|x| x.system_time >= t).unwrap();
            assert_eq!(got.iter().find(|x| x.system_time >= t), Some(want));
        }
    }

    #[test]
    fn damage_anywhere_in_footer_or_trailer_is_detected() {
        let (obj, _) = build(&entries(0, 200), 512);
        let frames_len = footer_of(&obj).unwrap().frames_len as usize;
        for at in frames_len..obj.len() {
            let mut bad = obj.to_vec();
            bad[at] ^= 0x40;
            assert!(
                footer_of(&bad).is_err(),
                "flip at {at} of {} undetected",
                obj.len()
            );
        }
        // A torn object (the tail cut off) has no valid trailer.
        assert!(footer_of(&obj[..obj.len() - 5]).is_err());
    }

    #[test]
    fn builder_refuses_gaps_and_time_going_back() {
        let mut b = SegmentBuilder::new(DEFAULT_STRIDE);
        let mut es = entries(0, 3);
        es.remove(1);
        assert!(matches!(b.push(&es), Err(FormatError::Input(_))));
        let mut b = SegmentBuilder::new(DEFAULT_STRIDE);
        let mut es = entries(0, 2);
        es[1].system_time = es[0].system_time - 1;
        assert!(matches!(b.push(&es), Err(FormatError::Input(_))));
    }
}
