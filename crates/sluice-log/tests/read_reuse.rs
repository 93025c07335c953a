//! Reads reuse the memory of earlier, dropped reads and never touch the bytes of live ones.

mod common;

use common::*;
use sluice_log::LogConfig;

/// One frame of 64 payloads of 1 KiB, the i-th filled with byte `i`.
fn fill(log: &sluice_log::ShardLog, frames: u64) {
    for f in 0..frames {
        let payloads: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 1024]).collect();
        let slices: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        log.append(&slices, 1000 + f as i64).unwrap();
    }
}

#[test]
fn a_read_reuses_the_memory_of_a_dropped_read() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), LogConfig::default());
    fill(&log, 4);
    let first = log.read(0, 64, usize::MAX).unwrap();
    let at = first[0].payload.as_ptr();
    drop(first);
    // With a fresh buffer per read the allocator hands the freed one to one of these fillers,
    // and the next read lands elsewhere.
    let filler: Vec<Vec<u8>> = (0..8).map(|_| vec![1u8; 64 * 1028 + 32]).collect();
    let second = log.read(0, 64, usize::MAX).unwrap();
    assert_eq!(
        second[0].payload.as_ptr(),
        at,
        "the second read reuses the first one's memory"
    );
    for (i, e) in second.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
        assert!(e.payload.iter().all(|&b| b == i as u8));
    }
    drop(filler);
}

#[test]
fn live_entries_keep_their_bytes_across_later_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), LogConfig::default());
    fill(&log, 8);
    let held = log.read(0, 64, usize::MAX).unwrap();
    let mut partly = log.read(64, 64, usize::MAX).unwrap();
    partly.truncate(3);
    for round in 0..20u64 {
        let from = 128 + (round % 6) * 64;
        let later = log.read(from, 64, usize::MAX).unwrap();
        assert_eq!(later.len(), 64);
        assert!(later
            .iter()
            .all(|e| e.payload.iter().all(|&b| b == (e.seq % 64) as u8)));
    }
    for e in held.iter().chain(&partly) {
        assert!(
            e.payload.iter().all(|&b| b == (e.seq % 64) as u8),
            "entry {}",
            e.seq
        );
    }
}

#[test]
fn reads_on_many_threads_return_their_own_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), LogConfig::default());
    fill(&log, 16);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let log = &log;
            s.spawn(move || {
                let mut kept = Vec::new();
                for round in 0..50u64 {
                    let from = ((t + round) % 16) * 64;
                    let got = log.read(from, 64, usize::MAX).unwrap();
                    assert!(got
                        .iter()
                        .all(|e| e.payload.iter().all(|&b| b == (e.seq % 64) as u8)));
                    if round % 7 == 0 {
                        kept.push(got);
                    }
                }
                for e in kept.iter().flatten() {
                    assert!(e.payload.iter().all(|&b| b == (e.seq % 64) as u8));
                }
            });
        }
    });
}
