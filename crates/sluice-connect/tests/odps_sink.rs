//! SINK_ODPS into a `file://` warehouse: the rows of 4 shards over several windows, in each
//! partition mode, read back from the Parquet files (every row once, in its partition, with
//! equal values); a crash after files became visible but before the checkpoint (no gap, no
//! duplicate, also when the deliveries after the restart are smaller); late rows counted once
//! (also from `_late` file names after a crash); an offset reset writes again; append field; MaxCompute endpoints hang.
//! The same into an `s3://` warehouse on s3s-fs (`scripts/services.sh`, objects kept as files
//! at `$SLUICE_TEST_S3_DIR/<bucket>/<key>`): rows once, crash recovery from the listed object
//! names, an outage behind a TCP proxy (transient, then recovery) and the configuration
//! errors (refused key, missing bucket).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use sluice_connect::sink::{Columns, ErrorKind, SharedColumns, SinkData, SinkRecord};
use sluice_connect::sinks::odps::{self, OdpsConfig};
use sluice_proto::{FieldType, Value};

const MIN: i64 = 60_000;
/// 2026-11-24 18:00:00 UTC.
const T0: i64 = 1_795_543_200_000;

fn config(root: &Path, mode: &str, pc: serde_json::Value) -> OdpsConfig {
    OdpsConfig::from_wire(&json!({"Project": "proj", "Table": "events",
        "OdpsEndpoint": format!("file://{}", root.display()), "TunnelEndpoint": "local",
        "PartitionMode": mode, "TimeRange": 15, "PartitionConfig": pc.to_string()}))
    .unwrap()
}

fn time_pc() -> serde_json::Value {
    json!([{"key":"ds","value":"%Y%m%d"},{"key":"hh","value":"%H"},{"key":"mm","value":"%M"}])
}

fn columns(extra: bool) -> SharedColumns {
    let mut names = vec!["id", "event_time", "region", "note"];
    let mut types = vec![
        FieldType::Bigint,
        FieldType::Timestamp,
        FieldType::String,
        FieldType::String,
    ];
    if extra {
        names.push("extra");
        types.push(FieldType::String);
    }
    Arc::new(Columns {
        names: names.into_iter().map(String::from).collect(),
        types,
    })
}

/// Record `i` of a shard: system time walks 7 minutes per record from T0 (so 10 records span
/// several 15-minute windows); event time runs 3 minutes behind it.
fn record(shard: u32, seq: u64, idx: u32, id: i64, extra: bool) -> SinkRecord {
    let st = T0 + (seq as i64) * 7 * MIN;
    let mut values = vec![
        Value::Int(id),
        Value::Int((st - 3 * MIN) * 1000),
        Value::Str(if id % 2 == 0 { "east" } else { "west/x" }.into()),
        Value::Str(format!("n{id}")),
    ];
    if extra {
        values.push(Value::Str(format!("e{id}")));
    }
    SinkRecord {
        shard_id: shard,
        sequence: seq,
        batch_index: idx,
        system_time: st,
        data: SinkData::Tuple(values),
        attributes: vec![],
    }
}

fn id_of(shard: u32, seq: u64, idx: u32) -> i64 {
    shard as i64 * 1_000_000 + seq as i64 * 10 + idx as i64
}

/// A shard's records for sequences `seqs`, two per sequence (batch-protocol entries).
fn shard_records(shard: u32, seqs: std::ops::Range<u64>, extra: bool) -> Vec<SinkRecord> {
    seqs.flat_map(|q| (0..2).map(move |i| record(shard, q, i, id_of(shard, q, i), extra)))
        .collect()
}

/// (partition path, id, note, event_time µs, extra) of every row in the table.
type Row = (String, i64, String, Option<i64>, Option<String>);

fn read_table(table: &Path) -> Vec<Row> {
    read_files(table, true)
}

