//! The supervisor of one running connector: which shard tasks run, their restarts, and stop.
//!
//! Invariants:
//! - at most one task per shard; a child of a split or merge starts only after all its parents
//!   are FINISHED;
//! - a task that panics is never restarted silently: the panic's message is logged at error
//!   level and shown as the shard's CONTEXT_HANG message, and the task restarts from its
//!   checkpoint after a jittered backoff that grows while it keeps panicking without progress;
//! - stopping cancels every task first and then waits for all of them together, so a stop
//!   takes about one [`RuntimeConfig::stop_grace`](super::RuntimeConfig::stop_grace), not one
//!   per shard;
//! - a runtime limited to some shards starts a task only while its shard is allowed (checked
//!   under the `allowed` lock at the spawn, so a shard taken away is never started again), and
//!   `Shared::running` names every shard whose task exists, from its spawn until it has ended.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::status::{Checkpoint, ContextState};
use super::{task, Backoff, ShardInfo, Shared};

/// A running task: its cancellation and its handle, which yields the panic message if the
/// task panicked.
type Running = (CancellationToken, JoinHandle<Option<String>>);

/// Restart bookkeeping of a shard whose task panicked.
struct Restart {
    backoff: Backoff,
    /// No restart before this.
    not_before: Instant,
    /// The checkpoint when the task last started: progress since then resets the backoff.
    started_at: u64,
}

/// Where a shard without a checkpoint starts.
fn initial_checkpoint(shared: &Shared, shard: &ShardInfo) -> Checkpoint {
    let start = shared.spec.start_time;
    let seq = if start < 0 {
        shard.first_seq
    } else {
        shared
            .source
            .seq_at_or_after_time(shard.id, start)
            .unwrap_or(shard.next_seq)
            .max(shard.first_seq)
    };
    Checkpoint::at(shard.id, seq)
}

/// The text of a panic payload.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// Runs a shard task as its own tokio task and reports how it ended: None when it returned,
/// the panic message when it panicked (then the supervisor is woken at once).
async fn run_caught(
    shared: Arc<Shared>,
    shard: u32,
    cp: Checkpoint,
    cancel: CancellationToken,
) -> Option<String> {
    let inner = tokio::spawn(task::run(shared.clone(), shard, cp, cancel));
    let ended = match inner.await {
        Ok(()) => None,
        Err(e) if e.is_panic() => Some(panic_message(e.into_panic())),
        Err(e) => Some(e.to_string()),
    };
    if ended.is_some() {
        shared.wake.notify_one();
    }
    ended
}

/// Cancels the given tasks, then waits for all of them together.
async fn stop_all(shared: &Shared, tasks: Vec<(u32, Running)>) {
    for (_, (token, _)) in &tasks {
        token.cancel();
    }
    for (shard, (_, handle)) in tasks {
        if let Ok(Some(message)) = handle.await {
            tracing::error!(connector = %shared.spec.name, shard, panic = %message, "task panicked while stopping");
        }
        task_ended(shared, shard);
    }
}

/// Records that the task of `shard` has ended.
fn task_ended(shared: &Shared, shard: u32) {
    shared.running.send_modify(|r| {
        r.remove(&shard);
    });
}

/// Whether a parent shard is FINISHED: by this runtime's checkpoint, or, for a parent this
/// runtime may not run, by its stored checkpoint (remembered once seen).
async fn parent_finished(
    shared: &Shared,
    parent: u32,
    finished_elsewhere: &mut HashSet<u32>,
) -> bool {
    if shared.checkpoint(parent).is_some_and(|c| c.finished) || finished_elsewhere.contains(&parent)
    {
        return true;
    }
    if shared.may_run(parent) {
        return false;
    }
    match shared.source.stored_checkpoint(parent).await {
        Ok(Some(cp)) if cp.finished => {
            finished_elsewhere.insert(parent);
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(connector = %shared.spec.name, shard = parent, error = %e, "cannot read a parent shard's checkpoint");
            false
        }
    }
}

