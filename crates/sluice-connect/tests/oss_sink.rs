//! SINK_OSS against s3s-fs (started by `scripts/services.sh`, which keeps each object as a
//! file at `$SLUICE_TEST_S3_DIR/<bucket>/<key>`): objects parse and hold every row once,
//! re-delivery overwrites, rotation by size, and the error kinds of an outage, bad credentials
//! and a missing bucket.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{columns, env, s};
use serde_json::json;
use sluice_connect::sink::{ErrorKind, SharedColumns, Sink, SinkData, SinkError, SinkRecord};
use sluice_connect::sinks::oss::{self, OssConfig, OssSink};
use sluice_proto::{FieldType, Value};

const MINUTE_MS: i64 = 60_000;
/// 2023-11-14T22:00:00Z, the start of a 15-minute window.
const T0: i64 = 1_699_999_200_000;

fn bucket(name: &str) -> (String, PathBuf) {
    let bucket = format!("{name}-{}", std::process::id());
    let dir = Path::new(&env("SLUICE_TEST_S3_DIR")).join(&bucket);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap(); // s3s-fs: a bucket is a directory
    (bucket, dir)
}

fn config(endpoint: &str, bucket: &str, secret: &str) -> OssConfig {
    OssConfig::from_wire(&json!({
        "Endpoint": endpoint, "Bucket": bucket, "Prefix": "pre/fix", "TimeFormat": "%Y%m%d/%H%M",
        "TimeRange": 15, "AuthMode": "ak", "AccessId": env("SLUICE_TEST_S3_ACCESS_KEY"),
        "AccessKey": secret,
    }))
    .unwrap()
}

fn cols() -> SharedColumns {
    columns(&[("id", FieldType::Bigint), ("note", FieldType::String)])
}

/// Records `ids` of shard 3, sequence = id, the one of id i at `T0 + i` minutes.
fn recs(ids: std::ops::Range<u64>) -> Vec<SinkRecord> {
    ids.map(|i| SinkRecord {
        shard_id: 3,
        sequence: i,
        batch_index: 0,
        system_time: T0 + i as i64 * MINUTE_MS,
        data: SinkData::Tuple(vec![Value::Int(i as i64), s(&format!("n,\"{i}\"\n"))]),
        attributes: vec![],
    })
    .collect()
}

