//! Segment files: naming, listing, directory fsync, and the validating scan used by recovery.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::frame::{self, HEADER_LEN, MAX_FRAME_BYTES};
use crate::index::{FrameMeta, SegmentIndex};

/// Digits in a segment file name (enough for any u64, so lexical order equals numeric order).
const NAME_DIGITS: usize = 20;
/// Extension of segment files.
const SUFFIX: &str = ".log";
/// Read buffer used while scanning a segment on open (freed afterwards).
const SCAN_BUF: u64 = 256 << 10;

/// Path of the segment whose first sequence is `base`.
pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:0NAME_DIGITS$}{SUFFIX}"))
}

/// Base sequence encoded in a segment file name, or `None` if `name` is not a segment file.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Base sequences of all segment files in `dir`, ascending. Other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        match entry.file_name().to_str().and_then(parse_segment_name) {
            Some(base) => bases.push(base),
            None => tracing::debug!(file = ?entry.path(), "ignoring non-segment file in log dir"),
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// fsyncs a directory so that file creations and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether the `len` bytes of `file` from `offset` on are all zeros.
pub(crate) fn is_zeros(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf.iter().all(|&b| b == 0))
}

/// Outcome of scanning one segment file.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Sparse index of the valid frames (a prefix of the file: `index.size` bytes).
    pub index: SegmentIndex,
    /// Length of the file as found.
    pub file_len: u64,
    /// System time of the last valid frame (or `prev_time` if there is none).
    pub last_time: Option<i64>,
    /// The first invalid frame, if any: its offset and what is wrong with it.
    pub bad: Option<(u64, String)>,
}

/// Reads `file` (a segment whose first sequence must be `base`) from the start, validating every
/// frame: header sanity, CRC, entry structure, dense sequences and non-decreasing times (starting
/// from `prev_time`, the last time of the previous segment). Stops at the first bad frame.
pub(crate) fn scan_segment(file: &File, base: u64, prev_time: Option<i64>) -> io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let mut rd =
        BufReader::with_capacity(file_len.clamp(HEADER_LEN as u64, SCAN_BUF) as usize, file);
    let mut scan = Scan {
        index: SegmentIndex::empty(base),
        file_len,
        last_time: prev_time,
        bad: None,
    };
    let mut buf = Vec::new();
    while scan.index.size < file_len {
        let pos = scan.index.size;
        match next_frame(&mut rd, &mut buf, file_len - pos)? {
            Err(reason) => {
                scan.bad = Some((pos, reason));
                break;
            }
            Ok(h) => {
                let problem = if h.base_seq != scan.index.end_seq {
                    Some(format!(
                        "frame base sequence {} where {} was expected",
                        h.base_seq, scan.index.end_seq
                    ))
                } else if scan.last_time.is_some_and(|t| h.time < t) {
                    Some(format!("system time {} goes backwards", h.time))
                } else {
                    let end = pos + u64::from(h.len);
                    match (u32::try_from(end), u32::try_from(h.base_seq - base)) {
                        (Ok(_), Ok(rel_seq)) => {
                            let meta = FrameMeta {
                                rel_seq,
                                offset: pos as u32,
                                time: h.time,
                            };
                            scan.index.push(meta, u64::from(h.len), h.end_seq());
                            None
                        }
                        _ => Some("segment too large to index".to_string()),
                    }
                };
                if let Some(reason) = problem {
                    scan.bad = Some((pos, reason));
                    break;
                }
                scan.last_time = Some(h.time);
            }
        }
    }
    scan.index.points.shrink_to_fit();
    Ok(scan)
}

/// Reads and checks the next frame. The outer error is an I/O failure; the inner one describes
/// invalid or incomplete data (`remaining` is what is left of the file).
fn next_frame(
    rd: &mut impl Read,
    buf: &mut Vec<u8>,
    remaining: u64,
) -> io::Result<Result<frame::FrameHeader, String>> {
    if remaining < HEADER_LEN as u64 {
        return Ok(Err(format!("partial frame header ({remaining} bytes)")));
    }
    let mut head = [0u8; HEADER_LEN];
    rd.read_exact(&mut head)?;
    let h = match frame::parse_header(&head) {
        Ok(h) => h,
        Err(reason) => return Ok(Err(reason)),
    };
    if u64::from(h.len) > remaining {
        return Ok(Err(format!(
            "frame of {} bytes extends past end of file ({remaining} bytes left)",
            h.len
        )));
    }
    debug_assert!(u64::from(h.len) <= MAX_FRAME_BYTES);
    buf.clear();
    buf.extend_from_slice(&head);
    buf.resize(h.len as usize, 0);
    rd.read_exact(&mut buf[HEADER_LEN..])?;
    Ok(frame::check_frame(&h, buf).map(|()| h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::PendingFrame;
    use std::io::Write;

    #[test]
    fn names_sort_numerically() {
        let dir = Path::new("/x");
        assert_eq!(
            segment_path(dir, 0),
            Path::new("/x/00000000000000000000.log")
        );
        assert_eq!(
            parse_segment_name("18446744073709551615.log"),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.log"), None);
        assert_eq!(parse_segment_name("00000000000000000042.tmp"), None);
        let a = segment_path(dir, 9);
        let b = segment_path(dir, 10);
        assert!(a < b);
    }

    #[test]
    fn scan_reports_first_bad_frame() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        let mut f = File::create(&path).unwrap();
        let mut a = PendingFrame::encode(&[b"one", b"two"]).unwrap();
        let mut b = PendingFrame::encode(&[b"three"]).unwrap();
        let a_len = a.len();
        f.write_all(a.finish(10, 5)).unwrap();
        f.write_all(b.finish(12, 6)).unwrap();
        f.write_all(b"garbage").unwrap();
        drop(f);
        let scan = scan_segment(&File::open(&path).unwrap(), 10, None).unwrap();
        // Two small frames: one index point, and the second frame is the last one.
        assert_eq!(scan.index.points.len(), 1);
        let last = scan.index.last.unwrap();
        assert_eq!(last.offset as u64, a_len);
        assert_eq!(last.rel_seq, 2);
        assert_eq!(scan.index.end_seq, 13);
        assert_eq!(scan.last_time, Some(6));
        assert_eq!(scan.bad.as_ref().unwrap().0, scan.index.size);
        assert_eq!(scan.file_len, scan.index.size + 7);

        // Wrong base sequence for the segment: the very first frame is bad.
        let scan = scan_segment(&File::open(&path).unwrap(), 11, None).unwrap();
        assert!(scan.index.points.is_empty());
        assert_eq!(scan.bad.unwrap().0, 0);

        // Time going backwards relative to the previous segment.
        let scan = scan_segment(&File::open(&path).unwrap(), 10, Some(100)).unwrap();
        assert!(scan.bad.unwrap().1.contains("backwards"));
    }
}
