//! `sluice-cluster-bench`: the load of issue 14's cluster benchmark (bench/cluster/README.md).
//! Every put is 100 records of ~100 bytes in the batch protocol (one pre-encoded body per shard,
//! signed per request), sent to one endpoint (haproxy in front of the cluster's nodes, or an
//! embedded `sluice serve`); the peer is NATS JetStream, where a "put" is a window of 100
//! publishes to one R3 stream and then its 100 acks.
//!
//! Phases (each `--secs` long, one JSON line each on stdout):
//!   max   closed loop, `--writers` tasks round robin over `--shards` shards: aggregate rec/s
//!   half  open loop at half of max's puts/s (latency from each put's scheduled start)
//!   hot   closed loop, `--hot-writers` tasks on one shard: puts/s
//!   steady (only with `--steady RATE`): open loop at RATE puts/s for `--secs`, reporting the
//!         longest time without an acknowledged put and the failed puts (for failover times;
//!         the caller injects the fault meanwhile)
//! CPU per process: `--pids name=PID[+],...` (`+`: with its direct children, e.g. a postmaster),
//! utime + stime from /proc over each phase.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use prost::Message;
use serde_json::json;
use sluice_client::Client;
use sluice_proto::batch::{self, BatchCompression};
use sluice_proto::{envelope, pb, sign, Field, FieldType, Record, RecordData, RecordSchema, Value};

const PER_PUT: usize = 100;

#[derive(Parser, Debug)]
#[command(about = "Issue 14 cluster benchmark load (Sluice endpoint or NATS JetStream R3)")]
struct Args {
    /// Sluice endpoint (e.g. haproxy: http://127.0.0.1:24060).
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long, default_value = "")]
    access_id: String,
    #[arg(long, default_value = "")]
    access_key: String,
    /// NATS servers (comma separated) instead of --endpoint: streams with --replicas replicas.
    #[arg(long)]
    nats: Option<String>,
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    #[arg(long, default_value_t = 16)]
    shards: usize,
    #[arg(long, default_value_t = 64)]
    writers: usize,
    #[arg(long, default_value_t = 32)]
    hot_writers: usize,
    #[arg(long, default_value_t = 15)]
    secs: u64,
    /// Seconds of no load before each phase after the first, so that a phase does not measure
    /// the engines catching up with the one before (checkpoints, vacuum, dirty buffers).
    #[arg(long, default_value_t = 0)]
    settle: u64,
    /// Phases to run, comma separated: max,half,hot (or steady with --steady).
    #[arg(long, default_value = "max,half,hot")]
    phases: String,
    /// Open-loop puts/s for the steady phase.
    #[arg(long)]
    steady: Option<f64>,
    /// Processes whose CPU to report: name=PID or name=PID+ (with its children), comma separated.
    #[arg(long, default_value = "")]
    pids: String,
    /// Name prefix of the project/topic (or NATS streams) this run makes.
    #[arg(long, default_value = "cbench")]
    name: String,
}

