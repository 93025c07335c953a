//! Zeros written ahead of the active segment's data (`zeroing.rs`): they appear past the data,
//! never inside a sealed segment or a cleanly closed one, are cut by recovery after a crash, and
//! a zeroing job racing appends, rolls and reopenings never overwrites a frame.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use sluice_log::{FsyncMode, LogConfig, ShardLog};

const AHEAD: u64 = 8 << 10;

fn config(segment_bytes: u64, zero_ahead_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        zero_ahead_bytes,
        segment_max_age: None,
        ..LogConfig::default()
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// A payload that names its writer and position, so that a frame overwritten by zeros or by
/// another frame cannot pass for the right one.
fn payload(writer: u64, i: u64, len: usize) -> Vec<u8> {
    let mut p = format!("w{writer}-i{i}-").into_bytes();
    p.resize(len, b'a' + (i % 26) as u8);
    p
}

fn all_zeros(p: &Path, from: u64) -> bool {
    let bytes = std::fs::read(p).unwrap();
    bytes[from as usize..].iter().all(|&b| b == 0)
}

#[test]
fn zeros_run_ahead_of_the_data_and_are_cut_at_roll_and_close() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), config(32 << 10, AHEAD));
    let frame = frame_len(&[1000]);
    log.append(&[&payload(0, 0, 1000)], 1).unwrap();
    let zeros = log.settle_zeros();
    assert_eq!(zeros, AHEAD, "zeros written ahead after the first append");
    let seg = &segment_files(tmp.path())[0];
    assert_eq!(file_len(seg), frame + AHEAD);
    assert!(all_zeros(seg, frame));
    let mut expected = vec![payload(0, 0, 1000)];
    for i in 1..100 {
        expected.push(payload(0, i, 1000));
        log.append(&[expected.last().unwrap()], 1 + i as i64)
            .unwrap();
    }
    log.settle_zeros();
    let files = segment_files(tmp.path());
    assert!(files.len() >= 3, "rolled: {files:?}");
    // Sealed segments hold frames only: a whole number of frames, no zeros.
    for sealed in &files[..files.len() - 1] {
        assert_eq!(file_len(sealed) % frame, 0, "{sealed:?}");
        assert!(file_len(sealed) <= 32 << 10);
    }
    let sealed_bytes: u64 = files[..files.len() - 1].iter().map(|p| file_len(p)).sum();
    let active = files.last().unwrap();
    let active_data = log.size_bytes() - sealed_bytes;
    assert_eq!(active_data, 100 * frame - sealed_bytes);
    assert!(
        file_len(active) > active_data,
        "the active segment has zeros past its data"
    );
    // Never past the size at which the segment seals.
    assert!(file_len(active) <= 32 << 10);
    log.close().unwrap();
    drop(log);
    assert_eq!(
        file_len(active),
        active_data,
        "a clean close cuts the zeros"
    );
    // The clean reopen trusts the active index (its recorded length is the file's).
    let log = open(tmp.path(), config(32 << 10, AHEAD));
    assert_eq!(payloads(&read_all(&log, 0)), expected);
}

#[test]
fn a_crash_leaves_zeros_that_recovery_cuts_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), config(1 << 20, AHEAD));
    let expected: Vec<Vec<u8>> = (0..5).map(|i| payload(0, i, 100)).collect();
    for (i, p) in expected.iter().enumerate() {
        log.append(&[p], i as i64).unwrap();
    }
    assert!(log.settle_zeros() > 0);
    let data = log.size_bytes();
    // A crash: no close, so no clean marker and the zeros stay.
    drop(log);
    let seg = segment_files(tmp.path())[0].clone();
    assert!(file_len(&seg) > data);
    let log = open(tmp.path(), config(1 << 20, 0));
    assert_eq!(log.next_seq(), 5);
    assert_eq!(payloads(&read_all(&log, 0)), expected);
    assert_eq!(file_len(&seg), data, "recovery cut the zeros");
    assert_eq!(log.append(&[b"next"], 9).unwrap().first_seq, 5);
    drop(log);
    let log = open(tmp.path(), config(1 << 20, AHEAD));
    assert_eq!(log.next_seq(), 6);
}

