//! The DataHub wire contract, with no I/O.
//!
//! Everything a DataHub-compatible server or client needs to speak the protocol that pydatahub
//! 2.29.0 speaks (see `datahub-protocol.md` in the steering repository):
//!
//! - [`schema`]: tuple record schemas and field types, parsed from and rendered to the SDK's JSON;
//! - [`value`]: typed field values, their text forms (JSON/protobuf) and validation against a field;
//! - [`record`]: the protocol-neutral record model every codec converts to and from;
//! - [`pb`]: the protobuf messages of record calls (prost structs, no build step);
//! - [`pb_read`]: the framed protobuf get-records response, written straight into one buffer;
//! - [`pb_view`]: the same response read in place, its records and values borrowed;
//! - [`batch`]: the batch binary format (pydatahub's version-0 layout, and the Go SDK v1.x's
//!   version 1 with Avro records);
//! - [`envelope`]: the `DHUB` frame around protobuf bodies;
//! - [`compress`]: HTTP body compression (raw LZ4 block, zlib, deflate, zstd);
//! - [`sign`]: the `Authorization: DATAHUB id:signature` canonical string and HMAC;
//! - [`cursor`]: Sluice's opaque cursor encoding;
//! - [`hashkey`]: 128-bit hash-key ranges and partition-key routing;
//! - [`error_code`]: DataHub error codes and their HTTP statuses.

pub mod batch;
pub mod compress;
pub mod cursor;
pub mod envelope;
pub mod error_code;
pub mod hashkey;
pub mod pb;
pub mod pb_read;
pub mod pb_view;
pub mod record;
pub mod schema;
pub mod sign;
pub mod value;

pub use error_code::ErrorCode;
pub use record::{DataRef, Record, RecordData, RecordRef};
pub use schema::{Field, FieldType, RecordSchema};
pub use value::{Value, ValueRef};
