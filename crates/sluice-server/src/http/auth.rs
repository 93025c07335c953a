//! Request authentication: the `DATAHUB id:signature` header (protocol doc §2) checked against
//! the server's accounts, and the request's `Date` checked against the clock. The resource line
//! may be written the way any official SDK writes it (`sign::resource_candidates`).
//!
//! The accounts are the root key pair from the config (never stored, every right) and, once the
//! server opened its data dir, the stored access keys (`accounts::keys`), looked up in memory.
//! A disabled or expired key, or a retired or expired secret, fails like a wrong signature.

use std::sync::Arc;

use axum::http::{HeaderMap, Method, Uri};
use sluice_proto::sign;

use crate::accounts::keys::KeyRegistry;
use crate::accounts::policy::{Caller, Need};
use crate::service::Error;

/// The one answer for an unknown AccessId and for a wrong signature.
pub const BAD_SIGNATURE: &str = "the AccessId is unknown or the request signature does not match";

/// Stands in for the key of an unknown AccessId, so both failures take the same path.
const UNKNOWN_ID_KEY: &str = "sluice: no such access id";

/// The root key pair and the stored access keys. Debug output shows no secret.
#[derive(Clone)]
pub struct Accounts {
    root_id: String,
    root_key: String,
    keys: Option<Arc<KeyRegistry>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("root_id", &self.root_id)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    pub fn with_root(access_id: &str, access_key: &str) -> Accounts {
        Accounts {
            root_id: access_id.to_string(),
            root_key: access_key.to_string(),
            keys: None,
        }
    }

    /// Adds the stored access keys (done by `Server::open`).
    pub fn with_keys(mut self, keys: Arc<KeyRegistry>) -> Accounts {
        self.keys = Some(keys);
        self
    }

    /// The stored access keys, once the server opened its data dir.
    pub fn keys(&self) -> Option<&Arc<KeyRegistry>> {
        self.keys.as_ref()
    }

    /// The root's access id.
    pub fn root_id(&self) -> &str {
        &self.root_id
    }

    /// Verifies a request's signature and date; returns who signed it.
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        max_skew_secs: u64,
    ) -> Result<Caller, Error> {
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
        // one message: the answer must not tell which AccessIds exist (nor which are disabled).
        let id = id.trim();
        let stored = if id == self.root_id {
            None
        } else {
            self.keys.as_ref().and_then(|k| k.get(id))
        };
        let secrets: Vec<&str> = if id == self.root_id {
            vec![self.root_key.as_str()]
        } else {
            match &stored {
                Some(k) => k.valid_secrets(crate::service::catalog::now_ms()),
                None => Vec::new(),
            }
        };
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
            if secrets.is_empty() {
                let expected = sign::signature(UNKNOWN_ID_KEY, &canonical);
                let _ = sign::signatures_equal(&expected, given.trim());
                continue;
            }
            for secret in &secrets {
                let expected = sign::signature(secret, &canonical);
                if sign::signatures_equal(&expected, given.trim()) {
                    return Ok(match &stored {
                        None => Caller {
                            name: self.root_id.clone(),
                            grants: None,
                            late_audit: Default::default(),
                        },
                        Some(k) => {
                            if let Some(keys) = &self.keys {
                                keys.used(&k.name);
                            }
                            Caller {
                                name: k.name.clone(),
                                grants: Some(k.grants.clone()),
                                late_audit: Default::default(),
                            }
                        }
                    });
                }
            }
        }
        Err(Error::Unauthorized(BAD_SIGNATURE.into()))
    }

    // issue 13: console
    /// Whether `key` is a secret of `access_id` that may sign in to the console: the root's,
    /// or a valid secret of an enabled stored key holding `admin:*/*` (the console acts through
    /// the service layer, past the per-route policy checks, so it takes full rights). Like
    /// `verify`, an unknown id is checked against a key nobody has, and what is compared are
    /// signatures of one fixed text, equal in length, so the answer's timing tells little.
    pub fn key_matches(&self, access_id: &str, key: &str) -> bool {
        const PROBE: &str = "sluice console sign-in";
        let id = access_id.trim();
        let given = sign::signature(key, PROBE);
        let secrets: Vec<String> = if id == self.root_id {
            vec![self.root_key.clone()]
        } else {
            match self.keys.as_ref().and_then(|k| k.get(id)) {
                Some(k) if Caller::of_key(&k).check(&Need::KeyAdmin).is_ok() => k
                    .valid_secrets(crate::service::catalog::now_ms())
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            }
        };
        if secrets.is_empty() {
            let expected = sign::signature(UNKNOWN_ID_KEY, PROBE);
            let _ = sign::signatures_equal(&expected, &given);
            return false;
        }
        secrets
            .iter()
            .any(|secret| sign::signatures_equal(&sign::signature(secret, PROBE), &given))
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