/// `strict`: a temporary file fails the test (s3s-fs keeps its own beside the objects).
fn read_files(table: &Path, strict: bool) -> Vec<Row> {
    let mut out = vec![];
    let mut stack = vec![table.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            assert!(
                !strict || !name.ends_with(".tmp"),
                "a temporary file is left: {name}"
            );
            if !name.ends_with(".parquet") {
                continue;
            }
            let part = p
                .parent()
                .unwrap()
                .strip_prefix(table)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let file = std::fs::File::open(&p).unwrap();
            for batch in ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
            {
                let b = batch.unwrap();
                let col = |n: &str| b.column_by_name(n).cloned();
                let ids = col("id").unwrap();
                let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
                let notes = col("note").unwrap();
                let notes = notes.as_any().downcast_ref::<StringArray>().unwrap();
                let ets = col("event_time");
                let extra = col("extra");
                for r in 0..b.num_rows() {
                    let et = ets.as_ref().map(|a| {
                        a.as_any()
                            .downcast_ref::<TimestampMicrosecondArray>()
                            .unwrap()
                            .value(r)
                    });
                    let ex = extra.as_ref().and_then(|a| {
                        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
                        (!a.is_null(r)).then(|| a.value(r).to_string())
                    });
                    out.push((
                        part.clone(),
                        ids.value(r),
                        notes.value(r).to_string(),
                        et,
                        ex,
                    ));
                }
            }
        }
    }
    out
}

fn table_dir(root: &Path) -> PathBuf {
    root.join("proj.db").join("events")
}

fn window_path(ms: i64) -> String {
    let start = ms - ms.rem_euclid(15 * MIN);
    let t = chrono::DateTime::from_timestamp_millis(start).unwrap();
    t.format("ds=%Y%m%d/hh=%H/mm=%M").to_string()
}

async fn deliver(cfg: &OdpsConfig, cols: &SharedColumns, batches: &[Vec<SinkRecord>]) {
    let mut sink = odps::open(cfg.clone(), cols.clone()).await.unwrap();
    for b in batches {
        sink.write(b).await.unwrap();
        sink.flush().await.unwrap();
    }
}

fn expected_partition(mode: &str, r: &SinkRecord) -> String {
    let SinkData::Tuple(v) = &r.data else {
        unreachable!()
    };
    match mode {
        "SYSTEM_TIME" => window_path(r.system_time),
        "EVENT_TIME" => match v[1] {
            Value::Int(us) => window_path(us / 1000),
            _ => unreachable!(),
        },
        _ => match &v[2] {
            Value::Str(s) => format!("region={}", s.replace('/', "%2F")),
            _ => unreachable!(),
        },
    }
}

#[tokio::test]
async fn every_row_once_in_its_partition_in_each_mode() {
    for mode in ["SYSTEM_TIME", "EVENT_TIME", "USER_DEFINE"] {
        let dir = tempfile::tempdir().unwrap();
        let pc = if mode == "USER_DEFINE" {
            json!([{"key":"region","value":""}])
        } else {
            time_pc()
        };
        let cfg = config(dir.path(), mode, pc);
        let cols = columns(false);
        let mut all = vec![];
        for shard in 0..4 {
            // Three deliveries per shard, of uneven sizes, spanning ~10 windows.
            let recs = shard_records(shard, 0..20, false);
            all.extend(recs.clone());
            let batches = vec![
                recs[..6].to_vec(),
                recs[6..25].to_vec(),
                recs[25..].to_vec(),
            ];
            deliver(&cfg, &cols, &batches).await;
        }
        let rows = read_table(&table_dir(dir.path()));
        assert_eq!(rows.len(), all.len(), "{mode}: every row once");
        let by_id: BTreeMap<i64, &Row> = rows.iter().map(|r| (r.1, r)).collect();
        assert_eq!(by_id.len(), all.len(), "{mode}: no duplicate");
        let mut partitions = std::collections::BTreeSet::new();
        for r in &all {
            let SinkData::Tuple(v) = &r.data else {
                unreachable!()
            };
            let Value::Int(id) = v[0] else { unreachable!() };
            let row = by_id[&id];
            assert_eq!(row.0, expected_partition(mode, r), "{mode}: id {id}");
            assert_eq!(row.2, format!("n{id}"));
            if mode != "USER_DEFINE" {
                assert_eq!(Value::Int(row.3.unwrap()), v[1]);
            }
            partitions.insert(row.0.clone());
        }
        if mode != "USER_DEFINE" {
            assert!(
                partitions.len() >= 8,
                "{mode}: several windows: {partitions:?}"
            );
        } else {
            assert_eq!(partitions.len(), 2, "{partitions:?}");
        }
    }
}

