//! [`WriteHealth`]: whether record writes are failing (disk full, I/O errors), for `/health`
//! and for logging a failure episode once instead of once per record.
//!
//! An episode starts with the first failed append after a success (or after start) and ends with
//! the next successful one. Each start logs `writes failing: <reason>` at error level and each
//! end logs `writes recovered`; in between, `/health` reports `degraded` with the first reason.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// Write failure state shared by every put. See the module docs.
#[derive(Debug, Default)]
pub struct WriteHealth {
    /// Fast path for the common case: no episode under way.
    failing: AtomicBool,
    /// The reason of the episode under way.
    reason: Mutex<Option<String>>,
}

impl WriteHealth {
    /// Notes a failed append; starts an episode (and logs it) unless one is under way.
    pub fn failed(&self, reason: &str) {
        let mut current = self.reason.lock();
        if current.is_none() {
            tracing::error!(%reason, "writes failing: {reason}");
            *current = Some(reason.to_string());
            self.failing.store(true, Ordering::Release);
        }
    }

    /// Notes a successful append; ends the episode under way (and logs it), if any.
    pub fn succeeded(&self) {
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        let mut current = self.reason.lock();
        if current.take().is_some() {
            tracing::info!("writes recovered");
        }
        self.failing.store(false, Ordering::Release);
    }

    /// The reason writes are failing, if they are.
    pub fn degraded(&self) -> Option<String> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        self.reason.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_keeps_its_first_reason_until_a_success() {
        let h = WriteHealth::default();
        assert_eq!(h.degraded(), None);
        h.failed("No space left on device");
        h.failed("something else");
        assert_eq!(h.degraded().as_deref(), Some("No space left on device"));
        h.succeeded();
        assert_eq!(h.degraded(), None);
        h.failed("again");
        assert_eq!(h.degraded().as_deref(), Some("again"));
    }

    #[test]
    fn each_episode_is_logged_once_at_its_start_and_once_at_its_end() {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Lines::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let h = WriteHealth::default();
            h.succeeded();
            for _ in 0..100 {
                h.failed("No space left on device (os error 28)");
            }
            h.succeeded();
            h.succeeded();
            h.failed("Input/output error");
        });
        let text = String::from_utf8(out.0.lock().clone()).unwrap();
        assert_eq!(text.matches("writes failing").count(), 2, "{text}");
        assert_eq!(text.matches("writes recovered").count(), 1, "{text}");
        assert!(
            text.contains("writes failing: No space left on device"),
            "{text}"
        );
    }
}
