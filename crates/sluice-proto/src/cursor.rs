//! Sluice's cursor: 32 lower-case hex characters the SDKs treat as opaque (protocol doc §5.6).
//!
//! Layout: version `5` (1 hex), shard id (7 hex), sequence (16 hex), index inside a batch entry
//! (6 hex), check byte (2 hex, low byte of CRC-32C of the first 30 characters). A cursor from
//! another shard, a garbled cursor or a foreign format is rejected.

/// A position in a shard: a log sequence and the index of a record inside that entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub shard: u32,
    pub seq: u64,
    pub index: u32,
}

/// Why a cursor text was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    #[error("the cursor is invalid: {0}")]
    Malformed(&'static str),
    #[error("the cursor is invalid: it belongs to shard {cursor_shard}, not shard {shard}")]
    WrongShard { cursor_shard: u32, shard: u32 },
}

const VERSION: char = '5';

fn check_byte(prefix: &str) -> u8 {
    (crc32c::crc32c(prefix.as_bytes()) & 0xff) as u8
}

impl Cursor {
    pub fn new(shard: u32, seq: u64, index: u32) -> Cursor {
        Cursor { shard, seq, index }
    }

    /// Renders the cursor text.
    pub fn encode(&self) -> String {
        let text = self.encode_array();
        String::from_utf8(text.to_vec()).expect("hex is ASCII")
    }

    /// Renders the cursor text into a stack array (read responses write two per record, so
    /// this path allocates nothing).
    pub fn encode_array(&self) -> [u8; 32] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        fn put_hex(out: &mut [u8], value: u64) {
            let mut v = value;
            for slot in out.iter_mut().rev() {
                *slot = HEX[(v & 0xf) as usize];
                v >>= 4;
            }
        }
        let mut text = [0u8; 32];
        text[0] = VERSION as u8;
        put_hex(&mut text[1..8], u64::from(self.shard & 0x0fff_ffff));
        put_hex(&mut text[8..24], self.seq);
        put_hex(&mut text[24..30], u64::from(self.index & 0x00ff_ffff));
        let check = (crc32c::crc32c(&text[..30]) & 0xff) as u64;
        put_hex(&mut text[30..32], check);
        text
    }

    /// [`Cursor::encode_array`] as text.
    pub fn encode_str(text: &[u8; 32]) -> &str {
        std::str::from_utf8(text).expect("hex is ASCII")
    }

    /// Parses a cursor text and checks that it belongs to `shard`.
    pub fn decode(text: &str, shard: u32) -> Result<Cursor, CursorError> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CursorError::Malformed("expected 32 hex characters"));
        }
        let text = text.to_ascii_lowercase();
        if !text.starts_with(VERSION) {
            return Err(CursorError::Malformed("unknown cursor version"));
        }
        let field = |r: std::ops::Range<usize>| u64::from_str_radix(&text[r], 16).expect("hex");
        let check = field(30..32) as u8;
        if check != check_byte(&text[..30]) {
            return Err(CursorError::Malformed("checksum mismatch"));
        }
        let cursor = Cursor {
            shard: field(1..8) as u32,
            seq: field(8..24),
            index: field(24..30) as u32,
        };
        if cursor.shard != shard & 0x0fff_ffff {
            return Err(CursorError::WrongShard {
                cursor_shard: cursor.shard,
                shard,
            });
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let c = Cursor::new(3, 1 << 40, 17);
        let text = c.encode();
        assert_eq!(text.len(), 32);
        assert_eq!(Cursor::decode(&text, 3), Ok(c));
        assert!(matches!(
            Cursor::decode(&text, 4),
            Err(CursorError::WrongShard { .. })
        ));
        let mut garbled = text.into_bytes();
        garbled[20] = if garbled[20] == b'0' { b'1' } else { b'0' };
        assert!(Cursor::decode(std::str::from_utf8(&garbled).unwrap(), 3).is_err());
        assert!(Cursor::decode("20000000000000000000000000000000", 0).is_err());
        assert!(Cursor::decode("xyz", 0).is_err());
    }

    /// The allocation-free encoder writes what the original `format!` rendering wrote.
    #[test]
    fn fast_encoding_matches_format() {
        let reference = |c: &Cursor| {
            let prefix = format!(
                "{VERSION}{:07x}{:016x}{:06x}",
                c.shard & 0x0fff_ffff,
                c.seq,
                c.index & 0x00ff_ffff
            );
            format!("{prefix}{:02x}", check_byte(&prefix))
        };
        for shard in [0, 1, 9, 0x0fff_ffff, u32::MAX] {
            for seq in [0, 1, 255, 1 << 40, u64::MAX] {
                for index in [0, 7, 999, 0x00ff_ffff, u32::MAX] {
                    let c = Cursor::new(shard, seq, index);
                    assert_eq!(c.encode(), reference(&c));
                    assert_eq!(Cursor::encode_str(&c.encode_array()), reference(&c));
                }
            }
        }
    }
}
