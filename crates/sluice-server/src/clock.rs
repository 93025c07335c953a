//! [`Clock`]: where record system times and retention take "now" from.
//!
//! In production it is the system clock. Tests move it forward (by days: the shortest topic
//! lifecycle is a day) to check retention without waiting; every copy of a clock shares the
//! same offset, so a test can keep one copy and advance the server's.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The system clock plus an adjustable offset (zero unless a test advances it).
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        crate::service::catalog::now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every copy of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}
