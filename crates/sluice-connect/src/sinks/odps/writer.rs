//! The SINK_ODPS writer: each flush writes one Parquet file per partition the delivery touched
//! (one writer per (shard, partition); the runtime's batch limits, 64 MB / 60 s by default, are
//! the file's size and age limits) and only then returns Ok, so the checkpoint follows visible
//! files. In a `file://` warehouse a file is written under a hidden temporary name and made
//! visible with an atomic rename (after fsync); in an `s3://` warehouse it is one object, put
//! through `sinks/objstore.rs` (one PUT or a completed multipart upload: visible whole or not
//! at all), and objstore classifies the errors (unreachable: transient; 403, missing bucket:
//! configuration).
//!
//! Recovery without gap or duplicate: a file's name carries its shard, its first and last
//! record positions and the first position of the delivery it came from. The checkpoint only
//! ever stands at the start of a delivery, and after a crash (or a failed, partly published
//! flush) delivery resumes exactly there; a delivery is a contiguous run of the shard's log and
//! puts all its rows of one partition into one file. So the files ahead of the checkpoint are
//! those whose delivery start is where this writer was first asked to write (the checkpoint
//! it was opened at, remembered as `resume`), plus, within one writer, those of the delivery
//! being retried. A record is already in the table iff its partition holds such a file whose
//! range covers it: those are skipped, everything else is written. This does not assume that
//! the deliveries after a restart have the sizes of the interrupted one (the batch limits or
//! the records at hand may differ): every delivery checks against the files of the resume
//! point until it is passed. It is read from the files themselves (each partition folder, or
//! object prefix, is listed once, when first touched). An offset reset to an earlier point
//! (the writer is reopened there) starts a delivery elsewhere, so its rows are written again,
//! as asked. Limitation: after the runtime narrowed a delivery down to a bad record, its
//! halves carry their own starts; a crash before the checkpoint then rewrites the later halves.
//!
//! Late rows (EVENT_TIME rows whose partition already has `_SUCCESS`) are counted for the
//! checkpoint's `late_count` ([`Sink::take_late_rows`]); a late file is named `..._late.parquet`,
//! so when a crash lost the count of a file ahead of the checkpoint, the recovery that skips
//! its rows counts them instead.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use arrow_schema::SchemaRef;
use sluice_proto::{FieldType, Value};

use super::layout::{maxcompute_message, table_path, FileName, Partitioner, Position, Warehouse};
use super::mapping;
use super::OdpsConfig;
use crate::sink::{SharedColumns, Sink, SinkData, SinkError, SinkRecord};
use crate::sinks::objstore::Store;

/// Rows of one partition waiting for the flush.
#[derive(Default)]
struct Pending {
    rows: Vec<Vec<Value>>,
    first: Option<Position>,
    last: Position,
}

/// Where the table's files go.
enum Place {
    /// The table folder of a `file://` warehouse.
    Local(PathBuf),
    /// An `s3://` warehouse: the store's prefix ends at the table (`<prefix>/<project>.db/<table>`).
    Remote(Store),
}

struct OdpsSink {
    place: Place,
    partitioner: Partitioner,
    /// Index in the connector's columns of each file column (partition columns are left out:
    /// they are in the path).
    keep: Vec<usize>,
    types: Vec<FieldType>,
    schema: SchemaRef,
    /// Partition path → this shard's visible files there that a record may be in: those of
    /// the resume point and of the delivery being written.
    seen: HashMap<String, Vec<Seen>>,
    pending: BTreeMap<String, Pending>,
    shard: Option<u32>,
    /// The first position of the delivery being written.
    batch: Position,
    /// The first position this writer was asked to write: the checkpoint it was opened at.
    resume: Option<Position>,
    /// The start (ms) and partition path of the last window a record fell in.
    last_window: Option<(i64, String)>,
    /// Late rows made visible and not yet taken by the runtime ([`Sink::take_late_rows`]).
    late_rows: u64,
    /// Late rows of the delivery being written that an earlier writer had already made
    /// visible (found, skipped, and counted once the flush succeeds).
    skipped_late: u64,
}

/// A visible file of the shard.
struct Seen {
    name: FileName,
    /// Listed when the partition was first touched (written by an earlier writer), not
    /// published by this one (whose late rows are already counted).
    found: bool,
}

/// Opens the writer of one task, with the server's [`LakeSettings`](super::LakeSettings).
pub async fn open(config: OdpsConfig, columns: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    open_with(config, columns, super::settings()).await
}

