//! Concurrent appenders (group commit) and readers.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use sluice_log::{LogConfig, ShardLog};

const THREADS: u64 = 8;
const PER_THREAD: u64 = 500;

fn payload(thread: u64, i: u64) -> Vec<u8> {
    format!("t{thread}-i{i}").into_bytes()
}

#[test]
fn concurrent_appends_share_fsyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(open(tmp.path(), LogConfig::default()));
    let fsyncs_before = log.fsync_count();
    let stop = Arc::new(AtomicBool::new(false));

    // A reader tailing the log meanwhile: what it sees must always be a dense prefix.
    let reader = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) || next < log.next_seq() {
                let got = log.read(next, 1000, 1 << 20).unwrap();
                for e in &got {
                    assert_eq!(e.seq, next, "reader saw a gap or a duplicate");
                    next += 1;
                }
                assert!(next <= log.next_seq());
                if got.is_empty() {
                    std::thread::yield_now();
                }
            }
            next
        })
    };

    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        let info = log.append(&[&payload(t, i)], i as i64).unwrap();
                        assert_eq!(info.first_seq, info.last_seq);
                        // Acknowledged means visible.
                        assert!(log.next_seq() > info.last_seq);
                        (info.first_seq, (t, i))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: HashMap<u64, (u64, u64)> = HashMap::new();
    for w in writers {
        for (seq, who) in w.join().unwrap() {
            assert!(
                acked.insert(seq, who).is_none(),
                "sequence {seq} handed out twice"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let total = THREADS * PER_THREAD;
    assert_eq!(reader.join().unwrap(), total);

    let mut all_seqs: Vec<u64> = acked.keys().copied().collect();
    all_seqs.sort_unstable();
    assert_eq!(
        all_seqs,
        (0..total).collect::<Vec<_>>(),
        "sequences are dense"
    );
    assert_eq!(log.next_seq(), total);

    let check = |log: &ShardLog| {
        let all = read_all(log, 0);
        assert_eq!(all.len() as u64, total);
        for e in &all {
            let (t, i) = acked[&e.seq];
            assert_eq!(
                e.payload,
                payload(t, i),
                "entry {} holds another payload",
                e.seq
            );
        }
    };
    check(&log);

    let fsyncs = log.fsync_count() - fsyncs_before;
    assert!(fsyncs >= 1);
    assert!(
        fsyncs < total,
        "group commit should share fsyncs: {fsyncs} fsyncs for {total} appends"
    );
    eprintln!("{total} concurrent appends took {fsyncs} fsyncs");

    // Everything acknowledged survives a reopen.
    drop(log);
    let log = open(tmp.path(), LogConfig::default());
    check(&log);
}

#[test]
fn concurrent_appends_with_rolls_and_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(open(
        tmp.path(),
        LogConfig {
            segment_bytes: 400,
            ..LogConfig::default()
        },
    ));
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..100u64 {
                    log.append(&[&payload(t, i), b"second"], i as i64).unwrap();
                }
            })
        })
        .collect();
    let cleaner = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut removed = 0;
            for _ in 0..50 {
                removed += log.enforce_retention(30).unwrap();
                let first = log.first_seq();
                match log.read(first, 10, 1000) {
                    Ok(v) => assert_eq!(
                        seqs(&v),
                        (first..first + v.len() as u64).collect::<Vec<_>>()
                    ),
                    // Retention may have moved on between the two calls.
                    Err(sluice_log::LogError::OutOfRange { .. }) => {}
                    Err(e) => panic!("read failed: {e}"),
                }
                std::thread::yield_now();
            }
            removed
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    cleaner.join().unwrap();
    assert_eq!(log.next_seq(), 800);
    let first = log.first_seq();
    let rest = read_all(&log, first);
    assert_eq!(seqs(&rest), (first..800).collect::<Vec<_>>());
    assert!(log.segment_count() > 1);
}
