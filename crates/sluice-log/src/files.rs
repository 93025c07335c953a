//! [`FileCache`]: a bounded, process-wide set of open segment files shared by all logs.
//!
//! # What it holds
//!
//! | key                          | value                                                     |
//! |------------------------------|-----------------------------------------------------------|
//! | (log id, segment base seq)   | `Arc<File>`: read-write for the segment that was active    |
//! |                              | when it was opened, read-only for a sealed one             |
//!
//! The log id is unique per [`ShardLog`](crate::ShardLog) opened in this process, so two opens
//! of the same directory never share a handle.
//!
//! # Invariants
//!
//! * At most [`capacity`](FileCache::capacity) handles are held by the cache; opening one more
//!   closes the least recently used one (least recently *handed out*, not least recently opened).
//! * Handles are handed out as `Arc<File>` under the cache lock, so eviction only drops the
//!   cache's reference: an in-flight `pwrite`, `pread` or `fsync` keeps its descriptor open until
//!   it finishes, and the descriptor closes when the last user drops it.
//! * Durability does not depend on the cache: in [`FsyncMode::Always`](crate::FsyncMode::Always)
//!   a log keeps its own reference to the handle it last wrote through until a sync covered that
//!   write, and fsyncs that very handle, so a frame written through a handle that was evicted
//!   since is still fsync'd before it is acknowledged. Such appends take a *write slot* first
//!   (before any lock of the log) and hold it until durable; at most half the capacity of slots
//!   exist, so pinned handles stay bounded too. (In the relaxed modes nothing is pinned: a later
//!   sync may go through a reopened handle, and the kernel writes back the file's dirty pages
//!   whichever descriptor asks.)
//! * The process therefore holds at most `capacity` cached descriptors, plus `capacity / 2`
//!   pinned by appends in flight, plus those of reads under way (one per segment a read spans).
//! * A segment deleted by retention, and every segment of a closed or dropped log, is removed from
//!   the cache at once, so a deleted file's space is not held by a cached descriptor.
//! * A miss opens the file outside the cache lock; if another thread cached the same segment
//!   meanwhile, its handle wins and the new one is closed.
//!
//! # In memory
//!
//! One hash-map entry (about 64 bytes) per cached handle, plus the kernel's per-descriptor state.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use hashlink::LruCache;
use parking_lot::{Condvar, Mutex};

/// Capacity of [`FileCache::global`] until [`FileCache::set_capacity`] changes it.
pub const DEFAULT_MAX_OPEN_FILES: usize = 1024;

/// Cache key: (log id, segment base sequence).
pub(crate) type FileKey = (u64, u64);

/// A bounded LRU of open segment files, shared by every log that uses it. See the module docs.
pub struct FileCache {
    lru: Mutex<LruCache<FileKey, Arc<File>>>,
    opens: AtomicU64,
    /// Appends in flight (each may pin one handle until its sync), bounded by half the capacity.
    writes: Mutex<usize>,
    write_done: Condvar,
}

/// Permission for one append to pin a handle until its sync; released on drop.
pub(crate) struct WriteSlot<'a>(&'a FileCache);

impl Drop for WriteSlot<'_> {
    fn drop(&mut self) {
        *self.0.writes.lock() -= 1;
        self.0.write_done.notify_one();
    }
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lru = self.lru.lock();
        f.debug_struct("FileCache")
            .field("capacity", &lru.capacity())
            .field("open", &lru.len())
            .finish()
    }
}

static GLOBAL: OnceLock<FileCache> = OnceLock::new();
static NEXT_LOG_ID: AtomicU64 = AtomicU64::new(1);

/// A new process-unique log id.
pub(crate) fn next_log_id() -> u64 {
    NEXT_LOG_ID.fetch_add(1, Ordering::Relaxed)
}

impl FileCache {
    /// A cache holding at most `capacity` (at least 1) open files.
    pub fn new(capacity: usize) -> FileCache {
        FileCache {
            lru: Mutex::new(LruCache::new(capacity.max(1))),
            opens: AtomicU64::new(0),
            writes: Mutex::new(0),
            write_done: Condvar::new(),
        }
    }

