//! Zero-ahead: the active segment's file is kept written with zeros, and synced, a little past
//! its data, so that an append overwrites blocks that are already allocated and initialised and
//! the group commit's `fdatasync` has data to write but no file-system metadata (file size,
//! block allocation) to commit. A growing file's every data sync also commits the file system's
//! journal, which on this project's disks doubles a sync's median and triples its p99
//! (`bench/fsync/fsync_probe.py`). PostgreSQL zero-fills its WAL segments for the same reason.
//!
//! # How
//!
//! Only in [`FsyncMode::Always`](crate::FsyncMode::Always) and with
//! [`LogConfig::zero_ahead_bytes`](crate::LogConfig::zero_ahead_bytes) above zero. After each
//! append, if fewer than half of `zero_ahead_bytes` of zeros are left past the data, the log
//! queues a job for the process-wide zeroing thread (`sluice-zeroer`): write zeros from the
//! file's end up to `zero_ahead_bytes` past the data (never past `segment_bytes`, where the
//! segment seals), through a descriptor of its own, then `fdatasync` it. Nothing of this runs
//! on the append path: an append that outruns the zeros simply grows the file, as without it.
//!
//! # Invariants
//!
//! * A job writes only at or past `zeroed_end`, the file's length as the log last knew it, and
//!   an append never writes into a job's range: an append that would end past `zeroed_end`
//!   first cancels the log's job (at most one exists), waiting at most for the piece of zeros
//!   being written (256 KiB): a job checks, under the state's lock, that it was not cancelled
//!   before each piece, and a cancelled job stops without its sync.
//! * Rolling, closing and dropping a log cancel its job the same way, so no job touches a sealed
//!   segment, or a file that another instance of the log has opened since.
//! * Zeros past the data are never data: a roll cuts the sealed segment back to its data before
//!   syncing it (sealed segments hold frames only), a clean close does so before writing the
//!   active index (which records the length), and recovery cuts the active segment back to its
//!   last valid frame, quietly when everything after it is zeros.
//! * A failed job (a full disk, say) stops zeroing for that segment only. It syncs through its
//!   own descriptor; Linux reports a write-back error to every open description of the file, so
//!   an error seen by a job is still seen by the log's next sync, which poisons the log as
//!   usual: nothing is acknowledged on the strength of a sync that failed elsewhere.
//!
//! Lock order: the log's writer lock, then the state here. The zeroing thread takes only the
//! latter, so it never waits for an appender.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};

/// Zeros are written in pieces of this size (each takes the file's write lock briefly).
const PIECE: usize = 256 << 10;
static ZEROS: [u8; PIECE] = [0; PIECE];

/// One log's zero-ahead state, shared with its queued or running job.
pub(crate) struct ZeroAhead {
    state: Mutex<State>,
    idle: Condvar,
}

#[derive(Debug)]
struct State {
    /// Bumped to cancel the current job (an append about to write past `zeroed_end`, a roll, a
    /// close, a drop): a job of an older generation writes nothing more.
    generation: u64,
    /// The active segment's length as far as the log knows: everything between the end of its
    /// data and this is zeros.
    zeroed_end: u64,
    job: Job,
    /// Whether the running job is writing a piece of zeros right now.
    piece: bool,
    /// A job failed on the active segment: no more for it.
    failed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    None,
    Queued,
    Running,
}

/// A job for the zeroing thread: zeros over `from..to` of the file at `path`, then a sync.
struct Task {
    owner: Arc<ZeroAhead>,
    generation: u64,
    path: PathBuf,
    from: u64,
    to: u64,
}

impl ZeroAhead {
    pub(crate) fn new() -> Arc<ZeroAhead> {
        Arc::new(ZeroAhead {
            state: Mutex::new(State {
                generation: 0,
                zeroed_end: 0,
                job: Job::None,
                piece: false,
                failed: false,
            }),
            idle: Condvar::new(),
        })
    }

    /// A new active segment of `len` bytes, none of them zeros past its data. Call after
    /// [`quiesce`](Self::quiesce) (or before any job exists).
    pub(crate) fn reset(&self, len: u64) {
        let mut st = self.state.lock();
        st.zeroed_end = len;
        st.failed = false;
    }

    /// Cancels the job, if any, and waits for the piece of zeros it may be writing; returns the
    /// file's length as known (at least the data's). Called under the writer lock, so no new
    /// job is queued until the next append.
    pub(crate) fn quiesce(&self) -> u64 {
        let mut st = self.state.lock();
        Self::cancel(&mut st, &self.idle);
        st.zeroed_end
    }

