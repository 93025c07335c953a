//! The contract between the connector runtime and a target system: the [`Sink`] trait (its
//! docs are the contract every sink follows), the records it receives, how it classifies
//! failures, and the [`BatchDefaults`] each sink type chooses.

use std::sync::Arc;

use sluice_proto::Value;

/// The columns a connector writes, in order (the connector's `ColumnFields`), with the
/// topic field types they come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    pub names: Vec<String>,
    pub types: Vec<sluice_proto::FieldType>,
}

/// What one record carries into a sink.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkData {
    /// Values projected onto [`Columns`], in the same order.
    Tuple(Vec<Value>),
    Blob(Vec<u8>),
}

/// One record handed to a sink, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    pub shard_id: u32,
    pub sequence: u64,
    /// Index inside a batch-protocol entry (several records can share a sequence).
    pub batch_index: u32,
    pub system_time: i64,
    pub data: SinkData,
    pub attributes: Vec<(String, String)>,
}

/// What kind of failure a [`SinkError`] is, which decides what the runtime does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The target is unreachable, overloaded or timed out: retry the same batch with
    /// jittered backoff; the task shows CONTEXT_HANG with the message meanwhile.
    Transient,
    /// Something in the batch is unacceptable to the target (type, length, constraint). The
    /// runtime narrows the batch down to the offending records, discards and counts them,
    /// and writes the rest.
    BadRecord,
    /// The connector's configuration does not work against the target (no such table,
    /// access denied): the task hangs with the message and retries slowly.
    Config,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::BadRecord => "bad record",
            ErrorKind::Config => "configuration",
        }
    }
}

/// The error that caused another one, kept for logs and `Error::source` (shared, so that a
/// [`SinkError`] stays cheap to clone).
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why a write failed: its [`ErrorKind`], a message for the task's status (what the user reads
/// in `LastErrorMessage`) and, when there is one, the underlying error.
///
/// Built with [`SinkError::transient`], [`SinkError::bad_record`] or [`SinkError::config`],
/// plus [`SinkError::with_source`]. Two errors are equal when kind and message are.
#[derive(Clone)]
pub struct SinkError {
    pub kind: ErrorKind,
    pub message: String,
    pub source: Option<ErrorSource>,
}

impl SinkError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> SinkError {
        SinkError {
            kind,
            message: message.into(),
            source: None,
        }
    }
    pub fn transient(message: String) -> SinkError {
        SinkError::new(ErrorKind::Transient, message)
    }
    pub fn bad_record(message: String) -> SinkError {
        SinkError::new(ErrorKind::BadRecord, message)
    }
    pub fn config(message: String) -> SinkError {
        SinkError::new(ErrorKind::Config, message)
    }
    /// Attaches the error that caused this one.
    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> SinkError {
        self.source = Some(Arc::new(source));
        self
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::fmt::Debug for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("SinkError");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = &self.source {
            d.field("source", &format_args!("{s}"));
        }
        d.finish()
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for SinkError {
    fn eq(&self, other: &SinkError) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for SinkError {}

/// A target system: the contract between the runtime and every sink.
///
/// **What the runtime guarantees (what `write` and `flush` may assume)**
/// - One instance per (connector, shard) task, called by that task only: `&mut self`, never
///   concurrently, so no internal locking is needed.
/// - Each delivery is `write(records)` then `flush()`, nothing in between. `records` are one
///   shard's, in sequence order, projected onto the connector's columns; a delivery never
///   holds more than the batch limits of the sink's type ([`BatchDefaults`], overridable in
///   the server config) and ends on an entry boundary.
/// - Records of a parent shard are delivered before those of its children (split, merge).
/// - Delivery is at-least-once: the checkpoint moves only after `flush` returned Ok. After a
///   crash, a restart, a stop or an offset reset, records already written come again (at most
///   the batch in flight per shard, except after an offset reset to an earlier point).
///
/// **What a sink must do**
/// - `write` converts and may buffer; `flush` makes everything written since the last
///   successful flush durable in the target, as one unit where the target allows
///   (a transaction, one COPY, one put).
/// - Re-delivered records must be harmless where the target allows: keyed upserts
///   (REPLACE / ON CONFLICT), deterministic ids or object names.
/// - A sink may be dropped at any await point (stop, reload, delete, shutdown): what a dropped
///   write or flush leaves must be either rolled back or harmless on re-delivery.
///
/// **What a failed `write` or `flush` must leave behind**
/// - Its buffer empty: the runtime writes again exactly what it retries (the same records
///   after a transient error; halves of the batch after a bad record), so nothing of a
///   failed attempt may reach a later flush.
/// - The target as before the attempt (rolled back), or holding only records that a later
///   re-delivery overwrites harmlessly.
/// - An error of the right kind: [`ErrorKind::Transient`] (the same records are retried with
///   backoff; the shard shows CONTEXT_HANG meanwhile), [`ErrorKind::BadRecord`] only when the
///   batch holds a record the target refuses and the same record alone fails the same way (the
///   runtime narrows the batch down to it, discards and counts it), [`ErrorKind::Config`] when
///   the connector's configuration does not work against the target (the sink is dropped,
///   reopened later, and the shard hangs with the message until fixed).
#[async_trait::async_trait]
pub trait Sink: Send {
    /// Converts and buffers records (see the trait's contract).
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError>;
    /// Makes everything written since the last successful flush durable in the target. The
    /// runtime commits its checkpoint only after this returns Ok.
    async fn flush(&mut self) -> Result<(), SinkError>;
    /// Rows made durable *late* since the last call, and resets the count: the runtime calls
    /// it after each successful flush and adds the number to the checkpoint's `late_count`
    /// (the shard status's `LateCount`). Only SINK_ODPS has late rows (EVENT_TIME rows written
    /// into a partition that already had `_SUCCESS`); the default is none.
    fn take_late_rows(&mut self) -> u64 {
        0
    }
}

/// The batch a sink type wants by default: each sink chooses its own (a MySQL statement
/// wants thousands of rows, a lake file minutes and tens of MB). `None` takes the server's
/// global `connector_batch_records` / `_bytes` / `_age_ms`; the server config's
/// `connector_batch.<type>.records|bytes|age_ms` overrides both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchDefaults {
    pub records: Option<usize>,
    pub bytes: Option<usize>,
    pub age: Option<std::time::Duration>,
}

/// Shared, immutable column layout of a connector.
pub type SharedColumns = Arc<Columns>;
