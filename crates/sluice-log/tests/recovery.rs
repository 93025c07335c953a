//! Recovery on open: clean reopen, torn tails of the active segment, corruption of sealed ones.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use sluice_log::{LogConfig, LogError};

/// Five frames of two entries each (`f{i}-a`, `f{i}-b`, 4 bytes each, 48 bytes per frame).
fn write_five_frames(dir: &Path, cfg: LogConfig) {
    let log = open(dir, cfg);
    for i in 0..5 {
        let a = format!("f{i}-a");
        let b = format!("f{i}-b");
        let info = log.append(&[a.as_bytes(), b.as_bytes()], 100 + i).unwrap();
        assert_eq!(info.first_seq, 2 * i as u64);
    }
}

const FRAME: u64 = 32 + 2 * (4 + 4);

/// The default config without zeros written ahead of the data, so that a segment file is
/// exactly as long as its frames and a test can cut or damage its last bytes (recovery from
/// zeros past the data: `zero_ahead.rs`).
fn exact() -> LogConfig {
    LogConfig {
        zero_ahead_bytes: 0,
        ..LogConfig::default()
    }
}

fn expected_payloads(frames: u64) -> Vec<Vec<u8>> {
    (0..frames)
        .flat_map(|i| {
            [
                format!("f{i}-a").into_bytes(),
                format!("f{i}-b").into_bytes(),
            ]
        })
        .collect()
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

fn flip_byte(p: &Path, at: u64) {
    let f = OpenOptions::new().read(true).write(true).open(p).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, at).unwrap();
}

fn append_bytes(p: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(p)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// Checks that after damage to the last frame, the log reopens with four frames, truncates the
/// file, and continues at the right sequence across another reopen.
fn assert_recovered_to_four_frames(dir: &Path) {
    let seg = &segment_files(dir)[0];
    let log = open(dir, exact());
    assert_eq!(log.next_seq(), 8);
    assert_eq!(log.size_bytes(), 4 * FRAME);
    assert_eq!(file_len(seg), 4 * FRAME, "torn tail truncated on disk");
    assert_eq!(payloads(&read_all(&log, 0)), expected_payloads(4));
    assert_eq!(log.last_time(), Some(103));
    let info = log.append(&[b"new"], 200).unwrap();
    assert_eq!((info.first_seq, info.last_seq), (8, 8));
    drop(log);
    let log = open(dir, exact());
    assert_eq!(log.next_seq(), 9);
    let all = read_all(&log, 0);
    assert_eq!(seqs(&all), (0..9).collect::<Vec<_>>());
    assert_eq!(all[8].payload, &b"new"[..]);
}

#[test]
fn clean_reopen_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let small = cfg(3 * FRAME);
    write_five_frames(tmp.path(), small);
    let log = open(tmp.path(), small);
    assert_eq!(log.segment_count(), 2);
    assert_eq!((log.first_seq(), log.next_seq()), (0, 10));
    assert_eq!(log.size_bytes(), 5 * FRAME);
    let all = read_all(&log, 0);
    assert_eq!(payloads(&all), expected_payloads(5));
    assert_eq!(all[9].system_time, 104);
    assert_eq!(log.seq_at_or_after_time(102), Some(4));
    assert_eq!(log.append(&[b"x"], 0).unwrap().first_seq, 10);
}

#[test]
fn truncated_mid_frame() {
    let tmp = tempfile::tempdir().unwrap();
    write_five_frames(tmp.path(), exact());
    let seg = &segment_files(tmp.path())[0];
    assert_eq!(file_len(seg), 5 * FRAME);
    std::fs::File::options()
        .write(true)
        .open(seg)
        .unwrap()
        .set_len(5 * FRAME - 3)
        .unwrap();
    assert_recovered_to_four_frames(tmp.path());
}

#[test]
fn truncated_mid_header() {
    let tmp = tempfile::tempdir().unwrap();
    write_five_frames(tmp.path(), exact());
    let seg = &segment_files(tmp.path())[0];
    std::fs::File::options()
        .write(true)
        .open(seg)
        .unwrap()
        .set_len(4 * FRAME + 10)
        .unwrap();
    assert_recovered_to_four_frames(tmp.path());
}

#[test]
fn byte_flipped_in_last_frame_payload() {
    let tmp = tempfile::tempdir().unwrap();
    write_five_frames(tmp.path(), exact());
    flip_byte(&segment_files(tmp.path())[0], 5 * FRAME - 2);
    assert_recovered_to_four_frames(tmp.path());
}

