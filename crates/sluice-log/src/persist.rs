//! Persisted segment indexes (`<base>.idx`) and the clean-shutdown marker (`CLEAN`).
//!
//! An index file holds a segment's sparse index so that opening the log need not scan the
//! segment. Layout (integers little-endian):
//!
//! | size   | field                                                                 |
//! |-------:|-----------------------------------------------------------------------|
//! |      4 | magic `b"SLX"`, version `1`                                           |
//! |      4 | `n`: u32, number of points (at least 1)                               |
//! | 16 × n | points: u32 `rel_seq`, u32 `offset`, i64 `time`                        |
//! |     40 | last entry: u64 base sequence, u64 segment length, u64 end sequence,  |
//! |        | then the last frame: u32 `rel_seq`, u32 `offset`, i64 `time`          |
//! |      4 | CRC-32C of all bytes before it                                        |
//!
//! It is written to `<base>.idx.tmp`, fsync'd, and renamed over `<base>.idx` (the caller
//! fsyncs the directory). On open an index is trusted only if its checksum and structure hold,
//! the segment file's length equals the recorded one, and the frame at the recorded last offset
//! is whole, passes its CRC, and has the recorded sequences and time. Anything else (missing,
//! torn, stale) falls back to the scan. Only that last frame is read: not a rescan.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::frame::{self, HEADER_LEN};
use crate::index::{FrameMeta, SegmentIndex};

const MAGIC: [u8; 4] = *b"SLX\x01";
const POINT_LEN: usize = 16;
const TRAILER_LEN: usize = 40;
/// Name of the clean-shutdown marker in a log directory.
const CLEAN_MARKER: &str = "CLEAN";

/// Path of the persisted index of the segment whose first sequence is `base`.
pub(crate) fn index_path(dir: &Path, base: u64) -> PathBuf {
    crate::segment::segment_path(dir, base).with_extension("idx")
}

/// Path of the clean-shutdown marker of a log directory.
pub(crate) fn clean_marker_path(dir: &Path) -> PathBuf {
    dir.join(CLEAN_MARKER)
}

