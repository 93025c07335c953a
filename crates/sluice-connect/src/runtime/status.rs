//! What a task reports: per-shard state, position, errors, discards, and done time.

use serde_json::{json, Value as Json};

/// The state of one (connector, shard) task, as `get_connector_shard_status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextState {
    /// Waiting to start (parents of a split/merge still running).
    Planned,
    Executing,
    /// Retrying after an error; the message says which.
    Hang,
    /// Stopped with the connector. Rendered `CONTEXT_PAUSED`, the only name the Java SDK knows
    /// (client/model/ConnectorShardState.java: STOPPED is "CONTEXT_PAUSED") and the Go SDK's
    /// `Stopped` (connector.go:1013); pydatahub knows it too.
    Stopped,
    /// A closed shard delivered to its end.
    Finished,
}

impl ContextState {
    pub fn as_str(self) -> &'static str {
        match self {
            ContextState::Planned => "CONTEXT_PLANNED",
            ContextState::Executing => "CONTEXT_EXECUTING",
            ContextState::Hang => "CONTEXT_HANG",
            ContextState::Stopped => "CONTEXT_PAUSED",
            ContextState::Finished => "CONTEXT_FINISHED",
        }
    }
}

/// Where a task resumes; saved only after a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub shard_id: u32,
    /// First sequence not yet delivered.
    pub next_seq: u64,
    /// System time (ms) of the last delivered record, -1 if none.
    pub last_time: i64,
    pub discard_count: u64,
    pub finished: bool,
    /// Milliseconds.
    pub update_time: i64,
    /// Rows the sink reported as written late ([`Sink::take_late_rows`](crate::sink::Sink::take_late_rows)).
    pub late_count: u64,
}

impl Checkpoint {
    pub fn at(shard_id: u32, next_seq: u64) -> Checkpoint {
        Checkpoint {
            shard_id,
            next_seq,
            last_time: -1,
            discard_count: 0,
            finished: false,
            update_time: now_ms(),
            late_count: 0,
        }
    }
}

/// The live status of one task (the parts a checkpoint does not hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    pub state: ContextState,
    pub last_error: String,
    /// Milliseconds of the last state change or progress.
    pub update_time: i64,
}

impl TaskStatus {
    pub fn new(state: ContextState) -> TaskStatus {
        TaskStatus {
            state,
            last_error: String::new(),
            update_time: now_ms(),
        }
    }
}

/// Everything a shard status entry reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardReport {
    pub shard_id: u32,
    pub state: ContextState,
    /// The last sequence delivered (the checkpoint's `next_seq` - 1; -1 when none was), as the
    /// service reports it (Java SDK e2e `SinkMysqlTest`: the sum of CurrSequence + 1 over the
    /// shards is the number of records written).
    pub current_sequence: i64,
    pub current_timestamp: i64,
    pub done_time: i64,
    pub last_error: String,
    pub update_time: i64,
    pub discard_count: u64,
    pub worker_address: String,
    /// Rows written late (SINK_ODPS EVENT_TIME: into a partition that already had `_SUCCESS`).
    pub late_count: u64,
}

impl ShardReport {
    /// The first record not delivered yet (`current_sequence` is the last delivered).
    pub fn resumes_at(&self) -> i64 {
        self.current_sequence.max(-1) + 1
    }

    /// Records not delivered yet, given the shard's next sequence (0 once finished).
    pub fn lag_records(&self, shard_next_seq: i64) -> i64 {
        if self.state == ContextState::Finished {
            0
        } else {
            (shard_next_seq - self.resumes_at()).max(0)
        }
    }

    /// The `ShardStatusEntry` JSON pydatahub parses, plus `LateCount` (a Sluice extra that the
    /// SDKs ignore: pydatahub's `ShardStatusEntry.from_dict` reads only the keys it knows, Go and
    /// Java skip unknown keys; docs/sdk-wire.md).
    pub fn to_json(&self) -> Json {
        json!({
            "ShardId": self.shard_id.to_string(),
            "State": self.state.as_str(),
            "CurrentSequence": self.current_sequence,
            "CurrentTimestamp": self.current_timestamp,
            "DoneTime": self.done_time,
            "LastErrorMessage": self.last_error,
            "UpdateTime": self.update_time,
            "DiscardCount": self.discard_count,
            "WorkerAddress": self.worker_address,
            "LateCount": self.late_count,
        })
    }
}

/// The shard's log as the report needs it.
#[derive(Debug, Clone, Copy)]
pub struct LogView {
    pub first_seq: u64,
    pub next_seq: u64,
    /// System time of the record at the checkpoint, if it exists.
    pub time_at_checkpoint: Option<i64>,
}

/// Done time of one shard: every record with a system time below it has been delivered.
/// A caught-up shard is done up to `now` (an idle shard never holds the connector back).
pub fn shard_done_time(cp: &Checkpoint, log: &LogView, now: i64) -> i64 {
    if cp.finished || cp.next_seq >= log.next_seq {
        return now;
    }
    match log.time_at_checkpoint {
        Some(t) => t,
        // The record at the checkpoint expired: everything up to the oldest retained one is
        // as done as it will ever be.
        None => cp.last_time.max(0),
    }
}

