//! The memory budget of in-flight request bodies (`max_inflight_bytes`).
//!
//! A request is charged, before its body is read, for the size it declares, and once decoded
//! sizes are known, for its body and an upper bound of what decoding builds from it. A charge
//! that does not fit waits (backpressure) until others finish; a charge larger than the whole
//! budget is cut down to the whole budget, so that request runs alone. Growing a charge never
//! waits while holding the old one (it gives it back and waits for the whole new amount), so
//! waiting requests cannot deadlock each other.
//!
//! Once large requests are over, glibc is asked to hand freed memory back to the system
//! (`malloc_trim`, one at a time): decoding runs on the blocking pool's threads, each with its
//! own malloc arena, and without trimming every arena keeps the high-water mark of the largest
//! request it ever decoded. The trim waits until the budget has stayed entirely free, with no
//! new request, for a quiet period (1 s; again 10 s later), never at every idle moment between
//! requests: a trim walks and locks every arena and gives back pages the next request faults
//! in again, which under steady traffic made puts wait (issue 12, put tail latency). Only a
//! request charged 32 MiB or more trims as soon as it ends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits are KiB, so that a charge fits the semaphore's `u32`.
const UNIT: usize = 1024;
/// Requests charged at least this much make the heap be trimmed once the budget is quiet.
const TRIM_AFTER: usize = 1 << 20;
/// How long the budget stays entirely free, with no new charge, before the heap is trimmed.
const QUIET: Duration = Duration::from_secs(1);
/// The second trim, this long after the first if the budget is still quiet: the blocking
/// pool's idle threads (with their malloc caches) exit 10 s after their last task.
const LATE_TRIM: Duration = Duration::from_secs(10);
/// Requests charged at least this much trim the heap when they end.
const TRIM_AT_END: usize = 32 << 20;

/// Bytes that in-flight requests may hold at once.
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    total_units: u32,
    trim_pending: AtomicBool,
    trimmer: Arc<Trimmer>,
    /// Charges taken so far: the quiet watch sees whether any request came in meanwhile.
    charges: AtomicU64,
    /// Whether a task is waiting for a quiet budget to trim the heap.
    watching: AtomicBool,
    /// [`QUIET`], shorter in tests.
    quiet: Duration,
}

/// At most one `malloc_trim` at a time; a request for one during a trim makes it run again.
#[derive(Default)]
struct Trimmer {
    running: AtomicBool,
    requested: AtomicBool,
    /// Trims run so far.
    done: AtomicU64,
}

impl Trimmer {
    fn request(self: &Arc<Self>) {
        self.requested.store(true, Ordering::Release);
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.running.store(false, Ordering::Release);
            return;
        };
        let me = self.clone();
        handle.spawn_blocking(move || loop {
            while me.requested.swap(false, Ordering::AcqRel) {
                trim_heap();
                me.done.fetch_add(1, Ordering::Relaxed);
            }
            me.running.store(false, Ordering::Release);
            if !me.requested.load(Ordering::Acquire) || me.running.swap(true, Ordering::AcqRel) {
                return;
            }
        });
    }
}

/// One request's share of the budget; given back on drop.
pub struct Charge {
    budget: Arc<MemoryBudget>,
    permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    pub fn new(bytes: usize) -> Arc<MemoryBudget> {
        MemoryBudget::with_quiet(bytes, QUIET)
    }

    fn with_quiet(bytes: usize, quiet: Duration) -> Arc<MemoryBudget> {
        let total_units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .max(1);
        Arc::new(MemoryBudget {
            permits: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
            trim_pending: AtomicBool::new(false),
            trimmer: Arc::default(),
            charges: AtomicU64::new(0),
            watching: AtomicBool::new(false),
            quiet,
        })
    }

    fn is_idle(&self) -> bool {
        self.permits.available_permits() == self.total_units as usize
    }

    /// Trims the heap once the budget has been idle, with no new charge, for `quiet` (and again
    /// [`LATE_TRIM`] later if it still is). One watching task at a time.
    fn trim_when_quiet(self: &Arc<Self>) {
        if self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.watching.store(false, Ordering::Release);
            return;
        };
        let budget = self.clone();
        handle.spawn(async move {
            let mut seen = budget.charges.load(Ordering::Acquire);
            loop {
                tokio::time::sleep(budget.quiet).await;
                let now = budget.charges.load(Ordering::Acquire);
                if now == seen && budget.is_idle() {
                    break;
                }
                seen = now;
            }
            budget.trim_pending.store(false, Ordering::Relaxed);
            budget.trimmer.request();
            tokio::time::sleep(LATE_TRIM).await;
            if budget.charges.load(Ordering::Acquire) == seen && budget.is_idle() {
                budget.trimmer.request();
            }
            budget.watching.store(false, Ordering::Release);
            // A large request that ended during the late wait found this task still watching.
            if budget.is_idle() && budget.trim_pending.load(Ordering::Relaxed) {
                budget.trim_when_quiet();
            }
        });
    }

    /// Heap trims run so far.
    pub fn trims(&self) -> u64 {
        self.trimmer.done.load(Ordering::Relaxed)
    }

    fn units(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_units)
    }

    /// Bytes not charged to any request now.
    pub fn available_bytes(&self) -> usize {
        self.permits.available_permits() * UNIT
    }

    /// Waits until `bytes` fit, then charges them.
    pub async fn charge(self: &Arc<Self>, bytes: usize) -> Charge {
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(self.units(bytes))
            .await
            .expect("the budget's semaphore is never closed");
        self.charges.fetch_add(1, Ordering::AcqRel);
        if bytes >= TRIM_AFTER {
            self.trim_pending.store(true, Ordering::Relaxed);
        }
        Charge {
            budget: self.clone(),
            permit: Some(permit),
        }
    }
}

