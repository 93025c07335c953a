//! Disk full, for real (issue 7, finding 1): the data dir is on a small tmpfs that this test
//! mounts (it needs root, as in CI, and fails if it cannot mount). With the disk full, the test
//! makes metadata changes (topics, splits, subscriptions, offset commits, consumer-group joins)
//! and puts records, and notes which ones succeeded. Then it frees the space, makes more changes,
//! kills the server (SIGKILL) and restarts it: every change and record that was acknowledged
//! is there, every one that failed is not, and the server never died.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{blob, Sluice};
use serde_json::{json, Value};

const P: &str = "/projects/full";

/// A tmpfs mounted for the test; unmounted when dropped (also when the test panics).
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root (as in CI): mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir,
            _parent: parent,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes zeros into `path` until the file system is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // the last partial pages, byte by byte
    let one = [0u8; 1];
    while let Ok(1) = f.write(&one) {}
    let _ = f.sync_all();
}

/// What was acknowledged and what failed.
#[derive(Default, Debug)]
struct Ledger {
    topics_ok: Vec<String>,
    topics_failed: Vec<String>,
    splits_ok: usize,
    subs_ok: Vec<String>,
    subs_failed: usize,
    /// The last offset sequence whose commit was acknowledged.
    offset_acked: i64,
    offset_failed: usize,
    /// Consumers whose join was acknowledged: (id, version).
    joins_ok: Vec<(String, i64)>,
    joins_failed: usize,
    records_ok: Vec<String>,
    records_failed: Vec<String>,
}

impl Ledger {
    fn failures(&self) -> usize {
        self.topics_failed.len()
            + self.subs_failed
            + self.offset_failed
            + self.joins_failed
            + self.records_failed.len()
    }
}

async fn create_topic(s: &Sluice, name: &str, shards: u32) -> (u16, Value) {
    s.call(
        "POST",
        &format!("{P}/topics/{name}"),
        json!({"ShardCount": shards, "Lifecycle": 1, "RecordType": "BLOB", "Comment": name}),
    )
    .await
}

async fn put(s: &Sluice, topic: &str, shard: &str, ids: &[String]) -> bool {
    let records: Vec<Value> = ids
        .iter()
        .map(|id| json!({"Data": blob(id), "ShardId": shard}))
        .collect();
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/{topic}/shards"),
            json!({"Action": "pub", "Records": records}),
        )
        .await;
    status == 200 && v["FailedRecordCount"] == 0
}

