//! SINK_ES writer: documents through the Elasticsearch / OpenSearch `_bulk` API.
//!
//! - **Open.** `GET /` checks the endpoint and credentials and reads the cluster's version;
//!   with `ProxyMode` false, `GET /_nodes/http` lists the cluster's HTTP nodes (their publish
//!   addresses, same scheme as the endpoint) and bulk requests go round-robin over them; with
//!   `ProxyMode` true every request goes to the endpoint (a proxy or load balancer in front).
//! - **Write** builds the `_bulk` items (`mapping.rs`); **flush** sends them in requests of at
//!   most [`BULK_ITEMS`] items / [`BULK_BYTES`] bytes and reads every item's result:
//!   - 2xx: written;
//!   - 429 or `es_rejected_execution_exception` (or another 5xx item): that item alone is sent
//!     again, with jittered exponential backoff, up to [`ITEM_RETRIES`] times, then the flush
//!     fails as transient (the runtime retries the batch; ids make that harmless);
//!   - another 4xx (mapping / parse errors): a bad record. The rest of the batch is written
//!     first, then the flush fails with [`ErrorKind::BadRecord`](crate::sink::ErrorKind) and
//!     the reason, and the runtime narrows the batch to the record, discards, counts and logs
//!     it; documents written meanwhile are overwritten by the same ids.
//! - Connection errors, timeouts, 429 / 5xx responses: transient. A whole request refused
//!   with 400 "Validation Failed" (an `_id` over 512 bytes) or 413 (too large): bad record
//!   (the runtime narrows it down). 401 / 403, a missing index the cluster will not create, an invalid index
//!   name, other 4xx answers, TLS failures: configuration.
//! - Basic auth (`User` / `Password`) over http or https; https trusts the system roots plus
//!   `connector_tls_ca_file` (`sinks/tls.rs`).

use std::time::Duration;

use serde_json::Value as Json;

use crate::sink::{SharedColumns, Sink, SinkError, SinkRecord};
use crate::sinks::tls;

use super::mapping::{write_item, Layout};
use super::EsConfig;

/// Items per `_bulk` request.
pub const BULK_ITEMS: usize = 1000;
/// Body bytes per `_bulk` request (a request is cut before it passes this).
pub const BULK_BYTES: usize = 5 << 20;
/// How often one rejected (429) item is sent again before the flush fails as transient.
pub const ITEM_RETRIES: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a SINK_ES task's sink.
pub async fn open(cfg: EsConfig, columns: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    Ok(Box::new(EsSink::open(cfg, columns).await?))
}

/// The `_bulk` items of one flush, ready to send: each item's action line and document line
/// (each ending in `\n`), back to back in one buffer that is kept from flush to flush.
#[derive(Default)]
struct Items {
    buf: Vec<u8>,
    /// Where each item ends in `buf`.
    ends: Vec<usize>,
}

impl Items {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }
}

/// A `_bulk` response, as far as SINK_ES reads it: each item's status and error.
#[derive(serde::Deserialize)]
struct BulkResponse {
    items: Vec<BulkItem>,
}

/// `{"index": {...}}` (SINK_ES sends only index actions; the others are read alike).
#[derive(serde::Deserialize)]
struct BulkItem {
    #[serde(alias = "create", alias = "update", alias = "delete")]
    index: ItemResult,
}

#[derive(serde::Deserialize)]
struct ItemResult {
    #[serde(default)]
    status: u64,
    #[serde(default)]
    error: Option<Json>,
}

/// What became of one item of a `_bulk` request.
#[derive(Debug, PartialEq)]
enum Outcome {
    Written,
    Retry(String),
    Bad(String),
    Config(String),
}

pub struct EsSink {
    http: reqwest::Client,
    cfg: EsConfig,
    layout: Layout,
    /// Base URLs (no trailing `/`) the bulk requests go to, round-robin.
    nodes: Vec<String>,
    next: usize,
    pending: Items,
}