/// Opens the writer with the given settings.
pub async fn open_with(
    config: OdpsConfig,
    columns: SharedColumns,
    settings: super::LakeSettings,
) -> Result<Box<dyn Sink>, SinkError> {
    let warehouse = Warehouse::parse(&config.odps_endpoint)?;
    if let Warehouse::MaxCompute(e) = &warehouse {
        return Err(SinkError::config(maxcompute_message(e)));
    }
    if columns.names.is_empty() {
        return Err(SinkError::config(
            "SINK_ODPS writes TUPLE topics only: the connector has no ColumnFields".to_string(),
        ));
    }
    let partitioner = Partitioner::new(&config, &columns, settings.zone, settings.minute_ms)?;
    let part_cols: Vec<String> = partitioner
        .column_names()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let keep: Vec<usize> = (0..columns.names.len())
        .filter(|&i| !part_cols.contains(&columns.names[i].to_ascii_lowercase()))
        .collect();
    let file_cols: Vec<(String, FieldType)> = keep
        .iter()
        .map(|&i| (columns.names[i].clone(), columns.types[i]))
        .collect();
    let place = match warehouse {
        Warehouse::Local(root) => {
            let table_dir = root.join(table_path(&config));
            tokio::fs::create_dir_all(&table_dir).await.map_err(|e| {
                SinkError::transient(format!(
                    "creating the table folder {}: {e}",
                    table_dir.display()
                ))
                .with_source(e)
            })?;
            Place::Local(table_dir)
        }
        _ => {
            let store = super::layout::table_store(&config)?;
            store.check().await?;
            Place::Remote(store)
        }
    };
    Ok(Box::new(OdpsSink {
        place,
        partitioner,
        types: file_cols.iter().map(|c| c.1).collect(),
        schema: mapping::schema(&file_cols),
        keep,
        seen: HashMap::new(),
        pending: BTreeMap::new(),
        shard: None,
        batch: (0, 0),
        resume: None,
        last_window: None,
        late_rows: 0,
        skipped_late: 0,
    }))
}

impl OdpsSink {
    /// The record's partition path. Time modes format a window's path once (formatting per
    /// row was the writer's largest cost): the path of the last window is kept.
    fn partition_of(&mut self, record: &SinkRecord) -> Result<String, String> {
        let Some(ms) = self.partitioner.time_of(record)? else {
            return self.partitioner.path_of(record);
        };
        let start = self.partitioner.window_start(ms)?;
        let key = start.timestamp_millis();
        match &self.last_window {
            Some((k, path)) if *k == key => Ok(path.clone()),
            _ => {
                let path = self.partitioner.window_path(&start);
                self.last_window = Some((key, path.clone()));
                Ok(path)
            }
        }
    }

    /// This shard's files already visible in a partition (listed once).
    async fn visible(&mut self, shard: u32, partition: &str) -> Result<&Vec<Seen>, SinkError> {
        if !self.seen.contains_key(partition) {
            let files = match &self.place {
                Place::Local(table) => list_files(&partition_dir(table, partition), shard)
                    .map_err(|e| {
                        SinkError::transient(format!("listing partition {partition:?}: {e}"))
                            .with_source(e)
                    })?,
                Place::Remote(store) => store
                    .list_names(partition)
                    .await?
                    .iter()
                    .filter_map(|n| FileName::parse(n))
                    .filter(|f| f.shard == shard)
                    .collect(),
            };
            // Only the files ahead of the checkpoint matter (see the module docs).
            let resume = self.resume;
            let files = files
                .into_iter()
                .filter(|f| Some(f.batch) == resume)
                .map(|name| Seen { name, found: true })
                .collect();
            self.seen.insert(partition.to_string(), files);
        }
        Ok(&self.seen[partition])
    }

    async fn take_one(&mut self, record: &SinkRecord) -> Result<(), SinkError> {
        let bad = |why: String| {
            SinkError::bad_record(format!(
                "SINK_ODPS: record shard {} sequence {} index {}: {why}",
                record.shard_id, record.sequence, record.batch_index
            ))
        };
        let values = match &record.data {
            SinkData::Tuple(v) => v,
            SinkData::Blob(_) => {
                return Err(bad("BLOB records cannot be written to a table".into()))
            }
        };
        let partition = self.partition_of(record).map_err(bad)?;
        let row: Vec<&Value> = self
            .keep
            .iter()
            .map(|&i| values.get(i).unwrap_or(&Value::Null))
            .collect();
        mapping::check_row(&self.types, &row).map_err(bad)?;
        let pos = (record.sequence, record.batch_index);
        let shard = record.shard_id;
        self.shard = Some(shard);
        let (batch, resume) = (self.batch, self.resume);
        let written = self
            .visible(shard, &partition)
            .await?
            .iter()
            .find(|f| (f.name.batch == batch || Some(f.name.batch) == resume) && f.name.holds(pos))
            .map(|f| f.found && f.name.late);
        if let Some(found_late) = written {
            self.skipped_late += u64::from(found_late);
            return Ok(());
        }
        let p = self.pending.entry(partition).or_default();
        p.rows.push(row.into_iter().cloned().collect());
        p.first.get_or_insert(pos);
        p.last = pos;
        Ok(())
    }

