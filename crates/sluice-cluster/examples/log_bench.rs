//! Appends per second on the shard log: PostgreSQL (`PgShardStore`) against the local
//! `ShardLog` (fsync always), through the same `ShardStore` trait. Run by bench/cluster/run.sh.
//!
//! usage: log_bench <postgres-url|-> <seconds> <postgres-postmaster-pid|0> [no-local]
//! Scenarios: one hot shard with 32 producers; 16 shards with 4 producers each. Every put is
//! 100 records of 100 bytes. Prints one line per (store, scenario).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_cluster::log::{PgLog, PgLogOptions};
use sluice_log::store::ShardStore;
use sluice_log::{LogConfig, ShardLog};

const RECORDS_PER_PUT: usize = 100;
const RECORD_BYTES: usize = 100;

/// utime + stime (seconds) of a process and, for the postmaster, of its children.
fn cpu_seconds(pid: u32, with_children_of: bool) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let read = |p: &str| -> Option<(u32, f64)> {
        let s = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ppid: u32 = f[1].parse().ok()?;
        let ut: f64 = f[11].parse().ok()?;
        let st: f64 = f[12].parse().ok()?;
        Some((ppid, (ut + st) / tick))
    };
    let mut total = read(&pid.to_string()).map_or(0.0, |(_, c)| c);
    if with_children_of {
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.bytes().all(|b| b.is_ascii_digit()) {
                if let Some((ppid, c)) = read(&name) {
                    if ppid == pid {
                        total += c;
                    }
                }
            }
        }
    }
    total
}

fn put() -> Vec<Bytes> {
    (0..RECORDS_PER_PUT)
        .map(|i| Bytes::from(vec![b'a' + (i % 26) as u8; RECORD_BYTES]))
        .collect()
}

async fn scenario<S: ShardStore>(
    label: &str,
    shards: Vec<Arc<S>>,
    producers_per_shard: usize,
    secs: u64,
    pg_pid: u32,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let cpu0 = cpu_seconds(std::process::id(), false);
    let pg0 = if pg_pid > 0 {
        cpu_seconds(pg_pid, true)
    } else {
        0.0
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in &shards {
        for _ in 0..producers_per_shard {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    s.clone().append(put(), 0).await.expect("append");
                    lat.push(t.elapsed().as_micros() as u64);
                }
                lat
            }));
        }
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(std::process::id(), false) - cpu0;
    let pg = if pg_pid > 0 {
        cpu_seconds(pg_pid, true) - pg0
    } else {
        0.0
    };
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    let puts = lat.len() as f64;
    println!(
        "{label:<34} shards={:<2} producers={:<3} puts/s={:>8.0} rec/s={:>9.0} p50={:>6.1}ms p99={:>6.1}ms \
         cpu_bench={:.2}s cpu_pg={:.2}s cpu_per_1k_puts={:.3}s",
        shards.len(),
        shards.len() * producers_per_shard,
        puts / wall,
        puts * RECORDS_PER_PUT as f64 / wall,
        pct(0.5),
        pct(0.99),
        cpu,
        pg,
        (cpu + pg) / puts * 1000.0,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "-".into());
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let pg_pid: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);

    // Baseline: the local log, fsync always (the embedded mode's default).
    if args.get(4).map(String::as_str) != Some("no-local") {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = |name: &str| {
            Arc::new(ShardLog::open(&dir.path().join(name), LogConfig::default()).unwrap())
        };
        scenario(
            "local ShardLog, 1 hot shard",
            vec![open("hot")],
            32,
            secs,
            0,
        )
        .await;
        let many: Vec<_> = (0..16).map(|i| open(&format!("s{i}"))).collect();
        scenario("local ShardLog, 16 shards", many, 4, secs, 0).await;
    }

    if url == "-" {
        return;
    }
    let log = PgLog::connect(&url, PgLogOptions::default())
        .await
        .expect("connect");
    let run = std::process::id();
    let mut hot = Vec::new();
    let key = format!("bench/{run}/hot");
    log.create_shard(&key, 0).await.unwrap();
    hot.push(log.shard(&key).await.unwrap());
    scenario("PgShardStore, 1 hot shard", hot.clone(), 32, secs, pg_pid).await;
    println!(
        "  (hot shard: {} puts in {} statements)",
        hot[0].clone().next_seq().await.unwrap() / RECORDS_PER_PUT as u64,
        hot[0].append_statements()
    );
    let mut many = Vec::new();
    for i in 0..16 {
        let key = format!("bench/{run}/s{i}");
        log.create_shard(&key, 0).await.unwrap();
        many.push(log.shard(&key).await.unwrap());
    }
    scenario("PgShardStore, 16 shards", many, 4, secs, pg_pid).await;
    for k in std::iter::once(key).chain((0..16).map(|i| format!("bench/{run}/s{i}"))) {
        log.delete_shard(&k).await.unwrap();
    }
}
