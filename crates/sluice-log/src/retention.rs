//! Retention (deleting old sealed segments) and removal of a whole log.

use std::io;
use std::path::Path;

use crate::segment::{segment_path, sync_dir};
use crate::shard::{parent_of, ShardLog};
use crate::{FsyncMode, LogError};

impl ShardLog {
    /// Deletes whole sealed segments (never the active one), oldest first, whose last system
    /// time is `< cutoff_ms`. Returns the number of segments removed. Afterwards
    /// [`first_seq`](Self::first_seq) is the base of the oldest remaining segment and reads below
    /// it fail with [`LogError::OutOfRange`].
    ///
    /// An active segment never expires on its own: appends seal it once it is
    /// [`LogConfig::segment_max_age`](crate::LogConfig::segment_max_age) old, and an idle
    /// shard's last segment needs a [`roll`](Self::roll) first if it should go too.
    pub fn enforce_retention(&self, cutoff_ms: i64) -> Result<usize, LogError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        self.ready()?;
        let removed: Vec<u64> = {
            let mut ix = self.index.write();
            let sealed = ix.segments.len().saturating_sub(1);
            // Times are non-decreasing, so expired segments form a prefix.
            let n = ix.segments[..sealed]
                .iter()
                .take_while(|s| !matches!(s.last_time(), Some(t) if t >= cutoff_ms))
                .count();
            let gone: Vec<_> = ix.segments.drain(..n).collect();
            ix.total_bytes -= gone.iter().map(|s| s.size).sum::<u64>();
            gone.iter().map(|s| s.base_seq).collect()
        };
        if removed.is_empty() {
            return Ok(0);
        }
        // Readers take segment handles under the index lock, so none can start on these now;
        // reads already under way keep their handles.
        for &base in &removed {
            self.cfg.files.remove(self.file_key(base));
            match std::fs::remove_file(segment_path(&self.dir, base)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            crate::persist::remove_file_if_any(&crate::persist::index_path(&self.dir, base))?;
        }
        if self.cfg.fsync != FsyncMode::Never {
            sync_dir(&self.dir)?;
        }
        tracing::debug!(
            dir = %self.dir.display(),
            segments = removed.len(),
            first_seq = self.first_seq(),
            "retention removed segments"
        );
        Ok(removed.len())
    }
}

/// Deletes a shard log's directory and everything in it (when its topic or shard is deleted).
/// A missing directory is not an error. Close (and drop) the [`ShardLog`] first.
pub fn remove_log(dir: &Path) -> Result<(), LogError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    sync_dir(parent_of(dir))?;
    Ok(())
}
