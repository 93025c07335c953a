//! The 128-bit hash-key space shards divide among themselves (protocol doc §6.2).

use md5::{Digest, Md5};

/// The last key of the space, `FFFF…F`; also every topic's last EndHashKey.
pub const MAX_KEY: u128 = u128::MAX;

/// Renders a key as 32 upper-case hex digits.
pub fn format_key(key: u128) -> String {
    format!("{key:032X}")
}

/// Parses a hex key of 1..=32 digits, any case (pydatahub's split key is not zero-padded).
pub fn parse_key(text: &str) -> Option<u128> {
    let t = text.trim();
    if t.is_empty() || t.len() > 32 {
        return None;
    }
    u128::from_str_radix(t, 16).ok()
}

/// The routing key of a partition key: its MD5 digest read as a big-endian 128-bit number.
pub fn partition_key_hash(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// The ranges of `count` new shards. The service divides each 64-bit half of the key space on
/// its own: boundary `k` is `h` twice, `h = floor(k * (2^64 - 1) / count)`. For 3 shards that is
/// `5555…5` and `AAAA…A`; for 2 it is `7FFFFFFFFFFFFFFF7FFFFFFFFFFFFFFF`, not `7FFF…F` (the Java
/// SDK's e2e TopicTest pins both).
pub fn initial_ranges(count: u32) -> Vec<(u128, u128)> {
    let count = u128::from(count.max(1));
    let boundary = |k: u128| -> u128 {
        if k == 0 {
            return 0;
        }
        if k >= count {
            return MAX_KEY;
        }
        let half = u128::from(u64::MAX) * k / count;
        (half << 64) | half
    };
    (0..count).map(|k| (boundary(k), boundary(k + 1))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_shards_match_the_real_service() {
        let r = initial_ranges(3);
        assert_eq!(format_key(r[0].0), "00000000000000000000000000000000");
        assert_eq!(format_key(r[0].1), "55555555555555555555555555555555");
        assert_eq!(format_key(r[1].1), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(format_key(r[2].1), "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF");
        let two = initial_ranges(2);
        assert_eq!(format_key(two[0].1), "7FFFFFFFFFFFFFFF7FFFFFFFFFFFFFFF");
        assert_eq!(two[1].0, two[0].1);
        assert_eq!(initial_ranges(1), vec![(0, MAX_KEY)]);
        for n in 1..=64 {
            let r = initial_ranges(n);
            assert!(
                r.windows(2).all(|w| w[0].1 == w[1].0 && w[0].0 < w[0].1),
                "{n}"
            );
            assert_eq!(r.last().unwrap().1, MAX_KEY);
        }
    }

    #[test]
    fn parses_short_lowercase_keys_and_hashes() {
        assert_eq!(
            parse_key("7fffffffffffffffffffffffffffffff"),
            Some(u128::MAX >> 1)
        );
        assert_eq!(parse_key("ff"), Some(255));
        assert_eq!(parse_key(""), None);
        assert_eq!(parse_key("g"), None);
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(
            format_key(partition_key_hash("")),
            "D41D8CD98F00B204E9800998ECF8427E"
        );
    }
}