async fn open_offsets(s: &Sluice, topic: &str, sub: &str) {
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/{topic}/subscriptions/{sub}/offsets"),
            json!({"Action": "open", "ShardIds": ["0"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
}

async fn commit_offset(s: &Sluice, topic: &str, sub: &str, seq: i64) -> (u16, Value) {
    s.call(
        "PUT",
        &format!("{P}/topics/{topic}/subscriptions/{sub}/offsets"),
        json!({"Action": "commit", "Offsets": {"0": {"Sequence": seq, "Timestamp": 1_600_000_000_000i64 + seq}}}),
    )
    .await
}

async fn offset(s: &Sluice, topic: &str, sub: &str) -> i64 {
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/{topic}/subscriptions/{sub}/offsets"),
            json!({"Action": "get", "ShardIds": ["0"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    v["Offsets"]["0"]["Sequence"].as_i64().unwrap()
}

async fn subscriptions(s: &Sluice, topic: &str) -> Vec<String> {
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/{topic}/subscriptions"),
            json!({"Action": "list", "PageIndex": 1, "PageSize": 1000}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let mut ids: Vec<String> = v["Subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["SubId"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn topics(s: &Sluice) -> Vec<String> {
    let (status, v) = s.call("GET", &format!("{P}/topics"), Value::Null).await;
    assert_eq!(status, 200, "{v}");
    let mut names: Vec<String> = v["TopicNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

const GROUP_SHARDS: u32 = 6;

/// Joins the consumer group of `sub`; the consumer's id and version, or None if it failed.
async fn join(s: &Sluice, topic: &str, sub: &str) -> Option<(String, i64)> {
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/{topic}/subscriptions/{sub}"),
            json!({"Action": "joinGroup", "SessionTimeout": 60000}),
        )
        .await;
    (status == 200).then(|| {
        (
            v["ConsumerId"].as_str().unwrap().to_string(),
            v["VersionId"].as_i64().unwrap(),
        )
    })
}

/// Heartbeats every member a few rounds, each holding what it was given; the shards granted
/// to them in the end, sorted.
async fn settle(s: &Sluice, topic: &str, sub: &str, members: &[(String, i64)]) -> Vec<String> {
    let mut held: Vec<Vec<String>> = vec![Vec::new(); members.len()];
    for _ in 0..4 {
        for (i, (consumer, version)) in members.iter().enumerate() {
            let (status, v) = s
                .call(
                    "POST",
                    &format!("{P}/topics/{topic}/subscriptions/{sub}"),
                    json!({"Action": "heartBeat", "ConsumerId": consumer, "VersionId": version,
                           "HoldShardList": held[i], "ReadEndShardList": []}),
                )
                .await;
            assert_eq!(status, 200, "heartbeat of {consumer}: {v}");
            held[i] = v["ShardList"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
        }
    }
    let mut all: Vec<String> = held.concat();
    all.sort_by_key(|x| x.parse::<u32>().unwrap());
    all
}

/// Metadata changes and puts while the disk is full.
async fn changes_while_full(s: &Sluice, sub: &str, reserve: &Path, l: &mut Ledger) {
    for round in 0..12 {
        if round == 4 {
            std::fs::remove_file(reserve).unwrap();
        }
        let name = format!("t{round}");
        if create_topic(s, &name, 2).await.0 == 200 {
            l.topics_ok.push(name);
        } else {
            l.topics_failed.push(name);
        }
        let active = s
            .shards(&format!("{P}/topics/base"))
            .await
            .into_iter()
            .find(|(_, state)| state == "ACTIVE")
            .unwrap()
            .0;
        let (status, _) = s
            .call(
                "POST",
                &format!("{P}/topics/base/shards"),
                json!({"Action": "split", "ShardId": active}),
            )
            .await;
        if status == 200 {
            l.splits_ok += 1;
        }
        let (status, v) = s
            .call(
                "POST",
                &format!("{P}/topics/base/subscriptions"),
                json!({"Action": "create", "Comment": format!("full {round}")}),
            )
            .await;
        if status == 200 {
            l.subs_ok.push(v["SubId"].as_str().unwrap().to_string());
        } else {
            l.subs_failed += 1;
        }
        let seq = 100 + round;
        if commit_offset(s, "base", sub, seq).await.0 == 200 {
            l.offset_acked = seq;
        } else {
            l.offset_failed += 1;
        }
        let (status, v) = s
            .call(
                "POST",
                &format!("{P}/topics/base/subscriptions/{sub}"),
                json!({"Action": "joinGroup", "SessionTimeout": 60000}),
            )
            .await;
        if status == 200 {
            l.joins_ok.push((
                v["ConsumerId"].as_str().unwrap().to_string(),
                v["VersionId"].as_i64().unwrap(),
            ));
        } else {
            l.joins_failed += 1;
        }
        let active = s
            .shards(&format!("{P}/topics/base"))
            .await
            .into_iter()
            .find(|(_, state)| state == "ACTIVE")
            .unwrap()
            .0;
        let ids: Vec<String> = (0..50).map(|i| format!("full-{round}-{i}")).collect();
        if put(s, "base", &active, &ids).await {
            l.records_ok.extend(ids);
        } else {
            l.records_failed.extend(ids);
        }
    }
}

async fn run() {
    let fs = Tmpfs::mount("24m");
    let data = fs.dir.join("data");
    let mut s = Sluice::start(&data).await;
    assert_eq!(
        s.call("POST", P, json!({"Comment": "disk full"})).await.0,
        200
    );
    assert_eq!(create_topic(&s, "base", 1).await.0, 200);
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/base/subscriptions"),
            json!({"Action": "create", "Comment": "before"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let sub = v["SubId"].as_str().unwrap().to_string();
    let before: Vec<String> = (0..50).map(|i| format!("before-{i}")).collect();
    assert!(put(&s, "base", "0", &before).await);
    open_offsets(&s, "base", &sub).await;
    assert_eq!(commit_offset(&s, "base", &sub, 7).await.0, 200);

    assert_eq!(create_topic(&s, "grp", GROUP_SHARDS).await.0, 200);
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/grp/subscriptions"),
            json!({"Action": "create", "Comment": "group"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let grp_sub = v["SubId"].as_str().unwrap().to_string();
    let mut members = vec![join(&s, "grp", &grp_sub).await.expect("join")];

    // A little space is held back and freed halfway, so that some changes made while the
    // disk is (nearly) full succeed and some fail.
    let reserve = fs.dir.join("reserve");
    std::fs::write(&reserve, vec![0u8; 256 * 1024]).unwrap();
    let filler = fs.dir.join("filler");
    fill(&filler);
    let mut l = Ledger {
        offset_acked: 7,
        ..Ledger::default()
    };
    changes_while_full(&s, &sub, &reserve, &mut l).await;
    fill(&fs.dir.join("filler2"));
    let mut failed_joins = 0;
    for _ in 0..6 {
        match join(&s, "grp", &grp_sub).await {
            Some(m) => members.push(m),
            None => failed_joins += 1,
        }
    }
    assert!(s.alive(), "the server died on a full disk");
    assert!(
        l.failures() > 0,
        "the disk was full but nothing failed: {l:?}"
    );

    // Space again: every change must work, and last.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(fs.dir.join("filler2")).unwrap();
    // a join with space again saves the group (with whatever else memory holds)
    members.push(
        join(&s, "grp", &grp_sub)
            .await
            .expect("join after the disk was freed"),
    );
    let (status, v) = create_topic(&s, "after", 1).await;
    assert_eq!(status, 200, "create after the disk was freed: {v}");
    let after: Vec<String> = (0..50).map(|i| format!("after-{i}")).collect();
    assert!(put(&s, "after", "0", &after).await);
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/after/subscriptions"),
            json!({"Action": "create", "Comment": "after"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let after_sub = v["SubId"].as_str().unwrap().to_string();
    open_offsets(&s, "after", &after_sub).await;
    let (status, v) = commit_offset(&s, "after", &after_sub, 999).await;
    assert_eq!(status, 200, "{v}");
    let active = s
        .shards(&format!("{P}/topics/base"))
        .await
        .into_iter()
        .find(|(_, state)| state == "ACTIVE")
        .unwrap()
        .0;
    let (status, v) = s
        .call(
            "POST",
            &format!("{P}/topics/base/shards"),
            json!({"Action": "split", "ShardId": active}),
        )
        .await;
    assert_eq!(status, 200, "split after the disk was freed: {v}");
    let base_shards = s.shards(&format!("{P}/topics/base")).await.len();
    assert_eq!(base_shards, 1 + 2 * (l.splits_ok + 1));
    assert!(s.alive(), "the server died");
    s.kill();

    let s = Sluice::start(&data).await;
    let mut want_topics: Vec<String> = ["after", "base", "grp"]
        .map(String::from)
        .into_iter()
        .chain(l.topics_ok.iter().cloned())
        .collect();
    want_topics.sort();
    assert_eq!(
        topics(&s).await,
        want_topics,
        "topics after restart (failed creates: {:?})",
        l.topics_failed
    );
    assert_eq!(
        s.shards(&format!("{P}/topics/base")).await.len(),
        base_shards,
        "splits after restart"
    );
    for t in &l.topics_ok {
        assert_eq!(s.shards(&format!("{P}/topics/{t}")).await.len(), 2);
    }
    let mut want_subs: Vec<String> = l.subs_ok.clone();
    want_subs.push(sub.clone());
    want_subs.sort();
    assert_eq!(subscriptions(&s, "base").await, want_subs);
    assert_eq!(subscriptions(&s, "after").await, vec![after_sub.clone()]);
    assert_eq!(
        offset(&s, "base", &sub).await,
        l.offset_acked,
        "the last acknowledged offset commit"
    );
    assert_eq!(offset(&s, "after", &after_sub).await, 999);

    let stored = s.read_topic(&format!("{P}/topics/base")).await;
    for id in before.iter().chain(&l.records_ok) {
        assert!(stored.contains(id), "acknowledged record {id} is missing");
    }
    for id in &l.records_failed {
        assert!(!stored.contains(id), "failed record {id} is there");
    }
    assert_eq!(s.read_topic(&format!("{P}/topics/after")).await, after);
    // The group holds exactly the consumers whose join was acknowledged: between them they
    // get every shard. A member whose join failed but stayed in memory would be assigned
    // shards that nobody reads.
    assert!(failed_joins > 0, "no join failed on the full disk");
    let granted = settle(&s, "grp", &grp_sub, &members).await;
    assert_eq!(
        granted,
        (0..GROUP_SHARDS).map(|i| i.to_string()).collect::<Vec<_>>(),
        "{failed_joins} joins failed on the full disk, {} members were acknowledged",
        members.len()
    );
    for (consumer, version) in &l.joins_ok {
        let (status, v) = s
            .call(
                "POST",
                &format!("{P}/topics/base/subscriptions/{sub}"),
                json!({"Action": "heartBeat", "ConsumerId": consumer, "VersionId": version,
                       "HoldShardList": [], "ReadEndShardList": []}),
            )
            .await;
        assert_eq!(
            status, 200,
            "consumer {consumer} joined, then vanished: {v}"
        );
    }
    eprintln!(
        "disk full: {} topics ok, {} failed; {} splits ok; {} subscriptions ok, {} failed; \
         offset commits failed {}; joins ok {}, failed {}; records ok {}, failed {}",
        l.topics_ok.len(),
        l.topics_failed.len(),
        l.splits_ok,
        l.subs_ok.len(),
        l.subs_failed,
        l.offset_failed,
        l.joins_ok.len(),
        l.joins_failed,
        l.records_ok.len(),
        l.records_failed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_a_full_disk_and_failed_ones_vanish() {
    tokio::time::timeout(Duration::from_secs(240), run())
        .await
        .expect("the test finishes in time");
}
