//! HTTP body compression (protocol doc §1.7): raw LZ4 blocks sized by
//! `x-datahub-content-raw-size` (or, as the Go SDK may label them, the raw bytes unchanged), zlib
//! streams, pydatahub's no-op `deflate`, and zstd frames (the Go SDK's `zstd`; docs/sdk-wire.md
//! lists what each SDK sends).
//!
//! Every decoder is bounded: LZ4 by the declared raw size, zlib and zstd by reading at most
//! `limit + 1` bytes, and zstd also by a window no larger than the limit needs (at least 8 MiB,
//! the Go encoder's default, at most zstd's own default of 128 MiB).

use std::io::{Read, Write};

/// A body compression named in `Content-Encoding` / `Accept-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Lz4,
    Zlib,
    /// pydatahub's deflate never compresses; Go's sends a zlib stream. Decoding sniffs which.
    Deflate,
    /// A zstd frame (the Go SDK's `zstd`).
    Zstd,
}

/// Why a compressed body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompressError {
    #[error("unknown content encoding {0:?}")]
    Unknown(String),
    #[error("lz4 body needs the x-datahub-content-raw-size header")]
    MissingRawSize,
    #[error("compressed body is corrupt: {0}")]
    Corrupt(String),
    #[error("body decompresses to {actual} bytes, not the declared {declared}")]
    SizeMismatch { declared: usize, actual: usize },
    #[error("body would decompress to more than {limit} bytes")]
    TooLarge { limit: usize },
}

impl Compression {
    /// Parses a `Content-Encoding` value; empty and `identity` mean none.
    pub fn parse(name: &str) -> Result<Option<Compression>, CompressError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(None),
            "lz4" => Ok(Some(Compression::Lz4)),
            "zlib" => Ok(Some(Compression::Zlib)),
            "deflate" => Ok(Some(Compression::Deflate)),
            "zstd" => Ok(Some(Compression::Zstd)),
            other => Err(CompressError::Unknown(other.to_string())),
        }
    }

    /// The lower-case header value.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Zlib => "zlib",
            Compression::Deflate => "deflate",
            Compression::Zstd => "zstd",
        }
    }
}

/// Decompresses a request body. `raw_size` is the declared uncompressed size, `limit` the largest
/// body accepted after decompression. An LZ4 body that is not a block of `raw_size` bytes but is
/// exactly `raw_size` bytes long is the Go SDK's unchanged form and is returned as it is.
pub fn decompress(
    kind: Compression,
    body: &[u8],
    raw_size: Option<usize>,
    limit: usize,
) -> Result<Vec<u8>, CompressError> {
    if let Some(size) = raw_size {
        if size > limit {
            return Err(CompressError::TooLarge { limit });
        }
    }
    let out = match kind {
        Compression::Lz4 => {
            let size = raw_size.ok_or(CompressError::MissingRawSize)?;
            lz4_block_or_stored(body, size)?
        }
        Compression::Zlib => inflate_zlib(body, limit)?,
        Compression::Deflate => {
            if body.first() == Some(&0x78) {
                inflate_zlib(body, limit)?
            } else {
                body.to_vec()
            }
        }
        Compression::Zstd => decompress_zstd(body, limit)?,
    };
    if let Some(declared) = raw_size {
        if declared != out.len() && kind != Compression::Deflate {
            return Err(CompressError::SizeMismatch {
                declared,
                actual: out.len(),
            });
        }
    }
    Ok(out)
}

/// Decodes a raw LZ4 block of `size` bytes, or takes the body as stored when it is not one and
/// is exactly `size` bytes long. The Go SDK's LZ4 compressor returns its input unchanged when
/// it is empty or when pierrec/lz4 returns 0 ("incompressible"), and the SDK still labels the
/// result LZ4 with the raw size equal to the body's length, in HTTP bodies and batch payloads
/// alike (docs/sdk-wire.md, "LZ4 bodies the Go SDK sends unchanged"). A body that does decode as
/// a block of `size` bytes is taken as a block: that is what every LZ4 encoder means by it.
fn lz4_block_or_stored(body: &[u8], size: usize) -> Result<Vec<u8>, CompressError> {
    match lz4_flex::block::decompress(body, size) {
        Ok(out) if out.len() == size => Ok(out),
        _ if body.len() == size => Ok(body.to_vec()),
        Ok(out) => Ok(out),
        Err(e) => Err(CompressError::Corrupt(e.to_string())),
    }
}

