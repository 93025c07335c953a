//! Append/read, limits, lookups, retention, watch, modes and errors.

mod common;

use std::time::Duration;

use common::*;
use sluice_log::{remove_log, FsyncMode, LogConfig, LogError, ShardLog, MAX_FRAME_BYTES};

#[test]
fn empty_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/shard");
    let log = open(&dir, LogConfig::default());
    assert!(dir.is_dir());
    assert_eq!(segment_files(&dir).len(), 1);
    assert_eq!((log.first_seq(), log.next_seq()), (0, 0));
    assert!(log.read(0, 10, 1000).unwrap().is_empty());
    assert_eq!(log.last_time(), None);
    assert_eq!(log.time_of(0), None);
    assert_eq!(log.seq_at_or_after_time(i64::MIN), None);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(LogConfig::default().segment_bytes, 64 << 20);
    assert_eq!(LogConfig::default().fsync, FsyncMode::Always);
}

#[test]
fn round_trip_dense_sequences_and_times() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), LogConfig::default());
    let a = log.append(&[b"a0", b"a1", b"a2"], 1000).unwrap();
    assert_eq!((a.first_seq, a.last_seq, a.system_time), (0, 2, 1000));
    let b = log.append(&[b""], 1001).unwrap();
    assert_eq!((b.first_seq, b.last_seq), (3, 3));
    let c = log.append(&[b"c0", b"c1"], 1005).unwrap();
    assert_eq!((c.first_seq, c.last_seq), (4, 5));
    assert_eq!(log.next_seq(), 6);
    assert_eq!(log.first_seq(), 0);
    assert_eq!(
        log.size_bytes(),
        frame_len(&[2, 2, 2]) + frame_len(&[0]) + frame_len(&[2, 2])
    );

    let all = read_all(&log, 0);
    assert_eq!(seqs(&all), vec![0, 1, 2, 3, 4, 5]);
    let want: Vec<Vec<u8>> = vec![
        b"a0".to_vec(),
        b"a1".to_vec(),
        b"a2".to_vec(),
        vec![],
        b"c0".to_vec(),
        b"c1".to_vec(),
    ];
    assert_eq!(payloads(&all), want);
    let times: Vec<i64> = all.iter().map(|e| e.system_time).collect();
    assert_eq!(times, vec![1000, 1000, 1000, 1001, 1005, 1005]);

    // Reads starting in the middle of a frame.
    let mid = log.read(1, 3, usize::MAX).unwrap();
    assert_eq!(seqs(&mid), vec![1, 2, 3]);
    assert_eq!(mid[0].payload, &b"a1"[..]);
    // At and past the end: empty.
    assert!(log.read(6, 10, 10).unwrap().is_empty());
    assert!(log.read(600, 10, 10).unwrap().is_empty());
    // max_entries == 0 reads nothing.
    assert!(log.read(0, 0, 10).unwrap().is_empty());
}

#[test]
fn reads_cross_segment_boundaries() {
    let tmp = tempfile::tempdir().unwrap();
    // Two 10-byte single-entry frames (46 bytes each) fit in a 100-byte segment.
    let log = open(tmp.path(), cfg(100));
    for i in 0..20u64 {
        let p = format!("payload-{i:02}");
        log.append(&[p.as_bytes()], i as i64).unwrap();
    }
    assert_eq!(log.segment_count(), 10);
    assert_eq!(segment_files(tmp.path()).len(), 10);
    let names: Vec<String> = segment_files(tmp.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names[0], "00000000000000000000.log");
    assert_eq!(names[1], "00000000000000000002.log");
    assert_eq!(names[9], "00000000000000000018.log");
    for from in 0..20u64 {
        let got = read_all(&log, from);
        assert_eq!(seqs(&got), (from..20).collect::<Vec<_>>());
        for e in &got {
            assert_eq!(e.payload, format!("payload-{:02}", e.seq).as_bytes());
            assert_eq!(e.system_time, e.seq as i64);
        }
    }
    let some = log.read(3, 5, usize::MAX).unwrap();
    assert_eq!(seqs(&some), vec![3, 4, 5, 6, 7]);
}

