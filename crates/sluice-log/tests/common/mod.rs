//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sluice_log::{Entry, FsyncMode, LogConfig, ShardLog};

/// A config without fsync and with the given segment size.
pub fn cfg(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        fsync: FsyncMode::Never,
        segment_max_age: None,
        ..LogConfig::default()
    }
}

/// Opens a log, panicking on error.
pub fn open(dir: &Path, cfg: LogConfig) -> ShardLog {
    ShardLog::open(dir, cfg).expect("open log")
}

/// Encoded size of a frame with payloads of the given lengths.
pub fn frame_len(lens: &[usize]) -> u64 {
    32 + lens.iter().map(|&l| 4 + l as u64).sum::<u64>()
}

/// Segment files in `dir`, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// Reads everything from `from` on.
pub fn read_all(log: &ShardLog, from: u64) -> Vec<Entry> {
    log.read(from, usize::MAX, usize::MAX).expect("read")
}

/// Payloads of `entries` as vectors.
pub fn payloads(entries: &[Entry]) -> Vec<Vec<u8>> {
    entries.iter().map(|e| e.payload.to_vec()).collect()
}

/// Sequences of `entries`.
pub fn seqs(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}
