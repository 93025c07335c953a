//! Property test of the sparse index against a full model of the log (every entry with its
//! sequence and time, i.e. what a full scan yields): every SEQUENCE and SYSTEM_TIME lookup and
//! reads from every position give the same answers, on the log as written, after a reopen from
//! the persisted sealed-segment indexes, after a clean close (persisted active index), and
//! after all index files are deleted (scan).

mod common;

use std::path::Path;

use common::open;
use proptest::prelude::*;
use sluice_log::{FsyncMode, LogConfig, ShardLog};

/// One append: payload lengths and a requested time step (may be negative: clamped).
type Append = (Vec<usize>, i64);

fn appends() -> impl Strategy<Value = Vec<Append>> {
    let lens = prop_oneof![
        20 => 0usize..200,
        1 => 3000usize..9000,
    ];
    prop::collection::vec(
        (
            prop::collection::vec(lens, 1..4),
            prop_oneof![3 => Just(0i64), 2 => -3i64..6],
        ),
        1..400,
    )
}

#[derive(Default)]
struct Model {
    /// (time, payload) per sequence, from 0.
    entries: Vec<(i64, Vec<u8>)>,
    clock: i64,
}

impl Model {
    fn apply(&mut self, log: &ShardLog, ops: &[Append]) {
        for (lens, dt) in ops {
            self.clock += dt;
            let seq0 = self.entries.len();
            let payloads: Vec<Vec<u8>> = lens
                .iter()
                .enumerate()
                .map(|(i, &n)| vec![(seq0 + i) as u8; n])
                .collect();
            let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
            let info = log.append(&refs, self.clock).unwrap();
            assert_eq!(info.first_seq, seq0 as u64);
            let time = self
                .entries
                .last()
                .map_or(self.clock, |e| e.0.max(self.clock));
            assert_eq!(info.system_time, time);
            self.entries.extend(payloads.into_iter().map(|p| (time, p)));
        }
    }

    /// What `read(from, max_entries, max_bytes)` must return (sequences).
    fn read(&self, from: usize, max_entries: usize, max_bytes: usize) -> Vec<u64> {
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        for (seq, (_, p)) in self.entries.iter().enumerate().skip(from) {
            let full = bytes >= max_bytes || bytes + p.len() > max_bytes;
            if out.len() >= max_entries || (!out.is_empty() && full) {
                break;
            }
            bytes += p.len();
            out.push(seq as u64);
        }
        out
    }

    fn check(&self, log: &ShardLog) {
        let n = self.entries.len();
        assert_eq!(log.next_seq(), n as u64);
        for (seq, (time, _)) in self.entries.iter().enumerate() {
            assert_eq!(log.time_of(seq as u64), Some(*time), "time_of({seq})");
        }
        assert_eq!(log.time_of(n as u64), None);
        assert_eq!(log.last_time(), self.entries.last().map(|e| e.0));
        let (lo, hi) = (
            self.entries.first().map_or(0, |e| e.0),
            self.entries.last().map_or(0, |e| e.0),
        );
        for t in lo - 2..=hi + 2 {
            let want = self.entries.iter().position(|e| e.0 >= t).map(|s| s as u64);
            assert_eq!(
                log.seq_at_or_after_time(t),
                want,
                "seq_at_or_after_time({t})"
            );
        }
        for from in 0..=n {
            // Unbounded reads from a sample of positions only (they cost O(n) each).
            let unbounded = from % 29 == 0 || from + 1 >= n;
            for (max_entries, max_bytes) in [(usize::MAX, usize::MAX), (1, usize::MAX), (7, 500)] {
                if max_entries == usize::MAX && !unbounded {
                    continue;
                }
                let got = log.read(from as u64, max_entries, max_bytes).unwrap();
                let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
                assert_eq!(
                    seqs,
                    self.read(from, max_entries, max_bytes),
                    "read({from})"
                );
                for e in &got {
                    let (time, payload) = &self.entries[e.seq as usize];
                    assert_eq!((e.system_time, &e.payload[..]), (*time, &payload[..]));
                }
            }
        }
    }
}

fn remove_index_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "idx") {
            std::fs::remove_file(p).unwrap();
        }
    }
}

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        fsync: FsyncMode::Never,
        segment_max_age: None,
        ..LogConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sparse_index_answers_like_a_full_scan(
        first in appends(),
        second in appends(),
        segment_bytes in prop_oneof![Just(6_000u64), Just(20_000), Just(1 << 20)],
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(segment_bytes);
        let mut model = Model::default();
        let log = open(tmp.path(), cfg);
        model.apply(&log, &first);
        model.check(&log);
        drop(log);
        // Sealed segments from their persisted indexes, the active one scanned.
        let log = open(tmp.path(), cfg);
        model.check(&log);
        log.close().unwrap();
        drop(log);
        // After a clean close the active segment's index is used too; appends continue it.
        let log = open(tmp.path(), cfg);
        model.check(&log);
        model.apply(&log, &second);
        model.check(&log);
        log.close().unwrap();
        drop(log);
        // Without any index file: the full scan.
        remove_index_files(tmp.path());
        let log = open(tmp.path(), cfg);
        model.check(&log);
    }
}

#[test]
fn index_memory_is_under_a_byte_per_small_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), config(8 << 20));
    let frames = 20_000u64;
    for i in 0..frames {
        log.append(&[&[7u8; 100]], i as i64).unwrap();
    }
    let bytes = log.index_bytes() as u64;
    assert!(
        bytes < frames,
        "{bytes} index bytes for {frames} frames of 136 bytes"
    );
}