fn schema() -> RecordSchema {
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

/// bigint, an 80-character string, a double: ~100 bytes a record.
fn record(id: i64) -> Record {
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

fn nats_payload(id: i64) -> Bytes {
    let RecordData::Tuple(v) = record(id).data else {
        unreachable!()
    };
    let text: Vec<String> = v.iter().map(|x| x.to_text().unwrap_or_default()).collect();
    Bytes::from(text.join("|"))
}

/// Where puts go: a Sluice endpoint (signed batch puts) or JetStream.
#[derive(Clone)]
enum Target {
    Sluice(Arc<SluiceTarget>),
    Nats(Arc<NatsTarget>),
}

struct SluiceTarget {
    http: reqwest::Client,
    endpoint: String,
    access_id: String,
    access_key: String,
    /// Per shard: the request path and one pre-encoded 100-record body.
    bodies: Vec<(String, Bytes)>,
}

struct NatsTarget {
    js: jetstream::Context,
    subjects: Vec<String>,
    windows: Vec<Vec<Bytes>>,
}

impl Target {
    async fn put(&self, shard: usize) -> anyhow::Result<()> {
        match self {
            Target::Sluice(t) => t.put(shard).await,
            Target::Nats(t) => {
                let mut acks = Vec::with_capacity(PER_PUT);
                for p in &t.windows[shard % t.windows.len()] {
                    acks.push(t.js.publish(t.subjects[shard].clone(), p.clone()).await?);
                }
                for a in acks {
                    a.await?;
                }
                Ok(())
            }
        }
    }
}

impl SluiceTarget {
    async fn put(&self, shard: usize) -> anyhow::Result<()> {
        let (path, body) = &self.bodies[shard];
        let ct = "application/x-binary";
        let date = httpdate::fmt_http_date(SystemTime::now());
        let hdrs = [
            ("x-datahub-client-version", "1.1"),
            ("x-datahub-request-action", "pub"),
        ];
        let canonical = sign::canonical_string("POST", ct, &date, &hdrs, path, None);
        let sig = sign::signature(&self.access_key, &canonical);
        let mut rb = self
            .http
            .post(format!("{}{}", self.endpoint, path))
            .header("Content-Type", ct)
            .header("Date", date)
            .header(
                "Authorization",
                format!("DATAHUB {}:{}", self.access_id, sig),
            );
        for (k, v) in hdrs {
            rb = rb.header(k, v);
        }
        let resp = rb.body(body.clone()).send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(())
    }
}

async fn sluice_target(args: &Args, endpoint: &str) -> anyhow::Result<Target> {
    let client = Client::new(endpoint, &args.access_id, &args.access_key)?;
    let project = args.name.clone();
    let topic = format!("{}_t", args.name);
    let schema = schema();
    client.create_project(&project, "cluster benchmark").await?;
    client
        .create_topic(
            &project,
            &topic,
            args.shards as u32,
            1,
            Some(&schema),
            "cluster benchmark",
        )
        .await?;
    let shards = loop {
        let list = client.list_shards(&project, &topic).await?;
        if list.len() == args.shards && list.iter().all(|s| s.state == "ACTIVE") {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let bodies = shards
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let recs: Vec<Record> = (0..PER_PUT)
                .map(|k| record((i * PER_PUT + k) as i64))
                .collect();
            let data = batch::encode_batch(&recs, Some(&schema), 0, BatchCompression::None);
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
            (
                format!("/projects/{project}/topics/{topic}/shards/{}", s.shard_id),
                Bytes::from(envelope::wrap(&req.encode_to_vec())),
            )
        })
        .collect();
    Ok(Target::Sluice(Arc::new(SluiceTarget {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(120))
            .build()?,
        endpoint: endpoint.trim_end_matches('/').to_string(),
        access_id: args.access_id.clone(),
        access_key: args.access_key.clone(),
        bodies,
    })))
}

async fn nats_target(args: &Args, servers: &str) -> anyhow::Result<Target> {
    let urls: Vec<String> = servers.split(',').map(str::to_string).collect();
    let client = async_nats::ConnectOptions::new().connect(urls).await?;
    let js = jetstream::new(client);
    let mut subjects = Vec::new();
    for i in 0..args.shards {
        let subject = format!("{}.{i}", args.name);
        js.create_stream(stream::Config {
            name: format!("{}_{i}", args.name.to_uppercase()),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            num_replicas: args.replicas,
            ..Default::default()
        })
        .await
        .with_context(|| format!("create stream {i}"))?;
        subjects.push(subject);
    }
    let windows = (0..args.shards)
        .map(|i| {
            (0..PER_PUT)
                .map(|k| nats_payload((i * PER_PUT + k) as i64))
                .collect()
        })
        .collect();
    Ok(Target::Nats(Arc::new(NatsTarget {
        js,
        subjects,
        windows,
    })))
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds")
}

/// utime + stime (seconds) of a process, with its direct children when `children`.
fn cpu_secs(pid: u32, children: bool) -> f64 {
    fn stat(pid: &str) -> Option<(u32, f64)> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1)?.parse().ok()?;
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some((ppid, ticks / 100.0))
    }
    let mut total = stat(&pid.to_string()).map(|x| x.1).unwrap_or(0.0);
    if children {
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.bytes().all(|b| b.is_ascii_digit()) {
                    if let Some((ppid, s)) = stat(&name) {
                        if ppid == pid {
                            total += s;
                        }
                    }
                }
            }
        }
    }
    total
}

