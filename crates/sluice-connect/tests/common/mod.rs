//! Helpers for the sink tests that run against the real databases started by
//! `scripts/services.sh` (via `scripts/test.sh`). A missing service is a failure, not a skip.
#![allow(dead_code)]

use std::process::Command;
use std::sync::Arc;

use sluice_connect::sink::{Columns, SharedColumns, SinkData, SinkRecord};
use sluice_proto::{FieldType, Value};

/// Reads a variable exported by `scripts/services.sh`; panics with how to get it.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the real databases. Run them through \
             scripts/test.sh, or `source scripts/services.sh && services_start` first."
        )
    })
}

pub fn columns(spec: &[(&str, FieldType)]) -> SharedColumns {
    Arc::new(Columns {
        names: spec.iter().map(|(n, _)| n.to_string()).collect(),
        types: spec.iter().map(|(_, t)| *t).collect(),
    })
}

pub fn records(rows: Vec<Vec<Value>>) -> Vec<SinkRecord> {
    rows.into_iter()
        .enumerate()
        .map(|(i, values)| SinkRecord {
            shard_id: 0,
            sequence: i as u64,
            batch_index: 0,
            system_time: 1_700_000_000_000 + i as i64,
            data: SinkData::Tuple(values),
            attributes: Vec::new(),
        })
        .collect()
}

pub fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

/// `scripts/db-ctl.sh <db> <action>`: stops or starts a test database in place.
pub fn db_ctl(db: &str, action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/db-ctl.sh");
    let status = Command::new("bash")
        .arg(script)
        .args([db, action])
        .status()
        .expect("run scripts/db-ctl.sh");
    assert!(
        status.success(),
        "scripts/db-ctl.sh {db} {action} failed: {status}"
    );
}
