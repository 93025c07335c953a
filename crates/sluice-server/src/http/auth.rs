//! Request authentication: the `DATAHUB id:signature` header (protocol doc §2) checked against
//! the server's accounts, and the request's `Date` checked against the clock. The resource line
//! may be written the way any official SDK writes it (`sign::resource_candidates`).

use std::collections::HashMap;

use axum::http::{HeaderMap, Method, Uri};
use sluice_proto::sign;

use crate::service::Error;

/// The one answer for an unknown AccessId and for a wrong signature.
pub const BAD_SIGNATURE: &str = "the AccessId is unknown or the request signature does not match";

/// Stands in for the key of an unknown AccessId, so both failures take the same path.
const UNKNOWN_ID_KEY: &str = "sluice: no such access id";

/// Access ids and their secret keys.
#[derive(Clone, Default)]
pub struct Accounts {
    keys: HashMap<String, String>,
}

impl Accounts {
    pub fn with_root(access_id: &str, access_key: &str) -> Accounts {
        let mut keys = HashMap::new();
        keys.insert(access_id.to_string(), access_key.to_string());
        Accounts { keys }
    }

    /// Verifies a request's signature and date.
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        max_skew_secs: u64,
    ) -> Result<(), Error> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Error::Unauthorized("the request is not signed (no Authorization header)".into())
            })?;
        let (id, given) = sign::parse_authorization(auth).ok_or_else(|| {
            Error::Unauthorized(
                "the Authorization header is not of the form 'DATAHUB id:signature'".into(),
            )
        })?;
        // An unknown id is checked against a key no request can match, and both failures share
        // one message: the answer must not tell which AccessIds exist.
        let key = self.keys.get(id.trim()).map(String::as_str);
        let date = headers
            .get("date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Unauthorized("the request has no Date header".into()))?;
        let when = httpdate::parse_http_date(date).map_err(|_| {
            Error::Unauthorized(format!("the Date header {date:?} is not an HTTP date"))
        })?;
        let now = std::time::SystemTime::now();
        let skew = now
            .duration_since(when)
            .or_else(|_| when.duration_since(now))
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if skew > max_skew_secs {
            return Err(Error::Unauthorized(format!(
                "the request Date {date:?} is {skew} s away from the server clock (limit {max_skew_secs} s)"
            )));
        }
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let datahub: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(n, _)| n.as_str().starts_with("x-datahub-"))
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)))
            .collect();
        // Each SDK renders the resource (path and query) its own way; accept any of them.
        for resource in sign::resource_candidates(uri.path(), uri.query()) {
            let canonical = sign::canonical_string_for_resource(
                method.as_str(),
                content_type,
                date,
                &datahub,
                &resource,
            );
            let expected = sign::signature(key.unwrap_or(UNKNOWN_ID_KEY), &canonical);
            if sign::signatures_equal(&expected, given.trim()) && key.is_some() {
                return Ok(());
            }
        }
        Err(Error::Unauthorized(BAD_SIGNATURE.into()))
    }

    // issue 13: console
    /// Whether `key` is the secret key of `access_id` (the console's sign-in). Like `verify`, an
    /// unknown id is checked against a key nobody has, and what is compared are two signatures
    /// of one fixed text, equal in length, so the answer's timing tells nothing.
    pub fn key_matches(&self, access_id: &str, key: &str) -> bool {
        const PROBE: &str = "sluice console sign-in";
        let known = self.keys.get(access_id.trim());
        let expected = sign::signature(known.map_or(UNKNOWN_ID_KEY, String::as_str), PROBE);
        sign::signatures_equal(&expected, &sign::signature(key, PROBE)) && known.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn refusal(accounts: &Accounts, id: &str) -> String {
        let mut headers = HeaderMap::new();
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        headers.insert("date", HeaderValue::from_str(&date).unwrap());
        let auth = format!("DATAHUB {id}:bm90IGEgc2lnbmF0dXJl");
        headers.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        let uri: Uri = "/projects".parse().unwrap();
        match accounts.verify(&Method::GET, &uri, &headers, 900) {
            Err(Error::Unauthorized(m)) => m,
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }

    #[test]
    fn unknown_id_and_wrong_signature_look_the_same() {
        let accounts = Accounts::with_root("root-id", "root-key");
        let unknown = refusal(&accounts, "no-such-id");
        let wrong = refusal(&accounts, "root-id");
        assert_eq!(unknown, wrong);
        assert!(!unknown.contains("no-such-id"), "{unknown}");
    }

    // issue 13: console
    #[test]
    fn console_sign_in_accepts_only_the_right_pair() {
        let accounts = Accounts::with_root("root-id", "root-key");
        assert!(accounts.key_matches("root-id", "root-key"));
        assert!(accounts.key_matches(" root-id ", "root-key"));
        assert!(!accounts.key_matches("root-id", "root-kex"));
        assert!(!accounts.key_matches("root-id", ""));
        assert!(!accounts.key_matches("other-id", "root-key"));
        assert!(!accounts.key_matches("other-id", UNKNOWN_ID_KEY));
    }
}
