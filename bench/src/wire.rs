//! Read throughput and bytes on the wire with response compression (issue 8, `--wire`).
//!
//! One server, two 4-shard topics filled once through batch puts: a TUPLE topic of web-access
//! events (timestamp, ids, an enum-like level, method, URL, status, latency, size, a flag, a
//! user agent and a log message: the mix of repeated vocabulary, numbers and ids that real
//! event data has) and a BLOB topic holding the same events as JSON documents. Both are then
//! read back in full in the batch and protobuf protocols with `Accept-Encoding` none, lz4, zstd
//! and zlib (pydatahub's two choices are lz4 and zlib; Go's `deflate` and Java's `deflate` get
//! plain answers, so they read like "none"), every combination `repeats` times, the order of
//! the encodings rotated from one repetition to the next so that a busy neighbour does not
//! always hit the same one. Bytes on the wire are the response bodies as received (HTTP headers
//! not counted); the client decompresses and decodes every answer, as an SDK would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use prost::Message;
use serde_json::json;
use sluice_client::{Client, CursorType};
use sluice_proto::batch::{self, BatchCompression};
use sluice_proto::compress::{self, Compression};
use sluice_proto::{envelope, pb, Field, FieldType, Record, RecordData, RecordSchema, Value};

use crate::load::{PutReq, Raw, BATCH, PROJECT};
use crate::stats::{median, spread};

/// What the reads ask for (`none` sends no `Accept-Encoding`).
pub const ENCODINGS: [&str; 4] = ["none", "lz4", "zstd", "zlib"];

/// splitmix64: deterministic, so every run reads the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Small indexes far more often than large ones (roughly Zipf-like popularity).
    fn skewed(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((u * u * u) * n as f64) as usize % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.skewed(items.len())]
    }
}

const PATHS: &[&str] = &[
    "/api/v1/products",
    "/api/v1/cart",
    "/api/v1/orders",
    "/api/v2/search",
    "/api/v1/users/me",
    "/static/js/app.bundle.js",
    "/static/css/main.css",
    "/login",
    "/checkout",
    "/api/v1/reviews",
    "/api/v1/recommendations",
    "/images/thumb",
    "/api/v1/inventory",
    "/logout",
    "/health",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "Go-http-client/1.1",
];
const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG"];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const WORDS: &[&str] = &[
    "request",
    "completed",
    "user",
    "order",
    "cart",
    "item",
    "added",
    "removed",
    "payment",
    "authorized",
    "declined",
    "retry",
    "timeout",
    "upstream",
    "cache",
    "miss",
    "hit",
    "session",
    "expired",
    "token",
    "refreshed",
    "inventory",
    "reserved",
    "released",
    "shipment",
    "created",
    "search",
    "query",
    "returned",
    "results",
    "slow",
    "database",
    "connection",
    "pool",
    "exhausted",
    "recommendation",
    "served",
    "from",
    "model",
    "fallback",
    "to",
    "default",
    "price",
    "updated",
    "for",
    "sku",
    "warehouse",
    "stock",
    "low",
    "customer",
    "notified",
    "email",
    "queued",
    "sent",
    "failed",
    "validation",
    "error",
    "field",
    "missing",
    "address",
    "coupon",
    "applied",
    "rejected",
    "rate",
    "limit",
    "exceeded",
    "client",
    "ip",
    "region",
    "eu-central-1",
    "us-east-1",
    "ap-southeast-1",
    "checkout",
    "started",
    "abandoned",
    "in",
    "ms",
    "after",
    "attempts",
    "with",
    "status",
    "the",
    "a",
    "of",
    "and",
    "on",
    "by",
];

/// The TUPLE topic's schema (web-access events).
pub fn schema() -> RecordSchema {
    let f = |name: &str, t: FieldType| Field {
        name: name.to_string(),
        field_type: t,
        comment: String::new(),
        not_null: false,
    };
    RecordSchema {
        fields: vec![
            f("event_time", FieldType::Timestamp),
            f("user_id", FieldType::Bigint),
            f("session_id", FieldType::String),
            f("level", FieldType::String),
            f("method", FieldType::String),
            f("url", FieldType::String),
            f("status", FieldType::Integer),
            f("latency_ms", FieldType::Double),
            f("bytes_sent", FieldType::Bigint),
            f("cache_hit", FieldType::Boolean),
            f("user_agent", FieldType::String),
            f("message", FieldType::String),
        ],
    }
}

