//! The contract between the connector runtime and a target system.

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

/// A target system. One instance per (connector, shard) task, so no internal locking needed.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// Writes records; they may be buffered until [`Sink::flush`].
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError>;
    /// Makes everything written so far durable in the target. The runtime commits its
    /// checkpoint only after this returns Ok.
    async fn flush(&mut self) -> Result<(), SinkError>;
}

/// Shared, immutable column layout of a connector.
pub type SharedColumns = Arc<Columns>;
