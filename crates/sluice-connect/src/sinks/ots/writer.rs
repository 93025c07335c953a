//! SINK_OTS's writer: rows through BatchWriteRow.
//!
//! - **Open / first write.** DescribeTable gives the table's primary key; it is cached, checked
//!   against ColumnFields (`mapping.rs`) and described again after a row is refused for its
//!   primary key.
//! - **Write** turns records into rows (`mapping.rs`) and keeps one row per primary key (a
//!   later record of the same key replaces the row with PUT and is merged into it with UPDATE:
//!   BatchWriteRow refuses a key twice in a request). A record that cannot be a row (a null
//!   key) is remembered as bad.
//! - **Flush** sends requests of at most [`MAX_ROWS`] rows / [`MAX_BYTES`] bytes, PUT or
//!   UPDATE rows (`WriteMode`) with the condition IGNORE, and reads every row's result:
//!   - ok: written;
//!   - a retryable code (OTSServerBusy, OTSTimeout, ... `client::RETRYABLE_CODES`): that row
//!     alone is sent again with backoff, up to [`ROW_RETRIES`] times, then the flush fails as
//!     transient (the runtime retries the batch; keys make that harmless);
//!   - any other code (OTSParameterInvalid, a type mismatch, ...): a bad record. The rest is
//!     written first, then the flush fails as [`ErrorKind::BadRecord`](crate::sink::ErrorKind)
//!     with the reason, and the runtime narrows the batch down to the record, discards, counts
//!     and logs it.
//! - Whole-request failures are classified in `client.rs` (busy / 5xx / connection errors:
//!   transient, CONTEXT_HANG and retry).

use std::collections::HashMap;
use std::time::Duration;

use super::client::{is_retryable, Client};
use super::mapping::{Layout, RowCells};
use super::plainbuffer::{encode_row, Cell};
use super::proto;
use super::{OtsConfig, OtsWriteMode};
use crate::sink::{SharedColumns, Sink, SinkData, SinkError, SinkRecord};

/// BatchWriteRow's limit of rows per request.
pub const MAX_ROWS: usize = 200;
/// BatchWriteRow's limit of bytes per request (row data, less a margin for the envelope).
pub const MAX_BYTES: usize = (4 << 20) - (64 << 10);
/// How often one row refused with a retryable code is sent again before the flush fails.
pub const ROW_RETRIES: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Opens a SINK_OTS task's sink (AuthMode ak; sts is refused in `mod.rs`).
pub async fn open(cfg: OtsConfig, columns: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    let mut sink = OtsSink::new(cfg, columns)?;
    sink.describe().await?;
    Ok(Box::new(sink))
}

pub struct OtsSink {
    client: Client,
    cfg: OtsConfig,
    columns: SharedColumns,
    layout: Option<Layout>,
    /// One row per primary key, in first-seen order.
    pending: Vec<RowCells>,
    /// Primary key (as [`key_bytes`]) → index in `pending`.
    by_key: HashMap<Vec<u8>, usize>,
    /// Why records of this delivery cannot be rows.
    bad: Vec<String>,
}

