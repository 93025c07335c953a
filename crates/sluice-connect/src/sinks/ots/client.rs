//! The Tablestore HTTP client SINK_OTS needs: `POST /DescribeTable` and `POST /BatchWriteRow`
//! to the endpoint, protobuf bodies, signed as the Tablestore API defines it (API version
//! 2015-12-31):
//!
//! - headers `x-ots-date` (`%Y-%m-%dT%H:%M:%S.000Z`), `x-ots-apiversion`, `x-ots-accesskeyid`,
//!   `x-ots-instancename`, `x-ots-contentmd5` (base64 of the body's MD5) and `x-ots-signature`:
//!   base64(HMAC-SHA1(AccessKey, "/{API}\nPOST\n\n" + the sorted `name:value` lines of every
//!   `x-ots-*` header, each followed by `\n`));
//! - responses: `x-ots-contentmd5` must match the body; a 2xx response must carry
//!   `Authorization: OTS {AccessId}:{signature}`, the signature being base64(HMAC-SHA1(AccessKey,
//!   the sorted `x-ots-*` response header lines joined by `\n`, + `\n/{API}`));
//! - a failed response's body is a protobuf `Error` (code, message), classified by
//!   [`classify`]. TLS goes through `sinks/tls.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use prost::Message;
use sha1::Sha1;

use super::proto;
use super::OtsConfig;
use crate::sink::{ErrorKind, SinkError};
use crate::sinks::{tls, Secret};

pub const API_VERSION: &str = "2015-12-31";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Error codes that mean "try again later", for a whole request or one row.
pub const RETRYABLE_CODES: &[&str] = &[
    "OTSServerBusy",
    "OTSTimeout",
    "OTSServerUnavailable",
    "OTSQuotaExhausted",
    "OTSPartitionUnavailable",
    "OTSInternalServerError",
    "OTSTableNotReady",
    "OTSCapacityUnitExhausted",
    "OTSRowOperationConflict",
];

/// Error codes of a whole request that say the configuration does not work.
const CONFIG_CODES: &[&str] = &[
    "OTSAuthFailed",
    "OTSObjectNotExist",
    "OTSNoPermissionAccess",
    "OTSAccessDenied",
];

pub fn is_retryable(code: &str) -> bool {
    RETRYABLE_CODES.contains(&code)
}

/// What a whole-request failure means: HTTP status, and the `Error` code when the body held one.
/// Retryable codes, 429 and 5xx: transient; auth, missing table or instance: configuration;
/// OTSParameterInvalid and the size limits (a value the service refuses, on a BatchWriteRow):
/// bad record, so the runtime narrows the batch down; anything else: configuration.
pub fn classify(status: u16, code: Option<&str>) -> ErrorKind {
    match code {
        Some(c) if is_retryable(c) => ErrorKind::Transient,
        Some(c) if CONFIG_CODES.contains(&c) => ErrorKind::Config,
        Some("OTSParameterInvalid" | "OTSRequestBodyTooLarge" | "OTSOutOfRowSizeLimit")
        | Some("OTSOutOfColumnCountLimit") => ErrorKind::BadRecord,
        _ if status == 429 || status >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Config,
    }
}

/// `x-ots-date` for a time.
pub fn ots_date(now: Duration) -> String {
    let secs = now.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (H. Hinnant's days_from_civil, inverted).
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
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn hmac_sha1_b64(key: &str, text: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The sorted `name:value` lines of the `x-ots-*` headers (names lower-case, values trimmed).
fn ots_header_lines<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut lines: Vec<String> = headers
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-ots-"))
        .map(|(k, v)| format!("{}:{}", k.to_ascii_lowercase(), v.trim()))
        .collect();
    lines.sort();
    lines
}

/// The request's `x-ots-signature` over its `x-ots-*` headers (without the signature).
pub fn request_signature(api: &str, headers: &[(&str, String)], access_key: &str) -> String {
    let mut text = format!("/{api}\nPOST\n\n");
    for line in ots_header_lines(headers.iter().map(|(k, v)| (*k, v.as_str()))) {
        text.push_str(&line);
        text.push('\n');
    }
    hmac_sha1_b64(access_key, &text)
}

/// The signature a response's `Authorization` must carry.
pub fn response_signature<'a>(
    api: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    access_key: &str,
) -> String {
    let text = format!("{}\n/{api}", ots_header_lines(headers).join("\n"));
    hmac_sha1_b64(access_key, &text)
}

pub fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(body))
}

/// A Tablestore instance at an endpoint, with the keys that sign for it.
pub struct Client {
    http: reqwest::Client,
    base: String,
    instance: String,
    access_id: String,
    access_key: Secret,
}

