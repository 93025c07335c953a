//! `sluice serve --cluster` end to end (issue 14): two `sluice` processes on one PostgreSQL
//! database (from scripts/services.sh; absent, the test fails) serve one hub; and what the
//! cluster mode refuses to start with.

mod common;

use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::*;
use serde_json::{json, Value};

fn pg_url() -> String {
    std::env::var("SLUICE_TEST_PG_URL").expect(
        "SLUICE_TEST_PG_URL is not set: run under scripts/test.sh, or \
         `source scripts/services.sh; services_start` first",
    )
}

async fn fresh_database() -> String {
    let admin = sqlx::PgPool::connect(&pg_url()).await.unwrap();
    let name = format!(
        "sluice_e2e_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let base = pg_url();
    let (head, _) = base.rsplit_once('/').unwrap();
    format!("{head}/{name}")
}

/// SIGTERM, then a bounded wait: true if it exited 0 in time.
async fn terminate(s: &mut Sluice) -> bool {
    // SAFETY: kill only sends a signal to our own child.
    unsafe {
        libc::kill(s.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = s.child.try_wait().unwrap() {
            return status.success();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sluice_processes_serve_one_hub() {
    let bound = tokio::time::timeout(Duration::from_secs(120), async {
        let url = fresh_database().await;
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("server.key");
        std::fs::write(&key_file, [7u8; 32]).unwrap();
        let config = dir.path().join("sluice.toml");
        std::fs::write(&config, "metrics_listen = \"\"\n").unwrap();
        let node = |id: &str| {
            vec![
                "--cluster".to_string(),
                url.clone(),
                "--server-key-file".into(),
                key_file.display().to_string(),
                "--node-id".into(),
                id.to_string(),
                "--config".into(),
                config.display().to_string(),
            ]
        };
        let (da, db) = (dir.path().join("a"), dir.path().join("b"));
        let mut a = Sluice::start_full(&da, &[], &node("a"), ID, KEY).await;
        let mut b = Sluice::start_full(&db, &[], &node("b"), ID, KEY).await;

        let ok = |(s, v): (u16, Value)| {
            assert_eq!(s, 200, "{v}");
            v
        };
        ok(a.call("POST", "/projects/proj", json!({"Comment": "c"}))
            .await);
        ok(a.call(
            "POST",
            "/projects/proj/topics/t",
            json!({"ShardCount": 1, "Lifecycle": 1, "RecordType": "BLOB", "Comment": ""}),
        )
        .await);
        let topics = ok(b.call("GET", "/projects/proj/topics", Value::Null).await);
        assert_eq!(topics["TopicNames"], json!(["t"]));
        for (node, text) in [(&a, "from-a"), (&b, "from-b"), (&a, "again-a")] {
            let data = base64_of(text);
            let v = ok(node
                .call(
                    "POST",
                    "/projects/proj/topics/t/shards",
                    json!({"Action": "pub", "Records": [{"Data": data, "ShardId": "0"}]}),
                )
                .await);
            assert_eq!(v["FailedRecordCount"], 0, "{v}");
        }
        let expected = ["from-a", "from-b", "again-a"];
        assert_eq!(b.read_topic("/projects/proj/topics/t").await, expected);
        ok(b.call(
            "POST",
            "/projects/proj/topics/t/shards",
            json!({"Action": "split", "ShardId": "0"}),
        )
        .await);
        let shards = a.shards("/projects/proj/topics/t").await;
        assert_eq!(shards[0], ("0".to_string(), "CLOSED".to_string()));
        assert_eq!(shards.len(), 3);

        assert!(terminate(&mut a).await, "node a did not stop cleanly");
        assert!(terminate(&mut b).await, "node b did not stop cleanly");
        // A new node on a new scratch dir: everything was in PostgreSQL.
        let mut c = Sluice::start_full(&dir.path().join("c"), &[], &node("c"), ID, KEY).await;
        assert_eq!(c.read_topic("/projects/proj/topics/t").await, expected);
        assert!(terminate(&mut c).await);
    })
    .await;
    bound.expect("test timed out");
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn the_cluster_mode_refuses_to_start_without_a_shared_key_or_given_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://u:secretpw@127.0.0.1:1/db";
    let run = |args: &[&str]| {
        let out = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:1", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .env_remove("SLUICE_ACCESS_KEY")
            .env("SLUICE_CONFIG", "/dev/null")
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--cluster", url, "--access-id", "i", "--access-key", "k"]);
    assert!(e.contains("--server-key-file"), "{e}");
    let missing = dir.path().join("nokey");
    let e = run(&[
        "--cluster",
        url,
        "--access-id",
        "i",
        "--access-key",
        "k",
        "--server-key-file",
        missing.to_str().unwrap(),
    ]);
    assert!(e.contains(missing.to_str().unwrap()), "{e}");
    assert!(!missing.exists());
    let key = dir.path().join("key");
    std::fs::write(&key, [1u8; 32]).unwrap();
    let e = run(&["--cluster", url, "--server-key-file", key.to_str().unwrap()]);
    assert!(e.contains("--access-id"), "{e}");
    assert!(!e.contains("secretpw"), "{e}");
}
