//! lakebench: rows/s of the SINK_ODPS writer alone (no server, no log) against a hand-written
//! baseline that writes the same rows into the same Parquet files (same partitions, same rows
//! per file, same writer settings: zstd at its default level, one row group per file) the
//! plainest way: columns built straight from the records, encoded, written (temporary name,
//! fsync, rename) or put through the same object-store client.
//!
//! usage: lakebench local|s3 ROWS SHARDS BATCH [ROUNDS]
//!   local: a fresh directory under $LAKEBENCH_DIR (default /tmp) per round;
//!   s3:    a fresh bucket on the S3 endpoint of scripts/services.sh (SLUICE_TEST_S3_ENDPOINT,
//!          _ACCESS_KEY, _SECRET_KEY; s3s-fs keeps a bucket as a directory of SLUICE_TEST_S3_DIR).
//! Each shard is one task (as the connector runtime runs them); each task delivers its rows in
//! deliveries of BATCH records (write + flush: one file per partition a delivery touches).
//! Rounds alternate sink and baseline; the best round of each is compared.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use arrow_array::builder::{
    Decimal128Builder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::json;
use sluice_connect::sink::{Columns, SinkData, SinkRecord};
use sluice_connect::sinks::objstore::{Store, StoreSpec};
use sluice_connect::sinks::odps::{self, LakeSettings, OdpsConfig};
use sluice_connect::sinks::Secret;
use sluice_connect::sinks::tls::{ConnectorTls, TlsMode};
use sluice_proto::{FieldType, Value};

/// 2026-11-24 18:00:00 UTC.
const T0: i64 = 1_795_543_200_000;
const WINDOW_MS: i64 = 15 * 60_000;
const NAMES: [&str; 6] = ["id", "event_time", "region", "note", "price", "score"];
const TYPES: [FieldType; 6] = [
    FieldType::Bigint,
    FieldType::Timestamp,
    FieldType::String,
    FieldType::String,
    FieldType::Decimal,
    FieldType::Double,
];

#[derive(Clone)]
enum Target {
    Local(PathBuf),
    S3 {
        endpoint: String,
        key: String,
        secret: String,
        dir: PathBuf,
    },
}

/// Record `seq` of a shard: system times 4 ms apart (a million rows span a few 15-minute
/// windows), ~100 bytes of values.
fn record(shard: u32, seq: u64) -> SinkRecord {
    let st = T0 + seq as i64 * 4;
    let values = vec![
        Value::Int(shard as i64 * 1_000_000_000 + seq as i64),
        Value::Int(st * 1000),
        Value::Str(["east", "west", "north", "south"][seq as usize % 4].into()),
        Value::Str(format!(
            "note-{seq:012}-abcdefghijklmnopqrstuvwxyz-0123456789"
        )),
        Value::Decimal(format!("{}.{:03}", seq % 100_000, seq % 1000)),
        Value::Double(seq as f64 / 4.0),
    ];
    SinkRecord {
        shard_id: shard,
        sequence: seq,
        batch_index: 0,
        system_time: st,
        data: SinkData::Tuple(values),
        attributes: vec![],
    }
}

fn config(target: &Target, table_root: &str) -> OdpsConfig {
    let pc = json!([{"key":"ds","value":"%Y%m%d"},{"key":"hh","value":"%H"},{"key":"mm","value":"%M"}]);
    let mut wire = json!({"Project": "bench", "Table": "events", "PartitionMode": "SYSTEM_TIME",
        "TimeRange": 15, "PartitionConfig": pc.to_string(), "TunnelEndpoint": "local"});
    match target {
        Target::Local(_) => wire["OdpsEndpoint"] = json!(format!("file://{table_root}")),
        Target::S3 {
            endpoint,
            key,
            secret,
            ..
        } => {
            wire["OdpsEndpoint"] = json!(format!("s3://{table_root}"));
            wire["TunnelEndpoint"] = json!(endpoint);
            wire["AccessId"] = json!(key);
            wire["AccessKey"] = json!(secret);
        }
    }
    OdpsConfig::from_wire(&wire).expect("a valid SINK_ODPS config")
}

/// A fresh place for one round: (the table root as the config names it, its directory).
fn fresh(target: &Target, name: &str) -> Result<(String, PathBuf)> {
    match target {
        Target::Local(base) => {
            let dir = base.join(name);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            Ok((dir.display().to_string(), dir))
        }
        Target::S3 { dir, .. } => {
            let bucket = format!("{name}-{}", std::process::id());
            let d = dir.join(&bucket);
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d)?; // s3s-fs: a bucket is a directory
            Ok((format!("{bucket}/wh"), d))
        }
    }
}

