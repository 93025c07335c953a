//! The process-wide `CommitObserver` hears each group-commit fsync with the entries it made
//! durable (issue 13: the server's fsync latency and group-size metrics).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_log::{set_commit_observer, CommitObserver, FsyncMode, LogConfig, ShardLog};

#[derive(Default)]
struct Heard(Mutex<Vec<(Duration, u64)>>);

impl CommitObserver for Heard {
    fn fsync_done(&self, duration: Duration, entries: u64) {
        self.0.lock().unwrap().push((duration, entries));
    }
}

#[test]
fn every_fsync_is_observed_with_the_entries_it_covered() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncMode::Always,
        ..LogConfig::default()
    };
    let log = ShardLog::open(dir.path(), cfg).unwrap();
    let heard = Arc::new(Heard::default());
    set_commit_observer(Some(heard.clone()));
    log.append(&[b"a", b"b", b"c"], 1).unwrap();
    log.append(&[b"d"], 2).unwrap();
    set_commit_observer(None);
    log.append(&[b"e"], 3).unwrap();
    let seen = heard.0.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|s| s.1).collect::<Vec<_>>(),
        vec![3, 1],
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| s.0 > Duration::ZERO));
}
