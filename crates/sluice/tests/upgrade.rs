//! Upgrades (issue 7, finding 11): a data dir written by the Sluice that had no versioned
//! migrations (`fixtures/v0-store`, made by `fixtures/make_v0_store.py` with main at 4913bca)
//! opens with this build with every topic, shard, record, subscription, offset, consumer group
//! and connector intact, takes new writes, and opens again after that. A data dir whose store
//! records a schema version this build does not know (written by a newer Sluice) is refused.
//! The connector gets its own subscription on upgrade (issue 8 item 7, migration 2), whose
//! offsets are the connector's checkpoints as the old store had them.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{blob, Sluice};
use serde_json::{json, Value};

const ID: &str = "upg-id";
const KEY: &str = "upg-key";
const P: &str = "/projects/upg";
const SUB: &str = "179605189428600000";
const CONSUMER: &str = "179605189428600000-1796051894229-1";
const CONNECTOR: &str = "sink_datahub_179605189428945d8";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Everything the fixture holds, as this build sees it.
async fn check_fixture(s: &Sluice) {
    let (status, v) = s.call("GET", P, Value::Null).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["Comment"], "upgrade fixture");
    let (_, v) = s.call("GET", &format!("{P}/topics"), Value::Null).await;
    let names: Vec<&str> = v["TopicNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"blobs") && names.contains(&"tuples"),
        "{names:?}"
    );

    let (_, blobs) = s
        .call("GET", &format!("{P}/topics/blobs"), Value::Null)
        .await;
    assert_eq!(
        (&blobs["RecordType"], &blobs["Lifecycle"], &blobs["Comment"]),
        (&json!("BLOB"), &json!(7), &json!("blob topic"))
    );
    let (_, tuples) = s
        .call("GET", &format!("{P}/topics/tuples"), Value::Null)
        .await;
    assert_eq!(tuples["RecordType"], "TUPLE");
    let schema: Value = serde_json::from_str(tuples["RecordSchema"].as_str().unwrap()).unwrap();
    assert_eq!(schema["fields"][1]["name"], "b");

    let (_, v) = s
        .call("GET", &format!("{P}/topics/blobs/shards"), Value::Null)
        .await;
    let shards: Vec<(String, String, Value)> = v["Shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["ShardId"].as_str().unwrap().to_string(),
                s["State"].as_str().unwrap().to_string(),
                s["ParentShardIds"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shards[..4],
        [
            ("0".into(), "CLOSED".into(), json!([])),
            ("1".into(), "ACTIVE".into(), json!([])),
            ("2".into(), "ACTIVE".into(), json!(["0"])),
            ("3".into(), "ACTIVE".into(), json!(["0"])),
        ]
    );
    let mut stored = s.read_topic(&format!("{P}/topics/blobs")).await;
    stored.retain(|r| r != "new"); // written after the upgrade
    assert_eq!(
        stored,
        strings(&["b0-0", "b0-1", "b0-2", "b1-0", "b1-1", "b1-2", "b1-3", "b2-0", "b2-1"])
    );
    let rows = s.read_topic(&format!("{P}/topics/tuples")).await;
    assert_eq!(
        rows,
        (0..5)
            .map(|i| json!([i.to_string(), format!("s{i}")]).to_string())
            .collect::<Vec<_>>()
    );

    let (status, v) = s
        .call(
            "GET",
            &format!("{P}/topics/blobs/subscriptions/{SUB}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["Comment"], "upgrade sub");
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/blobs/subscriptions/{SUB}/offsets"),
            json!({"Action": "get", "ShardIds": ["1"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["Offsets"]["1"]["Sequence"], 2, "{v}");
    assert_eq!(v["Offsets"]["1"]["Timestamp"], 1_600_000_000_002i64, "{v}");

    // the consumer that joined before the upgrade is still a member
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/blobs/subscriptions/{SUB}"),
            json!({"Action": "heartBeat", "ConsumerId": CONSUMER, "VersionId": 1,
                   "HoldShardList": [], "ReadEndShardList": []}),
        )
        .await;
    assert_eq!(status, 200, "the consumer group survived: {v}");

    let (status, v) = s
        .call(
            "GET",
            &format!("{P}/topics/tuples/connectors/{CONNECTOR}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["State"], "CONNECTOR_STOPPED", "{v}");
    assert_eq!(v["Config"]["Endpoint"], "http://127.0.0.1:9", "{v}");
    assert_eq!(v["ColumnFields"], json!(["a", "b"]), "{v}");

    // the connector is backed by a subscription holding its checkpoint (`add_v0_checkpoint`)
    let sub_id = v["ExtraInfo"]["SubscriptionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no ExtraInfo.SubscriptionId: {v}"))
        .to_string();
    // next record 3: the last delivered is 2
    assert_eq!(v["ShardContexts"][0]["CurrentSequence"], 2, "{v}");
    let base = format!("{P}/topics/tuples/subscriptions/{sub_id}");
    let (status, sub) = s.call("GET", &base, Value::Null).await;
    assert_eq!(status, 200, "{sub}");
    assert_eq!(sub["Comment"], format!("connector {CONNECTOR}"), "{sub}");
    let (status, o) = s
        .call(
            "POST",
            &format!("{base}/offsets"),
            json!({"Action": "get", "ShardIds": ["0"]}),
        )
        .await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["Offsets"]["0"]["Sequence"], 2, "{o}");
    assert_eq!(o["Offsets"]["0"]["Timestamp"], CHECKPOINT_TIME, "{o}");
}

/// The time of the checkpoint `add_v0_checkpoint` writes.
const CHECKPOINT_TIME: i64 = 1_600_000_000_777;

/// Gives the fixture's connector a checkpoint on shard 0 (next record 3), as the Sluice that
/// wrote the fixture stored it (its `connector_checkpoints` table).
async fn add_v0_checkpoint(data: &Path) {
    let url = format!("sqlite://{}", data.join("meta.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO connector_checkpoints VALUES (2, ?, 0, 3, ?, 1, 0, 5)")
        .bind(CONNECTOR)
        .bind(CHECKPOINT_TIME)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0-store"),
        &data,
    );
    add_v0_checkpoint(&data).await;
    let mut s = Sluice::start_with(&data, &[], ID, KEY).await;
    check_fixture(&s).await;

    // the upgraded store takes changes, and opens again
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/blobs/shards"),
            json!({"Action": "pub", "Records": [{"Data": blob("new"), "ShardId": "1"}]}),
        )
        .await;
    assert!(status == 200 && v["FailedRecordCount"] == 0, "{v}");
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/later"),
            json!({"ShardCount": 1, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    s.kill();
    let s = Sluice::start_with(&data, &[], ID, KEY).await;
    check_fixture(&s).await;
    assert!(s
        .read_topic(&format!("{P}/topics/blobs"))
        .await
        .contains(&"new".to_string()));
    let (status, v) = s
        .call("GET", &format!("{P}/topics/later"), Value::Null)
        .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_from_before_migrations_opens_intact() {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("the test finishes in time");
}

/// Marks the store at `data` as migrated to `version` (as a newer Sluice would).
async fn record_migration(data: &Path, version: i64) {
    let url = format!("sqlite://{}", data.join("meta.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, \
         description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
         success BOOLEAN NOT NULL, checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (?, 'from a newer Sluice', TRUE, x'00', 1)",
    )
    .bind(version)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_from_a_newer_sluice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0-store"),
        &data,
    );
    drop(Sluice::start_with(&data, &[], ID, KEY).await);
    record_migration(&data, 4242).await;
    let mut child = std::process::Command::new(common::binary())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", common::free_port()),
        ])
        .args(["--access-id", ID, "--access-key", KEY, "--data-dir"])
        .arg(&data)
        .env("SLUICE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice started on a data dir from a newer Sluice");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    let known = stderr
        .split("knows versions up to ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<i64>().ok());
    assert!(
        stderr.contains("newer Sluice")
            && stderr.contains("version 4242")
            && known.is_some_and(|k| (1..4242).contains(&k)),
        "the refusal names both versions: {stderr}"
    );
}
