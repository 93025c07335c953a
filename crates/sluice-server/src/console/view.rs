//! What every console page shares: the frame (header, sign-out, scripts), the error page, JSON
//! answers for the polled endpoints, secret masking and formatting helpers.

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value as Json;

use super::session::Session;
use crate::http::error::error_code;
use crate::service::Error;

/// A failed page request: a service error, shown as an HTML page with the error's HTTP status.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PageError(#[from] pub Error);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let code = error_code(&self.0);
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let body = html! {
            div.error #error {
                strong { (code.as_str()) } ": " (self.0.to_string())
            }
            p { a href="javascript:history.back()" { "Back" } " · " a href="/console/" { "Overview" } }
        };
        (status, frame("Error", None, body)).into_response()
    }
}

/// A failed JSON request: `{"error": message, "code": DataHub code}`.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ApiError(#[from] pub Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = error_code(&self.0);
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        json(
            status,
            &serde_json::json!({"error": self.0.to_string(), "code": code.as_str()}),
        )
    }
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// A whole page: the header (with sign-out when signed in) around `body`.
pub fn frame(title: &str, session: Option<&Session>, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sluice console" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/console/" { "Sluice" }
                    span.title { (title) }
                    @if let Some(s) = session {
                        span.user #user { (s.access_id) }
                        form.inline method="post" action="/console/logout" {
                            (csrf_field(s))
                            button #sign-out type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    Html(markup.into_string())
}

/// The hidden CSRF field every POST form carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// Milliseconds since the epoch as an HTTP date, or "-" for none.
pub fn time_ms(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    httpdate::fmt_http_date(t)
}

/// Bytes with a binary unit.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Whether a config field holds a secret (passwords, access keys, tokens).
fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password") || n.contains("secret") || n.contains("token") || n == "accesskey"
}

/// A connector config with every secret replaced by `***` (an empty one stays empty).
pub fn mask_secrets(config: &Json) -> Json {
    match config {
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Json::String(s) if is_secret(k) && !s.is_empty() => "***".into(),
                        Json::Null | Json::String(_) if is_secret(k) => v.clone(),
                        _ if is_secret(k) => "***".into(),
                        other => mask_secrets(other),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(mask_secrets).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_everywhere_and_the_rest_kept() {
        let config = serde_json::json!({
            "Host": "db", "Password": "s3cret-pw", "User": "u",
            "Inner": {"AccessKey": "ak-secret", "AccessId": "id"}, "Empty": {"Password": ""}
        });
        let masked = mask_secrets(&config);
        let text = masked.to_string();
        assert!(
            !text.contains("s3cret-pw") && !text.contains("ak-secret"),
            "{text}"
        );
        assert_eq!(masked["Password"], "***");
        assert_eq!(masked["Inner"]["AccessKey"], "***");
        assert_eq!(masked["Inner"]["AccessId"], "id");
        assert_eq!(masked["Host"], "db");
        assert_eq!(masked["Empty"]["Password"], "");
    }

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(time_ms(-1), "-");
        assert!(time_ms(1_700_000_000_000).ends_with("GMT"));
    }
}
