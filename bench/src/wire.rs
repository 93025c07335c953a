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
use sluice_client::{Client, CursorType};
use sluice_proto::batch::{self, BatchCompression};
use sluice_proto::compress::{self, Compression};
use sluice_proto::{envelope, pb, Record, RecordData, RecordSchema};

use crate::decode;
use crate::events::{event, event_json, schema};
use crate::load::{PutReq, Raw, BATCH, PROJECT};
use crate::stats::{median, spread};

/// What the reads ask for (`none` sends no `Accept-Encoding`).
pub const ENCODINGS: [&str; 4] = ["none", "lz4", "zstd", "zlib"];

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
                    let (next, n) = decode::protobuf_read(msg, schema.as_ref())?;
                    cursor = next;
                    n
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
