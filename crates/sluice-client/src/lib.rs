//! The Rust SDK for DataHub-compatible endpoints: Sluice itself or the cloud service.
//!
//! It mirrors the parts of pydatahub's API that Sluice's own tools need so far (the benchmark,
//! the crash test, the DataHub sink, the `sluice` command line): projects, topics, shards,
//! cursors, records in the protobuf and batch protocols, connectors and subscriptions. Every
//! request is signed (`sluice_proto::sign`). Errors keep DataHub's `ErrorCode`, so callers can
//! tell a bad record from an outage.
//!
//! Layout: `client.rs` (transport, signing, errors), `records.rs` (record calls), `read_page.rs`
//! (protobuf reads kept as received, records borrowed from the answer), `manage.rs`
//! (management calls answered as JSON, for the command line), `keys.rs` (Sluice's key management
//! and audit log calls).

mod client;
mod keys;
mod manage;
mod read_page;
mod records;

pub use client::{Client, ClientError, ShardInfo, TopicInfo};
pub use keys::{AuditEntry, KeyInfo, NewKey};
pub use manage::CursorInfo;
pub use read_page::RecordsPage;
pub use records::{CursorType, ReadBatch, ReadRecord};
