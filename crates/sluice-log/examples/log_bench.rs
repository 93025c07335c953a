//! Index memory and restart figures of the log layer (bench/restart/README.md).
//!
//! ```text
//! log_bench fill DIR SHARDS FRAMES PAYLOAD SEGMENT_BYTES clean|crash
//!     appends FRAMES single-payload frames round-robin over the SHARDS logs found under DIR
//!     (at any depth, e.g. a server's data dir), or over new ones in DIR/<i>
//!     (fsync off while filling, one sync per log at the end), reports index bytes per frame
//!     and this process's RSS; `clean` closes every log (clean-shutdown marker), `crash`
//!     syncs and drops them without closing (as after kill -9).
//! log_bench open DIR [lazy]
//!     opens every log in DIR (eagerly, timing the recovery of all of them; or lazily, then
//!     timing the recovery of one) and reports times, index bytes and RSS.
//! log_bench strip DIR
//!     removes every persisted index and clean-shutdown marker: the next open scans
//!     everything, which is what the log did before persisted indexes.
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use sluice_log::{FsyncMode, LogConfig, ShardLog};

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Directories under `root` (at any depth) that hold segment files, sorted: shard logs, also
/// in a server's data directory (`topics/<uid>/<shard>`).
fn shard_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut has_segments = false;
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log") {
                has_segments = true;
            }
        }
        if has_segments {
            out.push(d);
        }
    }
    out.sort();
    out
}

fn config(segment_bytes: u64, fsync: FsyncMode) -> LogConfig {
    LogConfig {
        segment_bytes,
        fsync,
        ..LogConfig::default()
    }
}

fn fill(args: &[String]) {
    let dir = PathBuf::from(&args[0]);
    let shards: usize = args[1].parse().expect("SHARDS");
    let frames: u64 = args[2].parse().expect("FRAMES");
    let payload = vec![b'x'; args[3].parse().expect("PAYLOAD")];
    let segment_bytes: u64 = args[4].parse().expect("SEGMENT_BYTES");
    let clean = args[5] == "clean";
    let rss0 = rss_mib();
    // Existing logs (e.g. a server's shards) if there are any, else new ones.
    std::fs::create_dir_all(&dir).expect("create DIR");
    let mut dirs = shard_dirs(&dir);
    if dirs.is_empty() {
        dirs = (0..shards).map(|i| dir.join(i.to_string())).collect();
    }
    assert_eq!(
        dirs.len(),
        shards,
        "SHARDS does not match the logs found in DIR"
    );
    let logs: Vec<ShardLog> = dirs
        .iter()
        .map(|d| {
            let cfg = config(segment_bytes, FsyncMode::Interval(std::time::Duration::MAX));
            ShardLog::open(d, cfg).expect("open")
        })
        .collect();
    let t = Instant::now();
    let start_ms = 1_700_000_000_000i64;
    for i in 0..frames {
        let log = &logs[(i % shards as u64) as usize];
        log.append(&[&payload], start_ms + (i / 1000) as i64)
            .expect("append");
    }
    let index: usize = logs.iter().map(|l| l.index_bytes()).sum();
    let data: u64 = logs.iter().map(|l| l.size_bytes()).sum();
    println!(
        "filled {shards} logs with {frames} frames ({:.2} GB) in {:.1} s; index {index} bytes = {:.3} B/frame; RSS {:.0} MiB (before the logs: {rss0:.0} MiB)",
        data as f64 / 1e9,
        t.elapsed().as_secs_f64(),
        index as f64 / frames as f64,
        rss_mib(),
    );
    for log in &logs {
        if clean {
            log.close().expect("close");
        } else {
            log.sync().expect("sync");
        }
    }
}

fn open(args: &[String]) {
    let dir = PathBuf::from(&args[0]);
    let lazy = args.get(1).is_some_and(|a| a == "lazy");
    let dirs = shard_dirs(&dir);
    let cfg = config(8 << 20, FsyncMode::Always);
    let rss0 = rss_mib();
    let t = Instant::now();
    let logs: Vec<ShardLog> = dirs
        .iter()
        .map(|d| {
            if lazy {
                ShardLog::open_lazy(d, cfg)
            } else {
                ShardLog::open(d, cfg).expect("open")
            }
        })
        .collect();
    let opened = t.elapsed();
    let t1 = Instant::now();
    let first_next = logs[0].next_seq();
    let first_use = t1.elapsed();
    let t2 = Instant::now();
    let frames: u64 = logs.iter().map(|l| l.next_seq()).sum();
    let all = t2.elapsed();
    let index: usize = logs.iter().map(|l| l.index_bytes()).sum();
    println!(
        "{} {} logs: open {:.3} s; first use of one log {:.3} s (next_seq {first_next}); recovering the rest {:.3} s; {frames} frames; index {index} bytes = {:.3} B/frame; RSS {:.0} MiB (before: {rss0:.0} MiB)",
        if lazy { "lazily opened" } else { "opened" },
        logs.len(),
        opened.as_secs_f64(),
        first_use.as_secs_f64(),
        all.as_secs_f64(),
        index as f64 / frames.max(1) as f64,
        rss_mib(),
    );
}

fn strip(args: &[String]) {
    let mut removed = 0;
    for d in shard_dirs(Path::new(&args[0])) {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("dir entry").path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".idx") || name == "CLEAN" {
                std::fs::remove_file(&p).expect("remove");
                removed += 1;
            }
        }
    }
    println!("removed {removed} index and marker files");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fill") if args.len() == 7 => fill(&args[1..]),
        Some("open") if args.len() >= 2 => open(&args[1..]),
        Some("strip") if args.len() == 2 => strip(&args[1..]),
        _ => {
            eprintln!("usage: see the header of crates/sluice-log/examples/log_bench.rs");
            std::process::exit(2);
        }
    }
}