    /// A new cache that lives as long as the process (for [`LogConfig::files`](crate::LogConfig)).
    pub fn leak(capacity: usize) -> &'static FileCache {
        Box::leak(Box::new(FileCache::new(capacity)))
    }

    /// The process-wide cache that [`LogConfig::default`](crate::LogConfig) uses, holding
    /// [`DEFAULT_MAX_OPEN_FILES`] files until resized.
    pub fn global() -> &'static FileCache {
        GLOBAL.get_or_init(|| FileCache::new(DEFAULT_MAX_OPEN_FILES))
    }

    /// Most files held open by the cache.
    pub fn capacity(&self) -> usize {
        self.lru.lock().capacity()
    }

    /// Changes the capacity (at least 1), closing least recently used files beyond it.
    pub fn set_capacity(&self, capacity: usize) {
        let evicted: Vec<Arc<File>> = {
            let mut lru = self.lru.lock();
            let capacity = capacity.max(1);
            let mut out = Vec::new();
            while lru.len() > capacity {
                out.extend(lru.remove_lru().map(|(_, f)| f));
            }
            lru.set_capacity(capacity);
            out
        };
        drop(evicted);
    }

    /// Files currently held by the cache.
    pub fn len(&self) -> usize {
        self.lru.lock().len()
    }

    /// Whether the cache holds no file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of files opened through the cache so far (misses).
    pub fn open_count(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    /// Waits until fewer than half the capacity (at least one) of durable appends are in flight,
    /// and takes a slot. Taken before any lock of the log, held until the append is durable.
    pub(crate) fn write_slot(&self) -> WriteSlot<'_> {
        let max = (self.capacity() / 2).max(1);
        let mut writes = self.writes.lock();
        while *writes >= max {
            self.write_done.wait(&mut writes);
        }
        *writes += 1;
        WriteSlot(self)
    }

    /// The cached handle of `key`, opening the file at `path()` (read-write if `write`) on a
    /// miss. The path is built only then: a hit, what every read of a hot shard is, costs no
    /// allocation.
    pub(crate) fn get(
        &self,
        key: FileKey,
        path: impl FnOnce() -> PathBuf,
        write: bool,
    ) -> io::Result<Arc<File>> {
        if let Some(f) = self.lru.lock().get(&key) {
            return Ok(f.clone());
        }
        let file = Arc::new(OpenOptions::new().read(true).write(write).open(path())?);
        self.opens.fetch_add(1, Ordering::Relaxed);
        Ok(self.insert(key, file))
    }

    /// Caches `file` under `key` unless a handle is cached there already; returns the cached one.
    pub(crate) fn insert(&self, key: FileKey, file: Arc<File>) -> Arc<File> {
        let mut lru = self.lru.lock();
        if let Some(existing) = lru.get(&key) {
            return existing.clone();
        }
        // `insert` evicts the least recently used entry beyond capacity; its Arc drops here.
        lru.insert(key, file.clone());
        file
    }

    /// Forgets the handle of one segment (deleted by retention).
    pub(crate) fn remove(&self, key: FileKey) {
        let removed = self.lru.lock().remove(&key);
        drop(removed);
    }

    /// Forgets every handle of one log (closed or dropped).
    pub(crate) fn remove_log(&self, log_id: u64) {
        let removed: Vec<Arc<File>> = {
            let mut lru = self.lru.lock();
            let keys: Vec<FileKey> = lru
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| k.0 == log_id)
                .collect();
            keys.iter().filter_map(|k| lru.remove(k)).collect()
        };
        drop(removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_and_keeps_handed_out_handles_usable() {
        use std::os::unix::fs::FileExt;
        let tmp = tempfile::tempdir().unwrap();
        let cache = FileCache::new(2);
        let paths: Vec<_> = (0..3)
            .map(|i| {
                let p = tmp.path().join(format!("{i}"));
                std::fs::write(&p, [i as u8; 4]).unwrap();
                p
            })
            .collect();
        let a = cache.get((1, 0), || paths[0].clone(), false).unwrap();
        cache.get((1, 1), || paths[1].clone(), false).unwrap();
        // Touch 0 so that 1 is the least recently used.
        cache.get((1, 0), || paths[0].clone(), false).unwrap();
        cache.get((1, 2), || paths[2].clone(), false).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.open_count(), 3);
        cache.get((1, 0), || paths[0].clone(), false).unwrap();
        assert_eq!(cache.open_count(), 3, "0 stayed cached");
        cache.get((1, 1), || paths[1].clone(), false).unwrap();
        assert_eq!(cache.open_count(), 4, "1 was evicted and reopened");
        // 0 was evicted by now (2 was used after it); the handle handed out still reads.
        cache.get((1, 2), || paths[2].clone(), false).unwrap();
        let mut buf = [0u8; 4];
        a.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0; 4]);
        cache.remove_log(1);
        assert!(cache.is_empty());
        cache.set_capacity(1);
        assert_eq!(cache.capacity(), 1);
    }
}
