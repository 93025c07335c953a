//! Property test: random operations against a simple in-memory model of the log.

mod common;

use std::path::Path;

use common::frame_len;
use proptest::prelude::*;
use sluice_log::{FsyncMode, LogConfig, LogError, ShardLog};

#[derive(Clone, Debug)]
enum Op {
    /// Payloads, and a time step relative to the previous requested time (may be negative).
    Append(Vec<Vec<u8>>, i64),
    /// `from` relative to `first_seq - 2`, wrapping over the retained range plus a margin.
    Read(u64, usize, usize),
    /// Time lookup relative to the current clock.
    Lookup(i64),
    Reopen,
    Roll,
    /// Retention cutoff this far behind the clock.
    Retain(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..5), -10i64..30)
            .prop_map(|(p, dt)| Op::Append(p, dt)),
        4 => (any::<u64>(), 0usize..12, 0usize..120).prop_map(|(f, n, b)| Op::Read(f, n, b)),
        2 => (-20i64..300).prop_map(Op::Lookup),
        1 => Just(Op::Reopen),
        1 => Just(Op::Roll),
        2 => (0i64..300).prop_map(Op::Retain),
    ]
}

struct Seg {
    base: u64,
    size: u64,
    last_time: Option<i64>,
}

/// The model: retained entries, and segment boundaries computed with the documented roll rule.
struct Model {
    segment_bytes: u64,
    entries: Vec<(u64, i64, Vec<u8>)>,
    first: u64,
    next: u64,
    last_time: Option<i64>,
    clock: i64,
    segs: Vec<Seg>,
}

impl Model {
    fn new(segment_bytes: u64) -> Model {
        Model {
            segment_bytes,
            entries: Vec::new(),
            first: 0,
            next: 0,
            last_time: None,
            clock: 1_000,
            segs: vec![Seg {
                base: 0,
                size: 0,
                last_time: None,
            }],
        }
    }

    fn roll(&mut self) -> bool {
        if self.segs.last().unwrap().size == 0 {
            return false;
        }
        self.segs.push(Seg {
            base: self.next,
            size: 0,
            last_time: None,
        });
        true
    }

    fn append(&mut self, payloads: &[Vec<u8>], t: i64) -> (u64, i64) {
        let time = self.last_time.map_or(t, |lt| lt.max(t));
        let lens: Vec<usize> = payloads.iter().map(Vec::len).collect();
        let len = frame_len(&lens);
        let active = self.segs.last().unwrap();
        if active.size > 0 && active.size + len > self.segment_bytes {
            self.roll();
        }
        let active = self.segs.last_mut().unwrap();
        active.size += len;
        active.last_time = Some(time);
        let first = self.next;
        for p in payloads {
            self.entries.push((self.next, time, p.clone()));
            self.next += 1;
        }
        self.last_time = Some(time);
        (first, time)
    }

    fn retain(&mut self, cutoff: i64) -> usize {
        let sealed = self.segs.len() - 1;
        let n = self.segs[..sealed]
            .iter()
            .take_while(|s| !matches!(s.last_time, Some(t) if t >= cutoff))
            .count();
        self.segs.drain(..n);
        self.first = self.segs[0].base;
        let first = self.first;
        self.entries.retain(|e| e.0 >= first);
        n
    }

    fn reopen(&mut self) {
        // The time clamp restarts from the newest retained frame.
        self.last_time = self.segs.iter().rev().find_map(|s| s.last_time);
    }

