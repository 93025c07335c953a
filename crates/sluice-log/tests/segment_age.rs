//! Rolling the active segment by age, so that retention (which deletes whole sealed segments)
//! removes the old records of a slow shard. Times are passed explicitly: the append's system
//! time and retention's cutoff are the log's clock seam.

use std::time::Duration;

use sluice_log::{FsyncMode, LogConfig, LogError, ShardLog};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn config(max_age: Option<Duration>) -> LogConfig {
    LogConfig {
        fsync: FsyncMode::Never,
        segment_max_age: max_age,
        ..LogConfig::default()
    }
}

/// A slow shard: one record, another half an hour later, a third two hours later. With a
/// lifecycle of one day, retention runs 1 day and 90 minutes after the first record.
fn slow_shard(log: &ShardLog, t0: i64) -> i64 {
    log.append(&[b"first"], t0).unwrap();
    log.append(&[b"half an hour later"], t0 + 30 * MIN).unwrap();
    log.append(&[b"two hours later"], t0 + 2 * HOUR).unwrap();
    let now = t0 + DAY + 90 * MIN;
    now - DAY
}

#[test]
fn an_old_active_segment_rolls_and_its_records_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let log = ShardLog::open(tmp.path(), config(Some(Duration::from_secs(3600)))).unwrap();
    let t0 = 1_700_000_000_000;
    let cutoff = slow_shard(&log, t0);
    assert_eq!(log.segment_count(), 2, "the third append rolled by age");
    assert_eq!(log.enforce_retention(cutoff).unwrap(), 1);
    assert!(matches!(
        log.read(0, 10, usize::MAX),
        Err(LogError::OutOfRange {
            requested: 0,
            first: 2
        })
    ));
    let left = log.read(log.first_seq(), 10, usize::MAX).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(&left[0].payload[..], b"two hours later");
    assert_eq!(left[0].system_time, t0 + 2 * HOUR);

    // The age is measured from the segment's first frame, also after a restart.
    drop(log);
    let log = ShardLog::open(tmp.path(), config(Some(Duration::from_secs(3600)))).unwrap();
    log.append(&[b"later"], t0 + 2 * HOUR + 59 * MIN).unwrap();
    assert_eq!(log.segment_count(), 1, "59 minutes: same segment");
    log.append(&[b"later still"], t0 + 3 * HOUR).unwrap();
    assert_eq!(log.segment_count(), 2, "60 minutes: a new segment");
}

#[test]
fn without_an_age_limit_the_slow_shard_keeps_its_old_records() {
    // Today's behaviour without the age limit (what the issue observed): nothing expires.
    let tmp = tempfile::tempdir().unwrap();
    let log = ShardLog::open(tmp.path(), config(None)).unwrap();
    let cutoff = slow_shard(&log, 1_700_000_000_000);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.enforce_retention(cutoff).unwrap(), 0);
    assert_eq!(log.read(0, 10, usize::MAX).unwrap().len(), 3);
}

#[test]
fn the_default_age_is_an_hour() {
    assert_eq!(
        LogConfig::default().segment_max_age,
        Some(Duration::from_secs(3600))
    );
}