#[test]
fn oversized_frame_gets_its_own_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), cfg(100));
    log.append(&[b"small"], 1).unwrap();
    let big = vec![7u8; 500];
    log.append(&[&big, &big], 2).unwrap();
    log.append(&[b"small again"], 3).unwrap();
    assert_eq!(log.segment_count(), 3);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 4);
    assert_eq!(all[1].payload.len(), 500);
    assert_eq!(all[3].payload, &b"small again"[..]);
}

#[test]
fn max_entries_and_max_bytes_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), cfg(200));
    // 12 entries of 10 bytes, in frames of 3, spread over several segments.
    for f in 0..4 {
        let ps: Vec<Vec<u8>> = (0..3).map(|i| vec![b'a' + (f * 3 + i) as u8; 10]).collect();
        let refs: Vec<&[u8]> = ps.iter().map(|p| p.as_slice()).collect();
        log.append(&refs, f as i64).unwrap();
    }
    assert!(log.segment_count() > 1);
    assert_eq!(log.read(0, 5, usize::MAX).unwrap().len(), 5);
    assert_eq!(log.read(2, 1, usize::MAX).unwrap().len(), 1);
    // Never more than max_bytes of payload ...
    assert_eq!(seqs(&log.read(0, 100, 25).unwrap()), vec![0, 1]);
    assert_eq!(seqs(&log.read(1, 100, 30).unwrap()), vec![1, 2, 3]);
    assert_eq!(seqs(&log.read(4, 100, 59).unwrap()), vec![4, 5, 6, 7, 8]);
    // ... except that one entry is always returned.
    assert_eq!(seqs(&log.read(7, 100, 0).unwrap()), vec![7]);
    assert_eq!(seqs(&log.read(7, 100, 5).unwrap()), vec![7]);
    // Both limits: whichever is hit first.
    assert_eq!(seqs(&log.read(0, 2, 1000).unwrap()), vec![0, 1]);
    assert_eq!(seqs(&log.read(0, 200, 1000).unwrap()).len(), 12);
    assert_eq!(seqs(&log.read(10, 200, 1000).unwrap()), vec![10, 11]);
}

#[test]
fn reading_stops_once_max_bytes_is_reached() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), cfg(1 << 20));
    log.append(&[b"0123456789", b"", b""], 1).unwrap();
    log.append(&[b"", b"abc"], 2).unwrap();
    // Exactly reached: even empty entries after it are left for the next read.
    assert_eq!(seqs(&log.read(0, 100, 10).unwrap()), vec![0]);
    assert_eq!(seqs(&log.read(0, 100, 11).unwrap()), vec![0, 1, 2, 3]);
    assert_eq!(seqs(&log.read(1, 100, 0).unwrap()), vec![1]);
    assert_eq!(seqs(&log.read(1, 100, 3).unwrap()), vec![1, 2, 3, 4]);
}

