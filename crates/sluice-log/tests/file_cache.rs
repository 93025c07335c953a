//! Many logs share one bounded cache of open segment files: the process's descriptors stay
//! bounded, and appends, reads, rolls, retention and reopening keep working across evictions.

use std::path::Path;
use std::sync::{Arc, Mutex};

use sluice_log::{FileCache, FsyncMode, LogConfig, ShardLog};

/// The tests of this file count the process's descriptors: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd must be readable")
        .count()
}

fn config(files: &'static FileCache, fsync: FsyncMode) -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        fsync,
        segment_max_age: None,
        files,
        zero_ahead_bytes: 0,
    }
}

fn payload(log: usize, n: usize) -> Vec<u8> {
    format!("log {log} entry {n} {}", "x".repeat(n % 40)).into_bytes()
}

fn check_all(logs: &[ShardLog], per_log: usize) {
    for (i, log) in logs.iter().enumerate() {
        let got = log.read(0, usize::MAX, usize::MAX).unwrap();
        let want: Vec<Vec<u8>> = (0..per_log).map(|n| payload(i, n)).collect();
        let got: Vec<Vec<u8>> = got.iter().map(|e| e.payload.to_vec()).collect();
        assert_eq!(got, want, "log {i}");
    }
}

#[test]
fn three_hundred_logs_hold_at_most_the_cache_capacity_of_files() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const LOGS: usize = 300;
    const CAPACITY: usize = 16;
    // Slack for descriptors the test harness or a reader opens meanwhile (directory fsyncs).
    const SLACK: usize = 4;
    let files = FileCache::leak(CAPACITY);
    let tmp = tempfile::tempdir().unwrap();
    let dir = |i: usize| tmp.path().join(format!("log{i}"));
    let before = open_fds();
    let mut logs: Vec<ShardLog> = (0..LOGS)
        .map(|i| ShardLog::open(&dir(i), config(files, FsyncMode::Always)).unwrap())
        .collect();
    assert!(
        open_fds() <= before + CAPACITY + SLACK,
        "{} descriptors open after opening {LOGS} logs (cache of {CAPACITY})",
        open_fds() - before
    );
    // Appends in rounds over every log, so that every append finds its handle evicted; small
    // segments make them roll too.
    let mut peak = 0;
    for n in 0..12 {
        for (i, log) in logs.iter().enumerate() {
            log.append(&[&payload(i, n)], n as i64).unwrap();
        }
        peak = peak.max(open_fds());
    }
    assert!(logs.iter().all(|l| l.segment_count() > 1), "logs rolled");
    check_all(&logs, 12);
    peak = peak.max(open_fds());
    assert!(
        peak <= before + CAPACITY + SLACK,
        "peak of {} descriptors over the baseline with a cache of {CAPACITY}",
        peak - before
    );
    assert!(files.len() <= CAPACITY);
    assert!(
        files.open_count() > LOGS as u64,
        "handles were evicted and reopened on demand"
    );
    // Retention deletes sealed segments and their cached handles.
    for log in &logs {
        log.enforce_retention(5).unwrap();
        assert!(log.first_seq() > 0);
    }
    // Everything acknowledged is there after reopening, and closing lets go of every handle.
    let firsts: Vec<u64> = logs.iter().map(|l| l.first_seq()).collect();
    for log in &logs {
        log.close().unwrap();
    }
    logs.clear();
    assert!(files.is_empty(), "closed logs leave nothing in the cache");
    assert!(open_fds() <= before + SLACK);
    let logs: Vec<ShardLog> = (0..LOGS)
        .map(|i| ShardLog::open(&dir(i), config(files, FsyncMode::Always)).unwrap())
        .collect();
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(log.first_seq(), firsts[i]);
        assert_eq!(log.next_seq(), 12);
        let got = log.read(firsts[i], usize::MAX, usize::MAX).unwrap();
        assert_eq!(got.last().unwrap().payload.to_vec(), payload(i, 11));
    }
    assert!(open_fds() <= before + CAPACITY + SLACK);
}

/// Concurrent appenders and readers over more logs than the cache holds, in every fsync mode,
/// against a model (the payloads each log was given, in order).
#[test]
fn concurrent_appends_and_reads_through_a_tiny_cache_match_the_model() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for fsync in [
        FsyncMode::Always,
        FsyncMode::Interval(std::time::Duration::ZERO),
        FsyncMode::Never,
    ] {
        run_model(fsync);
    }
}

fn run_model(fsync: FsyncMode) {
    const LOGS: usize = 24;
    const THREADS: usize = 4;
    const PER_THREAD: usize = 60;
    let files = FileCache::leak(3);
    let tmp = tempfile::tempdir().unwrap();
    let logs: Arc<Vec<ShardLog>> = Arc::new(
        (0..LOGS)
            .map(|i| open_at(&tmp.path().join(format!("l{i}")), config(files, fsync)))
            .collect(),
    );
    // Thread t writes entries "t/k" to log (t * 7 + k * 5) % LOGS: each log gets entries from
    // several threads, and each thread's entries to one log keep their order.
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for k in 0..PER_THREAD {
                    let l = (t * 7 + k * 5) % LOGS;
                    logs[l].append(&[format!("{t}/{k}").as_bytes()], 0).unwrap();
                    // A read of another log in between, through the same cache.
                    let other = &logs[(l + 1) % LOGS];
                    other.read(other.first_seq(), 4, usize::MAX).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for (l, log) in logs.iter().enumerate() {
        let got: Vec<String> = log
            .read(0, usize::MAX, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| String::from_utf8(e.payload.to_vec()).unwrap())
            .collect();
        for t in 0..THREADS {
            let want: Vec<String> = (0..PER_THREAD)
                .filter(|k| (t * 7 + k * 5) % LOGS == l)
                .map(|k| format!("{t}/{k}"))
                .collect();
            let mine: Vec<String> = got
                .iter()
                .filter(|p| p.starts_with(&format!("{t}/")))
                .cloned()
                .collect();
            assert_eq!(mine, want, "{fsync:?}: log {l}, thread {t}");
        }
    }
    let total: usize = logs.iter().map(|l| l.next_seq() as usize).sum();
    assert_eq!(total, THREADS * PER_THREAD, "{fsync:?}");
    assert!(files.len() <= 3);
}

fn open_at(dir: &Path, cfg: LogConfig) -> ShardLog {
    ShardLog::open(dir, cfg).unwrap()
}
