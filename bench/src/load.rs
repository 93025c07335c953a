//! The Sluice side of the load: record generation, pre-encoded put bodies for the three
//! protocols, closed-loop writers, rate-limited writers, and per-shard readers.
//!
//! Put bodies are encoded once (a pool of distinct 1000-record batches, cycled) so the
//! generator's CPU goes to HTTP and signing, not to re-encoding the same data: on a 2-core
//! machine every cycle the generator spends is taken from the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use bytes::Bytes;
use hdrhistogram::Histogram;
use prost::Message;
use serde_json::{json, Value as Json};
use sluice_client::{Client, CursorType};
use sluice_proto::batch::{self, BatchCompression};
use sluice_proto::{envelope, pb, sign, Field, FieldType, Record, RecordData, RecordSchema, Value};

use crate::decode;

pub const PROJECT: &str = "bench";
pub const BATCH: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Batch,
    Protobuf,
    Json,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Batch => "batch",
            Proto::Protobuf => "protobuf",
            Proto::Json => "JSON",
        }
    }
}

/// bigint id, an 80-character string, a double: ~100 bytes a record in every encoding.
pub fn schema() -> RecordSchema {
    let f = |name: &str, t: FieldType| Field {
        name: name.to_string(),
        field_type: t,
        comment: String::new(),
        not_null: false,
    };
    RecordSchema {
        fields: vec![
            f("id", FieldType::Bigint),
            f("payload", FieldType::String),
            f("score", FieldType::Double),
        ],
    }
}

fn record(id: i64) -> Record {
    // Deterministic, varied text: an LCG over an alphabet.
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = (id as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let payload: String = (0..80)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ALPHA[((x >> 33) % ALPHA.len() as u64) as usize] as char
        })
        .collect();
    Record {
        data: RecordData::Tuple(vec![
            Value::Int(1_700_000_000_000 + id),
            Value::Str(payload),
            Value::Double(id as f64 * 0.25 + 0.125),
        ]),
        attributes: vec![],
    }
}

pub fn records(first_id: i64, n: usize) -> Vec<Record> {
    (0..n).map(|i| record(first_id + i as i64)).collect()
}

/// One ~100-byte record as NATS payload: the same fields, as `id|payload|score`.
pub fn nats_payload(id: i64) -> Bytes {
    let r = record(id);
    let RecordData::Tuple(v) = &r.data else {
        unreachable!()
    };
    let text: Vec<String> = v.iter().map(|x| x.to_text().unwrap_or_default()).collect();
    Bytes::from(text.join("|"))
}

/// A request ready to send: where, as what, and the body.
#[derive(Clone)]
pub struct PutReq {
    pub path: String,
    pub content_type: &'static str,
    pub action: Option<&'static str>,
    pub body: Bytes,
}

/// A pool of `pool` distinct 1000-record put bodies for each shard.
pub fn put_pool(
    proto: Proto,
    topic: &str,
    shards: &[String],
    schema: &RecordSchema,
    pool: usize,
) -> Vec<Vec<PutReq>> {
    shards
        .iter()
        .enumerate()
        .map(|(si, shard)| {
            (0..pool)
                .map(|k| {
                    let recs = records(((si * pool + k) * BATCH) as i64, BATCH);
                    let shard_path = format!("/projects/{PROJECT}/topics/{topic}/shards/{shard}");
                    match proto {
                        Proto::Batch => {
                            let data =
                                batch::encode_batch(&recs, Some(schema), 0, BatchCompression::None);
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
                                path: shard_path,
                                content_type: "application/x-binary",
                                action: Some("pub"),
                                body: Bytes::from(envelope::wrap(&req.encode_to_vec())),
                            }
                        }
                        Proto::Protobuf => {
                            let req = pb::PutRecordsRequest {
                                records: recs.iter().map(pb_entry).collect(),
                            };
                            PutReq {
                                path: shard_path,
                                content_type: "application/x-protobuf",
                                action: Some("pub"),
                                body: Bytes::from(envelope::wrap(&req.encode_to_vec())),
                            }
                        }
                        Proto::Json => {
                            let list: Vec<Json> = recs
                                .iter()
                                .map(|r| {
                                    let RecordData::Tuple(v) = &r.data else {
                                        unreachable!()
                                    };
                                    json!({
                                        "Data": v.iter().map(Value::to_text).collect::<Vec<_>>(),
                                        "ShardId": shard,
                                    })
                                })
                                .collect();
                            PutReq {
                                path: format!("/projects/{PROJECT}/topics/{topic}/shards"),
                                content_type: "application/json",
                                action: None,
                                body: Bytes::from(
                                    json!({"Action": "pub", "Records": list}).to_string(),
                                ),
                            }
                        }
                    }
                })
                .collect()
        })
        .collect()
}

