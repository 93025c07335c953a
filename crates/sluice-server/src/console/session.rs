//! Console sessions: random tokens held in memory (a restart signs everyone out), each with its
//! user, its CSRF token and its expiry; and the session cookie's `Set-Cookie` lines.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use parking_lot::Mutex;
use rand::RngCore;

/// The session cookie's name.
pub const COOKIE: &str = "sluice_console";

/// How long a session lasts from sign-in.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// At most this many live sessions; signing in past it drops the oldest.
const MAX_SESSIONS: usize = 1024;

/// A signed-in user, as handlers see it.
#[derive(Clone)]
pub struct Session {
    pub access_id: String,
    /// The token every POST form of this session carries.
    pub csrf: String,
    pub expires: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("access_id", &self.access_id)
            .field("csrf", &"***")
            .finish()
    }
}

impl Session {
    /// Whether a form's CSRF token is this session's (compared in constant time).
    pub fn csrf_ok(&self, given: &str) -> bool {
        sluice_proto::sign::signatures_equal(&self.csrf, given)
    }
}

/// The live sessions, by cookie token.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// Opens a session for `access_id`; returns its cookie token.
    pub fn open(&self, access_id: &str) -> String {
        let now = Instant::now();
        let token = random_token();
        let mut map = self.map.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            token.clone(),
            Session {
                access_id: access_id.to_string(),
                csrf: random_token(),
                expires: now + LIFETIME,
            },
        );
        token
    }

    /// The live session a request's cookie names, if any.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<Session> {
        let token = cookie_token(headers)?;
        let mut map = self.map.lock();
        match map.get(&token) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&token);
                None
            }
            None => None,
        }
    }

    /// Ends the session a request's cookie names.
    pub fn close(&self, headers: &HeaderMap) {
        if let Some(token) = cookie_token(headers) {
            self.map.lock().remove(&token);
        }
    }
}

/// The session token in a request's `Cookie` headers.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// The `Set-Cookie` value that hands out a session.
pub fn set_cookie(token: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_gone_after_close() {
        let sessions = Sessions::default();
        let token = sessions.open("root");
        let headers = with_cookie(&format!("other=1; {COOKIE}={token}"));
        let s = sessions.from_headers(&headers).expect("session");
        assert_eq!(s.access_id, "root");
        assert!(s.csrf_ok(&s.csrf.clone()));
        assert!(!s.csrf_ok("forged"));
        assert!(!format!("{s:?}").contains(&s.csrf));
        sessions.close(&headers);
        assert!(sessions.from_headers(&headers).is_none());
        assert!(sessions
            .from_headers(&with_cookie("sluice_console=nope"))
            .is_none());
    }

    #[test]
    fn an_expired_session_is_refused() {
        let sessions = Sessions::default();
        let token = sessions.open("root");
        sessions.map.lock().get_mut(&token).unwrap().expires = Instant::now();
        assert!(sessions
            .from_headers(&with_cookie(&format!("{COOKIE}={token}")))
            .is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let plain = set_cookie("t", false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        assert!(set_cookie("t", true).ends_with("; Secure"));
    }
}