/// Whether an LZ4-labelled body declared as `size` bytes raw is those bytes unchanged (the Go
/// SDK's form, see [`decompress`]) rather than an LZ4 block.
pub fn lz4_stored_unchanged(body: &[u8], size: usize) -> bool {
    body.len() == size
        && !matches!(lz4_flex::block::decompress(body, size), Ok(out) if out.len() == size)
}

fn inflate_zlib(body: &[u8], limit: usize) -> Result<Vec<u8>, CompressError> {
    let mut out = Vec::new();
    let mut reader = flate2::read::ZlibDecoder::new(body).take(limit as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| CompressError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(CompressError::TooLarge { limit });
    }
    Ok(out)
}

/// Smallest and largest zstd window accepted (log2): 8 MiB is what the Go SDK's encoder may use
/// for any body, 128 MiB is zstd's own default limit.
const ZSTD_WINDOW_LOG: std::ops::RangeInclusive<u32> = 23..=27;

/// Decodes zstd frames (several in a row are concatenated), refusing more than `limit` bytes of
/// output and windows larger than the limit calls for.
pub(crate) fn decompress_zstd(body: &[u8], limit: usize) -> Result<Vec<u8>, CompressError> {
    let corrupt = |e: std::io::Error| CompressError::Corrupt(e.to_string());
    let mut decoder = zstd::stream::read::Decoder::with_buffer(body).map_err(corrupt)?;
    let window_log = (usize::BITS - limit.saturating_sub(1).leading_zeros())
        .clamp(*ZSTD_WINDOW_LOG.start(), *ZSTD_WINDOW_LOG.end());
    decoder.window_log_max(window_log).map_err(corrupt)?;
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    if out.len() > limit {
        return Err(CompressError::TooLarge { limit });
    }
    Ok(out)
}