/// The endpoint as a base URL: `http://` when no scheme is given, no trailing `/`.
fn base_url(endpoint: &str) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    if e.starts_with("http://") || e.starts_with("https://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

/// `host/ip:port` (what ES publishes) or `ip:port` → `ip:port`.
fn publish_host(address: &str) -> &str {
    address.rsplit('/').next().unwrap_or(address)
}

/// The item's outcome from its status and error (see the module docs).
fn classify_item(status: u64, error: Option<&Json>) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Written;
    }
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Json::as_str)
        .unwrap_or("");
    let reason = error
        .and_then(|e| e.get("reason"))
        .and_then(Json::as_str)
        .unwrap_or("");
    let text = format!("status {status}, {kind}: {reason}");
    if status == 429 || kind.contains("rejected_execution") || status >= 500 {
        Outcome::Retry(text)
    } else if status == 401
        || status == 403
        || kind == "index_not_found_exception"
        || kind == "invalid_index_name_exception"
    {
        Outcome::Config(text)
    } else {
        Outcome::Bad(text)
    }
}

/// Each item's outcome, in request order, from a `_bulk` response body.
fn parse_bulk(body: &[u8], expected: usize) -> Result<Vec<Outcome>, String> {
    let response: BulkResponse = serde_json::from_slice(body)
        .map_err(|e| format!("not a `_bulk` answer with an `items` array ({e})"))?;
    if response.items.len() != expected {
        return Err(format!(
            "{} items for {expected} sent",
            response.items.len()
        ));
    }
    Ok(response
        .items
        .iter()
        .map(|item| classify_item(item.index.status, item.index.error.as_ref()))
        .collect())
}

fn short(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(300).collect()
}