/// Starts tasks for shards that may run, restarts reloaded and panicked ones, and stops all
/// on cancel.
pub(crate) async fn supervise(shared: Arc<Shared>, cancel: CancellationToken) {
    let cfg = shared.spec.config.clone();
    let mut tasks: HashMap<u32, Running> = HashMap::new();
    let mut restarts: HashMap<u32, Restart> = HashMap::new();
    let mut finished_elsewhere: HashSet<u32> = HashSet::new();
    loop {
        // Stop the tasks of shards taken away from this runtime.
        let taken: Vec<u32> = tasks
            .keys()
            .copied()
            .filter(|s| !shared.may_run(*s))
            .collect();
        if !taken.is_empty() {
            let stopping: Vec<(u32, Running)> = taken
                .iter()
                .filter_map(|s| tasks.remove(s).map(|r| (*s, r)))
                .collect();
            stop_all(&shared, stopping).await;
            for s in &taken {
                restarts.remove(s);
                if !shared.may_run(*s) {
                    shared.forget(*s);
                }
            }
            tracing::info!(connector = %shared.spec.name, shards = ?taken, "tasks handed to another node");
        }
        // Reap ended tasks; a panicked one is reported and its restart delayed.
        let ended: Vec<u32> = tasks
            .iter()
            .filter(|(_, (_, h))| h.is_finished())
            .map(|(s, _)| *s)
            .collect();
        for shard in ended {
            let (_, handle) = tasks.remove(&shard).expect("listed above");
            let outcome = handle.await;
            task_ended(&shared, shard);
            let message = match outcome {
                Ok(None) => continue,
                Ok(Some(m)) => m,
                Err(e) => e.to_string(),
            };
            let progress = shared.checkpoint(shard).map_or(0, |c| c.next_seq);
            let restart = restarts.entry(shard).or_insert_with(|| Restart {
                backoff: Backoff::new(cfg.retry_base, cfg.retry_max),
                not_before: Instant::now(),
                started_at: progress,
            });
            if progress > restart.started_at {
                restart.backoff.reset();
            }
            let delay = restart.backoff.next_delay();
            restart.not_before = Instant::now() + delay;
            tracing::error!(connector = %shared.spec.name, shard, panic = %message,
                restart_in_ms = delay.as_millis() as u64, "task panicked; restarting from its checkpoint");
            shared.set_status(
                shard,
                ContextState::Hang,
                Some(format!(
                    "task panicked: {message}; restarting in {} ms",
                    delay.as_millis()
                )),
            );
        }
        let reloads: Vec<u32> = std::mem::take(&mut *shared.reload.lock().expect("reload lock"));
        let mut reloading = Vec::new();
        for shard in reloads {
            if let Some(r) = restarts.get_mut(&shard) {
                r.not_before = Instant::now();
            }
            if let Some(running) = tasks.remove(&shard) {
                reloading.push((shard, running));
            }
        }
        if !reloading.is_empty() {
            let shards: Vec<u32> = reloading.iter().map(|(s, _)| *s).collect();
            stop_all(&shared, reloading).await;
            tracing::info!(connector = %shared.spec.name, ?shards, "tasks reloaded from their checkpoints");
        }
        match shared.source.shards() {
            Ok(shards) => {
                let known: Vec<u32> = shards.iter().map(|s| s.id).collect();
                for shard in &shards {
                    if !shared.may_run(shard.id) {
                        continue;
                    }
                    if tasks.contains_key(&shard.id)
                        || restarts
                            .get(&shard.id)
                            .is_some_and(|r| r.not_before > Instant::now())
                    {
                        continue;
                    }
                    let cp = match shared.checkpoint(shard.id) {
                        Some(cp) => cp,
                        None => {
                            let cp = initial_checkpoint(&shared, shard);
                            shared.set_checkpoint(cp);
                            cp
                        }
                    };
                    if cp.finished {
                        shared.set_status(shard.id, ContextState::Finished, None);
                        continue;
                    }
                    let mut waiting = false;
                    for p in shard.parents.iter().filter(|p| known.contains(p)) {
                        if !parent_finished(&shared, *p, &mut finished_elsewhere).await {
                            waiting = true;
                            break;
                        }
                    }
                    if waiting {
                        shared.set_status(shard.id, ContextState::Planned, None);
                        continue;
                    }
                    if let Some(r) = restarts.get_mut(&shard.id) {
                        r.started_at = cp.next_seq;
                    }
                    // Spawned under the `allowed` lock: a shard taken away meanwhile stays stopped.
                    let allowed = shared.allowed.lock().expect("allowed lock");
                    if allowed.as_ref().is_some_and(|a| !a.contains(&shard.id)) {
                        continue;
                    }
                    let token = cancel.child_token();
                    shared.running.send_modify(|r| {
                        r.insert(shard.id);
                    });
                    let handle =
                        tokio::spawn(run_caught(shared.clone(), shard.id, cp, token.clone()));
                    drop(allowed);
                    tasks.insert(shard.id, (token, handle));
                }
            }
            Err(e) => {
                tracing::warn!(connector = %shared.spec.name, error = %e, "cannot list the topic's shards");
            }
        }
        let next_restart = restarts
            .iter()
            .filter(|(s, _)| !tasks.contains_key(s))
            .map(|(_, r)| r.not_before)
            .filter(|t| *t > Instant::now())
            .min();
        let mut until = Instant::now() + cfg.topology_interval;
        if let Some(t) = next_restart {
            until = until.min(t);
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }
    stop_all(&shared, tasks.into_iter().collect()).await;
}