    fn read(
        &self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, i64, Vec<u8>)>, u64> {
        if from < self.first {
            return Err(self.first);
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in self.entries.iter().filter(|e| e.0 >= from) {
            let bytes_full = bytes >= max_bytes || bytes + e.2.len() > max_bytes;
            if out.len() >= max_entries || (!out.is_empty() && bytes_full) {
                break;
            }
            bytes += e.2.len();
            out.push(e.clone());
        }
        Ok(out)
    }
}

fn check_state(log: &ShardLog, m: &Model) {
    assert_eq!(log.first_seq(), m.first, "first_seq");
    assert_eq!(log.next_seq(), m.next, "next_seq");
    assert_eq!(log.segment_count(), m.segs.len(), "segment count");
    assert_eq!(
        log.size_bytes(),
        m.segs.iter().map(|s| s.size).sum::<u64>(),
        "size_bytes"
    );
    assert_eq!(log.last_time(), m.entries.last().map(|e| e.1), "last_time");
}

fn run(ops: Vec<Op>, segment_bytes: u64, fsync: FsyncMode, dir: &Path) {
    let cfg = LogConfig {
        segment_bytes,
        fsync,
        // The model rolls by size only.
        segment_max_age: None,
        ..LogConfig::default()
    };
    let mut log = ShardLog::open(dir, cfg).unwrap();
    let mut m = Model::new(segment_bytes);
    for op in ops {
        match op {
            Op::Append(payloads, dt) => {
                m.clock += dt;
                let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                let info = log.append(&refs, m.clock).unwrap();
                let (first, time) = m.append(&payloads, m.clock);
                assert_eq!(info.first_seq, first);
                assert_eq!(info.last_seq, first + payloads.len() as u64 - 1);
                assert_eq!(info.system_time, time);
            }
            Op::Read(f, max_entries, max_bytes) => {
                let span = m.next - m.first + 5;
                let from = (m.first + f % span).saturating_sub(2);
                match (
                    log.read(from, max_entries, max_bytes),
                    m.read(from, max_entries, max_bytes),
                ) {
                    (Ok(got), Ok(want)) => {
                        let got: Vec<_> = got
                            .into_iter()
                            .map(|e| (e.seq, e.system_time, e.payload.to_vec()))
                            .collect();
                        assert_eq!(got, want, "read({from}, {max_entries}, {max_bytes})");
                    }
                    (Err(LogError::OutOfRange { requested, first }), Err(want_first)) => {
                        assert_eq!((requested, first), (from, want_first));
                    }
                    (got, want) => panic!("read({from}): log gave {got:?}, model {want:?}"),
                }
            }
            Op::Lookup(dt) => {
                let t = m.clock - dt;
                let want = m.entries.iter().find(|e| e.1 >= t).map(|e| e.0);
                assert_eq!(
                    log.seq_at_or_after_time(t),
                    want,
                    "seq_at_or_after_time({t})"
                );
                if let Some(e) = m
                    .entries
                    .get((dt.unsigned_abs() as usize) % m.entries.len().max(1))
                {
                    assert_eq!(log.time_of(e.0), Some(e.1));
                }
                assert_eq!(log.time_of(m.next), None);
                assert_eq!(log.time_of(m.first.wrapping_sub(1)), None);
            }
            Op::Reopen => {
                drop(log);
                log = ShardLog::open(dir, cfg).unwrap();
                m.reopen();
            }
            Op::Roll => assert_eq!(log.roll().unwrap(), m.roll()),
            Op::Retain(dt) => {
                let cutoff = m.clock - dt;
                assert_eq!(
                    log.enforce_retention(cutoff).unwrap(),
                    m.retain(cutoff),
                    "retention({cutoff})"
                );
            }
        }
        check_state(&log, &m);
    }
    // Finally, everything retained reads back after one more reopen.
    drop(log);
    let log = ShardLog::open(dir, cfg).unwrap();
    check_state(&log, &m);
    let all: Vec<_> = log
        .read(m.first, usize::MAX, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.system_time, e.payload.to_vec()))
        .collect();
    assert_eq!(all, m.entries);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..60), segment_bytes in 40u64..400) {
        let tmp = tempfile::tempdir().unwrap();
        run(ops, segment_bytes, FsyncMode::Never, tmp.path());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model_with_fsync(ops in prop::collection::vec(op(), 1..30), segment_bytes in 40u64..400) {
        let tmp = tempfile::tempdir().unwrap();
        run(ops, segment_bytes, FsyncMode::Always, tmp.path());
    }
}