impl EsSink {
    /// Connects: checks the endpoint, reads the version, discovers nodes (ProxyMode false).
    pub async fn open(cfg: EsConfig, columns: SharedColumns) -> Result<EsSink, SinkError> {
        let layout = Layout::new(&columns, &cfg.id_fields, &cfg.type_fields)?;
        let base = base_url(&cfg.endpoint);
        let http = tls::http_client_builder(&tls::current())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| SinkError::config(format!("ES endpoint {base}: {e}")))?;
        if base.starts_with("http://") && !cfg.user.is_empty() {
            tls::warn_plaintext_once(&base, "basic auth credentials are sent over plain http");
        }
        let mut sink = EsSink {
            http,
            cfg,
            layout,
            nodes: vec![base.clone()],
            next: 0,
            pending: Items::default(),
        };
        let root = sink.get(&base, "/").await?;
        let version = root["version"]["number"].as_str().unwrap_or("");
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let opensearch = root["version"]["distribution"] == "opensearch";
        if !sink.cfg.type_fields.is_empty() && (opensearch || major >= 8) {
            return Err(SinkError::config(format!(
                "TypeFields: the cluster at {base} ({} {version}) has no mapping types; \
                 leave TypeFields empty",
                if opensearch {
                    "OpenSearch"
                } else {
                    "Elasticsearch"
                }
            )));
        }
        if !sink.cfg.proxy_mode {
            sink.nodes = sink.discover(&base).await?;
        }
        Ok(sink)
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.cfg.user.is_empty() {
            builder
        } else {
            builder.basic_auth(&self.cfg.user, Some(self.cfg.password.expose()))
        }
    }

    fn transport_error(&self, what: &str, e: reqwest::Error) -> SinkError {
        if let Some(config) = tls::http_config_error(&tls::current(), what, &e) {
            return config;
        }
        SinkError::transient(format!("{what}: {e}")).with_source(e)
    }

    /// A response status that is not success, classified.
    fn status_error(what: &str, status: reqwest::StatusCode, body: &[u8]) -> SinkError {
        let message = format!("{what}: HTTP {status}: {}", short(body));
        match status.as_u16() {
            401 | 403 => SinkError::config(format!("{message} (check User and Password)")),
            429 | 500..=599 => SinkError::transient(message),
            // A request some item of which fails validation (an `_id` over 512 bytes), or
            // one too large for the cluster, is refused whole: the runtime narrows it down
            // (halves fit; a document too large alone is discarded).
            413 => SinkError::bad_record(message),
            400 if String::from_utf8_lossy(body).contains("Validation Failed") => {
                SinkError::bad_record(message)
            }
            _ => SinkError::config(message),
        }
    }

    async fn get(&self, base: &str, path: &str) -> Result<Json, SinkError> {
        let what = format!("ES GET {base}{path}");
        let resp = self
            .request(self.http.get(format!("{base}{path}")))
            .send()
            .await
            .map_err(|e| self.transport_error(&what, e))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(&what, e))?;
        if !status.is_success() {
            return Err(Self::status_error(&what, status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| SinkError::config(format!("{what}: not an Elasticsearch answer ({e})")))
    }

    /// The cluster's HTTP nodes, as base URLs with the endpoint's scheme.
    async fn discover(&self, base: &str) -> Result<Vec<String>, SinkError> {
        let scheme = if base.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let v = self.get(base, "/_nodes/http").await?;
        let mut nodes: Vec<String> = v["nodes"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|n| n["http"]["publish_address"].as_str())
                    .map(|a| format!("{scheme}://{}", publish_host(a)))
                    .collect()
            })
            .unwrap_or_default();
        nodes.sort();
        nodes.dedup();
        if nodes.is_empty() {
            return Err(SinkError::transient(format!(
                "ES {base}/_nodes/http lists no HTTP node (set ProxyMode true to send everything \
                 to the endpoint)"
            )));
        }
        Ok(nodes)
    }

    /// Sends one `_bulk` request with `chunk` (indexes into `items`) and returns each item's
    /// outcome.
    async fn bulk(&mut self, items: &Items, chunk: &[usize]) -> Result<Vec<Outcome>, SinkError> {
        let node = self.nodes[self.next % self.nodes.len()].clone();
        self.next = self.next.wrapping_add(1);
        let mut body = Vec::with_capacity(chunk.iter().map(|&i| items.get(i).len()).sum());
        for &i in chunk {
            body.extend_from_slice(items.get(i));
        }
        let what = format!("ES _bulk at {node}");
        let resp = self
            .request(self.http.post(format!("{node}/_bulk")))
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(&what, e))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(&what, e))?;
        if !status.is_success() {
            return Err(Self::status_error(&what, status, &bytes));
        }
        parse_bulk(&bytes, chunk.len())
            .map_err(|e| SinkError::transient(format!("{what}: unexpected response: {e}")))
    }

    /// Sends `todo` (indexes into `items`) in requests within the bulk limits; returns the
    /// items to retry, and records bad ones in `bad`.
    async fn send_round(
        &mut self,
        items: &Items,
        todo: &[usize],
        bad: &mut Vec<String>,
    ) -> Result<Vec<(usize, String)>, SinkError> {
        let mut retry = Vec::new();
        let mut start = 0;
        while start < todo.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < todo.len()
                && end - start < BULK_ITEMS
                && (end == start || bytes + items.get(todo[end]).len() <= BULK_BYTES)
            {
                bytes += items.get(todo[end]).len();
                end += 1;
            }
            let outcomes = self.bulk(items, &todo[start..end]).await?;
            for (&i, outcome) in todo[start..end].iter().zip(outcomes) {
                match outcome {
                    Outcome::Written => {}
                    Outcome::Retry(why) => retry.push((i, why)),
                    Outcome::Bad(why) => bad.push(why),
                    Outcome::Config(why) => {
                        return Err(SinkError::config(format!(
                            "ES index {}: {why}",
                            self.cfg.index
                        )))
                    }
                }
            }
            start = end;
        }
        Ok(retry)
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF * 2u32.saturating_pow(attempt.min(10));
    let jitter = rand::random::<u64>() % (base.as_millis() as u64 / 2 + 1);
    base + Duration::from_millis(jitter)
}

