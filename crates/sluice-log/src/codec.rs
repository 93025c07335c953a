//! The frame format as a public codec, for stores that keep frames elsewhere than in segment
//! files (the cluster archive keeps a shard range's frames in one object).
//!
//! The bytes are exactly those of a segment file (see the crate docs for the layout): a run of
//! frames produced by [`encode_frame`] can be decoded by [`decode_frames`], and vice versa.

use bytes::Bytes;

use crate::frame::{check_frame, parse_header, payloads, PendingFrame, HEADER_LEN};
use crate::{Entry, LogError};

/// Encodes one frame holding `payloads`, with sequences from `base_seq` and one system time.
pub fn encode_frame(
    payloads: &[&[u8]],
    base_seq: u64,
    system_time: i64,
) -> Result<Vec<u8>, LogError> {
    let mut frame = PendingFrame::encode(payloads)?;
    Ok(frame.finish(base_seq, system_time).to_vec())
}

/// Why a run of frames failed to decode.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("bad frame at byte {offset}: {reason}")]
pub struct FrameError {
    /// Offset of the bad frame in the decoded buffer.
    pub offset: usize,
    pub reason: String,
}

/// Decodes a buffer holding whole frames, checking each (header, CRC, entry structure), into
/// its entries in order. Payloads are zero-copy slices of `buf`.
pub fn decode_frames(buf: &Bytes) -> Result<Vec<Entry>, FrameError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let bad = |reason: String| FrameError {
            offset: pos,
            reason,
        };
        if buf.len() - pos < HEADER_LEN {
            return Err(bad("torn frame header".to_string()));
        }
        let h = parse_header(&buf[pos..]).map_err(bad)?;
        let len = h.len as usize;
        if buf.len() - pos < len {
            return Err(bad(format!("frame of {len} bytes past buffer end")));
        }
        let frame = buf.slice(pos..pos + len);
        check_frame(&h, &frame).map_err(bad)?;
        out.extend(payloads(&frame, &h).enumerate().map(|(i, payload)| Entry {
            seq: h.base_seq + i as u64,
            system_time: h.time,
            payload,
        }));
        pos += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_detected() {
        let mut buf = encode_frame(&[b"a", b"bc"], 7, 100).unwrap();
        buf.extend(encode_frame(&[b"def"], 9, 101).unwrap());
        let entries = decode_frames(&Bytes::from(buf.clone())).unwrap();
        let got: Vec<_> = entries
            .iter()
            .map(|e| (e.seq, e.system_time, e.payload.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (7, 100, b"a".to_vec()),
                (8, 100, b"bc".to_vec()),
                (9, 101, b"def".to_vec())
            ]
        );
        let last = buf.len() - 1;
        buf[last] ^= 1;
        let err = decode_frames(&Bytes::from(buf)).unwrap_err();
        assert!(err.reason.contains("CRC"), "{err}");
    }
}
