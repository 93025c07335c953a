//! SINK_FC's writer: one synchronous Function Compute 3.0 invocation per delivery,
//! `POST /2023-03-30/functions/{Service}${Function}/invocations` with the JSON payload of
//! `payload.rs`, signed with `ACS3-HMAC-SHA256` (`sign.rs`).
//!
//! Outcomes:
//! - 2xx without `X-Fc-Error-Type`: delivered;
//! - 2xx with `X-Fc-Error-Type` (the function itself failed): invoked again up to
//!   [`FUNCTION_ATTEMPTS`] times in all, then a bad record, so the runtime bisects the batch
//!   down to the record the function refuses, discards and counts it;
//! - 429, 5xx, connection errors and timeouts: transient (CONTEXT_HANG, retried with backoff);
//! - 413 (payload too large): a bad record, so the batch is split;
//! - other 4xx (bad credentials, no such function): configuration;
//! - a TLS failure (untrusted certificate): configuration (`tls.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sink::{SharedColumns, Sink, SinkError, SinkRecord};
use crate::sinks::Secret;

use super::{payload, sign, FcConfig};

/// Invocations of one batch while the function reports an error, before it is a bad record.
pub const FUNCTION_ATTEMPTS: u32 = 3;
/// Pause before invoking again after a function error (doubles each time).
const FUNCTION_RETRY_DELAY: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A synchronous invocation waits for the function to return.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of an error response goes into the message.
const BODY_EXCERPT: usize = 300;

/// Opens a SINK_FC task's sink (AuthMode ak; sts is refused in `mod.rs`).
pub async fn open(cfg: FcConfig, columns: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    Ok(Box::new(FcSink::open(cfg, columns)?))
}

pub struct FcSink {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The request path as sent (percent-encoded): the canonical URI of the signature.
    path: String,
    /// `Host` as reqwest sends it (host, plus the port when it is not the scheme's default).
    host: String,
    access_id: String,
    access_key: Secret,
    /// "function svc$fn at http://host:port", for messages.
    target: String,
    columns: SharedColumns,
    /// The next invocation's body so far (`payload::OPEN`, then the records written).
    pending: Vec<u8>,
    /// How many records `pending` holds.
    pending_records: usize,
}

/// The 3.0 name of a function: `{Service}${Function}`, which is how Function Compute 3.0
/// names the functions of a 2.0 service (3.0 has no services).
pub fn function_name(cfg: &FcConfig) -> String {
    format!("{}${}", cfg.service, cfg.function)
}

impl FcSink {
    pub fn open(cfg: FcConfig, columns: SharedColumns) -> Result<FcSink, SinkError> {
        if cfg.auth.access_id.is_empty() || cfg.auth.access_key.expose().is_empty() {
            return Err(SinkError::config(
                "SINK_FC with AuthMode ak needs AccessId and AccessKey to sign invocations".into(),
            ));
        }
        let endpoint = cfg.endpoint.trim().trim_end_matches('/');
        let base = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("https://{endpoint}")
        };
        let name = function_name(&cfg);
        let path = format!(
            "/{}/functions/{}/invocations",
            sign::API_VERSION,
            sign::encode_segment(&name)
        );
        let url = reqwest::Url::parse(&format!("{base}{path}"))
            .map_err(|e| SinkError::config(format!("SINK_FC Endpoint {:?}: {e}", cfg.endpoint)))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => {
                return Err(SinkError::config(format!(
                    "SINK_FC Endpoint {:?} has no host",
                    cfg.endpoint
                )))
            }
        };
        let client = crate::sinks::tls::http_client_builder(&crate::sinks::tls::current())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| SinkError::config(format!("SINK_FC HTTP client: {e}")).with_source(e))?;
        Ok(FcSink {
            client,
            url,
            path,
            host,
            target: format!("function {name} at {base}"),
            access_id: cfg.auth.access_id,
            access_key: cfg.auth.access_key,
            columns,
            pending: payload::OPEN.to_vec(),
            pending_records: 0,
        })
    }

    /// One signed invocation with `body` (shared, not copied, between attempts).
    async fn invoke(&self, body: &bytes::Bytes) -> Result<Outcome, SinkError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let nonce = format!("{:032x}", rand::random::<u128>());
        let headers =
            sign::signed_headers(&self.host, body, &sign::acs_date(now.as_secs()), &nonce);
        let auth = sign::authorization(
            &self.path,
            &headers,
            &self.access_id,
            self.access_key.expose(),
        );
        let mut req = self.client.post(self.url.clone());
        for (k, v) in &headers {
            if *k != "host" {
                req = req.header(*k, v);
            }
        }
        let result = req
            .header("authorization", auth)
            .body(body.clone())
            .send()
            .await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => return Err(self.transport(e)),
        };
        let status = resp.status().as_u16();
        let error_type = resp
            .headers()
            .get("x-fc-error-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let text = resp.text().await.map_err(|e| self.transport(e))?;
        Ok(classify(status, error_type, excerpt(&text)))
    }

    fn transport(&self, e: reqwest::Error) -> SinkError {
        let what = format!("invoking {}", self.target);
        if let Some(config) =
            crate::sinks::tls::http_config_error(&crate::sinks::tls::current(), &what, &e)
        {
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
}

/// What one invocation's response means.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The function ran and failed (`X-Fc-Error-Type`): its type and the response excerpt.
    FunctionError(String, String),
    Failed(SinkError),
}