#[test]
fn time_lookups_with_clamping() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), cfg(120));
    assert_eq!(log.append(&[b"a", b"b"], 100).unwrap().system_time, 100); // 0,1
    assert_eq!(log.append(&[b"c"], 200).unwrap().system_time, 200); // 2
                                                                    // Going back in time is clamped to the previous frame's time.
    let back = log.append(&[b"d", b"e"], 150).unwrap(); // 3,4
    assert_eq!(back.system_time, 200);
    assert_eq!(log.append(&[b"f"], 300).unwrap().system_time, 300); // 5
    assert_eq!(log.append(&[b"g"], 300).unwrap().system_time, 300); // 6

    assert_eq!(log.time_of(0), Some(100));
    assert_eq!(log.time_of(1), Some(100));
    assert_eq!(log.time_of(3), Some(200));
    assert_eq!(log.time_of(4), Some(200));
    assert_eq!(log.time_of(6), Some(300));
    assert_eq!(log.time_of(7), None);
    assert_eq!(log.last_time(), Some(300));
    let times: Vec<i64> = read_all(&log, 0).iter().map(|e| e.system_time).collect();
    assert_eq!(times, vec![100, 100, 200, 200, 200, 300, 300]);

    assert_eq!(log.seq_at_or_after_time(i64::MIN), Some(0));
    assert_eq!(log.seq_at_or_after_time(100), Some(0));
    assert_eq!(log.seq_at_or_after_time(101), Some(2));
    assert_eq!(log.seq_at_or_after_time(150), Some(2));
    assert_eq!(log.seq_at_or_after_time(200), Some(2));
    assert_eq!(log.seq_at_or_after_time(201), Some(5));
    assert_eq!(log.seq_at_or_after_time(300), Some(5));
    assert_eq!(log.seq_at_or_after_time(301), None);
    assert!(log.segment_count() > 1);

    // The clamp survives a reopen: the next append still cannot go back.
    drop(log);
    let log = open(tmp.path(), cfg(120));
    assert_eq!(log.append(&[b"h"], 5).unwrap().system_time, 300);
    assert_eq!(log.seq_at_or_after_time(250), Some(5));
}

#[test]
fn retention_removes_only_old_sealed_segments() {
    let tmp = tempfile::tempdir().unwrap();
    // One 1-byte entry per frame (37 bytes), two frames per segment.
    let log = open(tmp.path(), cfg(80));
    for i in 0..10i64 {
        log.append(&[&[i as u8]], i * 10).unwrap();
    }
    // Segments: [0,1] t0,10  [2,3] t20,30  [4,5] t40,50  [6,7] t60,70  [8,9] t80,90 (active).
    assert_eq!(log.segment_count(), 5);
    let size0 = log.size_bytes();
    assert_eq!(
        log.enforce_retention(10).unwrap(),
        0,
        "last time 10 is not < 10"
    );
    assert_eq!(log.enforce_retention(31).unwrap(), 2);
    assert_eq!(log.first_seq(), 4);
    assert_eq!(segment_files(tmp.path()).len(), 3);
    assert_eq!(log.size_bytes(), size0 - 4 * 37);
    match log.read(3, 10, 1000) {
        Err(LogError::OutOfRange {
            requested: 3,
            first: 4,
        }) => {}
        other => panic!("expected OutOfRange, got {other:?}"),
    }
    assert!(matches!(
        log.read(0, 10, 1000),
        Err(LogError::OutOfRange { .. })
    ));
    assert_eq!(seqs(&read_all(&log, 4)), vec![4, 5, 6, 7, 8, 9]);
    assert_eq!(log.time_of(3), None);
    assert_eq!(log.seq_at_or_after_time(0), Some(4));

    // Everything expired: the active segment still stays.
    assert_eq!(log.enforce_retention(i64::MAX).unwrap(), 2);
    assert_eq!(log.first_seq(), 8);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(seqs(&read_all(&log, 8)), vec![8, 9]);

    // Appends continue densely, and a reopen keeps the new start.
    assert_eq!(log.append(&[b"x"], 95).unwrap().first_seq, 10);
    drop(log);
    let log = open(tmp.path(), cfg(80));
    assert_eq!((log.first_seq(), log.next_seq()), (8, 11));
    assert_eq!(seqs(&read_all(&log, 8)), vec![8, 9, 10]);

    // Rolling seals the active segment so that it can expire too; then the log is empty but
    // sequences keep counting.
    assert!(log.roll().unwrap());
    assert!(
        !log.roll().unwrap(),
        "an empty active segment is not rolled"
    );
    assert_eq!(log.enforce_retention(i64::MAX).unwrap(), 2);
    assert_eq!((log.first_seq(), log.next_seq()), (11, 11));
    assert!(log.read(11, 10, 10).unwrap().is_empty());
    assert!(matches!(
        log.read(10, 10, 10),
        Err(LogError::OutOfRange { first: 11, .. })
    ));
    assert_eq!(log.last_time(), None);
    assert_eq!(log.append(&[b"y"], 1).unwrap().first_seq, 11);
    drop(log);
    let log = open(tmp.path(), cfg(80));
    assert_eq!((log.first_seq(), log.next_seq()), (11, 12));
    assert_eq!(
        log.last_time(),
        Some(95),
        "clamped to the newest time ever written"
    );
}