#[test]
fn byte_flipped_in_last_frame_header() {
    for at in [0, 5, 9, 14, 21, 27] {
        let tmp = tempfile::tempdir().unwrap();
        write_five_frames(tmp.path(), exact());
        flip_byte(&segment_files(tmp.path())[0], 4 * FRAME + at);
        assert_recovered_to_four_frames(tmp.path());
    }
}

#[test]
fn garbage_after_last_frame() {
    let tmp = tempfile::tempdir().unwrap();
    write_five_frames(tmp.path(), exact());
    let seg = segment_files(tmp.path())[0].clone();
    append_bytes(&seg, b"this is not a frame at all, just garbage bytes");
    let log = open(tmp.path(), exact());
    assert_eq!(log.next_seq(), 10);
    assert_eq!(file_len(&seg), 5 * FRAME);
    assert_eq!(payloads(&read_all(&log, 0)), expected_payloads(5));
    assert_eq!(log.append(&[b"more"], 1).unwrap().first_seq, 10);
}

#[test]
fn zeroed_tail() {
    let tmp = tempfile::tempdir().unwrap();
    write_five_frames(tmp.path(), exact());
    let seg = segment_files(tmp.path())[0].clone();
    // Preallocated-but-unwritten space, as after a crash on some file systems.
    append_bytes(&seg, &[0u8; 4096]);
    let log = open(tmp.path(), exact());
    assert_eq!(log.next_seq(), 10);
    assert_eq!(file_len(&seg), 5 * FRAME);
    // A whole last frame zeroed.
    drop(log);
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&[0u8; FRAME as usize], 4 * FRAME).unwrap();
    drop(f);
    assert_recovered_to_four_frames(tmp.path());
}

#[test]
fn torn_first_frame_of_last_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let small = cfg(2 * FRAME);
    write_five_frames(tmp.path(), small);
    let files = segment_files(tmp.path());
    assert_eq!(files.len(), 3);
    let last = files[2].clone();
    assert!(last.ends_with("00000000000000000008.log"));
    std::fs::File::options()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(FRAME / 2)
        .unwrap();
    let log = open(tmp.path(), small);
    assert_eq!(log.next_seq(), 8);
    assert_eq!(file_len(&last), 0);
    assert_eq!(log.segment_count(), 3, "the emptied active segment is kept");
    assert_eq!(log.append(&[b"again"], 1).unwrap().first_seq, 8);
    drop(log);
    let log = open(tmp.path(), small);
    assert_eq!(log.next_seq(), 9);
    assert_eq!(read_all(&log, 8)[0].payload, &b"again"[..]);
}

#[test]
fn corruption_in_sealed_segment_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let small = cfg(2 * FRAME);
    write_five_frames(tmp.path(), small);
    let files = segment_files(tmp.path());
    assert_eq!(files.len(), 3);
    let len_before = file_len(&files[0]);
    flip_byte(&files[0], FRAME + 40);
    match open_err(tmp.path(), small) {
        LogError::Corrupt {
            segment, offset, ..
        } => {
            assert_eq!(segment, files[0]);
            assert_eq!(offset, FRAME);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        file_len(&files[0]),
        len_before,
        "sealed segments are never truncated"
    );

    // A torn sealed segment too.
    flip_byte(&files[0], FRAME + 40);
    open(tmp.path(), small);
    std::fs::File::options()
        .write(true)
        .open(&files[1])
        .unwrap()
        .set_len(FRAME + 3)
        .unwrap();
    assert!(
        matches!(open_err(tmp.path(), small), LogError::Corrupt { segment, .. } if segment == files[1])
    );
}

#[test]
fn missing_middle_segment_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let small = cfg(2 * FRAME);
    write_five_frames(tmp.path(), small);
    let files = segment_files(tmp.path());
    std::fs::remove_file(&files[1]).unwrap();
    assert!(
        matches!(open_err(tmp.path(), small), LogError::Corrupt { segment, .. } if segment == files[2])
    );
}

#[test]
fn corruption_is_detected_on_read() {
    let tmp = tempfile::tempdir().unwrap();
    let small = cfg(2 * FRAME);
    write_five_frames(tmp.path(), small);
    let log = open(tmp.path(), small);
    let files = segment_files(tmp.path());
    flip_byte(&files[0], 40);
    assert!(matches!(
        log.read(0, 10, 1000),
        Err(LogError::Corrupt { .. })
    ));
    // Other segments still read fine.
    assert_eq!(seqs(&read_all(&log, 4)), (4..10).collect::<Vec<_>>());
}

fn open_err(dir: &Path, cfg: LogConfig) -> LogError {
    match sluice_log::ShardLog::open(dir, cfg) {
        Ok(_) => panic!("open succeeded on a corrupt log"),
        Err(e) => e,
    }
}
