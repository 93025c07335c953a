//! Sluice's connectors: the runtime that keeps copying a topic into another system, and the
//! sinks that write to each system.
//!
//! - [`kind`]: the nine connector types and their type strings;
//! - [`sink`]: the [`sink::Sink`] trait every target implements, the records it receives and
//!   how it classifies failures (transient → retry with backoff; bad record → isolate and
//!   discard; configuration → the task hangs with the message until fixed);
//! - [`runtime`]: one supervisor per running connector and one task per (connector, shard),
//!   talking to the server only through [`runtime::ShardSource`];
//! - [`sinks`]: the typed config of every type ([`sinks::ConnectorConfig`]) and one folder per
//!   target system, each writer behind a cargo feature;
//! - [`testkit`]: an in-memory [`runtime::ShardSource`] for tests of the runtime and of sinks.
//!
//! The runtime reads a shard from its checkpoint, batches by count, bytes and age, calls
//! `Sink::write` then `Sink::flush`, and only then commits the checkpoint: at-least-once, with
//! each sink making re-delivery harmless where the target allows (REPLACE / upsert on keys).

pub mod kind;
pub mod runtime;
pub mod sink;
pub mod sinks;
pub mod testkit;

pub use kind::ConnectorKind;