    async fn flush_all(&mut self) -> Result<(), SinkError> {
        let Some(shard) = self.shard else {
            return Ok(());
        };
        let pending = std::mem::take(&mut self.pending);
        for (partition, p) in pending {
            let Some(first) = p.first else { continue };
            let late = match &self.place {
                Place::Local(table) => super::markers::is_marked(&partition_dir(table, &partition)),
                Place::Remote(store) => super::markers::is_marked_remote(store, &partition).await,
            };
            let name = FileName {
                shard,
                first,
                last: p.last,
                batch: self.batch,
                late,
            };
            let schema = self.schema.clone();
            let types = self.types.clone();
            let rows = p.rows;
            let n = rows.len();
            let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, SinkError> {
                let batch = mapping::record_batch(&schema, &types, &rows)
                    .map_err(|e| SinkError::transient(format!("building a Parquet batch: {e}")))?;
                mapping::parquet_bytes(&batch)
                    .map_err(|e| SinkError::transient(format!("encoding Parquet: {e}")))
            })
            .await
            .map_err(|e| SinkError::transient(format!("the Parquet encoder failed: {e}")))??;
            match &self.place {
                Place::Local(table) => {
                    let dir = partition_dir(table, &partition);
                    let tmp = dir.join(format!(".{}.tmp", name.render()));
                    let (dir2, tmp2) = (dir.clone(), tmp.clone());
                    tokio::task::spawn_blocking(move || -> Result<(), SinkError> {
                        std::fs::create_dir_all(&dir2).map_err(io("creating", &dir2))?;
                        write_synced(&tmp2, &bytes).map_err(io("writing", &tmp2))
                    })
                    .await
                    .map_err(|e| SinkError::transient(format!("the file writer failed: {e}")))??;
                    // The rename happens here, not in the blocking task, so a dropped flush
                    // never makes a file visible after the fact.
                    let target = dir.join(name.render());
                    std::fs::rename(&tmp, &target).map_err(io("publishing", &target))?;
                    sync_dir(&dir).map_err(io("syncing", &dir))?;
                }
                Place::Remote(store) => {
                    store
                        .put(&object_key(&partition, &name.render()), bytes.into())
                        .await?;
                }
            };
            if let Some(files) = self.seen.get_mut(&partition) {
                files.push(Seen { name, found: false });
            }
            if late {
                self.late_rows += n as u64;
                tracing::warn!(
                    partition = %partition,
                    rows = n,
                    "late rows written into a partition that already has _SUCCESS (a new file)"
                );
            }
        }
        Ok(())
    }
}

fn partition_dir(table: &Path, partition: &str) -> PathBuf {
    if partition.is_empty() {
        table.to_path_buf()
    } else {
        table.join(partition)
    }
}

/// The key of `name` in a partition, below the table's prefix.
pub(super) fn object_key(partition: &str, name: &str) -> String {
    if partition.is_empty() {
        name.to_string()
    } else {
        format!("{partition}/{name}")
    }
}

fn io<'a>(what: &'a str, path: &'a Path) -> impl Fn(std::io::Error) -> SinkError + 'a {
    move |e| SinkError::transient(format!("{what} {}: {e}", path.display())).with_source(e)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// This shard's data files in a partition folder (none when it does not exist yet).
fn list_files(dir: &Path, shard: u32) -> std::io::Result<Vec<FileName>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut out = vec![];
    let leftover = format!(".shard-{shard}_");
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(f) = FileName::parse(name) {
            if f.shard == shard {
                out.push(f);
            }
        } else if name.starts_with(&leftover) && name.ends_with(".tmp") {
            // A temporary file of a write that never became visible (a crash): its rows
            // come again and are written anew.
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Sink for OdpsSink {
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError> {
        if let Some(r) = records.first() {
            let start = (r.sequence, r.batch_index);
            let resume = *self.resume.get_or_insert(start);
            if start != self.batch {
                // A new delivery: files of earlier ones (but the resume point's) never match
                // again; dropping them keeps the per-row check short in long-lived partitions.
                for files in self.seen.values_mut() {
                    files.retain(|f| f.name.batch == resume || f.name.batch == start);
                }
            }
            self.batch = start;
        }
        self.skipped_late = 0;
        for r in records {
            if let Err(e) = self.take_one(r).await {
                self.pending.clear();
                return Err(e);
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let result = self.flush_all().await;
        self.pending.clear();
        if result.is_ok() {
            self.late_rows += std::mem::take(&mut self.skipped_late);
        }
        result
    }

    fn take_late_rows(&mut self) -> u64 {
        std::mem::take(&mut self.late_rows)
    }
}
