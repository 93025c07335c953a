//! Read micro benchmark (bench/restart/README.md): batch reads of every log under DIR, and
//! single-entry reads at pseudo-random sequences. Uses only the API that the log had before the
//! sparse index, so the same file builds against both.
//!
//! ```text
//! read_bench DIR [BATCH]
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use sluice_log::{FsyncMode, LogConfig, ShardLog};

fn shard_dirs(root: &Path, out: &mut Vec<PathBuf>) {
    let mut has_segments = false;
    for e in std::fs::read_dir(root).expect("read dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            shard_dirs(&p, out);
        } else if p.extension().is_some_and(|x| x == "log") {
            has_segments = true;
        }
    }
    if has_segments {
        out.push(root.to_path_buf());
    }
}

fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().expect("usage: read_bench DIR [BATCH]"));
    let batch: usize = args.get(1).map_or(1000, |b| b.parse().expect("BATCH"));
    let mut dirs = Vec::new();
    shard_dirs(&dir, &mut dirs);
    dirs.sort();
    let cfg = LogConfig {
        fsync: FsyncMode::Never,
        ..LogConfig::default()
    };
    let logs: Vec<ShardLog> = dirs
        .iter()
        .map(|d| ShardLog::open(d, cfg).expect("open"))
        .collect();
    for round in 0..3 {
        let (t, c) = (Instant::now(), cpu_secs());
        let (mut entries, mut bytes) = (0u64, 0u64);
        for log in &logs {
            let mut from = log.first_seq();
            while from < log.next_seq() {
                let got = log.read(from, batch, 4 << 20).expect("read");
                entries += got.len() as u64;
                bytes += got.iter().map(|e| e.payload.len() as u64).sum::<u64>();
                from = got.last().expect("non-empty").seq + 1;
            }
        }
        let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
        println!(
            "round {round}: batch reads of {batch}: {entries} entries ({:.0} MB) in {wall:.2} s = {:.2} M entries/s; CPU {cpu:.2} s = {:.0} ns/entry",
            bytes as f64 / 1e6,
            entries as f64 / wall / 1e6,
            cpu * 1e9 / entries as f64
        );
        let (t, c) = (Instant::now(), cpu_secs());
        let n = 200_000u64;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let log = &logs[(x % logs.len() as u64) as usize];
            let seq = log.first_seq() + (x >> 20) % (log.next_seq() - log.first_seq()).max(1);
            let got = log.read(seq, 1, usize::MAX).expect("read");
            assert_eq!(got[0].seq, seq);
        }
        let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
        println!(
            "round {round}: {n} single-entry reads at random sequences in {wall:.2} s; CPU {cpu:.2} s = {:.2} us/read",
            cpu * 1e6 / n as f64
        );
    }
}