    /// Before an append writes up to `end`: makes sure no job writes there.
    pub(crate) fn before_write(&self, end: u64) {
        let mut st = self.state.lock();
        if end > st.zeroed_end {
            Self::cancel(&mut st, &self.idle);
        }
    }

    fn cancel(st: &mut parking_lot::MutexGuard<'_, State>, idle: &Condvar) {
        st.generation += 1;
        if st.job == Job::Queued {
            st.job = Job::None;
        }
        while st.piece {
            idle.wait(st);
        }
    }

    /// After an append wrote up to `end` (or a write failed and the file was cut back to it,
    /// with `cut`): records the new length and queues a job for `path` if the zeros past the
    /// data run short. `ahead` is the configured amount, `limit` the size at which the segment
    /// seals; `ahead == 0` queues nothing.
    pub(crate) fn after_write(
        self: &Arc<Self>,
        end: u64,
        ahead: u64,
        limit: u64,
        path: impl FnOnce() -> PathBuf,
    ) {
        let task = {
            let mut st = self.state.lock();
            st.zeroed_end = st.zeroed_end.max(end);
            let target = end.saturating_add(ahead).min(limit);
            let short = st.zeroed_end - end < ahead / 2;
            if ahead == 0 || st.failed || st.job != Job::None || !short || target <= st.zeroed_end {
                return;
            }
            st.job = Job::Queued;
            Task {
                owner: self.clone(),
                generation: st.generation,
                path: path(),
                from: st.zeroed_end,
                to: target,
            }
        };
        submit(task);
    }

    /// After a failed write was cut back to `len` (the caller quiesced first).
    pub(crate) fn cut_to(&self, len: u64) {
        self.state.lock().zeroed_end = len;
    }

    /// Waits until no job of this log is queued or running (for tests).
    pub(crate) fn wait_idle(&self) {
        let mut st = self.state.lock();
        while st.job != Job::None {
            self.idle.wait(&mut st);
        }
    }

    /// Bytes of zeros known to be past `data_end` (for tests).
    pub(crate) fn zeros_past(&self, data_end: u64) -> u64 {
        self.state.lock().zeroed_end.saturating_sub(data_end)
    }
}

impl Task {
    fn run(self) {
        {
            let mut st = self.owner.state.lock();
            if st.generation != self.generation || st.job != Job::Queued {
                return;
            }
            st.job = Job::Running;
        }
        let result = self.write_zeros();
        let mut st = self.owner.state.lock();
        st.job = Job::None;
        if let Err(e) = result {
            if st.generation == self.generation {
                st.failed = true;
            }
            if e.kind() == io::ErrorKind::NotFound {
                tracing::debug!(segment = %self.path.display(), "segment gone before zeroing");
            } else {
                tracing::warn!(segment = %self.path.display(), error = %e, "cannot zero ahead of the active segment; appends grow it instead");
            }
        }
        self.owner.idle.notify_all();
    }

    /// Zeros over `from..to` of the file (opened for this job only), piece by piece while the
    /// job is not cancelled, then `fdatasync` unless it was.
    fn write_zeros(&self) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(&self.path)?;
        let mut at = self.from;
        loop {
            let n = {
                let mut st = self.owner.state.lock();
                if st.generation != self.generation {
                    return Ok(());
                }
                if at >= self.to {
                    break;
                }
                st.piece = true;
                (self.to - at).min(PIECE as u64)
            };
            let res = file.write_all_at(&ZEROS[..n as usize], at);
            {
                let mut st = self.owner.state.lock();
                st.piece = false;
                // Even a failed write may have extended the file: count the piece as written.
                // Only the active segment can be written here (cancelling waits for the piece).
                st.zeroed_end = st.zeroed_end.max(at + n);
            }
            self.owner.idle.notify_all();
            res?;
            at += n;
        }
        file.sync_data()
    }
}

/// Hands a job to the zeroing thread, starting it on first use.
fn submit(task: Task) {
    static QUEUE: OnceLock<Sender<Task>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name("sluice-zeroer".into())
            .spawn(move || {
                for task in rx {
                    task.run();
                }
            })
            .expect("spawn the zeroing thread");
        tx
    });
    if let Err(mpsc::SendError(task)) = queue.send(task) {
        // The thread is gone (it cannot panic short of a bug): no zeroing, appends grow files.
        let mut st = task.owner.state.lock();
        st.job = Job::None;
        st.failed = true;
        task.owner.idle.notify_all();
    }
}