struct CpuProbe(Vec<(String, u32, bool)>);

impl CpuProbe {
    fn parse(spec: &str) -> anyhow::Result<CpuProbe> {
        let mut v = vec![("bench".to_string(), std::process::id(), false)];
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let (name, pid) = item.split_once('=').context("--pids: name=PID")?;
            let children = pid.ends_with('+');
            v.push((
                name.to_string(),
                pid.trim_end_matches('+').parse()?,
                children,
            ));
        }
        Ok(CpuProbe(v))
    }
    fn sample(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for (name, pid, children) in &self.0 {
            *m.entry(name.clone()).or_insert(0.0) += cpu_secs(*pid, *children);
        }
        m
    }
}

struct Outcome {
    puts: u64,
    failed: u64,
    elapsed: Duration,
    lat: Histogram<u64>,
    /// Longest time without an acknowledged put (open loop only).
    max_gap: Duration,
    /// The slowest put scheduled in each second of the phase, ms (open loop only).
    worst_by_second: Vec<u64>,
    /// When the phase began (wall clock, ms since the epoch): lines its seconds up with
    /// samplers run beside it (probe.sh).
    started_unix_ms: u64,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Closed loop: `writers` tasks, each put as soon as the previous one was acknowledged, over
/// `shards` (None: all shards round robin; Some(s): that shard only).
async fn closed(
    target: &Target,
    nshards: usize,
    only: Option<usize>,
    writers: usize,
    secs: u64,
) -> Outcome {
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started_unix_ms = unix_ms();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (target, next, failed) = (target.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = hist();
            while Instant::now() < end {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let shard = only.unwrap_or(i % nshards);
                let t = Instant::now();
                match target.put(shard).await {
                    Ok(()) => h
                        .record(t.elapsed().as_micros().max(1) as u64)
                        .unwrap_or(()),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            h
        }));
    }
    let mut lat = hist();
    for t in tasks {
        if let Ok(h) = t.await {
            lat.add(h).unwrap_or(());
        }
    }
    Outcome {
        puts: lat.len(),
        failed: failed.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        lat,
        max_gap: Duration::ZERO,
        worst_by_second: Vec::new(),
        started_unix_ms,
    }
}

