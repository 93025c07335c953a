//! Frame encoding, decoding and validation.
//!
//! A frame is the on-disk unit of one append; see the crate docs for the layout.

use bytes::Bytes;

use crate::LogError;

/// The first three bytes of every frame.
pub(crate) const MAGIC: [u8; 3] = *b"SLG";
/// The frame format version, the fourth byte of every frame.
pub(crate) const VERSION: u8 = 1;
/// Bytes of the fixed frame header.
pub(crate) const HEADER_LEN: usize = 32;
/// Bytes in front of every payload (its little-endian u32 length).
pub(crate) const ENTRY_PREFIX: usize = 4;
/// Where the CRC-covered part of a frame starts (right after the CRC field).
const CRC_START: usize = 12;

/// Largest encoded frame (header, length prefixes and payloads) that one append may produce.
pub const MAX_FRAME_BYTES: u64 = 256 << 20;

/// The decoded fixed header of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// Total frame length in bytes, header included.
    pub len: u32,
    pub crc: u32,
    pub base_seq: u64,
    pub count: u32,
    pub time: i64,
}

impl FrameHeader {
    /// One past the last sequence in this frame.
    pub fn end_seq(&self) -> u64 {
        self.base_seq + u64::from(self.count)
    }
}

/// Payload bytes of a frame of `len` bytes holding `count` entries.
#[cfg(test)]
pub(crate) fn frame_payload_bytes(len: u64, count: u64) -> u64 {
    len.saturating_sub(HEADER_LEN as u64 + ENTRY_PREFIX as u64 * count)
}

/// A frame whose body is encoded but whose header (sequence, time, CRC) is not yet filled in.
///
/// The body CRC is computed up front, outside the append lock; [`PendingFrame::finish`] only
/// hashes the 20 header bytes and combines the two CRCs.
pub(crate) struct PendingFrame {
    buf: Vec<u8>,
    body_crc: u32,
    count: u32,
}

impl PendingFrame {
    /// Encodes the body of a frame holding `payloads`.
    pub fn encode(payloads: &[&[u8]]) -> Result<PendingFrame, LogError> {
        if payloads.is_empty() {
            return Err(LogError::EmptyAppend);
        }
        let size = payloads.iter().fold(HEADER_LEN as u64, |acc, p| {
            acc.saturating_add(ENTRY_PREFIX as u64 + p.len() as u64)
        });
        if size > MAX_FRAME_BYTES {
            return Err(LogError::EntryTooLarge {
                size,
                max: MAX_FRAME_BYTES,
            });
        }
        // Both fit in u32: size <= MAX_FRAME_BYTES < 4 GiB, and every entry takes >= 4 bytes.
        let count = payloads.len() as u32;
        let mut buf = Vec::with_capacity(size as usize);
        buf.resize(HEADER_LEN, 0);
        for p in payloads {
            buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
            buf.extend_from_slice(p);
        }
        let body_crc = crc32c::crc32c(&buf[HEADER_LEN..]);
        Ok(PendingFrame {
            buf,
            body_crc,
            count,
        })
    }

