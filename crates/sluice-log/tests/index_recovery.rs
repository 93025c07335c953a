//! Persisted segment indexes and the clean-shutdown marker: a trusted index spares the scan;
//! a torn, missing or stale index falls back to the scan and never gives a wrong answer.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use sluice_log::{LogConfig, LogError, ShardLog};

/// Frame of one 100-byte payload.
const FRAME: u64 = 32 + 4 + 100;
/// Ten frames per segment.
const SEGMENT: u64 = 10 * FRAME;

fn config() -> LogConfig {
    cfg(SEGMENT)
}

/// Appends `n` frames of one 100-byte payload (byte = seq) at time `10 * seq`.
fn append_frames(log: &ShardLog, n: u64) {
    for _ in 0..n {
        let seq = log.next_seq();
        log.append(&[&[seq as u8; 100]], 10 * seq as i64).unwrap();
    }
}

/// Checks every lookup and the payloads of a log holding `n` frames written by
/// [`append_frames`].
fn assert_contents(log: &ShardLog, n: u64) {
    assert_eq!(log.next_seq(), n);
    let all = read_all(log, 0);
    assert_eq!(seqs(&all), (0..n).collect::<Vec<_>>());
    for e in &all {
        assert_eq!(e.payload, vec![e.seq as u8; 100]);
        assert_eq!(e.system_time, 10 * e.seq as i64);
        assert_eq!(log.time_of(e.seq), Some(10 * e.seq as i64));
        assert_eq!(log.seq_at_or_after_time(10 * e.seq as i64 - 5), Some(e.seq));
    }
    assert_eq!(log.seq_at_or_after_time(10 * n as i64), None);
}

fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .collect();
    v.sort();
    v
}

fn flip_byte(p: &Path, at: u64) {
    let f = OpenOptions::new().read(true).write(true).open(p).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, at).unwrap();
}

fn set_len(p: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn open_err(dir: &Path) -> LogError {
    match ShardLog::open(dir, config()) {
        Ok(_) => panic!("open succeeded"),
        Err(e) => e,
    }
}

/// 35 frames: three sealed segments of ten frames with their indexes, five in the active one.
fn three_sealed(dir: &Path) {
    let log = open(dir, config());
    append_frames(&log, 35);
    assert_eq!(segment_files(dir).len(), 4);
    assert_eq!(index_files(dir).len(), 3, "one index per sealed segment");
}

#[test]
fn a_valid_index_is_trusted_without_a_rescan() {
    let tmp = tempfile::tempdir().unwrap();
    three_sealed(tmp.path());
    // Damage a middle frame of the first sealed segment: the scan would refuse it, the
    // persisted index (which checks only the length and the last frame) is used instead.
    let seg0 = &segment_files(tmp.path())[0];
    flip_byte(seg0, 3 * FRAME + 50);
    let log = open(tmp.path(), config());
    assert_eq!(log.next_seq(), 35);
    // Reads still check every frame they return.
    assert!(matches!(
        log.read(3, 1, 1000),
        Err(LogError::Corrupt { .. })
    ));
    assert_eq!(seqs(&read_all(&log, 10)), (10..35).collect::<Vec<_>>());
    drop(log);
    // Without its index the segment is scanned, and the damage found.
    std::fs::remove_file(&index_files(tmp.path())[0]).unwrap();
    assert!(
        matches!(open_err(tmp.path()), LogError::Corrupt { segment, offset, .. }
        if segment == *seg0 && offset == 3 * FRAME)
    );
}

#[test]
fn a_missing_index_falls_back_to_the_scan_and_is_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    three_sealed(tmp.path());
    let idx = index_files(tmp.path());
    let before = std::fs::read(&idx[1]).unwrap();
    std::fs::remove_file(&idx[1]).unwrap();
    let log = open(tmp.path(), config());
    assert_contents(&log, 35);
    assert_eq!(std::fs::read(&idx[1]).unwrap(), before, "index rewritten");
}

