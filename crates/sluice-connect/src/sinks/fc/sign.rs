//! Function Compute 3.0 request signing: Alibaba Cloud's V3 signature, `ACS3-HMAC-SHA256`
//! (what the official FC 3.0 SDKs send through `alibabacloud-tea-openapi`).
//!
//! ```text
//! CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n
//!                    (lowercase(name) ":" trim(value) \n, for each signed header, sorted)
//!                    \n SignedHeaders \n hex(sha256(body))
//! StringToSign     = "ACS3-HMAC-SHA256" \n hex(sha256(CanonicalRequest))
//! Authorization    = ACS3-HMAC-SHA256 Credential=<AccessId>,SignedHeaders=<a;b;c>,
//!                    Signature=hex(hmac_sha256(AccessKey, StringToSign))
//! ```
//!
//! Every header in [`signed_headers`] is signed (host, content-type and the `x-acs-*` ones);
//! the body hash also travels as `x-acs-content-sha256`. The canonical URI is the path as sent
//! (already percent-encoded); there is no query.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
pub const API_VERSION: &str = "2023-03-30";
pub const ACTION: &str = "InvokeFunction";

/// The headers of one invocation that are signed, lowercase names, sorted by name.
pub fn signed_headers(
    host: &str,
    body: &[u8],
    date: &str,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("content-type", "application/json".to_string()),
        ("host", host.to_string()),
        ("x-acs-action", ACTION.to_string()),
        ("x-acs-content-sha256", hex::encode(Sha256::digest(body))),
        ("x-acs-date", date.to_string()),
        ("x-acs-signature-nonce", nonce.to_string()),
        ("x-acs-version", API_VERSION.to_string()),
        ("x-fc-invocation-type", "Sync".to_string()),
    ];
    h.sort_by(|a, b| a.0.cmp(b.0));
    h
}

/// The `Authorization` header for a POST of `path` with `headers` (from [`signed_headers`]).
pub fn authorization(
    path: &str,
    headers: &[(&'static str, String)],
    access_id: &str,
    access_key: &str,
) -> String {
    let mut canonical = format!("POST\n{path}\n\n");
    for (k, v) in headers {
        canonical.push_str(k);
        canonical.push(':');
        canonical.push_str(v.trim());
        canonical.push('\n');
    }
    let names: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    let names = names.join(";");
    let payload = headers
        .iter()
        .find(|(k, _)| *k == "x-acs-content-sha256")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    canonical.push('\n');
    canonical.push_str(&names);
    canonical.push('\n');
    canonical.push_str(payload);
    let to_sign = format!(
        "{ALGORITHM}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(access_key.as_bytes())
        .expect("HMAC accepts every key length");
    mac.update(to_sign.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    format!("{ALGORITHM} Credential={access_id},SignedHeaders={names},Signature={signature}")
}

/// Percent-encodes one path segment: everything but `A-Z a-z 0-9 - _ . ~` (so `$` is `%24`).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `x-acs-date`: UTC, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn acs_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Days since 1970-01-01 to the civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_iso8601() {
        assert_eq!(acs_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(acs_date(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(acs_date(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(acs_date(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn function_names_are_encoded_as_one_segment() {
        assert_eq!(encode_segment("svc$fn-1_a.b~"), "svc%24fn-1_a.b~");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn signature_covers_headers_path_and_body() {
        let h = signed_headers("fc.example:9000", b"{}", "2023-11-14T22:13:20Z", "n1");
        let names: Vec<&str> = h.iter().map(|(k, _)| *k).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let auth = authorization("/2023-03-30/functions/f/invocations", &h, "id", "key");
        assert!(auth.starts_with(
            "ACS3-HMAC-SHA256 Credential=id,SignedHeaders=content-type;host;x-acs-action;"
        ));
        let sig = |h: &[(&'static str, String)], path: &str, key: &str| {
            authorization(path, h, "id", key)
                .rsplit("Signature=")
                .next()
                .unwrap()
                .to_string()
        };
        let base = sig(&h, "/2023-03-30/functions/f/invocations", "key");
        assert_eq!(base.len(), 64);
        assert_ne!(base, sig(&h, "/2023-03-30/functions/g/invocations", "key"));
        assert_ne!(
            base,
            sig(&h, "/2023-03-30/functions/f/invocations", "other")
        );
        let h2 = signed_headers("fc.example:9000", b"{ }", "2023-11-14T22:13:20Z", "n1");
        assert_ne!(base, sig(&h2, "/2023-03-30/functions/f/invocations", "key"));
        // The SDK's own check of these bytes is in compat/test_connector_fc.py.
    }
}