/// The files of the table below `dir`: (count, bytes) of `.parquet` files.
fn files_of(dir: &Path) -> (usize, u64) {
    let (mut n, mut bytes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                n += 1;
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    (n, bytes)
}

fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|x| x.1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn run_sink(
    target: &Target,
    name: &str,
    shards: &[Arc<Vec<SinkRecord>>],
    batch: usize,
) -> Result<(f64, f64, PathBuf)> {
    let (root, dir) = fresh(target, name)?;
    let cfg = config(target, &root);
    let columns = Arc::new(Columns {
        names: NAMES.iter().map(|s| s.to_string()).collect(),
        types: TYPES.to_vec(),
    });
    let (t, c) = (Instant::now(), cpu_secs());
    let mut tasks = vec![];
    for recs in shards {
        let (cfg, columns, recs) = (cfg.clone(), columns.clone(), recs.clone());
        tasks.push(tokio::spawn(async move {
            let mut sink = odps::open_with(cfg, columns, LakeSettings::default()).await?;
            for chunk in recs.chunks(batch) {
                sink.write(chunk).await?;
                sink.flush().await?;
            }
            Ok::<_, sluice_connect::sink::SinkError>(())
        }));
    }
    for t in tasks {
        t.await?.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok((t.elapsed().as_secs_f64(), cpu_secs() - c, dir))
}

// ---- the baseline ---------------------------------------------------------------------------

fn file_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("region", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("price", DataType::Decimal128(38, 18), true),
        Field::new("score", DataType::Float64, true),
    ]))
}

/// `123.045` → 123045000000000000000 (scale 18); the bench's decimals always fit.
fn decimal(text: &str) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let mut v: i128 = int.parse::<i128>().unwrap_or(0) * 10i128.pow(18);
    if !frac.is_empty() {
        v += frac.parse::<i128>().unwrap_or(0) * 10i128.pow(18 - frac.len() as u32);
    }
    v
}

fn encode(schema: &SchemaRef, rows: &[&SinkRecord]) -> Result<Vec<u8>> {
    let n = rows.len();
    let mut id = Int64Builder::with_capacity(n);
    let mut ev = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut region = StringBuilder::with_capacity(n, n * 8);
    let mut note = StringBuilder::with_capacity(n, n * 64);
    let mut price = Decimal128Builder::with_capacity(n).with_precision_and_scale(38, 18)?;
    let mut score = Float64Builder::with_capacity(n);
    for r in rows {
        let SinkData::Tuple(v) = &r.data else {
            bail!("tuple records only")
        };
        match (&v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) {
            (
                Value::Int(a),
                Value::Int(b),
                Value::Str(c),
                Value::Str(d),
                Value::Decimal(e),
                Value::Double(f),
            ) => {
                id.append_value(*a);
                ev.append_value(*b);
                region.append_value(c);
                note.append_value(d);
                price.append_value(decimal(e));
                score.append_value(*f);
            }
            _ => bail!("unexpected values"),
        }
    }
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(ev.finish()),
        Arc::new(region.finish()),
        Arc::new(note.finish()),
        Arc::new(price.finish()),
        Arc::new(score.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by("sluice".into())
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema.clone(), Some(props))?;
    w.write(&batch)?;
    w.close()?;
    Ok(out)
}

fn partition_of(st: i64) -> String {
    let start = st - st.rem_euclid(WINDOW_MS);
    chrono::DateTime::from_timestamp_millis(start)
        .expect("a valid time")
        .format("ds=%Y%m%d/hh=%H/mm=%M")
        .to_string()
}

