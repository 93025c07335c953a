//! Request signing (protocol doc §2): `Authorization: DATAHUB <id>:<base64 HMAC-SHA1>` over a
//! canonical string of method, content type, date, `x-datahub-*` headers and resource.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Builds the canonical string as pydatahub does. `headers` are (name, value) pairs of the
/// request; only names starting with `x-datahub-` (case-insensitively) are used. `path` must be
/// percent-decoded; `query` is the raw query string (without `?`), canonicalized here.
pub fn canonical_string(
    method: &str,
    content_type: &str,
    date: &str,
    headers: &[(&str, &str)],
    path: &str,
    query: Option<&str>,
) -> String {
    canonical_string_for_resource(
        method,
        content_type,
        date,
        headers,
        &canonical_resource(path, query),
    )
}

/// The resource line as pydatahub signs it: `path`, then `?` and the canonical query if any.
pub fn canonical_resource(path: &str, query: Option<&str>) -> String {
    match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{path}?{}", canonical_query(q)),
        None => path.to_string(),
    }
}

/// The resource lines a request may have been signed with, most common first, without repeats.
/// pydatahub signs the percent-decoded path and the sorted query with bare keys for empty values
/// (`?donetime`); the Go SDK signs `URL.RequestURI()`, the path and query exactly as sent
/// (`?donetime=`, restclient.go `buildSignature`); the Java SDK signs OkHttp's `encodedPath()` and
/// `encodedQuery()`, also as sent (`?donetime`, client/auth/AliyunAuthSigner.java).
pub fn resource_candidates(raw_path: &str, raw_query: Option<&str>) -> Vec<String> {
    let decoded = percent_decode(raw_path);
    let raw_query = raw_query.filter(|q| !q.is_empty());
    let mut out: Vec<String> = Vec::with_capacity(4);
    let as_sent = |path: &str| match raw_query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    for candidate in [
        canonical_resource(&decoded, raw_query),
        as_sent(raw_path),
        canonical_resource(raw_path, raw_query),
        as_sent(&decoded),
    ] {
        if !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

/// Builds the canonical string over an already canonical resource line (path and query).
pub fn canonical_string_for_resource(
    method: &str,
    content_type: &str,
    date: &str,
    headers: &[(&str, &str)],
    resource: &str,
) -> String {
    let mut datahub: Vec<(String, &str)> = headers
        .iter()
        .filter_map(|(name, value)| {
            let lower = name.to_ascii_lowercase();
            lower.starts_with("x-datahub-").then_some((lower, *value))
        })
        .collect();
    datahub.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(128);
    out.push_str(&method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(content_type);
    out.push('\n');
    out.push_str(date);
    out.push('\n');
    for (name, value) in datahub {
        out.push_str(&name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    out.push_str(resource);
    out
}

/// Sorts query pairs by key; renders `key=value`, or `key` when the value is empty.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes `%XX` escapes; anything else (including a stray `%`) is kept as is.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Base64 HMAC-SHA1 of the canonical string with the access key.
pub fn signature(access_key: &str, canonical: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(access_key.as_bytes()).expect("any key length");
    mac.update(canonical.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Constant-time comparison of two signatures.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits `DATAHUB id:signature` into its parts.
pub fn parse_authorization(value: &str) -> Option<(&str, &str)> {
    let rest = value.trim().strip_prefix("DATAHUB ")?;
    rest.trim().rsplit_once(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Thu, 01 Jan 2026 00:00:00 GMT";

    #[test]
    fn reproduces_protocol_examples() {
        let h = [("x-datahub-client-version", "1.1")];
        let a = canonical_string("GET", "application/json", DATE, &h, "/projects", None);
        assert_eq!(
            signature("testAccessKey", &a),
            "yz17GBf+pPn2Qd83vmivuJOlx1I="
        );
        let b = canonical_string(
            "GET",
            "application/json",
            DATE,
            &h,
            "/projects/test_project/topics/test_topic/connectors",
            Some("mode=id"),
        );
        assert_eq!(
            signature("testAccessKey", &b),
            "/pgl+8RSagbyeofWt+dWszYSixw="
        );
        let c = canonical_string(
            "POST",
            "application/x-protobuf",
            DATE,
            &[
                ("X-Datahub-Security-Token", "STS.testToken"),
                ("x-datahub-client-version", "1.1"),
                ("x-datahub-request-action", "sub"),
                ("User-Agent", "ignored"),
            ],
            "/projects/test_project/topics/test_topic/shards/0",
            None,
        );
        assert_eq!(
            signature("testAccessKey", &c),
            "QFBV6KgUhqwmDdN8DCvtqUk5zgo="
        );
    }

    #[test]
    fn resource_candidates_cover_each_sdk() {
        let c = resource_candidates("/p/t/connectors/sink_odps", Some("donetime="));
        // pydatahub's form, then the Go SDK's (as sent, with the `=`).
        assert_eq!(c[0], "/p/t/connectors/sink_odps?donetime");
        assert!(c.contains(&"/p/t/connectors/sink_odps?donetime=".to_string()));
        let c = resource_candidates("/p/t/connectors/sink_odps", Some("donetime"));
        assert_eq!(c, vec!["/p/t/connectors/sink_odps?donetime".to_string()]);
        // Several parameters as sent, unsorted, and sorted.
        let c = resource_candidates("/a%20b", Some("z=1&a=2"));
        assert!(c.contains(&"/a b?a=2&z=1".to_string()));
        assert!(c.contains(&"/a%20b?z=1&a=2".to_string()));
        assert!(c.contains(&"/a%20b?a=2&z=1".to_string()));
        assert!(c.contains(&"/a b?z=1&a=2".to_string()));
        assert_eq!(resource_candidates("/projects", None), vec!["/projects"]);
    }

    #[test]
    fn canonical_query_sorts_and_keeps_bare_keys() {
        assert_eq!(canonical_query("donetime"), "donetime");
        assert_eq!(canonical_query("b=2&a=1&c"), "a=1&b=2&c");
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
        assert_eq!(parse_authorization("DATAHUB id:sig="), Some(("id", "sig=")));
        assert!(signatures_equal("abc", "abc") && !signatures_equal("abc", "abd"));
    }
}
