//! Group commit: appenders wait until one shared `fdatasync` covers their frame.
//!
//! State is a watermark `synced` (one past the last sequence known durable) and a `syncing`
//! flag. A waiter whose frame is not yet covered either waits on the condition variable (if a
//! sync is running) or becomes the syncer: it notes the writer's current end (`next_seq`) and
//! the handle the last write went through (pinned by the writer, see `files.rs`) under the append
//! lock, runs `sync_data` on it without any lock, then raises `synced` to that end and wakes
//! everybody. Frames appended while a sync runs are covered by the next
//! one, so N concurrent appenders cost about two fsyncs instead of N.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::shard::ShardLog;
use crate::{FsyncMode, LogError};

pub(crate) struct GroupCommit {
    state: Mutex<SyncState>,
    cv: Condvar,
    /// Number of segment `sync_data` calls so far (for tests and metrics).
    fsyncs: AtomicU64,
}

struct SyncState {
    /// One past the last sequence known to be durable.
    synced: u64,
    /// Whether some thread is running a sync right now.
    syncing: bool,
    /// When `synced` last advanced (drives [`FsyncMode::Interval`]).
    last_sync: Instant,
}

/// Told about every group-commit fsync that made entries durable (the server's metrics; see
/// [`set_commit_observer`]). Called by the syncing thread, once per fsync, never per entry.
pub trait CommitObserver: Send + Sync + 'static {
    /// One fsync took `duration` and made `entries` more entries durable.
    fn fsync_done(&self, duration: Duration, entries: u64);
}

static OBSERVER: std::sync::RwLock<Option<Arc<dyn CommitObserver>>> = std::sync::RwLock::new(None);

/// Installs (or with `None` removes) the process-wide [`CommitObserver`] of every shard log.
pub fn set_commit_observer(observer: Option<Arc<dyn CommitObserver>>) {
    *OBSERVER.write().unwrap_or_else(|e| e.into_inner()) = observer;
}

fn observe_fsync(duration: Duration, entries: u64) {
    if let Some(o) = OBSERVER.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        o.fsync_done(duration, entries);
    }
}

impl GroupCommit {
    pub fn new(synced: u64) -> GroupCommit {
        GroupCommit {
            state: Mutex::new(SyncState {
                synced,
                syncing: false,
                last_sync: Instant::now(),
            }),
            cv: Condvar::new(),
            fsyncs: AtomicU64::new(0),
        }
    }

    /// Sets the durable watermark (after recovery: everything on disk is durable).
    pub fn reset(&self, synced: u64) {
        let mut st = self.state.lock();
        st.synced = synced;
        st.last_sync = Instant::now();
    }

    /// Whether at least `interval` has passed since the last sync.
    pub fn sync_due(&self, interval: Duration) -> bool {
        self.state.lock().last_sync.elapsed() >= interval
    }
}

impl ShardLog {
    /// Blocks until every sequence below `target` is durable, running the sync itself if no
    /// other thread is.
    pub(crate) fn wait_durable(&self, target: u64) -> Result<(), LogError> {
        let mut st = self.commit.state.lock();
        loop {
            if st.synced >= target {
                return Ok(());
            }
            if let Some(reason) = self.poison.get() {
                return Err(LogError::Poisoned(reason.clone()));
            }
            if st.syncing {
                self.commit.cv.wait(&mut st);
                continue;
            }
            st.syncing = true;
            drop(st);
            let (file, upto) = {
                let w = self.writer.lock();
                (self.active_file(&w), w.next_seq)
            };
            let started = Instant::now();
            let res = match file {
                Ok(file) => self.fsync(&file).inspect(|()| {
                    // The pinned handle may go back to the cache's care once nothing written
                    // through it is unsynced.
                    let mut w = self.writer.lock();
                    if w.next_seq == upto
                        && w.unsynced.as_ref().is_some_and(|f| Arc::ptr_eq(f, &file))
                    {
                        w.unsynced = None;
                    }
                }),
                Err(e) => Err(LogError::Io(e)),
            };
            let took = started.elapsed();
            st = self.commit.state.lock();
            st.syncing = false;
            let mut covered = 0;
            if res.is_ok() && upto > st.synced {
                covered = upto - st.synced;
                st.synced = upto;
                st.last_sync = Instant::now();
                self.publish(upto);
            }
            self.commit.cv.notify_all();
            if covered > 0 {
                drop(st);
                observe_fsync(took, covered);
                st = self.commit.state.lock();
            }
            res?;
        }
    }

    /// Records that everything below `upto` is durable (used when a roll synced a segment).
    pub(crate) fn mark_synced(&self, upto: u64) {
        let mut st = self.commit.state.lock();
        if upto > st.synced {
            st.synced = upto;
            st.last_sync = Instant::now();
            self.publish(upto);
            self.commit.cv.notify_all();
        }
    }

    /// Makes everything below `upto` visible to readers and watchers.
    pub(crate) fn publish(&self, upto: u64) {
        self.visible.fetch_max(upto, Ordering::AcqRel);
        self.watch_tx.send_if_modified(|v| {
            let newer = upto > *v;
            if newer {
                *v = upto;
            }
            newer
        });
    }

    /// `sync_data` on a segment file, counted; a failure poisons the log, since after a failed
    /// fsync the kernel may have dropped the dirty pages and a retry would falsely succeed.
    pub(crate) fn fsync(&self, f: &File) -> Result<(), LogError> {
        self.commit.fsyncs.fetch_add(1, Ordering::Relaxed);
        f.sync_data().map_err(|e| {
            self.set_poison(format!("fsync failed: {e}"));
            LogError::Io(e)
        })
    }

    /// Number of segment fsyncs performed since the log was opened.
    #[doc(hidden)]
    pub fn fsync_count(&self) -> u64 {
        self.commit.fsyncs.load(Ordering::Relaxed)
    }

    /// Flushes everything appended so far to disk. A no-op in [`FsyncMode::Never`].
    pub fn sync(&self) -> Result<(), LogError> {
        // A log never recovered has nothing unsynced.
        if self.cfg.fsync == FsyncMode::Never || !self.is_recovered() {
            return Ok(());
        }
        let target = self.writer.lock().next_seq;
        self.wait_durable(target)
    }

    /// In [`FsyncMode::Interval`], syncs if the interval has passed since the last sync and
    /// something is unsynced; returns whether it synced. Meant for a periodic timer, so that an
    /// idle log does not keep acknowledged data unsynced for long.
    pub fn sync_if_due(&self) -> Result<bool, LogError> {
        let FsyncMode::Interval(interval) = self.cfg.fsync else {
            return Ok(false);
        };
        if !self.is_recovered() {
            return Ok(false);
        }
        let target = self.writer.lock().next_seq;
        {
            let st = self.commit.state.lock();
            if st.synced >= target || st.last_sync.elapsed() < interval {
                return Ok(false);
            }
        }
        self.wait_durable(target)?;
        Ok(true)
    }
}