impl Charge {
    /// Raises this charge to `bytes` in all (a smaller amount changes nothing).
    pub async fn grow_to(&mut self, bytes: usize) {
        let budget = self.budget.clone();
        let want = budget.units(bytes);
        let held = self.permit.as_ref().map_or(0, |p| p.num_permits() as u32);
        if want <= held {
            return;
        }
        if let Ok(more) = budget.permits.clone().try_acquire_many_owned(want - held) {
            if let Some(p) = self.permit.as_mut() {
                p.merge(more);
            }
        } else {
            // Give back what is held before waiting for the whole amount.
            self.permit = None;
            *self = budget.charge(bytes).await;
        }
        if bytes >= TRIM_AFTER {
            budget.trim_pending.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let held = self.permit.take().map_or(0, |p| p.num_permits() * UNIT);
        let b = &self.budget;
        if held >= TRIM_AT_END {
            b.trimmer.request();
        }
        if b.is_idle() && b.trim_pending.load(Ordering::Relaxed) {
            b.trim_when_quiet();
        }
    }
}

/// Returns free heap memory to the system (glibc keeps it otherwise).
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn charges_wait_for_room_and_are_returned() {
        let budget = MemoryBudget::new(100 * UNIT);
        let a = budget.charge(60 * UNIT).await;
        assert_eq!(budget.available_bytes(), 40 * UNIT);
        // A second charge that does not fit waits until the first is returned.
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.charge(50 * UNIT).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(a);
        let b = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting charge proceeds")
            .unwrap();
        assert_eq!(budget.available_bytes(), 50 * UNIT);
        // More than the whole budget is cut to the whole budget.
        drop(b);
        let mut c = budget.charge(UNIT).await;
        c.grow_to(1000 * UNIT).await;
        assert_eq!(budget.available_bytes(), 0);
        drop(c);
        assert_eq!(budget.available_bytes(), 100 * UNIT);
    }

    /// Issue 12 (put tail latency): under steady large requests the budget is idle between
    /// every two of them, and trimming at each such moment made puts wait; the heap is trimmed
    /// only once no request has come for the quiet period.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_heap_is_trimmed_once_quiet_not_between_steady_requests() {
        let quiet = Duration::from_millis(300);
        let budget = MemoryBudget::with_quiet(64 << 20, quiet);
        let started = std::time::Instant::now();
        let mut requests = 0;
        while started.elapsed() < 3 * quiet {
            let mut charge = budget.charge(64 * UNIT).await;
            charge.grow_to(2 * TRIM_AFTER).await;
            drop(charge);
            assert_eq!(budget.available_bytes(), 64 << 20, "idle between requests");
            requests += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(requests >= 20, "only {requests} requests");
        // Give a trim requested by the last request the time to run, still short of `quiet`.
        tokio::time::sleep(quiet / 3).await;
        assert_eq!(
            budget.trims(),
            0,
            "trimmed while large requests kept coming"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while budget.trims() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the heap was never trimmed once the budget was quiet"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(budget.trims(), 1, "one trim for the quiet period");
    }

    #[tokio::test]
    async fn small_requests_never_trim() {
        let budget = MemoryBudget::with_quiet(64 << 20, Duration::from_millis(50));
        for _ in 0..20 {
            drop(budget.charge(TRIM_AFTER / 2).await);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(budget.trims(), 0);
    }

    #[tokio::test]
    async fn growing_gives_back_before_waiting() {
        let budget = MemoryBudget::new(100 * UNIT);
        let mut a = budget.charge(40 * UNIT).await;
        let mut b = budget.charge(40 * UNIT).await;
        // Both grow to 70: had each kept its 40 while waiting for 30 more, neither would ever
        // get them. Giving back first lets one through, then the other.
        let grow_a = tokio::spawn(async move {
            a.grow_to(70 * UNIT).await;
            a
        });
        let grow_b = tokio::spawn(async move {
            b.grow_to(70 * UNIT).await;
            b
        });
        let limit = Duration::from_secs(5);
        let (mut grow_a, mut grow_b) = (grow_a, grow_b);
        let (first, second) = tokio::time::timeout(limit, async move {
            tokio::select! {
                a = &mut grow_a => (a, grow_b),
                b = &mut grow_b => (b, grow_a),
            }
        })
        .await
        .expect("no deadlock");
        drop(first.unwrap());
        let second = tokio::time::timeout(limit, second)
            .await
            .expect("no deadlock")
            .unwrap();
        drop(second);
        assert_eq!(budget.available_bytes(), 100 * UNIT);
    }
}