    /// Encoded length of the whole frame.
    pub fn len(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Number of entries in the frame.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Fills in the header for the given base sequence and system time; returns the frame bytes.
    pub fn finish(&mut self, base_seq: u64, time: i64) -> &[u8] {
        let len = self.buf.len();
        let h = &mut self.buf[..HEADER_LEN];
        h[0..3].copy_from_slice(&MAGIC);
        h[3] = VERSION;
        h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        h[12..20].copy_from_slice(&base_seq.to_le_bytes());
        h[20..24].copy_from_slice(&self.count.to_le_bytes());
        h[24..32].copy_from_slice(&time.to_le_bytes());
        let head_crc = crc32c::crc32c(&h[CRC_START..HEADER_LEN]);
        let crc = crc32c::crc32c_combine(head_crc, self.body_crc, len - HEADER_LEN);
        h[8..12].copy_from_slice(&crc.to_le_bytes());
        &self.buf
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes and sanity-checks a frame header. `b` must hold at least [`HEADER_LEN`] bytes.
pub(crate) fn parse_header(b: &[u8]) -> Result<FrameHeader, String> {
    if b[0..3] != MAGIC {
        return Err(format!("bad magic {:02x?}", &b[0..3]));
    }
    if b[3] != VERSION {
        return Err(format!("unsupported frame version {}", b[3]));
    }
    let h = FrameHeader {
        len: u32_at(b, 4),
        crc: u32_at(b, 8),
        base_seq: u64_at(b, 12),
        count: u32_at(b, 20),
        time: u64_at(b, 24) as i64,
    };
    if h.count == 0 {
        return Err("frame with zero entries".to_string());
    }
    let min_len = HEADER_LEN as u64 + ENTRY_PREFIX as u64 * u64::from(h.count);
    if u64::from(h.len) < min_len || u64::from(h.len) > MAX_FRAME_BYTES {
        return Err(format!(
            "bad frame length {} for {} entries",
            h.len, h.count
        ));
    }
    if h.base_seq.checked_add(u64::from(h.count)).is_none() {
        return Err("sequence overflow".to_string());
    }
    Ok(h)
}

/// Verifies the CRC and the entry structure of a whole frame (`frame.len() == h.len`).
pub(crate) fn check_frame(h: &FrameHeader, frame: &[u8]) -> Result<(), String> {
    debug_assert_eq!(frame.len(), h.len as usize);
    let crc = crc32c::crc32c(&frame[CRC_START..]);
    if crc != h.crc {
        return Err(format!(
            "CRC mismatch: stored {:08x}, computed {crc:08x}",
            h.crc
        ));
    }
    let mut pos = HEADER_LEN;
    for i in 0..h.count {
        if frame.len() - pos < ENTRY_PREFIX {
            return Err(format!("entry {i} length prefix past frame end"));
        }
        let n = u32_at(frame, pos) as usize;
        pos += ENTRY_PREFIX;
        if frame.len() - pos < n {
            return Err(format!("entry {i} payload past frame end"));
        }
        pos += n;
    }
    if pos != frame.len() {
        return Err(format!("{} trailing bytes in frame", frame.len() - pos));
    }
    Ok(())
}

/// Iterates the payloads of a frame that passed [`check_frame`], as zero-copy slices of `frame`.
pub(crate) fn payloads<'a>(frame: &'a Bytes, h: &FrameHeader) -> impl Iterator<Item = Bytes> + 'a {
    let mut pos = HEADER_LEN;
    let count = h.count;
    (0..count).map(move |_| {
        let n = u32_at(frame, pos) as usize;
        pos += ENTRY_PREFIX;
        let p = frame.slice(pos..pos + n);
        pos += n;
        p
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payloads: &[&[u8]], base: u64, time: i64) -> Vec<u8> {
        let mut f = PendingFrame::encode(payloads).unwrap();
        f.finish(base, time).to_vec()
    }

    #[test]
    fn round_trip() {
        let bytes = frame(&[b"a", b"", b"hello"], 42, -7);
        assert_eq!(bytes.len(), HEADER_LEN + 3 * ENTRY_PREFIX + 6);
        let h = parse_header(&bytes).unwrap();
        assert_eq!(
            (h.base_seq, h.count, h.time, h.len as usize),
            (42, 3, -7, bytes.len())
        );
        assert_eq!(frame_payload_bytes(h.len.into(), h.count.into()), 6);
        assert_eq!(h.end_seq(), 45);
        check_frame(&h, &bytes).unwrap();
        let b = Bytes::from(bytes);
        let got: Vec<Bytes> = payloads(&b, &h).collect();
        assert_eq!(got, vec![&b"a"[..], &b""[..], &b"hello"[..]]);
    }

    #[test]
    fn crc_matches_plain_crc_over_covered_bytes() {
        let bytes = frame(&[b"xyz", b"0123456789"], 7, 1000);
        let h = parse_header(&bytes).unwrap();
        assert_eq!(h.crc, crc32c::crc32c(&bytes[CRC_START..]));
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let bytes = frame(&[b"abc", b"defgh"], 3, 99);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            let ok = parse_header(&b).and_then(|h| {
                if h.len as usize != b.len() {
                    return Err("len".into());
                }
                check_frame(&h, &b)
            });
            assert!(ok.is_err(), "flip at byte {i} not detected");
        }
    }

    #[test]
    fn zeroed_and_bad_headers_are_rejected() {
        assert!(parse_header(&[0u8; HEADER_LEN]).is_err());
        let mut b = frame(&[b"abc"], 0, 0);
        b[3] = 9;
        assert!(parse_header(&b).unwrap_err().contains("version"));
        let mut b = frame(&[b"abc"], 0, 0);
        b[4..8].copy_from_slice(&5u32.to_le_bytes());
        assert!(parse_header(&b).unwrap_err().contains("length"));
    }

    #[test]
    fn empty_and_oversized_appends_are_rejected() {
        assert!(matches!(
            PendingFrame::encode(&[]),
            Err(LogError::EmptyAppend)
        ));
        let big = vec![0u8; MAX_FRAME_BYTES as usize];
        assert!(matches!(
            PendingFrame::encode(&[&big]),
            Err(LogError::EntryTooLarge { .. })
        ));
    }
}