/// Compresses a response body; `None` when compression would not make it smaller.
pub fn compress(kind: Compression, body: &[u8]) -> Option<Vec<u8>> {
    let out = match kind {
        Compression::Lz4 => lz4_flex::block::compress(body),
        Compression::Zlib => {
            let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(body).ok()?;
            enc.finish().ok()?
        }
        Compression::Deflate => return None,
        Compression::Zstd => zstd::bulk::compress(body, 1).ok()?,
    };
    (out.len() < body.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &[u8] =
        br#"{"Action": "sub", "Cursor": "20000000000000000000000000000000", "Limit": 10}"#;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_sdk_vectors() {
        let lz4 = hex("ff107b22416374696f6e223a2022737562222c2022437572736f72223a2022323001000bf000222c20224c696d6974223a2031307d");
        assert_eq!(
            decompress(Compression::Lz4, &lz4, Some(76), 1 << 20).unwrap(),
            RAW
        );
        let zlib = hex("789cab56724c2ec9cccf53b252502a2e4d52d25150722e2d2ace2f02091819e00720d53e99b9992540c58606b500f406127b");
        assert_eq!(
            decompress(Compression::Zlib, &zlib, Some(76), 1 << 20).unwrap(),
            RAW
        );
        assert_eq!(
            decompress(Compression::Deflate, RAW, None, 1 << 20).unwrap(),
            RAW
        );
        // python-zstandard 0.25, level 3 (an encoder other than the one Sluice links).
        let zstd = hex("28b52ffd204c95010064027b22416374696f6e223a2022737562222c2022437572736f7232304c696d6974223a2031307d030051050027385ae718");
        assert_eq!(
            decompress(Compression::Zstd, &zstd, Some(76), 1 << 20).unwrap(),
            RAW
        );
        assert_eq!(
            decompress(Compression::Zstd, &zstd, Some(75), 1 << 20),
            Err(CompressError::SizeMismatch {
                declared: 75,
                actual: 76
            })
        );
        assert!(matches!(
            decompress(Compression::Zstd, &zstd[..zstd.len() - 4], None, 1 << 20),
            Err(CompressError::Corrupt(_))
        ));
        assert_eq!(Compression::parse(" ZSTD"), Ok(Some(Compression::Zstd)));
    }

    #[test]
    fn zstd_bombs_are_refused() {
        // 64 MiB of zeros compress to a few KiB; a 1 MiB limit stops decoding just past 1 MiB.
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
        assert!(bomb.len() < 8 << 10, "{}", bomb.len());
        assert_eq!(
            decompress(Compression::Zstd, &bomb, None, 1 << 20),
            Err(CompressError::TooLarge { limit: 1 << 20 })
        );
        // A declared raw size over the limit is refused before decoding.
        assert_eq!(
            decompress(Compression::Zstd, &bomb, Some(64 << 20), 1 << 20),
            Err(CompressError::TooLarge { limit: 1 << 20 })
        );
        // Two frames back to back decode as their concatenation (what zstd's streaming API does).
        let mut two = zstd::bulk::compress(b"ab", 1).unwrap();
        two.extend(zstd::bulk::compress(b"cd", 1).unwrap());
        assert_eq!(
            decompress(Compression::Zstd, &two, Some(4), 1 << 20).unwrap(),
            b"abcd"
        );
    }

    #[test]
    fn lz4_bodies_the_go_sdk_sends_unchanged_are_taken_as_stored() {
        // Go SDK compress.go (v0.2.1 :80-97, HEAD :93-110): an empty input comes back as nil and
        // a 0 from lz4.CompressBlock returns the input itself; restclient.go (v0.2.1 :288-298,
        // HEAD :283-293) still labels it lz4 with x-datahub-content-raw-size = its length.
        assert_eq!(
            decompress(Compression::Lz4, RAW, Some(RAW.len()), 1 << 20).unwrap(),
            RAW
        );
        assert!(lz4_stored_unchanged(RAW, RAW.len()));
        assert_eq!(
            decompress(Compression::Lz4, b"", Some(0), 1 << 20).unwrap(),
            b""
        );
        // A real block whose size happens to equal the raw size is still a block:
        // 1 literal 'a', a 4-byte match at offset 1, 5 final literals = 10 bytes either way.
        let block = b"\x10a\x01\x00\x50aaaaa";
        assert_eq!(
            decompress(Compression::Lz4, block, Some(10), 1 << 20).unwrap(),
            b"aaaaaaaaaa"
        );
        assert!(!lz4_stored_unchanged(block, 10));
        // Not a block and not the declared size: still corrupt.
        assert!(matches!(
            decompress(Compression::Lz4, RAW, Some(RAW.len() + 1), 1 << 20),
            Err(CompressError::Corrupt(_))
        ));
        assert!(!lz4_stored_unchanged(RAW, RAW.len() + 1));
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        for kind in [Compression::Lz4, Compression::Zlib, Compression::Zstd] {
            let c = compress(kind, RAW).unwrap();
            assert_eq!(decompress(kind, &c, Some(RAW.len()), 1 << 20).unwrap(), RAW);
        }
        assert!(decompress(Compression::Zlib, b"\x78\x9cgarbage", None, 1 << 20).is_err());
        assert!(decompress(Compression::Zstd, b"\x28\xb5\x2f\xfdgarbage", None, 1 << 20).is_err());
        assert!(decompress(Compression::Lz4, b"\xff\xff\xff", Some(76), 1 << 20).is_err());
        assert_eq!(
            decompress(Compression::Lz4, b"x", None, 10),
            Err(CompressError::MissingRawSize)
        );
        assert_eq!(
            decompress(Compression::Lz4, b"x", Some(100), 10),
            Err(CompressError::TooLarge { limit: 10 })
        );
        assert!(Compression::parse("gzip").is_err());
    }
}