#[tokio::test]
async fn a_crash_after_files_became_visible_leaves_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "SYSTEM_TIME", time_pc());
    let cols = columns(false);
    let recs = shard_records(2, 0..30, false);
    // Delivery 1 is checkpointed; delivery 2 (from sequence 10) became visible but the
    // process died before its checkpoint; a half-written temporary file is left too.
    deliver(&cfg, &cols, &[recs[..20].to_vec(), recs[20..40].to_vec()]).await;
    let in_flight = table_dir(dir.path()).join(window_path(T0 + 10 * 7 * MIN));
    std::fs::write(
        in_flight.join(".shard-2_10.0-10.1_batch-10.0.parquet.tmp"),
        b"PAR1 half",
    )
    .unwrap();
    // After the restart, delivery resumes at the checkpoint (sequence 10) with a larger batch.
    deliver(&cfg, &cols, &[recs[20..].to_vec()]).await;
    let rows = read_table(&table_dir(dir.path()));
    let mut ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
    ids.sort();
    let mut want: Vec<i64> = (0..30)
        .flat_map(|q| (0..2).map(move |i| id_of(2, q, i)))
        .collect();
    want.sort();
    assert_eq!(ids, want, "no gap, no duplicate");

    // An offset reset to sequence 5 asks for the rows again: they are written again.
    deliver(&cfg, &cols, &[recs[10..30].to_vec()]).await;
    assert_eq!(read_table(&table_dir(dir.path())).len(), 60 + 20);
}

#[tokio::test]
async fn after_a_crash_smaller_deliveries_still_skip_the_files_ahead_of_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "SYSTEM_TIME", time_pc());
    let cols = columns(false);
    let recs = shard_records(2, 0..30, false);
    // Delivery 1 is checkpointed; delivery 2 (sequences 10..20) became visible, then the
    // process died before its checkpoint.
    deliver(&cfg, &cols, &[recs[..20].to_vec(), recs[20..40].to_vec()]).await;
    // After the restart the batch limits are smaller: delivery resumes at the checkpoint but
    // the interrupted run comes back in several deliveries, the later ones starting inside it.
    let smaller = [
        recs[20..26].to_vec(),
        recs[26..34].to_vec(),
        recs[34..50].to_vec(),
        recs[50..].to_vec(),
    ];
    deliver(&cfg, &cols, &smaller).await;
    let mut ids: Vec<i64> = read_table(&table_dir(dir.path()))
        .iter()
        .map(|r| r.1)
        .collect();
    ids.sort();
    let mut want: Vec<i64> = recs
        .iter()
        .map(|r| id_of(2, r.sequence, r.batch_index))
        .collect();
    want.sort();
    assert_eq!(ids, want, "no gap, no duplicate");
}

#[tokio::test]
async fn late_rows_are_counted_once_also_when_a_crash_lost_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "EVENT_TIME", time_pc());
    let cols = columns(false);
    // Event time of sequence q is T0 + 7q - 3 minutes: sequences 1 and 2 (4 rows) fall in
    // 18:00-18:15, which is already complete.
    let marked = table_dir(dir.path()).join(window_path(T0));
    std::fs::create_dir_all(&marked).unwrap();
    std::fs::write(marked.join("_SUCCESS"), b"").unwrap();
    let recs = shard_records(1, 0..6, false);
    let mut sink = odps::open(cfg.clone(), cols.clone()).await.unwrap();
    sink.write(&recs).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(sink.take_late_rows(), 4, "the late rows of the flush");
    assert_eq!(sink.take_late_rows(), 0, "taken once");
    let late_files: Vec<String> = std::fs::read_dir(&marked)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with("_late.parquet"))
        .collect();
    assert_eq!(late_files.len(), 1, "the late file is named so");
    drop(sink);
    // The process died before the checkpoint: the delivery comes again to a new writer, which
    // skips the visible rows and counts the late ones from the file name.
    let mut sink = odps::open(cfg.clone(), cols.clone()).await.unwrap();
    sink.write(&recs).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(sink.take_late_rows(), 4, "recovered from the file name");
    assert_eq!(
        read_table(&table_dir(dir.path())).len(),
        recs.len(),
        "no duplicate"
    );
    // The next delivery has no late rows (its partitions have no marker).
    sink.write(&shard_records(1, 6..10, false)).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(sink.take_late_rows(), 0);
}

