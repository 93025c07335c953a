//! The cluster mode (issue 14, `sluice serve --cluster`): two nodes (`Server::open_cluster`,
//! different node ids) on one PostgreSQL database, driven through the HTTP API. Needs the
//! PostgreSQL (and for the archive, the s3s-fs) of scripts/services.sh: absent, the tests fail.

mod accounts_harness;
mod cluster_harness;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use accounts_harness::*;
use cluster_harness::*;

fn code(v: &Value) -> &str {
    v["ErrorCode"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_made_on_one_node_is_seen_by_the_other_at_once() {
    bounded(async {
        let c = Cluster::new().await;
        let (a, b) = (c.node("a").await, c.node("b").await);
        create_topic(&a, 2).await;
        // Right after the create, with no wait: B checks the catalog version first.
        let projects = b.ok(&root(), "GET", "/projects", Value::Null).await;
        assert_eq!(projects["ProjectNames"], json!(["proj"]), "{projects}");
        let topics = b
            .ok(&root(), "GET", "/projects/proj/topics", Value::Null)
            .await;
        assert_eq!(topics["TopicNames"], json!(["t"]), "{topics}");
        let shards = b
            .ok(
                &root(),
                "GET",
                "/projects/proj/topics/t/shards",
                Value::Null,
            )
            .await;
        assert_eq!(shards["Shards"].as_array().unwrap().len(), 2, "{shards}");

        // A put on B to the topic A just created: found at once (a miss refreshes).
        a.ok(
            &root(),
            "POST",
            "/projects/proj/topics/u",
            json!({"ShardCount": 1, "Lifecycle": 3, "RecordType": "BLOB", "Comment": "blob"}),
        )
        .await;
        let v = b
            .ok(
                &root(),
                "POST",
                "/projects/proj/topics/u/shards",
                json!({"Action": "pub", "Records": [{"Data": "aGk=", "ShardId": "0"}]}),
            )
            .await;
        assert_eq!(v["FailedRecordCount"], 0, "{v}");

        // An update and a subscription made on A, read on B.
        a.ok(
            &root(),
            "PUT",
            "/projects/proj/topics/t",
            json!({"Lifecycle": 5, "Comment": "changed"}),
        )
        .await;
        let t = b
            .ok(&root(), "GET", "/projects/proj/topics/t", Value::Null)
            .await;
        assert_eq!(
            (t["Lifecycle"].clone(), t["Comment"].clone()),
            (json!(5), json!("changed"))
        );
        let sub = a
            .ok(
                &root(),
                "POST",
                "/projects/proj/topics/t/subscriptions",
                json!({"Action": "create", "Comment": "s"}),
            )
            .await;
        let sub_id = sub["SubId"].as_str().unwrap().to_string();
        let got = b
            .ok(
                &root(),
                "GET",
                &format!("/projects/proj/topics/t/subscriptions/{sub_id}"),
                Value::Null,
            )
            .await;
        assert_eq!(got["SubId"], sub_id.as_str(), "{got}");

        // Deleted on A: B answers NoSuchTopic.
        a.ok(&root(), "DELETE", "/projects/proj/topics/t", Value::Null)
            .await;
        let (s, v) = b
            .call(&root(), "GET", "/projects/proj/topics/t", Value::Null)
            .await;
        assert_eq!((s.as_u16(), code(&v)), (404, "NoSuchTopic"), "{v}");
        let topics = b
            .ok(&root(), "GET", "/projects/proj/topics", Value::Null)
            .await;
        assert_eq!(topics["TopicNames"], json!(["u"]), "{topics}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_on_both_nodes_get_dense_sequences_and_reads_on_either_see_them_all() {
    bounded(async {
        let c = Cluster::new().await;
        let (a, b) = (c.node("a").await, c.node("b").await);
        create_topic(&a, 1).await;
        // 2 nodes x 20 puts x 5 records, concurrently.
        let puts = |h: &'static Harness, base: i64| async move {
            for p in 0..20 {
                let values: Vec<i64> = (0..5).map(|i| base + p * 5 + i).collect();
                let v = put(h, "0", &values).await;
                assert_eq!(v["FailedRecordCount"], 0, "{v}");
            }
        };
        let a: &'static Harness = Box::leak(Box::new(a));
        let b: &'static Harness = Box::leak(Box::new(b));
        let (ra, rb) = tokio::join!(tokio::spawn(puts(a, 0)), tokio::spawn(puts(b, 1000)));
        ra.unwrap();
        rb.unwrap();

        for reader in [a, b] {
            let oldest = cursor(reader, "0", json!({"Type": "OLDEST"})).await;
            assert_eq!(oldest["Sequence"], 0);
            let all = read_all(reader, "0", &oldest["Cursor"]).await;
            let seqs: Vec<i64> = all.iter().map(|r| r.0).collect();
            assert_eq!(seqs, (0..200).collect::<Vec<_>>(), "dense, no reuse");
            let values: BTreeSet<i64> = all.iter().map(|r| r.2.parse().unwrap()).collect();
            let expected: BTreeSet<i64> = (0..100).chain(1000..1100).collect();
            assert_eq!(values, expected, "every record exactly once");
            assert!(
                all.windows(2).all(|w| w[0].1 <= w[1].1),
                "system time never goes backwards"
            );
            let latest = cursor(reader, "0", json!({"Type": "LATEST"})).await;
            assert_eq!(latest["Sequence"], 199);
            assert_eq!(latest["RecordTime"], all[199].1);
            let by_seq = cursor(reader, "0", json!({"Type": "SEQUENCE", "Sequence": 150})).await;
            let from = read_all(reader, "0", &by_seq["Cursor"]).await;
            assert_eq!(from, all[150..].to_vec());
            let t = all[120].1;
            let by_time =
                cursor(reader, "0", json!({"Type": "SYSTEM_TIME", "SystemTime": t})).await;
            let first = all.iter().position(|r| r.1 >= t).unwrap();
            assert_eq!(by_time["Sequence"], first as i64);
        }
        // A put on B right after one on A: B's cursor sees it at once.
        put(a, "0", &[5000]).await;
        let latest = cursor(b, "0", json!({"Type": "LATEST"})).await;
        assert_eq!(latest["Sequence"], 200);
        let by_seq = cursor(b, "0", json!({"Type": "SEQUENCE", "Sequence": 200})).await;
        let last = read_all(b, "0", &by_seq["Cursor"]).await;
        assert_eq!(
            last.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
            ["5000"]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_on_one_node_refuses_puts_to_the_parent_on_the_other() {
    bounded(async {
        let c = Cluster::new().await;
        let (a, b) = (c.node("a").await, c.node("b").await);
        create_topic(&a, 1).await;
        put(&b, "0", &[1, 2]).await; // B has the shard open
        let v = a
            .ok(
                &root(),
                "POST",
                "/projects/proj/topics/t/shards",
                json!({"Action": "split", "ShardId": "0"}),
            )
            .await;
        assert_eq!(v["NewShards"][0]["ShardId"], "1", "{v}");
        // At once, with B's catalog not refreshed by any metadata request: the shared log
        // refuses the append.
        let v = put(&b, "0", &[3]).await;
        assert_eq!(
            v["FailedRecords"][0]["ErrorCode"], "InvalidShardOperation",
            "{v}"
        );
        let list = b
            .ok(
                &root(),
                "GET",
                "/projects/proj/topics/t/shards",
                Value::Null,
            )
            .await;
        let states: Vec<(String, String)> = list["Shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["ShardId"].as_str().unwrap().to_string(),
                    s["State"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            states,
            [("0", "CLOSED"), ("1", "ACTIVE"), ("2", "ACTIVE")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let v = put(&b, "1", &[4]).await;
        assert_eq!(v["FailedRecordCount"], 0, "{v}");
        // The parent stays readable to its end, on both nodes.
        for h in [&a, &b] {
            let oldest = cursor(h, "0", json!({"Type": "OLDEST"})).await;
            let all = read_all(h, "0", &oldest["Cursor"]).await;
            assert_eq!(
                all.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
                ["1", "2"]
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_survive_a_restart_of_both_nodes() {
    bounded(async {
        let c = Cluster::new().await;
        let (a, b) = (c.node("a").await, c.node("b").await);
        create_topic(&a, 1).await;
        put(&a, "0", &[1, 2]).await;
        put(&b, "0", &[3]).await;
        a.server.shutdown().await;
        b.server.shutdown().await;
        // New nodes with new scratch dirs: nothing lived on the old ones.
        let (a, b) = (c.node("a").await, c.node("b").await);
        for h in [&a, &b] {
            let oldest = cursor(h, "0", json!({"Type": "OLDEST"})).await;
            let all = read_all(h, "0", &oldest["Cursor"]).await;
            assert_eq!(
                all.iter().map(|r| (r.0, r.2.as_str())).collect::<Vec<_>>(),
                [(0, "1"), (1, "2"), (2, "3")]
            );
        }
        let v = put(&b, "0", &[4]).await;
        assert_eq!(v["FailedRecordCount"], 0, "{v}");
        let latest = cursor(&a, "0", json!({"Type": "LATEST"})).await;
        assert_eq!(latest["Sequence"], 3);
    })
    .await;
}
