//! The connector benchmark's Rust side (see ../README.md); `bench.py` runs it.
//!
//! usage:
//!   connbench es-bulk  ENDPOINT INDEX ROWS SHARDS BATCH   documents straight to `_bulk`
//!   connbench es-sink  ENDPOINT INDEX ROWS SHARDS FLUSH   sluice_connect::sinks::es alone
//!   connbench receiver PORT                               a fast ES + Function Compute stand-in
//!   connbench fc-direct ENDPOINT ROWS SHARDS FLUSH        payloads straight to the receiver
//!   connbench fc-sink  ENDPOINT ROWS SHARDS FLUSH         sluice_connect::sinks::fc alone
//!
//! Records are the ones `bench.py` loads into the topic: `id BIGINT` = i, `ts TIMESTAMP` =
//! 1.7e15 + i, `s STRING` = "row-<i, 12 digits>-<62 letters and digits>"; record i belongs to
//! shard i % SHARDS, and every shard is written by its own task, in order, one request in
//! flight, as the connector runtime runs one task per shard.
//!
//! The ES index is created (one shard, dynamic mapping) before and deleted after each run; the
//! run is timed until every `_bulk` answer is in, then (untimed) the index is refreshed and
//! `_count` must equal ROWS.
//!
//! The receiver answers every request at once, for both sinks, and checks no signature:
//! - Function Compute: `POST /.../functions/<name>/invocations` counts the body's records
//!   (`{"records": [...]}`), answers 200 `{}`; `GET /count` → the total so far;
//! - Elasticsearch: `GET /` → a version; `POST /_bulk` counts the items per `_index` (each
//!   action line parsed) and answers every item with status 201 (no `_id` echoed: SINK_ES
//!   reads only the statuses); `GET /<index>/_count` → that count; `DELETE /<index>` forgets
//!   it; anything else (index creation, `_refresh`) → `{"acknowledged":true}`.
//!
//! Each run ends with one line `RESULT {json}`: mode, rows, seconds, and CPU seconds
//! (utime + stime) of this process and of the processes named in `CPU_PIDS=name:pid,...`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use sluice_connect::sink::{Columns, SinkData, SinkRecord};
use sluice_connect::sinks::{es, fc};
use sluice_proto::{FieldType, Value};

const TS0: i64 = 1_700_000_000_000_000;
const TEXT: &str = "abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789";
const FC_ID: &str = "benchId";
const FC_KEY: &str = "benchKey0123456789";

fn text_of(i: i64) -> String {
    format!("row-{i:012}-{TEXT}")
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// CPU seconds of this process and of every `CPU_PIDS` entry, by name.
fn cpu_snapshot() -> Vec<(String, f64)> {
    let mut out = vec![("tool".to_string(), cpu_secs("self").unwrap_or(0.0))];
    for entry in std::env::var("CPU_PIDS").unwrap_or_default().split(',') {
        if let Some((name, pid)) = entry.split_once(':') {
            if let Some(s) = cpu_secs(pid) {
                out.push((name.to_string(), s));
            }
        }
    }
    out
}

fn report(mode: &str, rows: i64, secs: f64, before: &[(String, f64)]) {
    let after = cpu_snapshot();
    let cpu: serde_json::Map<String, serde_json::Value> = after
        .iter()
        .filter_map(|(name, a)| {
            let b = before.iter().find(|(n, _)| n == name)?.1;
            Some((name.clone(), json!(((a - b) * 100.0).round() / 100.0)))
        })
        .collect();
    let line = json!({"mode": mode, "rows": rows, "secs": secs,
        "rate": rows as f64 / secs, "cpu": cpu});
    println!("RESULT {line}");
}

fn ids(rows: i64, shards: i64, shard: i64) -> Vec<i64> {
    (shard..rows).step_by(shards as usize).collect()
}

fn record(i: i64, shard: i64) -> SinkRecord {
    SinkRecord {
        shard_id: shard as u32,
        sequence: i as u64,
        batch_index: 0,
        system_time: 1_700_000_000_000,
        data: SinkData::Tuple(vec![
            Value::Int(i),
            Value::Int(TS0 + i),
            Value::Str(text_of(i)),
        ]),
        attributes: Vec::new(),
    }
}

fn columns() -> Arc<Columns> {
    Arc::new(Columns {
        names: vec!["id".into(), "ts".into(), "s".into()],
        types: vec![FieldType::Bigint, FieldType::Timestamp, FieldType::String],
    })
}

fn http() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()?)
}

// ---- ES -------------------------------------------------------------------------------------