#[test]
fn a_torn_or_damaged_index_falls_back_to_the_scan() {
    let tmp = tempfile::tempdir().unwrap();
    three_sealed(tmp.path());
    let idx = index_files(tmp.path());
    let good = std::fs::read(&idx[0]).unwrap();
    // Torn: every shorter prefix; damaged: a flipped byte in the points and in the last entry.
    for len in [0, 3, good.len() as u64 / 2, good.len() as u64 - 1] {
        set_len(&idx[0], len);
        let log = open(tmp.path(), config());
        assert_contents(&log, 35);
        drop(log);
        assert_eq!(std::fs::read(&idx[0]).unwrap(), good, "index rewritten");
    }
    for at in [9, good.len() as u64 - 10] {
        let good = std::fs::read(&idx[2]).unwrap();
        flip_byte(&idx[2], at);
        let log = open(tmp.path(), config());
        assert_contents(&log, 35);
        drop(log);
        assert_eq!(std::fs::read(&idx[2]).unwrap(), good, "index rewritten");
    }
}

#[test]
fn an_index_newer_than_its_sealed_segment_is_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    three_sealed(tmp.path());
    let seg1 = segment_files(tmp.path())[1].clone();
    // The sealed segment lost its last frame after its index was written: the index's length
    // and last frame no longer match, the scan runs and finds the gap to the next segment.
    set_len(&seg1, SEGMENT - FRAME);
    assert!(matches!(open_err(tmp.path()), LogError::Corrupt { .. }));
}

#[test]
fn clean_close_persists_the_active_index_and_a_marker() {
    let tmp = tempfile::tempdir().unwrap();
    three_sealed(tmp.path());
    let log = open(tmp.path(), config());
    log.close().unwrap();
    drop(log);
    let marker = tmp.path().join("CLEAN");
    assert!(marker.exists());
    assert_eq!(
        index_files(tmp.path()).len(),
        4,
        "active segment's index written"
    );
    // With the marker the active segment is not scanned: damage inside it is not seen at open
    // (reads still check their frames).
    let active = segment_files(tmp.path())[3].clone();
    flip_byte(&active, FRAME + 50);
    let log = open(tmp.path(), config());
    assert!(!marker.exists(), "marker removed at open");
    assert_eq!(
        index_files(tmp.path()).len(),
        3,
        "active index removed at open"
    );
    assert_eq!(log.next_seq(), 35);
    assert!(matches!(
        log.read(31, 1, 1000),
        Err(LogError::Corrupt { .. })
    ));
    log.close().unwrap();
    drop(log);
    // Without the marker (a crash) the active segment is scanned and its torn tail cut.
    std::fs::remove_file(&marker).unwrap();
    let log = open(tmp.path(), config());
    assert_eq!(log.next_seq(), 31);
    assert_eq!(std::fs::metadata(&active).unwrap().len(), FRAME);
}

#[test]
fn an_active_index_newer_than_its_segment_falls_back_to_the_scan() {
    let tmp = tempfile::tempdir().unwrap();
    three_sealed(tmp.path());
    let log = open(tmp.path(), config());
    log.close().unwrap();
    drop(log);
    // The active segment lost its last two frames after the clean close.
    let active = segment_files(tmp.path())[3].clone();
    set_len(&active, 3 * FRAME);
    let log = open(tmp.path(), config());
    assert_contents(&log, 33);
    append_frames(&log, 10);
    assert_contents(&log, 43);
    drop(log);
    let log = open(tmp.path(), config());
    assert_contents(&log, 43);
}

#[test]
fn appends_after_a_clean_reopen_survive_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    three_sealed(tmp.path());
    let log = open(tmp.path(), config());
    log.close().unwrap();
    drop(log);
    let log = open(tmp.path(), config());
    append_frames(&log, 3);
    // A crash: no close, so no marker and no active index; the active segment is scanned.
    drop(log);
    assert!(!tmp.path().join("CLEAN").exists());
    let log = open(tmp.path(), config());
    assert_contents(&log, 38);
}

#[test]
fn retention_removes_the_indexes_of_deleted_segments() {
    let tmp = tempfile::tempdir().unwrap();
    three_sealed(tmp.path());
    let log = open(tmp.path(), config());
    assert_eq!(log.enforce_retention(200).unwrap(), 2);
    assert_eq!(index_files(tmp.path()).len(), 1);
    drop(log);
    let log = open(tmp.path(), config());
    assert_eq!(log.first_seq(), 20);
}