#[async_trait::async_trait]
impl Sink for EsSink {
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError> {
        for r in records {
            match write_item(&self.layout, &self.cfg.index, r, &mut self.pending.buf) {
                Ok(()) => self.pending.ends.push(self.pending.buf.len()),
                Err(e) => {
                    self.pending.clear();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let mut items = std::mem::take(&mut self.pending);
        let result = self.send(&items).await;
        // the buffer is kept for the next flush (no fresh pages to fault in each time)
        items.clear();
        self.pending = items;
        result
    }
}

impl EsSink {
    /// Sends every item, retrying rejected ones alone (see the module docs).
    async fn send(&mut self, items: &Items) -> Result<(), SinkError> {
        let mut bad = Vec::new();
        let mut todo: Vec<usize> = (0..items.len()).collect();
        let mut attempt = 0;
        while !todo.is_empty() {
            let retry = self.send_round(items, &todo, &mut bad).await?;
            if retry.is_empty() {
                break;
            }
            if attempt >= ITEM_RETRIES {
                return Err(SinkError::transient(format!(
                    "ES index {}: {} item(s) still rejected after {ITEM_RETRIES} retries: {}",
                    self.cfg.index,
                    retry.len(),
                    retry[0].1
                )));
            }
            tracing::debug!(items = retry.len(), attempt, reason = %retry[0].1,
                "ES bulk items rejected; retrying them alone");
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            todo = retry.into_iter().map(|(i, _)| i).collect();
        }
        match bad.len() {
            0 => Ok(()),
            1 => Err(SinkError::bad_record(format!(
                "ES index {} refused the document: {}",
                self.cfg.index, bad[0]
            ))),
            n => Err(SinkError::bad_record(format!(
                "ES index {} refused {n} documents, first: {}",
                self.cfg.index, bad[0]
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_publish_addresses() {
        assert_eq!(base_url("es:9200/"), "http://es:9200");
        assert_eq!(base_url("https://es:9200"), "https://es:9200");
        assert_eq!(publish_host("localhost/127.0.0.1:9200"), "127.0.0.1:9200");
        assert_eq!(publish_host("10.0.0.1:9200"), "10.0.0.1:9200");
    }

    #[test]
    fn every_bulk_item_is_classified() {
        let body = br#"{"errors":true,"items":[
            {"index":{"_id":"1","status":201}},
            {"index":{"_id":"2","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"_id":"3","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [id]"}}},
            {"index":{"_id":"4","status":503,"error":{"type":"unavailable_shards_exception","reason":"x"}}},
            {"index":{"_id":"5","status":404,"error":{"type":"index_not_found_exception","reason":"no such index"}}}
        ]}"#;
        let out = parse_bulk(body, 5).unwrap();
        assert_eq!(out[0], Outcome::Written);
        assert!(matches!(&out[1], Outcome::Retry(m) if m.contains("queue full")));
        assert!(matches!(&out[2], Outcome::Bad(m) if m.contains("mapper_parsing_exception")));
        assert!(matches!(&out[3], Outcome::Retry(_)));
        assert!(matches!(&out[4], Outcome::Config(_)));
        assert!(parse_bulk(body, 4).is_err());
        assert!(parse_bulk(b"<html>", 1).is_err());
    }

    #[test]
    fn whole_request_statuses_are_classified() {
        use crate::sink::ErrorKind;
        let kind = |status: u16, body: &str| {
            EsSink::status_error(
                "x",
                reqwest::StatusCode::from_u16(status).unwrap(),
                body.as_bytes(),
            )
            .kind
        };
        assert_eq!(kind(401, ""), ErrorKind::Config);
        assert_eq!(kind(403, ""), ErrorKind::Config);
        assert_eq!(kind(429, ""), ErrorKind::Transient);
        assert_eq!(kind(503, ""), ErrorKind::Transient);
        assert_eq!(kind(413, ""), ErrorKind::BadRecord);
        assert_eq!(
            kind(400, "Validation Failed: 1: id is too long"),
            ErrorKind::BadRecord
        );
        assert_eq!(kind(400, "something else"), ErrorKind::Config);
        assert_eq!(kind(404, ""), ErrorKind::Config);
    }

    #[test]
    fn backoff_grows() {
        assert!(backoff(0) >= FIRST_BACKOFF && backoff(0) <= FIRST_BACKOFF * 2);
        assert!(backoff(3) >= FIRST_BACKOFF * 8);
    }
}