/// Open loop: puts scheduled at `rate` per second, round robin over the shards; latency from
/// the scheduled start, so a stall counts for every put it delays.
async fn open(target: &Target, nshards: usize, rate: f64, secs: u64) -> Outcome {
    let started_unix_ms = unix_ms();
    let start = Instant::now();
    let total = (rate * secs as f64) as u64;
    let lat = Arc::new(Mutex::new(hist()));
    let acks = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(tokio::sync::Semaphore::new(4096));
    let by_second = Arc::new(Mutex::new(Vec::<(Duration, Duration)>::new()));
    let mut tasks = Vec::new();
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let (target, lat, acks, failed, by_second) = (
            target.clone(),
            lat.clone(),
            acks.clone(),
            failed.clone(),
            by_second.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            match target.put(i as usize % nshards).await {
                Ok(()) => {
                    let took = at.elapsed();
                    lat.lock()
                        .unwrap()
                        .record(took.as_micros().max(1) as u64)
                        .unwrap_or(());
                    acks.lock().unwrap().push(start.elapsed());
                    by_second.lock().unwrap().push((at - start, took));
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let mut marks = acks.lock().unwrap().clone();
    marks.push(Duration::ZERO);
    marks.push(elapsed);
    marks.sort();
    let max_gap = marks
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    let lat = lat.lock().unwrap().clone();
    let mut worst = vec![Duration::ZERO; secs as usize + 1];
    for (at, took) in by_second.lock().unwrap().iter() {
        let w = &mut worst[(at.as_secs() as usize).min(secs as usize)];
        *w = (*w).max(*took);
    }
    Outcome {
        puts: lat.len(),
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        lat,
        max_gap,
        worst_by_second: worst.iter().map(|d| d.as_millis() as u64).collect(),
        started_unix_ms,
    }
}

fn report(phase: &str, o: &Outcome, cpu: BTreeMap<String, f64>, extra: serde_json::Value) {
    let secs = o.elapsed.as_secs_f64();
    let ms = |q: f64| o.lat.value_at_quantile(q) as f64 / 1000.0;
    let mut v = json!({
        "phase": phase,
        "puts": o.puts,
        "failed": o.failed,
        "secs": (secs * 100.0).round() / 100.0,
        "puts_per_s": (o.puts as f64 / secs).round(),
        "rec_per_s": (o.puts as f64 * PER_PUT as f64 / secs).round(),
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "max_gap_s": (o.max_gap.as_secs_f64() * 100.0).round() / 100.0,
        "worst_ms_by_second": o.worst_by_second,
        "started_unix_ms": o.started_unix_ms,
        "cpu_s": cpu,
        "load": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').next().unwrap_or("").to_string(),
    });
    if let (Some(obj), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            obj.insert(k.clone(), x.clone());
        }
    }
    println!("{v}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = match (&args.endpoint, &args.nats) {
        (Some(e), None) => sluice_target(&args, e).await?,
        (None, Some(n)) => nats_target(&args, n).await?,
        _ => bail!("give exactly one of --endpoint or --nats"),
    };
    let probe = CpuProbe::parse(&args.pids)?;
    let diff = |a: &BTreeMap<String, f64>, b: BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        b.into_iter()
            .map(|(k, v)| {
                let d = v - a.get(&k).copied().unwrap_or(0.0);
                (k, (d * 100.0).round() / 100.0)
            })
            .collect()
    };
    let mut max_puts_per_s = None;
    for (i, phase) in args.phases.split(',').enumerate() {
        if i > 0 && args.settle > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(args.settle)).await;
        }
        let c0 = probe.sample();
        match phase {
            "max" => {
                let o = closed(&target, args.shards, None, args.writers, args.secs).await;
                max_puts_per_s = Some(o.puts as f64 / o.elapsed.as_secs_f64());
                report(
                    "max",
                    &o,
                    diff(&c0, probe.sample()),
                    json!({"writers": args.writers, "shards": args.shards}),
                );
            }
            "half" => {
                let rate =
                    max_puts_per_s.context("the half phase needs the max phase first")? / 2.0;
                let o = open(&target, args.shards, rate, args.secs).await;
                report(
                    "half",
                    &o,
                    diff(&c0, probe.sample()),
                    json!({"rate_puts_per_s": rate.round()}),
                );
            }
            "hot" => {
                let o = closed(&target, args.shards, Some(0), args.hot_writers, args.secs).await;
                report(
                    "hot",
                    &o,
                    diff(&c0, probe.sample()),
                    json!({"writers": args.hot_writers}),
                );
            }
            "steady" => {
                let rate = args.steady.context("--steady RATE")?;
                let o = open(&target, args.shards, rate, args.secs).await;
                report(
                    "steady",
                    &o,
                    diff(&c0, probe.sample()),
                    json!({"rate_puts_per_s": rate}),
                );
            }
            other => bail!("unknown phase {other:?} (max, half, hot, steady)"),
        }
    }
    Ok(())
}
