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

/// Why a write failed, which decides what the runtime does next.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SinkError {
    /// The target is unreachable, overloaded or timed out: retry the same batch with
    /// jittered backoff; the task shows CONTEXT_HANG with this message meanwhile.
    #[error("{0}")]
    Transient(String),
    /// Something in the batch is unacceptable to the target (type, length, constraint). The
    /// runtime narrows the batch down to the offending records, discards and counts them,
    /// and writes the rest.
    #[error("{0}")]
    BadRecord(String),
    /// The connector's configuration does not work against the target (no such table,
    /// access denied): the task hangs with the message and retries slowly.
    #[error("{0}")]
    Config(String),
}

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