#[test]
fn a_torn_frame_inside_the_zeros_is_cut_with_them() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), config(1 << 20, AHEAD));
    for i in 0..3 {
        log.append(&[&payload(0, i, 100)], i as i64).unwrap();
    }
    log.settle_zeros();
    let data = log.size_bytes();
    drop(log);
    // The first half of a fourth frame reached the disk, the rest is still zeros.
    let seg = segment_files(tmp.path())[0].clone();
    let mut torn = sluice_log::codec::encode_frame(&[&payload(0, 3, 100)], 3, 3).unwrap();
    torn.truncate(torn.len() / 2);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&torn, data).unwrap();
    }
    let log = open(tmp.path(), config(1 << 20, AHEAD));
    assert_eq!(log.next_seq(), 3);
    assert_eq!(file_len(&seg), data);
    assert_eq!(
        payloads(&read_all(&log, 0)),
        (0..3).map(|i| payload(0, i, 100)).collect::<Vec<_>>()
    );
}

/// Appenders outrunning a zeroer that is always a little behind (4 KiB ahead, 1-KiB frames),
/// with segments rolling every 64 KiB: no frame may be overwritten, before or after a reopen.
#[test]
fn appends_racing_the_zeroer_keep_every_frame() {
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 600;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(64 << 10, 4 << 10);
    let log = Arc::new(open(tmp.path(), cfg));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..PER_WRITER {
                    log.append(&[&payload(w, i, 1000)], 0).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let check = |log: &ShardLog| {
        let all = read_all(log, 0);
        assert_eq!(all.len() as u64, WRITERS * PER_WRITER);
        let mut next = vec![0u64; WRITERS as usize];
        for e in &all {
            let w = (e.payload[1] - b'0') as u64;
            assert_eq!(e.payload, payload(w, next[w as usize], 1000));
            next[w as usize] += 1;
        }
    };
    check(&log);
    assert!(segment_files(tmp.path()).len() > 10);
    drop(Arc::into_inner(log).unwrap());
    // Reopened after a "crash": sealed segments come from their indexes, the active one is
    // scanned; every frame is read back and checked against its CRC.
    let log = open(tmp.path(), cfg);
    check(&log);
}

/// A log dropped while its zeroing job is still queued, and reopened at once: the old job must
/// not write zeros over what the new instance appends. The zeroing thread is kept busy by
/// another log's large job meanwhile, so that each instance's job is still waiting when the
/// next instance appends where that job would start.
#[test]
fn a_reopened_log_is_safe_from_the_old_instances_zeroing() {
    let busy_dir = tempfile::tempdir().unwrap();
    let busy = open(busy_dir.path(), config(1 << 30, 256 << 20));
    busy.append(&[b"keep the zeroing thread busy"], 0).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(64 << 20, 1 << 20);
    let mut expected = Vec::new();
    for round in 0..5 {
        let log = open(tmp.path(), cfg);
        expected.push(payload(round, 0, 2000));
        log.append(&[expected.last().unwrap()], 0).unwrap();
        drop(log);
    }
    assert!(busy.settle_zeros() > 0);
    let log = open(tmp.path(), cfg);
    assert_eq!(payloads(&read_all(&log, 0)), expected);
}

#[test]
fn only_the_always_mode_writes_zeros_ahead() {
    for fsync in [
        FsyncMode::Never,
        FsyncMode::Interval(std::time::Duration::from_millis(10)),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(
            tmp.path(),
            LogConfig {
                fsync,
                ..config(1 << 20, AHEAD)
            },
        );
        log.append(&[b"x"], 0).unwrap();
        assert_eq!(log.settle_zeros(), 0, "{fsync:?}");
        assert_eq!(
            file_len(&segment_files(tmp.path())[0]),
            log.size_bytes(),
            "{fsync:?}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), config(1 << 20, 0));
    log.append(&[b"x"], 0).unwrap();
    assert_eq!(log.settle_zeros(), 0, "zero_ahead_bytes = 0 turns it off");
}