pub fn classify(status: u16, error_type: Option<String>, body: String) -> Outcome {
    match (status, error_type) {
        (200..=299, None) => Outcome::Delivered,
        (200..=299, Some(t)) => Outcome::FunctionError(t, body),
        (429, _) | (500..=599, _) => {
            Outcome::Failed(SinkError::transient(format!("HTTP {status}: {body}")))
        }
        (413, _) => Outcome::Failed(SinkError::bad_record(format!(
            "HTTP 413, the batch is too large for one invocation: {body}"
        ))),
        _ => Outcome::Failed(SinkError::config(format!("HTTP {status}: {body}"))),
    }
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(BODY_EXCERPT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[async_trait::async_trait]
impl Sink for FcSink {
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError> {
        let names = &self.columns.names;
        for r in records {
            payload::push(&mut self.pending, self.pending_records, names, r);
            self.pending_records += 1;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let records = std::mem::replace(&mut self.pending_records, 0);
        // the next body starts with room for one like this one
        let next = Vec::with_capacity(self.pending.len() + 2);
        let mut body = std::mem::replace(&mut self.pending, next);
        self.pending.extend_from_slice(payload::OPEN);
        if records == 0 {
            return Ok(());
        }
        payload::close(&mut body);
        let body = bytes::Bytes::from(body);
        let mut delay = FUNCTION_RETRY_DELAY;
        let mut attempt = 1;
        loop {
            match self.invoke(&body).await? {
                Outcome::Delivered => return Ok(()),
                Outcome::Failed(e) => {
                    let message = format!("invoking {}: {}", self.target, e.message);
                    return Err(SinkError::new(e.kind, message));
                }
                Outcome::FunctionError(kind, text) if attempt >= FUNCTION_ATTEMPTS => {
                    return Err(SinkError::bad_record(format!(
                        "{} failed on {} record(s) {attempt} times (X-Fc-Error-Type: {kind}): {text}",
                        self.target,
                        records
                    )));
                }
                Outcome::FunctionError(kind, _) => {
                    tracing::debug!(target = %self.target, %kind, attempt, "function error, invoking again");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ErrorKind;

    fn kind(o: Outcome) -> ErrorKind {
        match o {
            Outcome::Failed(e) => e.kind,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn responses_are_classified() {
        assert_eq!(classify(200, None, String::new()), Outcome::Delivered);
        assert_eq!(classify(202, None, String::new()), Outcome::Delivered);
        assert_eq!(
            classify(200, Some("UnhandledInvocationError".into()), "boom".into()),
            Outcome::FunctionError("UnhandledInvocationError".into(), "boom".into())
        );
        for s in [429, 500, 502, 503, 504] {
            assert_eq!(
                kind(classify(s, None, String::new())),
                ErrorKind::Transient,
                "{s}"
            );
        }
        assert_eq!(
            kind(classify(413, None, String::new())),
            ErrorKind::BadRecord
        );
        for s in [400, 401, 403, 404] {
            assert_eq!(
                kind(classify(s, None, String::new())),
                ErrorKind::Config,
                "{s}"
            );
        }
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt("  short \n"), "short");
        let long = "é".repeat(1000);
        assert_eq!(excerpt(&long).chars().count(), BODY_EXCERPT + 1);
    }
}