/// Event number `i` (the same `i` gives the same event).
fn event(i: u64) -> Vec<Value> {
    let mut r = Rng(i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
    let user = 10_000 + r.skewed(50_000) as i64;
    let session = format!(
        "{:016x}",
        (user as u64).wrapping_mul(0x9E37_79B9) ^ (i / 40)
    );
    let path = r.pick(PATHS);
    let url = match r.below(3) {
        0 => path.to_string(),
        1 => format!("{path}/{}", 1000 + r.skewed(90_000)),
        _ => format!(
            "{path}?page={}&sort={}",
            1 + r.skewed(20),
            ["price", "rating", "new"][r.below(3)]
        ),
    };
    let status = [200, 200, 200, 200, 200, 200, 200, 304, 302, 404, 500][r.skewed(11)];
    let latency_us = ((r.unit().powi(3) * 900.0 + r.unit() * 20.0 + 0.5) * 1000.0).round();
    let words = 6 + r.below(10);
    let message = (0..words)
        .map(|_| r.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        Value::Int(1_764_460_800_000_000 + i as i64 * 997 + r.below(500) as i64),
        Value::Int(user),
        Value::Str(session),
        Value::Str(r.pick(LEVELS).to_string()),
        Value::Str(r.pick(METHODS).to_string()),
        Value::Str(url),
        Value::Int(status),
        Value::Double(latency_us / 1000.0),
        Value::Int(200 + r.skewed(2_000_000) as i64),
        Value::Bool(r.below(3) == 0),
        Value::Str(r.pick(AGENTS).to_string()),
        Value::Str(message),
    ]
}

/// The same event as a JSON document (the BLOB topic's records).
fn event_json(i: u64, schema: &RecordSchema) -> Vec<u8> {
    let mut doc = serde_json::Map::new();
    for (field, v) in schema.fields.iter().zip(event(i)) {
        let j = match v {
            Value::Int(n) => json!(n),
            Value::Double(d) => json!(d),
            Value::Bool(b) => json!(b),
            Value::Str(s) => json!(s),
            _ => json!(null),
        };
        doc.insert(field.name.clone(), j);
    }
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// `pool` distinct 1000-record batch puts per shard, for the TUPLE (`schema` Some) or the BLOB
/// topic.
pub fn put_pool(
    topic: &str,
    shards: &[String],
    schema: &RecordSchema,
    tuple: bool,
    pool: usize,
) -> Vec<Vec<PutReq>> {
    shards
        .iter()
        .enumerate()
        .map(|(si, shard)| {
            (0..pool)
                .map(|k| {
                    let first = ((si * pool + k) * BATCH) as u64;
                    let recs: Vec<Record> = (first..first + BATCH as u64)
                        .map(|i| Record {
                            data: if tuple {
                                RecordData::Tuple(event(i))
                            } else {
                                RecordData::Blob(event_json(i, schema))
                            },
                            attributes: vec![],
                        })
                        .collect();
                    let data = if tuple {
                        batch::encode_batch(&recs, Some(schema), 0, BatchCompression::None)
                    } else {
                        batch::encode_batch(&recs, None, -1, BatchCompression::None)
                    };
                    let req = pb::PutBinaryRecordsRequest {
                        records: vec![pb::BinaryRecordEntry {
                            cursor: None,
                            next_cursor: None,
                            sequence: None,
                            system_time: None,
                            serial: None,
                            data: Some(Bytes::from(data)),
                        }],
                    };
                    PutReq {
                        path: format!("/projects/{PROJECT}/topics/{topic}/shards/{shard}"),
                        content_type: "application/x-binary",
                        action: Some("pub"),
                        body: Bytes::from(envelope::wrap(&req.encode_to_vec())),
                    }
                })
                .collect()
        })
        .collect()
}

/// One full read of a topic.
#[derive(Clone, Debug, Default)]
pub struct WireRead {
    pub records: u64,
    /// Response body bytes as received.
    pub wire: u64,
    /// Response body bytes after decompression.
    pub raw: u64,
    pub elapsed: Duration,
    /// The `Content-Encoding` answers came with ("" for none).
    pub served: String,
}

impl WireRead {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

/// Reads every shard from OLDEST until `expected[shard]` records came back, one reader per
/// shard, all at once; `schema` Some decodes TUPLE values (protobuf), None BLOB bytes.
#[allow(clippy::too_many_arguments)]
pub async fn read_pass(
    client: &Client,
    raw: &Raw,
    batch_proto: bool,
    topic: &str,
    shards: &[String],
    expected: &[u64],
    schema: Option<&RecordSchema>,
    accept: &str,
) -> anyhow::Result<WireRead> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (shard, &want) in shards.iter().zip(expected) {
        let (client, raw, topic, shard) = (
            client.clone(),
            raw.clone(),
            topic.to_string(),
            shard.clone(),
        );
        let schema = schema.cloned();
        let accept = (accept != "none").then(|| accept.to_string());
        tasks.push(tokio::spawn(async move {
            let mut cursor = client
                .get_cursor(PROJECT, &topic, &shard, CursorType::Oldest)
                .await?;
            let path = format!("/projects/{PROJECT}/topics/{topic}/shards/{shard}");
            let ct = if batch_proto {
                "application/x-binary"
            } else {
                "application/x-protobuf"
            };
            let mut out = WireRead::default();
            while out.records < want {
                let req = pb::GetRecordsRequest {
                    cursor: cursor.clone(),
                    limit: Some(BATCH as i32),
                };
                let body = Bytes::from(envelope::wrap(&req.encode_to_vec()));
                let ans = raw
                    .post_accept(&path, ct, Some("sub"), body, accept.as_deref())
                    .await?;
                out.wire += ans.body.len() as u64;
                let plain = match ans.encoding.as_deref() {
                    None => ans.body.to_vec(),
                    Some(name) => {
                        out.served = name.to_string();
                        let kind = Compression::parse(name)?.context("empty Content-Encoding")?;
                        compress::decompress(kind, &ans.body, ans.raw_size, 256 << 20)?
                    }
                };
                out.raw += plain.len() as u64;
                let msg = envelope::unwrap(&plain).map_err(|e| anyhow::anyhow!("{e}"))?;
                let n = if batch_proto {
                    let resp = pb::GetBinaryRecordsResponse::decode(msg)?;
                    cursor = resp.next_cursor;
                    let mut n = 0u64;
                    for e in &resp.records {
                        let data = e.data.as_deref().unwrap_or_default();
                        n += batch::parse_header(data)
                            .map_err(|e| anyhow::anyhow!("{e}"))?
                            .record_count as u64;
                    }
                    n
                } else {
                    let resp = pb::GetRecordsResponse::decode(msg)?;
                    cursor = resp.next_cursor;
                    for e in &resp.records {
                        match &schema {
                            Some(s) => {
                                for (field, cell) in s.fields.iter().zip(&e.data.data) {
                                    let text = cell
                                        .value
                                        .as_deref()
                                        .map(std::str::from_utf8)
                                        .transpose()?;
                                    Value::parse(field, text)?;
                                }
                            }
                            None => anyhow::ensure!(
                                e.data.data.first().and_then(|f| f.value.as_ref()).is_some(),
                                "a BLOB record without data"
                            ),
                        }
                    }
                    resp.records.len() as u64
                };
                if n == 0 {
                    bail!(
                        "shard {shard}: read stalled after {} of {want} records",
                        out.records
                    );
                }
                out.records += n;
            }
            anyhow::Ok(out)
        }));
    }
    let mut total = WireRead::default();
    for t in tasks {
        let r = t.await??;
        total.records += r.records;
        total.wire += r.wire;
        total.raw += r.raw;
        if !r.served.is_empty() {
            total.served = r.served;
        }
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Every read of one (topic, protocol, encoding).
pub struct Cell {
    pub topic: &'static str,
    pub proto: &'static str,
    pub accept: &'static str,
    pub runs: Vec<WireRead>,
}

impl Cell {
    pub fn rates(&self) -> Vec<f64> {
        self.runs.iter().map(WireRead::rate).collect()
    }
    pub fn median_rate(&self) -> f64 {
        median(&self.rates())
    }
    /// Bytes on the wire per record (the same in every run: same data, same encoder).
    pub fn wire_per_record(&self) -> f64 {
        median(
            &self
                .runs
                .iter()
                .map(|r| r.wire as f64 / r.records as f64)
                .collect::<Vec<_>>(),
        )
    }
    pub fn raw_per_record(&self) -> f64 {
        median(
            &self
                .runs
                .iter()
                .map(|r| r.raw as f64 / r.records as f64)
                .collect::<Vec<_>>(),
        )
    }
    /// Uncompressed payload MB/s (median over runs).
    pub fn payload_mbps(&self) -> f64 {
        median(
            &self
                .runs
                .iter()
                .map(|r| r.raw as f64 / r.elapsed.as_secs_f64() / 1e6)
                .collect::<Vec<_>>(),
        )
    }
}

/// The Markdown table: one row per (topic, protocol, encoding).
pub fn table(cells: &[Cell]) -> String {
    let mut md = String::from(
        "| topic | protocol | Accept-Encoding | served as | records/s, median | spread (min–max) | payload MB/s | wire B/record | raw B/record | wire ÷ none | records/s ÷ none | records/s a 1 Gbit/s link carries | est. records/s over 1 Gbit/s |\n\
         |---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in cells {
        let none = cells
            .iter()
            .find(|n| n.topic == c.topic && n.proto == c.proto && n.accept == "none");
        let rates = c.rates();
        let (lo, hi) = spread(&rates);
        let served = c
            .runs
            .iter()
            .map(|r| r.served.as_str())
            .find(|s| !s.is_empty())
            .unwrap_or("–");
        let (wire_ratio, rate_ratio) = match none {
            Some(n) => (
                format!("{:.2}", c.wire_per_record() / n.wire_per_record()),
                format!("{:.2}", c.median_rate() / n.median_rate()),
            ),
            None => ("–".into(), "–".into()),
        };
        // 1 Gbit/s = 125e6 bytes/s of response bodies (headers and TCP/IP framing not counted).
        let link = 125e6 / c.wire_per_record();
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {}–{} ({}) | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |\n",
            c.topic,
            c.proto,
            c.accept,
            served,
            crate::fmt_rate(c.median_rate()),
            crate::fmt_rate(lo),
            crate::fmt_rate(hi),
            rates
                .iter()
                .map(|r| format!("{:.2} M", r / 1e6))
                .collect::<Vec<_>>()
                .join(" / "),
            c.payload_mbps(),
            c.wire_per_record(),
            c.raw_per_record(),
            wire_ratio,
            rate_ratio,
            crate::fmt_rate(link),
            crate::fmt_rate(c.median_rate().min(link)),
        ));
    }
    md
}

/// The whole `--wire` run: fill both topics, then `repeats` rounds of every read.
pub async fn run(
    client: &Client,
    raw: &Raw,
    records: u64,
    repeats: usize,
    writers: usize,
) -> anyhow::Result<Vec<Cell>> {
    let schema = schema();
    let mut topics = Vec::new();
    for (name, tuple) in [("TUPLE", true), ("BLOB", false)] {
        let topic = format!("wire_{}", name.to_ascii_lowercase());
        client
            .create_topic(
                PROJECT,
                &topic,
                crate::SHARDS,
                7,
                tuple.then_some(&schema),
                "wire",
            )
            .await?;
        let shards: Vec<String> = client
            .list_shards(PROJECT, &topic)
            .await?
            .into_iter()
            .map(|s| s.shard_id)
            .collect();
        let pool = Arc::new(put_pool(&topic, &shards, &schema, tuple, 16));
        let put = crate::load::put_closed(raw, pool, records / BATCH as u64, writers).await?;
        eprintln!(
            "wire: {name} topic filled with {} records ({} rec/s, {:.0} B per record in the batch put)",
            put.records,
            crate::fmt_rate(put.rate()),
            put.bytes as f64 / put.records as f64
        );
        topics.push((name, tuple, topic, shards, put.per_shard));
    }
    let mut cells: Vec<Cell> = Vec::new();
    for (name, _, _, _, _) in &topics {
        for proto in ["batch", "protobuf"] {
            for accept in ENCODINGS {
                cells.push(Cell {
                    topic: name,
                    proto,
                    accept,
                    runs: vec![],
                });
            }
        }
    }
    for rep in 0..repeats {
        for (name, tuple, topic, shards, expected) in &topics {
            for proto in ["batch", "protobuf"] {
                for k in 0..ENCODINGS.len() {
                    let accept = ENCODINGS[(k + rep) % ENCODINGS.len()];
                    let read = read_pass(
                        client,
                        raw,
                        proto == "batch",
                        topic,
                        shards,
                        expected,
                        tuple.then_some(&schema),
                        accept,
                    )
                    .await?;
                    eprintln!(
                        "wire {}/{repeats}: {name} {proto} {accept}: {} rec/s, {:.1} wire B/record (raw {:.1}), load {:.1}",
                        rep + 1,
                        crate::fmt_rate(read.rate()),
                        read.wire as f64 / read.records as f64,
                        read.raw as f64 / read.records as f64,
                        crate::procs::loadavg()
                    );
                    let cell = cells
                        .iter_mut()
                        .find(|c| c.topic == *name && c.proto == proto && c.accept == accept)
                        .context("no cell")?;
                    cell.runs.push(read);
                }
            }
        }
    }
    Ok(cells)
}
