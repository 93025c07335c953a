//! Lazy opening: no I/O until first use, recovery on first use (errors surface there), and a
//! log never used keeps its clean-shutdown state.

mod common;

use std::sync::Arc;

use common::*;
use sluice_log::{LogError, ShardLog};

fn seeded(dir: &std::path::Path, frames: u64) {
    let log = open(dir, cfg(1000));
    for i in 0..frames {
        log.append(&[&[i as u8; 100]], i as i64).unwrap();
    }
    log.close().unwrap();
}

#[test]
fn nothing_is_touched_until_first_use() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shard");
    let log = ShardLog::open_lazy(&dir, cfg(1000));
    assert!(!dir.exists());
    assert!(!log.is_recovered());
    assert_eq!(log.next_seq(), 0);
    assert!(log.is_recovered());
    assert!(dir.exists());
}

#[test]
fn first_use_recovers_existing_data() {
    let tmp = tempfile::tempdir().unwrap();
    seeded(tmp.path(), 25);
    let log = ShardLog::open_lazy(tmp.path(), cfg(1000));
    assert!(tmp.path().join("CLEAN").exists(), "no I/O before first use");
    assert_eq!(seqs(&read_all(&log, 0)), (0..25).collect::<Vec<_>>());
    assert!(!tmp.path().join("CLEAN").exists());
    assert_eq!(log.seq_at_or_after_time(10), Some(10));
    assert_eq!(log.append(&[b"x"], 100).unwrap().first_seq, 25);
}

#[test]
fn a_log_never_used_keeps_its_clean_state_across_close() {
    let tmp = tempfile::tempdir().unwrap();
    seeded(tmp.path(), 25);
    let log = ShardLog::open_lazy(tmp.path(), cfg(1000));
    log.sync().unwrap();
    log.close().unwrap();
    drop(log);
    assert!(tmp.path().join("CLEAN").exists());
    let log = open(tmp.path(), cfg(1000));
    assert_eq!(log.next_seq(), 25);
}

#[test]
fn recovery_errors_surface_at_first_use_and_are_retried() {
    let tmp = tempfile::tempdir().unwrap();
    seeded(tmp.path(), 25);
    let files = segment_files(tmp.path());
    let moved = tmp.path().join("moved-away");
    std::fs::rename(&files[1], &moved).unwrap();
    let log = ShardLog::open_lazy(tmp.path(), cfg(1000));
    assert!(matches!(
        log.read(0, 10, 10_000),
        Err(LogError::Corrupt { .. })
    ));
    assert!(matches!(
        log.append(&[b"x"], 1),
        Err(LogError::Corrupt { .. })
    ));
    assert!(!log.is_recovered());
    std::fs::rename(&moved, &files[1]).unwrap();
    assert_eq!(seqs(&read_all(&log, 20)), (20..25).collect::<Vec<_>>());
}

#[test]
fn concurrent_first_uses_recover_once() {
    let tmp = tempfile::tempdir().unwrap();
    seeded(tmp.path(), 25);
    let log = Arc::new(ShardLog::open_lazy(tmp.path(), cfg(1000)));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || log.append(&[b"y"], 50).unwrap().first_seq)
        })
        .collect();
    let mut got: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (25..33).collect::<Vec<_>>());
    assert_eq!(log.next_seq(), 33);
}
