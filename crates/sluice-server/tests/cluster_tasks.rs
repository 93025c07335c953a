//! Issue 14 against a real PostgreSQL (scripts/services.sh; a missing `SLUICE_TEST_PG_URL`
//! fails): a connector's shard tasks spread over two in-process cluster nodes by one lease per
//! (connector, shard), stop everywhere, and move when a node stops.

mod cluster_work_harness;

use std::time::Duration;

use serde_json::{json, Value};

use cluster_work_harness::*;

fn task_shards(node: &Node, uid: i64, id: &str) -> std::collections::BTreeSet<u32> {
    node.ownership()
        .held()
        .into_iter()
        .filter(|k| k.kind == "task")
        .filter_map(|k| {
            let (u, c, shard) = k.task_parts()?;
            (u == uid && c == id).then_some(shard)
        })
        .collect()
}

fn address(node: &Node) -> String {
    node.base.trim_start_matches("http://").to_string()
}

/// The connector's status through `base`: (state, worker address, last error) by shard.
async fn shard_status(
    base: &str,
    id: &str,
) -> std::collections::BTreeMap<u32, (String, String, String)> {
    let (s, status) = call(
        base,
        reqwest::Method::POST,
        &format!("/projects/proj/topics/wide/connectors/{id}"),
        json!({"Action": "Status"}),
    )
    .await;
    assert_eq!(s, 200, "{status}");
    status["ShardStatusInfos"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let text = |f: &str| v[f].as_str().unwrap_or_default().to_string();
            (
                k.parse().unwrap(),
                (
                    text("State"),
                    text("WorkerAddress"),
                    text("LastErrorMessage"),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connectors_shard_tasks_spread_over_the_nodes_stop_everywhere_and_move_when_a_node_stops()
{
    bounded(async {
        use reqwest::Method;
        let url = fresh_database().await;
        let keys = tempfile::tempdir().unwrap();
        let a = node(&url, "node-a", &key_file(&keys)).await;
        let b = node(&url, "node-b", &key_file(&keys)).await;
        setup(&a.base, 0).await;
        let (s, b_) = call(
            &a.base,
            Method::POST,
            "/projects/proj/topics/wide",
            json!({"Action": "create", "ShardCount": 12, "Lifecycle": 1, "RecordType": "BLOB", "Comment": "c"}),
        )
        .await;
        assert!(s < 300, "create topic: {s} {b_}");
        let records: Vec<Value> = (0..12)
            .map(|i| json!({"ShardId": i.to_string(), "Data": "aGk="}))
            .collect();
        let (s, put) = call(
            &b.base,
            Method::POST,
            "/projects/proj/topics/wide/shards",
            json!({"Action": "pub", "Records": records}),
        )
        .await;
        assert_eq!((s, &put["FailedRecordCount"]), (200, &json!(0)), "{put}");
        // An FC connector whose function is unreachable: every task runs and hangs with an error.
        let (s, created) = call(
            &a.base,
            Method::POST,
            "/projects/proj/topics/wide/connectors/sink_fc",
            json!({"Action": "create", "ColumnFields": [], "Config": {
                "Endpoint": "http://127.0.0.1:9", "Service": "s", "Function": "f"}}),
        )
        .await;
        assert_eq!(s, 200, "{created}");
        let id = created["ConnectorId"].as_str().unwrap().to_string();
        let uid = a.server.state.catalog.topic("proj", "wide").unwrap().uid;
        let all: std::collections::BTreeSet<u32> = (0..12).collect();
        let here = |n: &Node| {
            n.server
                .state
                .catalog
                .connector_shards_here(uid, &id)
                .unwrap_or_default()
        };
        let spread = || {
            let (ta, tb) = (task_shards(&a, uid, &id), task_shards(&b, uid, &id));
            ta.is_disjoint(&tb)
                && ta.union(&tb).copied().collect::<std::collections::BTreeSet<_>>() == all
                && here(&a) == ta
                && here(&b) == tb
        };
        until(15, "every shard's task runs on exactly one node", spread).await;
        let (ta, tb) = (task_shards(&a, uid, &id), task_shards(&b, uid, &id));
        assert!(!ta.is_empty() && !tb.is_empty(), "both nodes run some: {ta:?} {tb:?}");

        // Status through either node shows every shard with its own node's address and live
        // state (asked of the node running it: without that, the other node's shards would
        // show CONTEXT_PLANNED).
        let worker_of = |shard: u32| {
            if ta.contains(&shard) {
                address(&a)
            } else {
                address(&b)
            }
        };
        for through in [&a, &b] {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let status = shard_status(&through.base, &id).await;
                assert_eq!(status.keys().copied().collect::<Vec<_>>(), (0..12).collect::<Vec<_>>());
                let right = status.iter().all(|(shard, (state, worker, error))| {
                    state == "CONTEXT_HANG" && *worker == worker_of(*shard) && !error.is_empty()
                });
                if right {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "status through {}: {status:?}",
                    through.base
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }

        // Stopping it returns once no node runs or leases any of its tasks.
        let path = format!("/projects/proj/topics/wide/connectors/{id}");
        let (s, r) = call(
            &b.base,
            Method::POST,
            &path,
            json!({"Action": "UpdateState", "State": "CONNECTOR_STOPPED"}),
        )
        .await;
        assert_eq!(s, 200, "{r}");
        assert!(here(&a).is_empty() && here(&b).is_empty());
        let holders = a.server.state.catalog.task_holders(uid, &id).await.unwrap();
        assert!(holders.is_empty(), "{holders:?}");
        let (s, r) = call(
            &a.base,
            Method::POST,
            &path,
            json!({"Action": "UpdateState", "State": "CONNECTOR_RUNNING"}),
        )
        .await;
        assert_eq!(s, 200, "{r}");
        until(15, "the tasks spread again", spread).await;

        // b stops (SIGTERM): a takes over b's shards from their stored checkpoints.
        b.serving.abort();
        b.server.shutdown().await;
        until(15, "the survivor runs every shard", || {
            here(&a) == all && task_shards(&a, uid, &id) == all
        })
        .await;
        let status = shard_status(&a.base, &id).await;
        assert!(
            status.values().all(|(_, worker, _)| *worker == address(&a)),
            "{status:?}"
        );
        a.serving.abort();
        a.server.shutdown().await;
    })
    .await;
}