impl Client {
    pub fn new(cfg: &OtsConfig) -> Result<Client, SinkError> {
        if cfg.auth.access_id.is_empty() || cfg.auth.access_key.expose().is_empty() {
            return Err(SinkError::config(
                "SINK_OTS with AuthMode ak needs AccessId and AccessKey to sign requests".into(),
            ));
        }
        let e = cfg.endpoint.trim().trim_end_matches('/');
        let base = if e.contains("://") {
            e.to_string()
        } else {
            format!("https://{e}")
        };
        reqwest::Url::parse(&base)
            .map_err(|err| SinkError::config(format!("SINK_OTS Endpoint {e:?}: {err}")))?;
        let http = tls::http_client_builder(&tls::current())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|err| SinkError::config(format!("SINK_OTS HTTP client: {err}")))?;
        Ok(Client {
            http,
            base,
            instance: cfg.instance_name.clone(),
            access_id: cfg.auth.access_id.clone(),
            access_key: cfg.auth.access_key.clone(),
        })
    }

    /// "instance i at https://host", for messages.
    pub fn target(&self) -> String {
        format!("Tablestore instance {} at {}", self.instance, self.base)
    }

    /// One signed call; the verified body of a 2xx response, or the classified failure.
    async fn call(&self, api: &str, body: Vec<u8>) -> Result<Vec<u8>, SinkError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut headers = vec![
            ("x-ots-date", ots_date(now)),
            ("x-ots-apiversion", API_VERSION.to_string()),
            ("x-ots-accesskeyid", self.access_id.clone()),
            ("x-ots-instancename", self.instance.clone()),
            ("x-ots-contentmd5", content_md5(&body)),
        ];
        let signature = request_signature(api, &headers, self.access_key.expose());
        headers.push(("x-ots-signature", signature));
        let mut req = self.http.post(format!("{}/{api}", self.base));
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let what = format!("{api} on {}", self.target());
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport(&what, e))?;
        let status = resp.status().as_u16();
        let resp_headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| self.transport(&what, e))?;
        let header = |name: &str| {
            resp_headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        if let Some(md5) = header("x-ots-contentmd5") {
            if md5 != content_md5(&bytes) {
                return Err(SinkError::transient(format!(
                    "{what}: the response body does not match its x-ots-contentmd5"
                )));
            }
        }
        if (200..300).contains(&status) {
            let auth = header("authorization").unwrap_or_default();
            let pairs: Vec<(String, String)> = resp_headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let want = format!(
                "OTS {}:{}",
                self.access_id,
                response_signature(
                    api,
                    pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    self.access_key.expose()
                )
            );
            if auth != want {
                return Err(SinkError::config(format!(
                    "{what}: the response's Authorization does not verify with this AccessKey \
                     (is the endpoint a Tablestore instance?)"
                )));
            }
            return Ok(bytes.to_vec());
        }
        let error = proto::Error::decode(bytes.as_ref()).ok();
        let code = error.as_ref().map(|e| e.code.as_str());
        let kind = classify(status, code);
        let detail = match &error {
            Some(e) => format!("{}: {}", e.code, e.message.as_deref().unwrap_or("")),
            None => String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        };
        Err(SinkError::new(
            kind,
            format!("{what}: HTTP {status}, {detail}"),
        ))
    }

    fn transport(&self, what: &str, e: reqwest::Error) -> SinkError {
        if let Some(config) = tls::http_config_error(&tls::current(), what, &e) {
            return config;
        }
        let mut chain = e.to_string();
        let mut next = std::error::Error::source(&e);
        while let Some(s) = next {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            next = s.source();
        }
        SinkError::transient(format!("{what}: {chain}")).with_source(e)
    }

    /// The table's primary key schema. Any failure but a transient one is a configuration
    /// error here (nothing of a batch is involved yet).
    pub async fn describe_table(
        &self,
        table: &str,
    ) -> Result<Vec<proto::PrimaryKeySchema>, SinkError> {
        let req = proto::DescribeTableRequest {
            table_name: table.to_string(),
        };
        let body = match self.call("DescribeTable", req.encode_to_vec()).await {
            Ok(b) => b,
            Err(e) if e.kind == ErrorKind::BadRecord => return Err(SinkError::config(e.message)),
            Err(e) => return Err(e),
        };
        let resp = proto::DescribeTableResponse::decode(body.as_slice()).map_err(|e| {
            SinkError::transient(format!("DescribeTable {table:?}: malformed response ({e})"))
        })?;
        Ok(resp.table_meta.primary_key)
    }

    pub async fn batch_write_row(
        &self,
        req: &proto::BatchWriteRowRequest,
    ) -> Result<proto::BatchWriteRowResponse, SinkError> {
        let body = self.call("BatchWriteRow", req.encode_to_vec()).await?;
        proto::BatchWriteRowResponse::decode(body.as_slice())
            .map_err(|e| SinkError::transient(format!("BatchWriteRow: malformed response ({e})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_with_milliseconds() {
        assert_eq!(ots_date(Duration::from_secs(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            ots_date(Duration::from_secs(1_709_251_199)),
            "2024-02-29T23:59:59.000Z"
        );
    }

    #[test]
    fn failures_are_classified() {
        for code in [
            "OTSServerBusy",
            "OTSTimeout",
            "OTSServerUnavailable",
            "OTSQuotaExhausted",
        ] {
            assert_eq!(classify(503, Some(code)), ErrorKind::Transient, "{code}");
            assert_eq!(classify(400, Some(code)), ErrorKind::Transient, "{code}");
        }
        assert_eq!(classify(502, None), ErrorKind::Transient);
        assert_eq!(classify(403, Some("OTSAuthFailed")), ErrorKind::Config);
        assert_eq!(classify(404, Some("OTSObjectNotExist")), ErrorKind::Config);
        assert_eq!(
            classify(400, Some("OTSParameterInvalid")),
            ErrorKind::BadRecord
        );
        assert_eq!(classify(400, None), ErrorKind::Config);
    }
}