/// Writes `contents` to `path` through a temporary file, fsync'd (if `sync`) and renamed.
pub(crate) fn write_atomically(path: &Path, contents: &[u8], sync: bool) -> io::Result<()> {
    let tmp = path.with_extension(match path.extension() {
        Some(e) => format!("{}.tmp", e.to_string_lossy()),
        None => "tmp".to_string(),
    });
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(contents)?;
    if sync {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Writes the persisted index of a non-empty segment (the caller fsyncs the directory).
pub(crate) fn write_index(dir: &Path, seg: &SegmentIndex, sync: bool) -> io::Result<()> {
    write_atomically(&index_path(dir, seg.base_seq), &encode(seg), sync)
}

/// Removes a segment's persisted index, if any.
pub(crate) fn remove_file_if_any(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn put_meta(out: &mut Vec<u8>, m: &FrameMeta) {
    out.extend_from_slice(&m.rel_seq.to_le_bytes());
    out.extend_from_slice(&m.offset.to_le_bytes());
    out.extend_from_slice(&m.time.to_le_bytes());
}

fn get_meta(b: &[u8]) -> FrameMeta {
    FrameMeta {
        rel_seq: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
        offset: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
        time: i64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Encodes a non-empty segment's index.
pub(crate) fn encode(seg: &SegmentIndex) -> Vec<u8> {
    let last = seg.last.expect("only non-empty segments are persisted");
    let mut out = Vec::with_capacity(8 + POINT_LEN * seg.points.len() + TRAILER_LEN + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(seg.points.len() as u32).to_le_bytes());
    for p in &seg.points {
        put_meta(&mut out, p);
    }
    out.extend_from_slice(&seg.base_seq.to_le_bytes());
    out.extend_from_slice(&seg.size.to_le_bytes());
    out.extend_from_slice(&seg.end_seq.to_le_bytes());
    put_meta(&mut out, &last);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes an index file of the segment based at `base`, checking its checksum and structure.
pub(crate) fn decode(b: &[u8], base: u64) -> Result<SegmentIndex, String> {
    if b.len() < 8 + TRAILER_LEN + 4 || b[0..4] != MAGIC {
        return Err("not an index file (short or bad magic)".into());
    }
    let (body, crc) = b.split_at(b.len() - 4);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != stored {
        return Err("index checksum mismatch".into());
    }
    let n = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")) as usize;
    if n == 0 || body.len() != 8 + n * POINT_LEN + TRAILER_LEN {
        return Err(format!("index length does not match its {n} points"));
    }
    let points: Vec<FrameMeta> = body[8..8 + n * POINT_LEN]
        .chunks_exact(POINT_LEN)
        .map(get_meta)
        .collect();
    let t = &body[8 + n * POINT_LEN..];
    let (file_base, size, end_seq) = (u64_at(t, 0), u64_at(t, 8), u64_at(t, 16));
    let last = get_meta(&t[24..40]);
    if file_base != base {
        return Err(format!("index is for base {file_base}, not {base}"));
    }
    let first = points[0];
    let ordered = points.windows(2).all(|w| {
        w[0].offset < w[1].offset && w[0].rel_seq < w[1].rel_seq && w[0].time <= w[1].time
    });
    let top = points[n - 1];
    let sane = first.offset == 0
        && first.rel_seq == 0
        && ordered
        && (last.offset, last.rel_seq) >= (top.offset, top.rel_seq)
        && last.time >= top.time
        && (last.offset == top.offset) == (last.rel_seq == top.rel_seq)
        && u64::from(last.offset) < size
        && size <= u64::from(u32::MAX)
        && base + u64::from(last.rel_seq) < end_seq;
    if !sane {
        return Err("index entries out of order or out of bounds".into());
    }
    Ok(SegmentIndex {
        base_seq: base,
        end_seq,
        size,
        points,
        last: Some(last),
    })
}

/// Loads the persisted index of the segment `file` (based at `base`) and checks it against the
/// file: its length and its last frame. `None` (with the reason logged) if there is no index
/// or it cannot be trusted.
pub(crate) fn load_index(dir: &Path, base: u64, file: &File) -> io::Result<Option<SegmentIndex>> {
    let path = index_path(dir, base);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let seg = match decode(&bytes, base) {
        Ok(s) => s,
        Err(reason) => {
            tracing::warn!(index = %path.display(), %reason, "ignoring segment index; scanning");
            return Ok(None);
        }
    };
    match check_against_segment(&seg, file)? {
        Ok(()) => Ok(Some(seg)),
        Err(reason) => {
            tracing::warn!(index = %path.display(), %reason, "ignoring segment index; scanning");
            Ok(None)
        }
    }
}

/// Whether the segment file ends where the index says, with the recorded last frame.
fn check_against_segment(seg: &SegmentIndex, file: &File) -> io::Result<Result<(), String>> {
    let file_len = file.metadata()?.len();
    if file_len != seg.size {
        return Ok(Err(format!(
            "segment is {file_len} bytes, index says {}",
            seg.size
        )));
    }
    let last = seg.last.expect("decoded indexes have a last frame");
    let frame_len = seg.size - u64::from(last.offset);
    if frame_len < HEADER_LEN as u64 || frame_len > frame::MAX_FRAME_BYTES {
        return Ok(Err(format!("bad last frame length {frame_len}")));
    }
    let mut buf = vec![0u8; frame_len as usize];
    file.read_exact_at(&mut buf, u64::from(last.offset))?;
    let h = match frame::parse_header(&buf) {
        Ok(h) => h,
        Err(reason) => return Ok(Err(format!("last frame: {reason}"))),
    };
    if u64::from(h.len) != frame_len
        || h.base_seq != seg.base_seq + u64::from(last.rel_seq)
        || h.end_seq() != seg.end_seq
        || h.time != last.time
    {
        return Ok(Err("last frame does not match the index".into()));
    }
    Ok(frame::check_frame(&h, &buf).map_err(|r| format!("last frame: {r}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentIndex {
        let mut seg = SegmentIndex::empty(7);
        for i in 0..100u32 {
            let m = FrameMeta {
                rel_seq: 2 * i,
                offset: 200 * i,
                time: i64::from(i / 10),
            };
            seg.push(m, 200, 7 + 2 * u64::from(i) + 2);
        }
        seg
    }

    #[test]
    fn round_trip_and_every_flip_is_rejected() {
        let seg = sample();
        let bytes = encode(&seg);
        assert_eq!(decode(&bytes, 7).unwrap(), seg);
        assert!(decode(&bytes, 8).is_err());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(decode(&b, 7).is_err(), "flip at {i} accepted");
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 7).is_err(), "cut at {cut} accepted");
        }
    }
}