async fn es_call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    let mut req = http.request(method, &url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.with_context(|| url.clone())?;
    let status = resp.status();
    let text = resp.text().await?;
    ensure!(status.is_success(), "{url}: HTTP {status}: {text}");
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

async fn es_create(http: &reqwest::Client, endpoint: &str, index: &str) -> Result<()> {
    let _ = es_call(
        http,
        reqwest::Method::DELETE,
        format!("{endpoint}/{index}"),
        None,
    )
    .await;
    es_call(
        http,
        reqwest::Method::PUT,
        format!("{endpoint}/{index}"),
        Some(json!({"settings": {"number_of_shards": 1}})),
    )
    .await?;
    Ok(())
}

/// Refreshes, checks `_count` == rows, deletes the index.
async fn es_check_and_drop(
    http: &reqwest::Client,
    endpoint: &str,
    index: &str,
    rows: i64,
) -> Result<()> {
    use reqwest::Method;
    es_call(
        http,
        Method::POST,
        format!("{endpoint}/{index}/_refresh"),
        None,
    )
    .await?;
    let n = es_call(
        http,
        Method::GET,
        format!("{endpoint}/{index}/_count"),
        None,
    )
    .await?["count"]
        .as_i64()
        .unwrap_or(-1);
    es_call(http, Method::DELETE, format!("{endpoint}/{index}"), None).await?;
    ensure!(
        n == rows,
        "index {index} holds {n} documents, expected {rows}"
    );
    Ok(())
}

/// The `_bulk` body for `part`: the items SINK_ES sends for these records with IDFields `id`.
fn bulk_body(index: &str, part: &[i64]) -> String {
    use std::fmt::Write;
    let mut body = String::with_capacity(part.len() * 190);
    for &i in part {
        let _ = writeln!(body, r#"{{"index":{{"_id":"{i}","_index":"{index}"}}}}"#);
        let _ = writeln!(
            body,
            r#"{{"id":{i},"s":"{}","ts":{}}}"#,
            text_of(i),
            TS0 + i
        );
    }
    body
}

#[derive(serde::Deserialize)]
struct BulkAnswer {
    errors: bool,
}

async fn es_bulk(endpoint: &str, index: &str, rows: i64, shards: i64, batch: usize) -> Result<()> {
    let http = http()?;
    es_create(&http, endpoint, index).await?;
    let before = cpu_snapshot();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for shard in 0..shards {
        let (http, url, index) = (http.clone(), format!("{endpoint}/_bulk"), index.to_string());
        tasks.push(tokio::spawn(async move {
            for part in ids(rows, shards, shard).chunks(batch) {
                let resp = http
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(bulk_body(&index, part))
                    .send()
                    .await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                ensure!(status.is_success(), "_bulk: HTTP {status}");
                let answer: BulkAnswer = serde_json::from_slice(&body)?;
                ensure!(!answer.errors, "_bulk: an item failed");
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    report("es-bulk", rows, secs, &before);
    es_check_and_drop(&http, endpoint, index, rows).await
}

async fn es_sink(endpoint: &str, index: &str, rows: i64, shards: i64, flush: usize) -> Result<()> {
    let http = http()?;
    es_create(&http, endpoint, index).await?;
    let cfg = json!({"Index": index, "Endpoint": endpoint, "IDFields": ["id"], "TypeFields": [],
        "ProxyMode": "true"});
    let before = cpu_snapshot();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for shard in 0..shards {
        let cfg = es::EsConfig::from_wire(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        tasks.push(tokio::spawn(async move {
            let mut sink = es::open(cfg, columns()).await?;
            for part in ids(rows, shards, shard).chunks(flush) {
                let records: Vec<SinkRecord> = part.iter().map(|&i| record(i, shard)).collect();
                sink.write(&records).await?;
                sink.flush().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    report("es-sink", rows, secs, &before);
    es_check_and_drop(&http, endpoint, index, rows).await
}

// ---- FC -------------------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct Payload {
    records: Vec<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct BulkAction<'a> {
    #[serde(borrow)]
    index: BulkMeta<'a>,
}

#[derive(serde::Deserialize)]
struct BulkMeta<'a> {
    #[serde(rename = "_index", borrow)]
    index: std::borrow::Cow<'a, str>,
}

/// What the stand-in has received: FC records in all, ES documents per index.
#[derive(Default)]
struct Received {
    fc: AtomicU64,
    es: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// A `_bulk` body's items, counted per index; the answer: every item `status` 201.
fn take_bulk(received: &Received, body: &[u8]) -> Result<String> {
    let mut per_index: std::collections::HashMap<String, u64> = Default::default();
    let mut items = 0;
    for (k, line) in body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if k % 2 == 0 {
            let action: BulkAction = serde_json::from_slice(line)?;
            *per_index
                .entry(action.index.index.into_owned())
                .or_default() += 1;
            items += 1;
        }
    }
    let mut es = received.es.lock().expect("not poisoned");
    for (index, n) in per_index {
        *es.entry(index).or_default() += n;
    }
    let mut answer = String::with_capacity(32 + items * 28);
    answer.push_str(r#"{"took":0,"errors":false,"items":["#);
    for k in 0..items {
        if k > 0 {
            answer.push(',');
        }
        answer.push_str(r#"{"index":{"status":201}}"#);
    }
    answer.push_str("]}");
    Ok(answer)
}

/// The stand-in's answer to one request (see the module docs).
fn answer(received: &Received, method: &hyper::Method, path: &str, body: &[u8]) -> Result<String> {
    use hyper::Method;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    Ok(match (method, segments.as_slice()) {
        (&Method::GET, ["count"]) => received.fc.load(Ordering::Relaxed).to_string(),
        (&Method::GET, [""]) => json!({"name": "connbench", "tagline": "You Know, for Search",
            "version": {"number": "8.15.0", "distribution": "connbench-stand-in"}})
        .to_string(),
        (&Method::POST, ["_bulk"]) => take_bulk(received, body)?,
        (&Method::GET, [index, "_count"]) => {
            let es = received.es.lock().expect("not poisoned");
            json!({"count": es.get(*index).copied().unwrap_or(0)}).to_string()
        }
        (&Method::DELETE, [index]) => {
            received.es.lock().expect("not poisoned").remove(*index);
            r#"{"acknowledged":true}"#.into()
        }
        (&Method::POST, [_, _, _, "invocations"]) => {
            let p: Payload = serde_json::from_slice(body)?;
            received
                .fc
                .fetch_add(p.records.len() as u64, Ordering::Relaxed);
            "{}".into()
        }
        // index creation, _refresh
        _ => r#"{"acknowledged":true}"#.into(),
    })
}

/// Answers every request at once; see the module docs.
async fn receiver(port: u16) -> Result<()> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response, StatusCode};

    let received = Arc::new(Received::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("receiver listening on 127.0.0.1:{port}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let received = received.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let received = received.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let (status, text) = match body.collect().await {
                        Ok(b) => {
                            match answer(&received, &parts.method, parts.uri.path(), &b.to_bytes())
                            {
                                Ok(text) => (StatusCode::OK, text),
                                Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
                            }
                        }
                        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
                    };
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(text)))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

async fn fc_count(http: &reqwest::Client, endpoint: &str) -> Result<i64> {
    Ok(http
        .get(format!("{endpoint}/count"))
        .send()
        .await?
        .text()
        .await?
        .trim()
        .parse()?)
}

/// The payload SINK_FC sends for `part` (payload.rs; keys in serde_json's order).
fn fc_body(part: &[i64], shard: i64) -> String {
    use std::fmt::Write;
    let mut body = String::with_capacity(part.len() * 230);
    body.push_str(r#"{"records":["#);
    for (k, &i) in part.iter().enumerate() {
        if k > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"attributes":{{}},"batchIndex":0,"fields":{{"id":{i},"s":"{}","ts":{}}},"sequence":{i},"shardId":"{shard}","systemTime":1700000000000}}"#,
            text_of(i),
            TS0 + i
        );
    }
    body.push_str("]}");
    body
}

async fn fc_direct(endpoint: &str, rows: i64, shards: i64, flush: usize) -> Result<()> {
    let http = http()?;
    let start_count = fc_count(&http, endpoint).await?;
    let url = format!("{endpoint}/2023-03-30/functions/svc$fn/invocations");
    let before = cpu_snapshot();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for shard in 0..shards {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for part in ids(rows, shards, shard).chunks(flush) {
                let resp = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(fc_body(part, shard))
                    .send()
                    .await?;
                ensure!(resp.status().is_success(), "HTTP {}", resp.status());
                resp.bytes().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    report("fc-direct", rows, secs, &before);
    let got = fc_count(&http, endpoint).await? - start_count;
    ensure!(
        got == rows,
        "the receiver counted {got} records, expected {rows}"
    );
    Ok(())
}

async fn fc_sink(endpoint: &str, rows: i64, shards: i64, flush: usize) -> Result<()> {
    let http = http()?;
    let start_count = fc_count(&http, endpoint).await?;
    let cfg = json!({"Endpoint": endpoint, "Service": "svc", "Function": "fn", "AuthMode": "ak",
        "AccessId": FC_ID, "AccessKey": FC_KEY});
    let before = cpu_snapshot();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for shard in 0..shards {
        let cfg = fc::FcConfig::from_wire(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        tasks.push(tokio::spawn(async move {
            let mut sink = fc::open(cfg, columns()).await?;
            for part in ids(rows, shards, shard).chunks(flush) {
                let records: Vec<SinkRecord> = part.iter().map(|&i| record(i, shard)).collect();
                sink.write(&records).await?;
                sink.flush().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    report("fc-sink", rows, secs, &before);
    let got = fc_count(&http, endpoint).await? - start_count;
    ensure!(
        got == rows,
        "the receiver counted {got} records, expected {rows}"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .with_context(|| format!("argument {} missing (see the usage in main.rs)", i + 1))
    };
    let num = |i: usize| -> Result<i64> { Ok(arg(i)?.parse()?) };
    match arg(0)? {
        "es-bulk" => es_bulk(arg(1)?, arg(2)?, num(3)?, num(4)?, num(5)? as usize).await,
        "es-sink" => es_sink(arg(1)?, arg(2)?, num(3)?, num(4)?, num(5)? as usize).await,
        "receiver" => receiver(num(1)? as u16).await,
        "fc-direct" => fc_direct(arg(1)?, num(2)?, num(3)?, num(4)? as usize).await,
        "fc-sink" => fc_sink(arg(1)?, num(2)?, num(3)?, num(4)? as usize).await,
        other => bail!("unknown mode {other:?}: es-bulk, es-sink, receiver, fc-direct, fc-sink"),
    }
}