/// A primary key as bytes that are equal exactly when the keys are (type tag, length, value).
fn key_bytes(key: &[Cell]) -> Vec<u8> {
    let mut out = Vec::new();
    for cell in key {
        let (tag, bytes): (u8, std::borrow::Cow<[u8]>) = match cell {
            Cell::Int(v) => (0, v.to_le_bytes().to_vec().into()),
            Cell::Double(v) => (1, v.to_bits().to_le_bytes().to_vec().into()),
            Cell::Bool(v) => (2, vec![*v as u8].into()),
            Cell::Str(s) => (3, s.as_bytes().into()),
            Cell::Blob(b) => (4, b.as_slice().into()),
        };
        out.push(tag);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// A row that failed, and why.
struct Refused {
    row: usize,
    code: String,
    message: String,
}

impl OtsSink {
    pub fn new(cfg: OtsConfig, columns: SharedColumns) -> Result<OtsSink, SinkError> {
        Ok(OtsSink {
            client: Client::new(&cfg)?,
            cfg,
            columns,
            layout: None,
            pending: Vec::new(),
            by_key: HashMap::new(),
            bad: Vec::new(),
        })
    }

    async fn describe(&mut self) -> Result<&Layout, SinkError> {
        if self.layout.is_none() {
            let key = self.client.describe_table(&self.cfg.table_name).await?;
            self.layout = Some(Layout::new(&self.cfg.table_name, &self.columns, &key)?);
        }
        Ok(self.layout.as_ref().expect("described above"))
    }

    fn clear(&mut self) {
        self.pending.clear();
        self.by_key.clear();
        self.bad.clear();
    }

    fn add(&mut self, row: RowCells) {
        let key = key_bytes(&row.primary_key);
        match self.by_key.get(&key) {
            Some(&i) => match self.cfg.write_mode {
                OtsWriteMode::Put => self.pending[i] = row,
                OtsWriteMode::Update => {
                    let old = &mut self.pending[i].attributes;
                    for (a, cell) in row.attributes {
                        match old.iter_mut().find(|(o, _)| *o == a) {
                            Some(slot) => slot.1 = cell,
                            None => old.push((a, cell)),
                        }
                    }
                }
            },
            None => {
                self.by_key.insert(key, self.pending.len());
                self.pending.push(row);
            }
        }
    }

    fn encode(&self, layout: &Layout, row: &RowCells) -> proto::RowInBatchWriteRowRequest {
        let names: Vec<&str> = layout.key_names().collect();
        let key: Vec<(&str, &Cell)> = names.iter().copied().zip(&row.primary_key).collect();
        let attrs: Vec<(&str, Option<&Cell>)> = row
            .attributes
            .iter()
            .map(|(a, c)| (layout.attribute_name(*a), Some(c)))
            .collect();
        let op = match self.cfg.write_mode {
            OtsWriteMode::Put => proto::OperationType::Put,
            OtsWriteMode::Update => proto::OperationType::Update,
        };
        proto::RowInBatchWriteRowRequest {
            r#type: op as i32,
            row_change: encode_row(&key, &attrs),
            condition: proto::Condition {
                row_existence: proto::RowExistenceExpectation::Ignore as i32,
            },
        }
    }

    /// Sends `rows` (indexes into `encoded`) in requests within the limits; returns the rows
    /// that were refused, with their codes.
    async fn send(
        &self,
        encoded: &[proto::RowInBatchWriteRowRequest],
        rows: &[usize],
    ) -> Result<Vec<Refused>, SinkError> {
        let mut refused = Vec::new();
        let mut start = 0;
        while start < rows.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < rows.len() && end - start < MAX_ROWS {
                let size = encoded[rows[end]].row_change.len() + 16;
                if end > start && bytes + size > MAX_BYTES {
                    break;
                }
                bytes += size;
                end += 1;
            }
            let chunk = &rows[start..end];
            let req = proto::BatchWriteRowRequest {
                tables: vec![proto::TableInBatchWriteRowRequest {
                    table_name: self.cfg.table_name.clone(),
                    rows: chunk.iter().map(|&r| encoded[r].clone()).collect(),
                }],
            };
            let resp = self.client.batch_write_row(&req).await?;
            let results = resp
                .tables
                .into_iter()
                .find(|t| t.table_name == self.cfg.table_name)
                .map(|t| t.rows)
                .unwrap_or_default();
            if results.len() != chunk.len() {
                return Err(SinkError::transient(format!(
                    "BatchWriteRow on {}: {} row results for {} rows sent",
                    self.client.target(),
                    results.len(),
                    chunk.len()
                )));
            }
            for (&row, result) in chunk.iter().zip(results) {
                if result.is_ok {
                    continue;
                }
                let (code, message) = match result.error {
                    Some(e) => (e.code, e.message.unwrap_or_default()),
                    None => ("(no error)".to_string(), String::new()),
                };
                refused.push(Refused { row, code, message });
            }
            start = end;
        }
        Ok(refused)
    }
}

#[async_trait::async_trait]
impl Sink for OtsSink {
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError> {
        let layout = match self.describe().await {
            Ok(l) => l.clone(),
            Err(e) => {
                self.clear();
                return Err(e);
            }
        };
        for r in records {
            let converted = match &r.data {
                SinkData::Tuple(values) => layout.row(values),
                SinkData::Blob(_) => {
                    Err("SINK_OTS writes TUPLE records; a BLOB record has no columns".into())
                }
            };
            match converted {
                Ok(row) => self.add(row),
                Err(why) => self.bad.push(format!(
                    "shard {} sequence {}: {why}",
                    r.shard_id, r.sequence
                )),
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let pending = std::mem::take(&mut self.pending);
        let bad = std::mem::take(&mut self.bad);
        self.by_key.clear();
        let Some(layout) = self.layout.clone() else {
            return Ok(());
        };
        let encoded: Vec<_> = pending.iter().map(|r| self.encode(&layout, r)).collect();
        let mut rows: Vec<usize> = (0..encoded.len()).collect();
        let mut backoff = FIRST_BACKOFF;
        let mut rejected = Vec::new();
        for attempt in 0..=ROW_RETRIES {
            if rows.is_empty() {
                break;
            }
            let refused = self.send(&encoded, &rows).await?;
            let (retry, bad_rows): (Vec<Refused>, Vec<Refused>) =
                refused.into_iter().partition(|r| is_retryable(&r.code));
            rejected.extend(bad_rows);
            if !retry.is_empty() && attempt == ROW_RETRIES {
                let r = &retry[0];
                return Err(SinkError::transient(format!(
                    "BatchWriteRow on {}: {} row(s) still refused after {ROW_RETRIES} retries \
                     ({}: {})",
                    self.client.target(),
                    retry.len(),
                    r.code,
                    r.message
                )));
            }
            if !retry.is_empty() {
                tracing::debug!(rows = retry.len(), code = %retry[0].code, "OTS rows retried");
                let jitter = rand::random::<u64>() % (backoff.as_millis() as u64 + 1);
                tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                backoff *= 2;
            }
            rows = retry.iter().map(|r| r.row).collect();
        }
        if let Some(r) = rejected.first() {
            if r.message.to_ascii_lowercase().contains("primary key") {
                // The table's key may have changed: describe it again before the next write.
                self.layout = None;
            }
            let key = &pending[r.row].primary_key;
            tracing::warn!(table = %self.cfg.table_name, code = %r.code, reason = %r.message,
                key = ?key, "OTS refused a row");
            return Err(SinkError::bad_record(format!(
                "BatchWriteRow on {} table {}: {} row(s) refused, first {:?}: {}: {}",
                self.client.target(),
                self.cfg.table_name,
                rejected.len(),
                key,
                r.code,
                r.message
            )));
        }
        if let Some(why) = bad.first() {
            return Err(SinkError::bad_record(format!(
                "SINK_OTS table {}: {} record(s) cannot be rows, first {why}",
                self.cfg.table_name,
                bad.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Columns;
    use crate::sinks::wire::{Auth, AuthMode};

    fn cells(values: &[(usize, i64)]) -> Vec<(usize, Cell)> {
        values.iter().map(|(a, v)| (*a, Cell::Int(*v))).collect()
    }

    fn sink(mode: OtsWriteMode) -> OtsSink {
        let cfg = OtsConfig {
            endpoint: "http://127.0.0.1:1".into(),
            instance_name: "i".into(),
            table_name: "t".into(),
            auth: Auth {
                mode: AuthMode::Ak,
                access_id: "id".into(),
                access_key: crate::sinks::Secret::new("key"),
            },
            write_mode: mode,
        };
        let columns = std::sync::Arc::new(Columns {
            names: vec![],
            types: vec![],
        });
        OtsSink::new(cfg, columns).unwrap()
    }

    #[test]
    fn one_row_per_key_put_replaces_update_merges() {
        let row = |k: i64, a: &[(usize, i64)]| RowCells {
            primary_key: vec![Cell::Int(k)],
            attributes: cells(a),
        };
        let mut put = sink(OtsWriteMode::Put);
        put.add(row(1, &[(0, 1), (1, 1)]));
        put.add(row(2, &[(0, 2)]));
        put.add(row(1, &[(1, 9)]));
        assert_eq!(put.pending.len(), 2);
        assert_eq!(put.pending[0].attributes, cells(&[(1, 9)]));
        let mut update = sink(OtsWriteMode::Update);
        update.add(row(1, &[(0, 1), (1, 1)]));
        update.add(row(1, &[(1, 9), (2, 3)]));
        assert_eq!(update.pending.len(), 1);
        assert_eq!(
            update.pending[0].attributes,
            cells(&[(0, 1), (1, 9), (2, 3)])
        );
    }
}