#[tokio::test]
async fn append_field_reaches_new_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "SYSTEM_TIME", time_pc());
    deliver(&cfg, &columns(false), &[shard_records(0, 0..3, false)]).await;
    deliver(&cfg, &columns(true), &[shard_records(0, 3..6, true)]).await;
    let rows = read_table(&table_dir(dir.path()));
    assert_eq!(rows.len(), 12);
    for r in rows {
        let seq = (r.1 % 1_000_000) / 10;
        if seq < 3 {
            assert_eq!(r.4, None);
        } else {
            assert_eq!(r.4, Some(format!("e{}", r.1)));
        }
    }
}

#[tokio::test]
async fn bad_decimals_are_bad_records_and_maxcompute_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "SYSTEM_TIME", time_pc());
    let cols = Arc::new(Columns {
        names: vec!["id".into(), "price".into()],
        types: vec![FieldType::Bigint, FieldType::Decimal],
    });
    let mut sink = odps::open(cfg.clone(), cols).await.unwrap();
    let rec = |d: &str| SinkRecord {
        shard_id: 0,
        sequence: 1,
        batch_index: 0,
        system_time: T0,
        data: SinkData::Tuple(vec![Value::Int(1), Value::Decimal(d.into())]),
        attributes: vec![],
    };
    let e = sink.write(&[rec(&"9".repeat(21))]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRecord, "{e}");
    assert!(e.message.contains("decimal(38, 18)"), "{e}");
    sink.flush().await.unwrap();
    assert!(
        read_table(&table_dir(dir.path())).is_empty(),
        "the failed write left rows"
    );

    let mut mc = cfg.clone();
    mc.odps_endpoint = "http://service.cn-hangzhou.maxcompute.aliyun.com/api".into();
    let e = odps::open(mc, columns(false)).await.err().unwrap();
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(
        e.message
            .contains("MaxCompute tunnel is not available self-hosted"),
        "{e}"
    );
}

// ---- s3:// warehouses on s3s-fs ----------------------------------------------------------

use common::env;

/// A fresh bucket (s3s-fs: a directory) and its directory.
fn s3_bucket(name: &str) -> (String, PathBuf) {
    let bucket = format!("{name}-{}", std::process::id());
    let dir = Path::new(&env("SLUICE_TEST_S3_DIR")).join(&bucket);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (bucket, dir)
}

fn s3_config(endpoint: &str, bucket: &str, secret: &str) -> OdpsConfig {
    OdpsConfig::from_wire(&json!({"Project": "proj", "Table": "events",
        "OdpsEndpoint": format!("s3://{bucket}/wh/lake"), "TunnelEndpoint": endpoint,
        "AccessId": env("SLUICE_TEST_S3_ACCESS_KEY"), "AccessKey": secret,
        "PartitionMode": "SYSTEM_TIME", "TimeRange": 15,
        "PartitionConfig": time_pc().to_string()}))
    .unwrap()
}

fn s3_table(dir: &Path) -> PathBuf {
    dir.join("wh/lake/proj.db/events")
}

fn sorted_ids(rows: &[Row]) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
    ids.sort();
    ids
}

fn want_ids(shard: u32, seqs: std::ops::Range<u64>) -> Vec<i64> {
    let mut w: Vec<i64> = seqs
        .flat_map(|q| (0..2).map(move |i| id_of(shard, q, i)))
        .collect();
    w.sort();
    w
}