fn pb_entry(r: &Record) -> pb::RecordEntry {
    let RecordData::Tuple(v) = &r.data else {
        unreachable!()
    };
    pb::RecordEntry {
        shard_id: None,
        hash_key: None,
        partition_key: None,
        cursor: None,
        next_cursor: None,
        sequence: None,
        system_time: None,
        attributes: None,
        data: pb::RecordData {
            data: v
                .iter()
                .map(|x| pb::FieldData {
                    value: x.to_text().map(String::into_bytes),
                })
                .collect(),
        },
    }
}

/// A minimal signed sender for pre-encoded bodies (the same signing as sluice-client).
#[derive(Clone)]
pub struct Raw {
    http: reqwest::Client,
    endpoint: String,
}

impl Raw {
    pub fn new(endpoint: &str) -> anyhow::Result<Raw> {
        Ok(Raw {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .timeout(Duration::from_secs(120))
                .build()?,
            endpoint: endpoint.to_string(),
        })
    }

    pub async fn post(&self, req: &PutReq) -> anyhow::Result<Bytes> {
        self.post_parts(&req.path, req.content_type, req.action, req.body.clone())
            .await
    }

    pub async fn post_parts(
        &self,
        path: &str,
        content_type: &str,
        action: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<Bytes> {
        Ok(self
            .post_accept(path, content_type, action, body, None)
            .await?
            .body)
    }

    /// Like [`Raw::post_parts`], with an `Accept-Encoding` header when `accept` is set; the
    /// answer's body comes back as received (still compressed), with its encoding headers.
    pub async fn post_accept(
        &self,
        path: &str,
        content_type: &str,
        action: Option<&str>,
        body: Bytes,
        accept: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let mut hdrs: Vec<(&str, &str)> = vec![("x-datahub-client-version", "1.1")];
        if let Some(a) = action {
            hdrs.push(("x-datahub-request-action", a));
        }
        let canonical = sign::canonical_string("POST", content_type, &date, &hdrs, path, None);
        let signature = sign::signature(crate::procs::ACCESS_KEY, &canonical);
        let mut rb = self
            .http
            .post(format!("{}{}", self.endpoint, path))
            .header("Content-Type", content_type)
            .header("Date", date)
            .header(
                "Authorization",
                format!("DATAHUB {}:{}", crate::procs::ACCESS_ID, signature),
            );
        for (k, v) in &hdrs {
            rb = rb.header(*k, *v);
        }
        if let Some(a) = accept {
            rb = rb.header("Accept-Encoding", a);
        }
        let resp = rb.body(body).send().await?;
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let encoding = header("content-encoding");
        let raw_size = header("x-datahub-content-raw-size").and_then(|v| v.parse().ok());
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            bail!(
                "HTTP {status} on {path}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(Answer {
            body: bytes,
            encoding,
            raw_size,
        })
    }
}

/// An answer as it came over the wire.
pub struct Answer {
    pub body: Bytes,
    /// `Content-Encoding`, if the server compressed the body.
    pub encoding: Option<String>,
    /// `x-datahub-content-raw-size`: the body's size before compression.
    pub raw_size: Option<usize>,
}

/// What a run of puts measured.
pub struct PutStats {
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub lat: Histogram<u64>,
    /// Records put per shard (index = shard).
    pub per_shard: Vec<u64>,
}

impl PutStats {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap()
}

/// Closed loop: `writers` tasks put `total_batches` 1000-record batches round-robin over the
/// shards as fast as the server acks them.
pub async fn put_closed(
    raw: &Raw,
    pool: Arc<Vec<Vec<PutReq>>>,
    total_batches: u64,
    writers: usize,
) -> anyhow::Result<PutStats> {
    put_closed_until(raw, pool, total_batches, None, writers).await
}

/// Closed loop for `duration`: as [`put_closed`], but the writers start no put once it is over
/// (the rate a server sustains, not the rate its page cache absorbs for a moment).
pub async fn put_closed_for(
    raw: &Raw,
    pool: Arc<Vec<Vec<PutReq>>>,
    duration: Duration,
    writers: usize,
) -> anyhow::Result<PutStats> {
    let deadline = Some(Instant::now() + duration);
    put_closed_until(raw, pool, u64::MAX, deadline, writers).await
}

