//! Crash test: writers put continuously (protobuf, batch and JSON) while the server is killed
//! with SIGKILL at random moments, several times. After every restart, every acknowledged
//! record is present exactly once, sequences are dense, and new writes work.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use sluice_client::{Client, CursorType};
use sluice_proto::{Record, RecordData};

const ID: &str = "crash-id";
const KEY: &str = "crash-key";
const SHARDS: u32 = 2;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--access-id",
            ID,
            "--access-key",
            KEY,
            "--data-dir",
        ])
        .arg(dir)
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start sluice")
}

async fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = s.write_all(b"GET /health HTTP/1.0\r\n\r\n").await;
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            if buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "server did not become healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn blob(id: &str) -> Record {
    Record {
        data: RecordData::Blob(id.as_bytes().to_vec()),
        attributes: vec![],
    }
}

/// Ids whose put was acknowledged, and ids whose put failed (may or may not be stored).
#[derive(Default)]
struct Ledger {
    acked: Vec<String>,
    unsure: Vec<String>,
}

async fn writer(
    client: Client,
    name: String,
    kind: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let ids: Vec<String> = (0..20).map(|i| format!("{name}-{n}-{i}")).collect();
        n += 1;
        let shard = (n % SHARDS as u64).to_string();
        let records: Vec<Record> = ids.iter().map(|i| blob(i)).collect();
        let result = match kind {
            0 => client.put_pb_to_shard("crash", "t", &shard, &records).await,
            1 => {
                client
                    .put_batch_to_shard("crash", "t", &shard, &records, None, -1)
                    .await
            }
            _ => {
                let routed: Vec<(Record, String)> =
                    records.into_iter().map(|r| (r, shard.clone())).collect();
                match client.put_records_json("crash", "t", &routed).await {
                    Ok(0) => Ok(()),
                    Ok(n) => panic!("{n} records failed without a crash"),
                    Err(e) => Err(e),
                }
            }
        };
        let failed = result.is_err();
        {
            let mut l = ledger.lock().unwrap();
            if failed {
                l.unsure.extend(ids);
            } else {
                l.acked.extend(ids);
            }
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads every shard from the oldest record: id → count, and checks dense sequences.
async fn read_all(client: &Client) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for shard in 0..SHARDS {
        let shard = shard.to_string();
        let mut cursor = client
            .get_cursor("crash", "t", &shard, CursorType::Oldest)
            .await
            .unwrap();
        let mut expected_seq = 0i64;
        let mut last_seq = -1i64;
        loop {
            let (records, next) = client
                .get_records_pb("crash", "t", &shard, &cursor, 1000, None)
                .await
                .unwrap();
            if records.is_empty() {
                break;
            }
            for r in records {
                // Records of one batch entry share a sequence; entries are dense.
                if r.sequence != last_seq {
                    assert_eq!(
                        r.sequence, expected_seq,
                        "sequences must be dense in shard {shard}"
                    );
                    expected_seq += 1;
                    last_seq = r.sequence;
                }
                let RecordData::Blob(b) = r.record.data else {
                    panic!("blob expected")
                };
                *seen.entry(String::from_utf8(b).unwrap()).or_insert(0) += 1;
            }
            cursor = next;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_records_survive_repeated_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = Client::new(&endpoint, ID, KEY).unwrap();
    let mut child = start(dir.path(), port);
    wait_healthy(port).await;
    client.create_project("crash", "").await.unwrap();
    client
        .create_topic("crash", "t", SHARDS, 1, None, "")
        .await
        .unwrap();

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = rand::thread_rng();
    for round in 0..4 {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks: Vec<_> = (0..3)
            .map(|k| {
                tokio::spawn(writer(
                    client.clone(),
                    format!("r{round}w{k}"),
                    k,
                    ledger.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..900))).await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        child = start(dir.path(), port);
        wait_healthy(port).await;

        let seen = read_all(&client).await;
        let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            !l.acked.is_empty(),
            "round {round}: nothing was acknowledged"
        );
        for id in &l.acked {
            assert_eq!(
                seen.get(id),
                Some(&1),
                "round {round}: acknowledged {id} must be present exactly once"
            );
        }
        for id in &l.unsure {
            assert!(seen.get(id).copied().unwrap_or(0) <= 1, "{id} duplicated");
        }
        let known = l.acked.len() + l.unsure.len();
        assert!(seen.len() <= known, "records appeared that nobody wrote");
    }
    // New writes work after the last restart.
    client
        .put_pb_to_shard("crash", "t", "0", &[blob("after")])
        .await
        .unwrap();
    assert_eq!(read_all(&client).await.get("after"), Some(&1));
    child.kill().unwrap();
    child.wait().unwrap();
}