#[tokio::test]
async fn s3_warehouse_rows_once_and_crash_recovery_from_object_names() {
    let (bucket, dir) = s3_bucket("odps-s3");
    let sk = env("SLUICE_TEST_S3_SECRET_KEY");
    let cfg = s3_config(&env("SLUICE_TEST_S3_ENDPOINT"), &bucket, &sk);
    let cols = columns(false);
    let recs = shard_records(1, 0..30, false);
    // Delivery 1 is checkpointed; delivery 2 became visible but its checkpoint was lost.
    deliver(&cfg, &cols, &[recs[..20].to_vec(), recs[20..40].to_vec()]).await;
    let rows = read_files(&s3_table(&dir), false);
    assert_eq!(sorted_ids(&rows), want_ids(1, 0..20));
    for r in &rows {
        let rec = recs.iter().find(|x| match &x.data {
            SinkData::Tuple(v) => v[0] == Value::Int(r.1),
            _ => false,
        });
        assert_eq!(r.0, expected_partition("SYSTEM_TIME", rec.unwrap()));
    }
    // Restart: delivery resumes at the checkpoint (sequence 10); the objects of delivery 2
    // are found by listing, their rows are not written twice.
    deliver(&cfg, &cols, &[recs[20..].to_vec()]).await;
    let rows = read_files(&s3_table(&dir), false);
    assert_eq!(
        sorted_ids(&rows),
        want_ids(1, 0..30),
        "no gap, no duplicate"
    );

    // _SUCCESS markers are objects, written for complete windows only.
    let settings = odps::LakeSettings::default();
    let done = T0 + 30 * MIN; // 18:00 and 18:15 complete
    let c = (*cols).clone();
    let cfg2 = cfg.clone();
    let marked = tokio::task::spawn_blocking(move || {
        odps::markers::mark(&cfg2, &c, done, settings, None).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(marked, vec![window_path(T0), window_path(T0 + 15 * MIN)]);
    let table = s3_table(&dir);
    assert!(table.join(window_path(T0)).join("_SUCCESS").is_file());
    assert!(!table
        .join(window_path(T0 + 30 * MIN))
        .join("_SUCCESS")
        .exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TCP proxy to `target` that can be cut (every connection closed, the port refused) and
/// restored on the same port.
struct Proxy {
    port: u16,
    target: std::net::SocketAddr,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr, port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let t2 = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                t2.lock().unwrap().push(h);
            }
        });
        tasks.lock().unwrap().push(accept);
        Proxy {
            port,
            target,
            tasks,
        }
    }

    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test]
async fn s3_outage_is_transient_then_recovers_and_bad_keys_are_configuration() {
    let (bucket, dir) = s3_bucket("odps-s3-outage");
    let sk = env("SLUICE_TEST_S3_SECRET_KEY");
    let target: std::net::SocketAddr = format!("127.0.0.1:{}", env("SLUICE_TEST_S3_PORT"))
        .parse()
        .unwrap();
    let proxy = Proxy::start(target, 0).await;
    let cfg = s3_config(&format!("http://127.0.0.1:{}", proxy.port), &bucket, &sk);
    let cols = columns(false);
    let recs = shard_records(0, 0..20, false);
    let mut sink = odps::open(cfg.clone(), cols.clone()).await.unwrap();
    sink.write(&recs[..20]).await.unwrap();
    sink.flush().await.unwrap();

    // The store goes away: the flush fails transient, within the request's short retries.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let mut failed = None;
    match sink.write(&recs[20..]).await {
        Err(e) => failed = Some(e),
        Ok(()) => {
            if let Err(e) = sink.flush().await {
                failed = Some(e);
            }
        }
    }
    let e = failed.expect("a write during the outage failed");
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // A new task cannot open meanwhile either (transient: it hangs and retries).
    let e = odps::open(cfg.clone(), cols.clone()).await.err().unwrap();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");

    // Back: the runtime delivers again from the checkpoint; every row once.
    let proxy2 = Proxy::start(proxy.target, proxy.port).await;
    sink.write(&recs[20..]).await.unwrap();
    sink.flush().await.unwrap();
    let rows = read_files(&s3_table(&dir), false);
    assert_eq!(sorted_ids(&rows), want_ids(0, 0..20));
    proxy2.cut();

    // A refused key pair and a missing bucket are configuration errors.
    let endpoint = env("SLUICE_TEST_S3_ENDPOINT");
    let e = odps::open(s3_config(&endpoint, &bucket, "wrong-secret"), cols.clone())
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    assert!(!e.message.contains("wrong-secret"));
    let e = odps::open(s3_config(&endpoint, "no-such-bucket-odps", &sk), cols)
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::Config, "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