/// Done time of a connector: the slowest shard that still has work (finished shards do not
/// count); `now` when every shard is caught up.
pub fn connector_done_time(shards: &[(Checkpoint, LogView)], now: i64) -> i64 {
    shards
        .iter()
        .filter(|(cp, _)| !cp.finished)
        .map(|(cp, log)| shard_done_time(cp, log, now))
        .min()
        .unwrap_or(now)
}

/// A report for one shard from its checkpoint, log and (if a task runs) live status.
pub fn report(
    cp: &Checkpoint,
    log: &LogView,
    live: Option<&TaskStatus>,
    stopped: bool,
    worker: &str,
    now: i64,
) -> ShardReport {
    let done_time = shard_done_time(cp, log, now);
    let expired = !cp.finished && cp.next_seq < log.first_seq;
    let (state, mut last_error, update_time) = match live {
        _ if cp.finished => (ContextState::Finished, String::new(), cp.update_time),
        Some(s) if !stopped => (s.state, s.last_error.clone(), s.update_time),
        Some(s) => (ContextState::Stopped, s.last_error.clone(), s.update_time),
        None if stopped => (ContextState::Stopped, String::new(), cp.update_time),
        None => (ContextState::Planned, String::new(), cp.update_time),
    };
    if expired && last_error.is_empty() {
        last_error = expired_message(cp.shard_id, cp.next_seq, log.first_seq);
    }
    ShardReport {
        shard_id: cp.shard_id,
        state,
        // The last record delivered (-1: none yet), as the service reports it.
        current_sequence: cp.next_seq as i64 - 1,
        current_timestamp: if cp.last_time >= 0 {
            cp.last_time
        } else {
            done_time
        },
        done_time,
        last_error,
        update_time,
        discard_count: cp.discard_count,
        worker_address: worker.to_string(),
        late_count: cp.late_count,
    }
}

/// The message of a task whose next records were removed by retention.
pub fn expired_message(shard: u32, next: u64, first: u64) -> String {
    format!(
        "shard {shard}: records {next}..{first} expired (topic lifecycle) before this connector \
         delivered them; stop the connector and update its offset to continue"
    )
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(next: u64, t: Option<i64>) -> LogView {
        LogView {
            first_seq: 0,
            next_seq: next,
            time_at_checkpoint: t,
        }
    }

    #[test]
    fn done_time_is_the_slowest_busy_shard() {
        let behind = Checkpoint::at(0, 5);
        let idle = Checkpoint::at(1, 9);
        let mut finished = Checkpoint::at(2, 1);
        finished.finished = true;
        let shards = [
            (behind, log(10, Some(1_000))),
            (idle, log(9, None)),
            (finished, log(3, Some(5))),
        ];
        assert_eq!(connector_done_time(&shards, 9_999), 1_000);
        assert_eq!(connector_done_time(&shards[1..], 9_999), 9_999);
    }

    #[test]
    fn report_of_an_expired_position_says_so() {
        let cp = Checkpoint::at(3, 2);
        let view = LogView {
            first_seq: 10,
            next_seq: 20,
            time_at_checkpoint: None,
        };
        let r = report(&cp, &view, None, true, "w", 1);
        assert_eq!(r.state, ContextState::Stopped);
        assert!(r.last_error.contains("expired"), "{}", r.last_error);
    }

    #[test]
    fn current_sequence_is_the_last_delivered_and_lag_counts_the_rest() {
        // next record 4 of a shard whose next sequence is 10: 0..=3 delivered, 6 to go
        let r = report(
            &Checkpoint::at(0, 4),
            &log(10, Some(5)),
            None,
            false,
            "w",
            1,
        );
        assert_eq!((r.current_sequence, r.resumes_at()), (3, 4));
        assert_eq!(r.lag_records(10), 6);
        // nothing delivered yet
        let r = report(&Checkpoint::at(0, 0), &log(0, None), None, false, "w", 1);
        assert_eq!((r.current_sequence, r.lag_records(0)), (-1, 0));
        assert_eq!(r.lag_records(3), 3);
        // a finished shard has no lag
        let mut cp = Checkpoint::at(0, 7);
        cp.finished = true;
        assert_eq!(
            report(&cp, &log(7, None), None, false, "w", 1).lag_records(9),
            0
        );
    }

    #[test]
    fn the_late_count_of_the_checkpoint_is_reported_as_late_count() {
        let mut cp = Checkpoint::at(1, 4);
        cp.late_count = 7;
        let j = report(&cp, &log(4, None), None, false, "w", 1).to_json();
        assert_eq!(
            (j["LateCount"].as_u64(), j["DiscardCount"].as_u64()),
            (Some(7), Some(0))
        );
    }
}