/// Every object below `dir`: (key relative to the bucket, content).
fn objects(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "csv") {
                let key = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((key, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Parses the CSV of every object (RFC 4180, as written) into (id, note).
fn rows(objs: &[(String, String)]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for (_, text) in objs {
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let (id, after) = rest.split_once(',').unwrap();
            let after = after.strip_prefix('"').expect("the note is quoted");
            let mut note = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next().expect("closing quote");
                if c == '"' {
                    if after[i + 1..].starts_with('"') {
                        note.push('"');
                        chars.next();
                    } else {
                        break i + 1;
                    }
                } else {
                    note.push(c);
                }
            };
            rest = after[end..]
                .strip_prefix('\n')
                .expect("a record ends with \\n");
            out.push((id.parse().unwrap(), note));
        }
    }
    out.sort();
    out
}

async fn deliver(sink: &mut dyn Sink, records: &[SinkRecord]) -> Result<(), SinkError> {
    tokio::time::timeout(Duration::from_secs(60), async {
        sink.write(records).await?;
        sink.flush().await
    })
    .await
    .expect("a delivery is bounded in time")
}

#[tokio::test]
async fn objects_hold_every_row_once_and_redelivery_overwrites() {
    let (b, dir) = bucket("oss-rows");
    let cfg = config(
        &env("SLUICE_TEST_S3_ENDPOINT"),
        &b,
        &env("SLUICE_TEST_S3_SECRET_KEY"),
    );
    let mut sink = oss::open(cfg, cols()).await.unwrap();
    // 0..20 spans two 15-minute windows; 20..25 a third delivery in the second window.
    deliver(sink.as_mut(), &recs(0..20)).await.unwrap();
    deliver(sink.as_mut(), &recs(20..25)).await.unwrap();
    let objs = objects(&dir);
    let keys: Vec<&str> = objs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "pre/fix/20231114/2200/3_00000000000000000000.0_00000000000000000014.0.csv",
            "pre/fix/20231114/2215/3_00000000000000000015.0_00000000000000000019.0.csv",
            "pre/fix/20231114/2215/3_00000000000000000020.0_00000000000000000024.0.csv",
        ]
    );
    let want: Vec<(i64, String)> = (0..25).map(|i| (i, format!("n,\"{i}\"\n"))).collect();
    assert_eq!(rows(&objs), want);

    // After a crash the same batch comes again: same names, so no duplicate.
    let mut again = oss::open(
        config(
            &env("SLUICE_TEST_S3_ENDPOINT"),
            &b,
            &env("SLUICE_TEST_S3_SECRET_KEY"),
        ),
        cols(),
    )
    .await
    .unwrap();
    deliver(again.as_mut(), &recs(20..25)).await.unwrap();
    assert_eq!(objects(&dir).len(), 3);
    assert_eq!(rows(&objects(&dir)), want);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn large_windows_rotate_by_size() {
    let (b, dir) = bucket("oss-rotate");
    let cfg = config(
        &env("SLUICE_TEST_S3_ENDPOINT"),
        &b,
        &env("SLUICE_TEST_S3_SECRET_KEY"),
    );
    let mut sink = OssSink::new(&cfg, cols()).unwrap().rotate_at(30);
    deliver(&mut sink, &recs(0..10)).await.unwrap();
    let objs = objects(&dir);
    assert!(objs.len() >= 3, "{} objects", objs.len());
    assert!(objs.iter().all(|(_, t)| t.len() < 30 + 20), "rotated late");
    let want: Vec<(i64, String)> = (0..10).map(|i| (i, format!("n,\"{i}\"\n"))).collect();
    assert_eq!(rows(&objs), want);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient_and_names_it() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (b, dir) = bucket("oss-outage");
    let endpoint = format!("http://127.0.0.1:{port}");
    let cfg = config(&endpoint, &b, &env("SLUICE_TEST_S3_SECRET_KEY"));
    let started = std::time::Instant::now();
    // Opening checks the bucket: the task hangs with the reason before any record.
    let e = oss::open(cfg.clone(), cols())
        .await
        .err()
        .expect("open fails");
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.message().contains(&port.to_string()), "{e}");
    // A store that goes away after opening fails the flush the same way.
    let mut sink = OssSink::new(&cfg, cols()).unwrap();
    let e = deliver(&mut sink, &recs(0..3)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.message().contains(&port.to_string()), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(objects(&dir).is_empty());
    // Once the store answers, the same batch is written.
    let good = config(
        &env("SLUICE_TEST_S3_ENDPOINT"),
        &b,
        &env("SLUICE_TEST_S3_SECRET_KEY"),
    );
    let mut sink = oss::open(good, cols()).await.unwrap();
    deliver(sink.as_mut(), &recs(0..3)).await.unwrap();
    assert_eq!(rows(&objects(&dir)).len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_credentials_and_a_missing_bucket_are_configuration_errors() {
    let (b, dir) = bucket("oss-denied");
    let endpoint = env("SLUICE_TEST_S3_ENDPOINT");
    let cfg = config(&endpoint, &b, "wrong-secret");
    let e = oss::open(cfg.clone(), cols())
        .await
        .err()
        .expect("open fails");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let mut sink = OssSink::new(&cfg, cols()).unwrap();
    let e = deliver(&mut sink, &recs(0..2)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(!e.message().contains("wrong-secret"), "{e}");
    // A missing bucket: opening checks it (NoSuchBucket, 404).
    let missing = config(
        &endpoint,
        &format!("{b}-missing"),
        &env("SLUICE_TEST_S3_SECRET_KEY"),
    );
    let e = oss::open(missing, cols()).await.err().expect("open fails");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(objects(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_redelivery_with_other_boundaries_leaves_every_row_once() {
    let (b, dir) = bucket("oss-redeliver");
    let cfg = config(
        &env("SLUICE_TEST_S3_ENDPOINT"),
        &b,
        &env("SLUICE_TEST_S3_SECRET_KEY"),
    );
    // Written, then the server died before its checkpoint: 0..5 comes again, cut at 3.
    deliver(&mut OssSink::new(&cfg, cols()).unwrap(), &recs(0..5))
        .await
        .unwrap();
    let mut sink = oss::open(cfg.clone(), cols()).await.unwrap();
    deliver(sink.as_mut(), &recs(0..3)).await.unwrap();
    deliver(sink.as_mut(), &recs(3..8)).await.unwrap();
    let ids: Vec<i64> = rows(&objects(&dir)).into_iter().map(|(i, _)| i).collect();
    assert_eq!(ids, (0..8).collect::<Vec<_>>(), "every row once");
    assert_eq!(objects(&dir).len(), 2);

    // An offset reset backwards to 5 re-delivers 5..8; nothing before it is lost.
    let mut sink = oss::open(cfg, cols()).await.unwrap();
    deliver(sink.as_mut(), &recs(5..8)).await.unwrap();
    let ids: std::collections::BTreeSet<i64> =
        rows(&objects(&dir)).into_iter().map(|(i, _)| i).collect();
    assert_eq!(ids, (0..8).collect());
    let _ = std::fs::remove_dir_all(&dir);
}