async fn put_closed_until(
    raw: &Raw,
    pool: Arc<Vec<Vec<PutReq>>>,
    total_batches: u64,
    deadline: Option<Instant>,
    writers: usize,
) -> anyhow::Result<PutStats> {
    let next = Arc::new(AtomicU64::new(0));
    let shards = pool.len();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (raw, pool, next) = (raw.clone(), pool.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let mut bytes = 0u64;
            let mut per_shard = vec![0u64; shards];
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total_batches {
                    break;
                }
                let shard = (i % shards as u64) as usize;
                let list = &pool[shard];
                let req = &list[((i / shards as u64) % list.len() as u64) as usize];
                let t = Instant::now();
                raw.post(req).await?;
                hist.record(t.elapsed().as_micros().max(1) as u64)?;
                bytes += req.body.len() as u64;
                per_shard[shard] += BATCH as u64;
            }
            anyhow::Ok((hist, bytes, per_shard))
        }));
    }
    let mut lat = new_hist();
    let mut bytes = 0;
    let mut per_shard = vec![0u64; shards];
    for t in tasks {
        let (h, b, ps) = t.await??;
        lat.add(h)?;
        bytes += b;
        for (a, x) in per_shard.iter_mut().zip(ps) {
            *a += x;
        }
    }
    let elapsed = start.elapsed();
    Ok(PutStats {
        records: per_shard.iter().sum(),
        bytes,
        elapsed,
        lat,
        per_shard,
    })
}

/// Open loop at `rate` records/s for `duration`: each put is started at its scheduled time
/// whatever the state of earlier ones; latency counts from the scheduled time (so a stalled
/// server cannot hide queueing: no coordinated omission).
pub async fn put_rate(
    raw: &Raw,
    pool: Arc<Vec<Vec<PutReq>>>,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<PutStats> {
    let shards = pool.len();
    let per_sec = rate / BATCH as f64;
    let total = (per_sec * duration.as_secs_f64()).ceil().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / per_sec);
    let start = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (raw, pool, tx) = (raw.clone(), pool.clone(), tx.clone());
        tokio::spawn(async move {
            let shard = (i % shards as u64) as usize;
            let list = &pool[shard];
            let req = &list[((i / shards as u64) % list.len() as u64) as usize];
            let r = raw
                .post(req)
                .await
                .map(|_| (due.elapsed(), req.body.len(), shard));
            let _ = tx.send(r);
        });
    }
    drop(tx);
    let mut lat = new_hist();
    let mut bytes = 0u64;
    let mut per_shard = vec![0u64; shards];
    while let Some(r) = rx.recv().await {
        let (d, b, shard) = r?;
        lat.record(d.as_micros().max(1) as u64)?;
        bytes += b as u64;
        per_shard[shard] += BATCH as u64;
    }
    Ok(PutStats {
        records: per_shard.iter().sum(),
        bytes,
        elapsed: start.elapsed(),
        lat,
        per_shard,
    })
}

pub struct ReadStats {
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Reads every shard from its oldest record until `expected[shard]` records came back, one
/// sequential reader per shard (all shards at once), in `proto`.
pub async fn read_all(
    client: &Client,
    raw: &Raw,
    proto: Proto,
    topic: &str,
    shards: &[String],
    expected: &[u64],
    schema: &RecordSchema,
) -> anyhow::Result<ReadStats> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (shard, &want) in shards.iter().zip(expected) {
        let (client, raw, topic, shard, schema) = (
            client.clone(),
            raw.clone(),
            topic.to_string(),
            shard.clone(),
            schema.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut cursor = client
                .get_cursor(PROJECT, &topic, &shard, CursorType::Oldest)
                .await?;
            let (mut got, mut bytes) = (0u64, 0u64);
            while got < want {
                let n = match proto {
                    Proto::Batch => {
                        let (batches, next) = client
                            .get_batches(PROJECT, &topic, &shard, &cursor, BATCH as i32)
                            .await?;
                        cursor = next;
                        let mut n = 0;
                        for b in &batches {
                            n += batch::parse_header(&b.data)
                                .map_err(|e| anyhow::anyhow!("{e}"))?
                                .record_count as u64;
                            bytes += b.data.len() as u64;
                        }
                        n
                    }
                    Proto::Protobuf => {
                        let page = client
                            .get_records_page(PROJECT, &topic, &shard, &cursor, BATCH as i32)
                            .await?;
                        let mut n = 0u64;
                        for record in page.records() {
                            for value in record?.values(&schema) {
                                value?;
                            }
                            n += 1;
                        }
                        cursor = page.next_cursor().to_string();
                        bytes += n * 100;
                        n
                    }
                    Proto::Json => {
                        let body = json!({"Action": "sub", "Cursor": cursor, "Limit": BATCH});
                        let resp = raw
                            .post_parts(
                                &format!("/projects/{PROJECT}/topics/{topic}/shards/{shard}"),
                                "application/json",
                                None,
                                Bytes::from(body.to_string()),
                            )
                            .await?;
                        bytes += resp.len() as u64;
                        let (next, n) = decode::json_read(&resp, &schema)?;
                        cursor = next;
                        n
                    }
                };
                if n == 0 {
                    bail!("shard {shard}: read stalled after {got} of {want} records");
                }
                got += n;
            }
            anyhow::Ok((got, bytes))
        }));
    }
    let (mut records, mut bytes) = (0, 0);
    for t in tasks {
        let (g, b) = t.await??;
        records += g;
        bytes += b;
    }
    Ok(ReadStats {
        records,
        bytes,
        elapsed: start.elapsed(),
    })
}
