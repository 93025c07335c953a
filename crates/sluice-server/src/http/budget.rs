//! The memory budget of in-flight request bodies (`max_inflight_bytes`).
//!
//! A request is charged, before its body is read, for the size it declares, and once decoded
//! sizes are known, for its body and an upper bound of what decoding builds from it. A charge
//! that does not fit waits (backpressure) until others finish; a charge larger than the whole
//! budget is cut down to the whole budget, so that request runs alone. Growing a charge never
//! waits while holding the old one (it gives it back and waits for the whole new amount), so
//! waiting requests cannot deadlock each other.
//!
//! After a large request, and when the budget becomes entirely free again (then 2 s and 12 s
//! later), glibc is asked to hand freed memory back to the system (`malloc_trim`, one at a time): decoding runs on the
//! blocking pool's threads, each with its own malloc arena, and without trimming every arena
//! keeps the high-water mark of the largest request it ever decoded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits are KiB, so that a charge fits the semaphore's `u32`.
const UNIT: usize = 1024;
/// Requests charged at least this much make the next idle moment trim the heap.
const TRIM_AFTER: usize = 1 << 20;
/// When, after the budget went idle, the heap is trimmed again (each delay after the last).
const LATE_TRIMS: [std::time::Duration; 2] = [
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(10),
];
/// Requests charged at least this much trim the heap when they end.
const TRIM_AT_END: usize = 32 << 20;

/// Bytes that in-flight requests may hold at once.
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    total_units: u32,
    trim_pending: AtomicBool,
    trimmer: Arc<Trimmer>,
}

/// At most one `malloc_trim` at a time; a request for one during a trim makes it run again.
#[derive(Default)]
struct Trimmer {
    running: AtomicBool,
    requested: AtomicBool,
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
        let total_units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .max(1);
        Arc::new(MemoryBudget {
            permits: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
            trim_pending: AtomicBool::new(false),
            trimmer: Arc::default(),
        })
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
        let idle = b.permits.available_permits() == b.total_units as usize
            && b.trim_pending.swap(false, Ordering::Relaxed);
        if held >= TRIM_AT_END || idle {
            b.trimmer.request();
        }
        if idle {
            // What the request's connection still held (buffers, the response) is freed just
            // after it, and the blocking pool's idle threads (with their malloc caches) exit
            // 10 s later: trim again then, if the budget is still idle.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let budget = b.clone();
                handle.spawn(async move {
                    for delay in LATE_TRIMS {
                        tokio::time::sleep(delay).await;
                        if budget.permits.available_permits() != budget.total_units as usize {
                            return;
                        }
                        budget.trimmer.request();
                    }
                });
            }
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
