//! The Rust SDK for DataHub-compatible endpoints: Sluice itself or the cloud service.
//!
//! It mirrors the parts of pydatahub's API that Sluice's own tools need so far (the benchmark,
//! the crash test, the DataHub sink): projects, topics, shards, cursors, and records in the
//! protobuf and batch protocols. Every request is signed (`sluice_proto::sign`). Errors keep
//! DataHub's `ErrorCode`, so callers can tell a bad record from an outage.
//!
//! Layout: `client.rs` (transport, signing, errors), `records.rs` (record calls), `keys.rs`
//! (Sluice's key management and audit log calls).

mod client;
mod keys;
mod records;

pub use client::{Client, ClientError, ShardInfo, TopicInfo};
pub use keys::{AuditEntry, KeyInfo, NewKey};
pub use records::{CursorType, ReadBatch, ReadRecord};
