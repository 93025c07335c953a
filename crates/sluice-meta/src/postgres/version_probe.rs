//! The catalog version, read for many requests at once (cluster mode).
//!
//! Every request a cluster node serves first reads `catalog_version` (read-your-writes through a
//! balancer). One query per request would take a pooled connection per request and, under
//! load, queue every request behind the pool. The probe runs at most one such query at a time
//! per node; a caller waiting meanwhile takes the answer of the next query that *started after
//! it arrived*, which saw every change committed before the caller's request came in. It never
//! takes an older answer, so a client still reads its own writes.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use sqlx::PgPool;

use crate::store::MetaError;

/// Shares catalog-version queries between concurrent callers (see the module docs).
#[derive(Default)]
pub(crate) struct VersionProbe {
    /// Queries started so far; a query's number is this count right after it started.
    started: AtomicU64,
    /// The last successful answer: the number of its query and the version it read.
    last: Mutex<Option<(u64, i64)>>,
    /// Held while a query runs: one at a time.
    running: tokio::sync::Mutex<()>,
}

impl VersionProbe {
    /// The catalog version as of some moment after this call began.
    pub(crate) async fn read(&self, pool: &PgPool) -> Result<i64, MetaError> {
        let arrived = self.started.load(Ordering::Acquire);
        let _turn = self.running.lock().await;
        if let Some(version) = self.answer_newer_than(arrived) {
            return Ok(version);
        }
        let number = self.started.fetch_add(1, Ordering::AcqRel) + 1;
        let version: i64 = sqlx::query_scalar("SELECT version FROM catalog_version")
            .fetch_one(pool)
            .await?;
        let mut last = self.last.lock();
        if last.is_none_or(|(n, _)| n < number) {
            *last = Some((number, version));
        }
        Ok(version)
    }

    /// The last answer, if its query started after `arrived` queries had started.
    fn answer_newer_than(&self, arrived: u64) -> Option<i64> {
        match *self.last.lock() {
            Some((number, version)) if number > arrived => Some(version),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_answer_from_a_query_started_after_arrival_is_shared() {
        let probe = VersionProbe::default();
        assert_eq!(probe.answer_newer_than(0), None);
        probe.started.store(3, Ordering::Release);
        *probe.last.lock() = Some((3, 42));
        // Arrived when two queries had started: the third began after it, so it saw everything.
        assert_eq!(probe.answer_newer_than(2), Some(42));
        // Arrived when three had started: the third may have begun before its request came in.
        assert_eq!(probe.answer_newer_than(3), None);
    }
}
