//! The `DHUB` frame around protobuf request and response bodies (protocol doc §1.6):
//! `"DHUB"`, CRC-32C of the message (u32 big-endian), message length (u32 big-endian), message.

/// Why a framed body was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("protobuf body is {0} bytes, shorter than the 12-byte DHUB header")]
    TooShort(usize),
    #[error("protobuf body does not start with the DHUB magic")]
    BadMagic,
    #[error("protobuf body declares {declared} bytes but carries {actual}")]
    BadLength { declared: usize, actual: usize },
    #[error("protobuf body CRC mismatch: header says {expected:#010x}, body has {actual:#010x}")]
    BadCrc { expected: u32, actual: u32 },
}

const MAGIC: &[u8; 4] = b"DHUB";

/// Wraps a serialized protobuf message in a DHUB frame.
pub fn wrap(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + message.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32c::crc32c(message).to_be_bytes());
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Checks a DHUB frame and returns the protobuf message inside it.
pub fn unwrap(body: &[u8]) -> Result<&[u8], EnvelopeError> {
    if body.len() < 12 {
        return Err(EnvelopeError::TooShort(body.len()));
    }
    if &body[0..4] != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    let expected = u32::from_be_bytes(body[4..8].try_into().expect("4 bytes"));
    let declared = u32::from_be_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
    let message = &body[12..];
    if declared != message.len() {
        return Err(EnvelopeError::BadLength {
            declared,
            actual: message.len(),
        });
    }
    let actual = crc32c::crc32c(message);
    if actual != expected {
        return Err(EnvelopeError::BadCrc { expected, actual });
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_sdk_test_vector() {
        // GetRecordsRequest{cursor:"2000...0", limit:10} as framed by pydatahub (protocol doc §8).
        let mut msg = vec![0x0a, 0x20];
        msg.extend_from_slice(b"20000000000000000000000000000000");
        msg.extend_from_slice(&[0x10, 0x0a]);
        let framed = wrap(&msg);
        assert_eq!(
            &framed[..12],
            &[0x44, 0x48, 0x55, 0x42, 0x2f, 0x1c, 0xd3, 0x22, 0, 0, 0, 0x24]
        );
        assert_eq!(unwrap(&framed).unwrap(), &msg[..]);
    }

    #[test]
    fn rejects_damage() {
        let framed = wrap(b"hello");
        let mut bad = framed.clone();
        bad[14] ^= 1;
        assert!(matches!(unwrap(&bad), Err(EnvelopeError::BadCrc { .. })));
        assert!(matches!(
            unwrap(&framed[..framed.len() - 1]),
            Err(EnvelopeError::BadLength { .. })
        ));
        assert_eq!(unwrap(b"DHU"), Err(EnvelopeError::TooShort(3)));
        let mut magic = framed;
        magic[0] = b'X';
        assert_eq!(unwrap(&magic), Err(EnvelopeError::BadMagic));
    }
}