#[test]
fn watch_sees_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(open(tmp.path(), LogConfig::default()));
    let mut rx = log.watch();
    assert_eq!(*rx.borrow_and_update(), 0);
    log.append(&[b"a", b"b"], 1).unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 2);
    assert!(!rx.has_changed().unwrap());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let writer = log.clone();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        writer.append(&[b"c"], 2).unwrap();
    });
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("no update within 10 s")
            .unwrap();
    });
    assert_eq!(*rx.borrow_and_update(), 3);
    h.join().unwrap();
}

#[test]
fn interval_and_always_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let lazy = LogConfig {
        segment_bytes: 1 << 20,
        fsync: FsyncMode::Interval(Duration::from_secs(3600)),
        ..LogConfig::default()
    };
    let log = open(tmp.path(), lazy);
    for i in 0..5 {
        log.append(&[b"x"], i).unwrap();
    }
    assert_eq!(log.fsync_count(), 0, "interval mode acks before fsync");
    assert_eq!(log.next_seq(), 5, "and makes the entries visible at once");
    assert!(!log.sync_if_due().unwrap());
    log.sync().unwrap();
    assert_eq!(log.fsync_count(), 1);
    log.sync().unwrap();
    assert_eq!(log.fsync_count(), 1, "nothing left to sync");
    drop(log);

    let eager = LogConfig {
        segment_bytes: 1 << 20,
        fsync: FsyncMode::Interval(Duration::ZERO),
        ..LogConfig::default()
    };
    let log = open(tmp.path(), eager);
    log.append(&[b"y"], 9).unwrap();
    assert_eq!(
        log.fsync_count(),
        1,
        "an elapsed interval makes the next append sync"
    );
    log.append(&[b"y"], 9).unwrap();
    assert!(log.sync_if_due().is_ok());
    drop(log);

    let log = open(tmp.path(), LogConfig::default());
    assert_eq!(log.next_seq(), 7);
    for i in 0..3 {
        log.append(&[b"z"], i).unwrap();
    }
    assert_eq!(
        log.fsync_count(),
        3,
        "one fsync per lone append in Always mode"
    );
}

#[test]
fn bad_appends_and_close() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), LogConfig::default());
    assert!(matches!(log.append(&[], 1), Err(LogError::EmptyAppend)));
    let big = vec![0u8; MAX_FRAME_BYTES as usize];
    match log.append(&[&big], 1) {
        Err(LogError::EntryTooLarge { size, max }) => {
            assert_eq!(max, MAX_FRAME_BYTES);
            assert!(size > max);
        }
        other => panic!("expected EntryTooLarge, got {other:?}"),
    }
    assert_eq!(log.next_seq(), 0, "failed appends take no sequence");
    log.append(&[b"ok"], 1).unwrap();
    log.close().unwrap();
    assert!(matches!(log.append(&[b"late"], 2), Err(LogError::Closed)));
    assert!(matches!(log.read(0, 1, 1), Err(LogError::Closed)));
    assert!(matches!(log.enforce_retention(5), Err(LogError::Closed)));
    drop(log);
    let log = open(tmp.path(), LogConfig::default());
    assert_eq!(payloads(&read_all(&log, 0)), vec![b"ok".to_vec()]);
}

#[test]
fn remove_log_deletes_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shard-0");
    let log = ShardLog::open(&dir, cfg(1 << 20)).unwrap();
    log.append(&[b"a"], 1).unwrap();
    drop(log);
    remove_log(&dir).unwrap();
    assert!(!dir.exists());
    remove_log(&dir).unwrap();
    let log = open(&dir, cfg(1 << 20));
    assert_eq!(log.next_seq(), 0);
}

#[test]
fn shard_log_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ShardLog>();
}