async fn run_baseline(
    target: &Target,
    name: &str,
    shards: &[Arc<Vec<SinkRecord>>],
    batch: usize,
) -> Result<(f64, f64, PathBuf)> {
    let (root, dir) = fresh(target, name)?;
    let table = "bench.db/events";
    let store = match target {
        Target::Local(_) => None,
        Target::S3 {
            endpoint,
            key,
            secret,
            ..
        } => {
            let (bucket, prefix) = root.split_once('/').expect("bucket/prefix");
            let spec = StoreSpec::s3(endpoint, bucket, &format!("{prefix}/{table}"))
                .map_err(anyhow::Error::msg)?
                .with_credentials(key, &Secret::new(secret.clone()));
            let tls = ConnectorTls::new(TlsMode::default(), None).map_err(anyhow::Error::msg)?;
            Some(Arc::new(
                Store::open(&spec, &tls).map_err(|e| anyhow::anyhow!("{e}"))?,
            ))
        }
    };
    let local = dir.join(table);
    let schema = file_schema();
    let (t, c) = (Instant::now(), cpu_secs());
    let mut tasks = vec![];
    for recs in shards {
        let (recs, store, local, schema) =
            (recs.clone(), store.clone(), local.clone(), schema.clone());
        tasks.push(tokio::spawn(async move {
            for chunk in recs.chunks(batch) {
                // one file per partition the delivery touches, as the sink does
                let mut groups: Vec<(String, Vec<&SinkRecord>)> = vec![];
                for r in chunk {
                    let p = partition_of(r.system_time);
                    match groups.last_mut() {
                        Some((q, rows)) if *q == p => rows.push(r),
                        _ => groups.push((p, vec![r])),
                    }
                }
                for (part, rows) in groups {
                    let name = format!(
                        "shard-{}_{}.0-{}.0.parquet",
                        rows[0].shard_id,
                        rows[0].sequence,
                        rows[rows.len() - 1].sequence
                    );
                    let owned: Vec<SinkRecord> = rows.into_iter().cloned().collect();
                    let schema = schema.clone();
                    let bytes = tokio::task::spawn_blocking(move || {
                        let refs: Vec<&SinkRecord> = owned.iter().collect();
                        encode(&schema, &refs)
                    })
                    .await??;
                    match &store {
                        Some(store) => store
                            .put(&format!("{part}/{name}"), bytes.into())
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))?,
                        None => {
                            let d = local.join(&part);
                            tokio::task::spawn_blocking(move || -> Result<()> {
                                use std::io::Write;
                                std::fs::create_dir_all(&d)?;
                                let tmp = d.join(format!(".{name}.tmp"));
                                let mut f = std::fs::File::create(&tmp)?;
                                f.write_all(&bytes)?;
                                f.sync_all()?;
                                std::fs::rename(&tmp, d.join(&name))?;
                                std::fs::File::open(&d)?.sync_all()?;
                                Ok(())
                            })
                            .await??
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((t.elapsed().as_secs_f64(), cpu_secs() - c, dir))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        bail!("usage: lakebench local|s3 ROWS SHARDS BATCH [ROUNDS]");
    }
    let rows: u64 = args[2].parse().context("ROWS")?;
    let shards: u32 = args[3].parse().context("SHARDS")?;
    let batch: usize = args[4].parse().context("BATCH")?;
    let rounds: usize = args.get(5).map(|r| r.parse()).transpose()?.unwrap_or(3);
    let env = |k: &str| std::env::var(k).with_context(|| format!("{k} is not set"));
    let target = match args[1].as_str() {
        "local" => Target::Local(
            PathBuf::from(std::env::var("LAKEBENCH_DIR").unwrap_or_else(|_| "/tmp".into()))
                .join(format!("lakebench-{}", std::process::id())),
        ),
        "s3" => Target::S3 {
            endpoint: env("SLUICE_TEST_S3_ENDPOINT")?,
            key: env("SLUICE_TEST_S3_ACCESS_KEY")?,
            secret: env("SLUICE_TEST_S3_SECRET_KEY")?,
            dir: PathBuf::from(env("SLUICE_TEST_S3_DIR")?),
        },
        other => bail!("unknown target {other:?}: local or s3"),
    };
    let per_shard = rows / shards as u64;
    let data: Vec<Arc<Vec<SinkRecord>>> = (0..shards)
        .map(|s| Arc::new((0..per_shard).map(|q| record(s, q)).collect()))
        .collect();
    let total = per_shard * shards as u64;
    println!(
        "lakebench {}: {total} rows, {shards} shards, deliveries of {batch} records, {rounds} rounds",
        args[1]
    );
    let (mut best_sink, mut best_base) = (f64::MAX, f64::MAX);
    let (mut sink_cpu, mut base_cpu) = (0.0, 0.0);
    for round in 0..rounds {
        let (secs, cpu, dir) = run_sink(&target, &format!("lb-sink-{round}"), &data, batch).await?;
        let (files, bytes) = files_of(&dir);
        println!(
            "  round {round} sink     {:>10.0} rows/s  {secs:.2} s  cpu {cpu:.2} s  {files} files {bytes} bytes",
            total as f64 / secs
        );
        if secs < best_sink {
            (best_sink, sink_cpu) = (secs, cpu);
        }
        let _ = std::fs::remove_dir_all(&dir);
        let (secs, cpu, dir) =
            run_baseline(&target, &format!("lb-base-{round}"), &data, batch).await?;
        let (files, bytes) = files_of(&dir);
        println!(
            "  round {round} baseline {:>10.0} rows/s  {secs:.2} s  cpu {cpu:.2} s  {files} files {bytes} bytes",
            total as f64 / secs
        );
        if secs < best_base {
            (best_base, base_cpu) = (secs, cpu);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Target::Local(base) = &target {
        let _ = std::fs::remove_dir_all(base);
    }
    let (s, b) = (total as f64 / best_sink, total as f64 / best_base);
    println!(
        "RESULT {} sink {s:.0} rows/s (cpu {:.2} s/M rows), baseline {b:.0} rows/s (cpu {:.2} s/M rows): {:.1} % of the baseline",
        args[1],
        sink_cpu * 1e6 / total as f64,
        base_cpu * 1e6 / total as f64,
        100.0 * s / b
    );
    Ok(())
}
