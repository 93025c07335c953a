//! Issue 14 part B against a real PostgreSQL (scripts/services.sh; a missing
//! `SLUICE_TEST_PG_URL` fails): two in-process cluster nodes on real sockets, work spread by
//! leases, requests forwarded to the owner, takeover after an owner stops renewing, fenced
//! writes of a node that lost its lease.

mod cluster_work_harness;

use std::time::Duration;

use serde_json::{json, Value};
use sluice_meta::{CheckpointRow, ConnectorRow, MetaStore, SubscriptionRow};
use sluice_server::cluster::ownership::WorkKey;

use cluster_work_harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_takes_only_the_keys_it_wins_and_group_calls_reach_the_owner() {
    bounded(async {
        let url = fresh_database().await;
        let keys = tempfile::tempdir().unwrap();
        let a = node(&url, "node-a", &key_file(&keys)).await;
        let subs = setup(&a.base, 12).await;
        until(10, "node A holds every subscription", || sub_keys(&a).len() == 12).await;
        let before = sub_keys(&a);

        let b = node(&url, "node-b", &key_file(&keys)).await;
        let nodes = ["node-a".to_string(), "node-b".to_string()];
        let wins_b: Vec<WorkKey> = before
            .iter()
            .filter(|k| {
                sluice_cluster::placement::owner(&k.placement_key(), &nodes) == Some("node-b")
            })
            .cloned()
            .collect();
        assert!(!wins_b.is_empty() && wins_b.len() < 12, "{wins_b:?}");
        until(10, "the keys B wins moved to B", || sub_keys(&b) == wins_b).await;
        let kept: Vec<WorkKey> = before
            .iter()
            .filter(|k| !wins_b.contains(k))
            .cloned()
            .collect();
        assert_eq!(sub_keys(&a), kept, "A keeps exactly the keys B does not win");

        // A subscription owned by A, driven through B: B forwards, A answers.
        let (uid, sub) = {
            let k = &kept[0];
            let (uid, id) = k.parts().unwrap();
            (uid, id.to_string())
        };
        assert!(subs.contains(&sub));
        let path = format!("/projects/proj/topics/top/subscriptions/{sub}");
        let (s, joined) = call(
            &b.base,
            reqwest::Method::POST,
            &path,
            json!({"Action": "joinGroup", "SessionTimeout": 60000}),
        )
        .await;
        assert_eq!(s, 200, "{joined}");
        let consumer = joined["ConsumerId"].as_str().unwrap().to_string();
        let (s, hb) = call(
            &b.base,
            reqwest::Method::POST,
            &path,
            json!({"Action": "heartbeat", "ConsumerId": consumer, "VersionId": joined["VersionId"], "HoldShardList": []}),
        )
        .await;
        assert_eq!(s, 200, "{hb}");
        assert_eq!(hb["ShardList"].as_array().unwrap().len(), 2, "{hb}");
        let members = |n: &Node| match n.server.state.catalog.subscription("proj", "top", &sub) {
            Ok((_, s)) => s.group.lock().member_count(),
            Err(_) => 0,
        };
        assert_eq!(members(&a), 1, "the owner (A) holds the group");
        assert_eq!(members(&b), 0, "B only forwarded");

        // The same signed request through B and straight to A: the same bytes.
        let client = reqwest::Client::new();
        let date = now();
        let body = json!({"Action": "heartbeat", "ConsumerId": consumer, "VersionId": joined["VersionId"], "HoldShardList": hb["ShardList"]});
        let via_b = signed(&client, &b.base, reqwest::Method::POST, &path, &date, &body)
            .send()
            .await
            .unwrap();
        let direct = signed(&client, &a.base, reqwest::Method::POST, &path, &date, &body)
            .send()
            .await
            .unwrap();
        assert_eq!(via_b.status(), direct.status());
        assert_eq!(
            via_b.headers().get("content-type"),
            direct.headers().get("content-type")
        );
        let (via_b, direct) = (via_b.bytes().await.unwrap(), direct.bytes().await.unwrap());
        assert_eq!(via_b, direct, "the owner's answer byte for byte");
        assert!(String::from_utf8_lossy(&direct).contains("ShardList"));

        // Loop guard: a request marked as forwarded is not forwarded again; B does not own
        // the subscription and cannot take it while A holds it.
        let guarded = signed(&client, &b.base, reqwest::Method::POST, &path, &date, &body)
            .header("x-sluice-forwarded-by", "node-x")
            .send()
            .await
            .unwrap();
        assert_eq!(guarded.status().as_u16(), 503);
        let e: Value = serde_json::from_str(&guarded.text().await.unwrap()).unwrap();
        assert_eq!(e["ErrorCode"], "InternalServerError", "{e}");
        assert!(sub_keys(&b).iter().all(|k| k.key != format!("{uid}:{sub}")));

        b.server.shutdown().await;
        a.server.shutdown().await;
        b.serving.abort();
        a.serving.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_node_commits_and_reads_offsets_checked_against_the_stored_session_and_version() {
    bounded(async {
        use reqwest::Method;
        let url = fresh_database().await;
        let keys = tempfile::tempdir().unwrap();
        let a = node(&url, "node-a", &key_file(&keys)).await;
        let sub = setup(&a.base, 1).await.remove(0);
        until(10, "A holds the subscription", || sub_keys(&a).len() == 1).await;
        let b = node(&url, "node-b", &key_file(&keys)).await;
        // Let placement settle, then name the owner and the other node.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (owner, other) = if sub_keys(&a).len() == 1 {
            (&a, &b)
        } else {
            (&b, &a)
        };
        until(10, "the owner holds it", || sub_keys(owner).len() == 1).await;
        assert!(sub_keys(other).is_empty());
        let offsets = format!("/projects/proj/topics/top/subscriptions/{sub}/offsets");
        let client = reqwest::Client::new();
        // A request marked as forwarded is served where it lands or refused: so a 200 here
        // shows the other node served it itself, from the store.
        let at_other = |body: Value, method: Method| {
            let r = signed(&client, &other.base, method, &offsets, &now(), &body)
                .header("x-sluice-forwarded-by", "node-x");
            async move {
                let r = r.send().await.unwrap();
                let status = r.status().as_u16();
                let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null);
                (status, v)
            }
        };

        // Shard 1 never opened: a commit anywhere is refused as the embedded mode refuses it.
        let (s, opened) = call(
            &other.base,
            Method::POST,
            &offsets,
            json!({"Action": "open", "ShardIds": ["0"]}),
        )
        .await;
        assert_eq!(s, 200, "an open is forwarded to the owner: {opened}");
        let first = opened["Offsets"]["0"]["SessionId"].as_i64().unwrap();
        let commit = |shard: &str, seq: i64, session: i64, version: i64| {
            json!({"Action": "commit", "Offsets": {shard: {"Sequence": seq, "Timestamp": 1000 + seq, "BatchIndex": 0, "Version": version, "SessionId": session}}})
        };
        let (s, e) = at_other(commit("1", 5, first, 0), Method::PUT).await;
        assert_eq!((s, e["ErrorCode"].as_str()), (400, Some("OffsetSessionClosed")), "{e}");

        // A commit at the node that does not own the subscription, under the open session.
        let (s, e) = at_other(commit("0", 12, first, 0), Method::PUT).await;
        assert_eq!(s, 200, "{e}");
        let (s, got) = at_other(json!({"Action": "get", "ShardIds": ["0"]}), Method::POST).await;
        assert_eq!(s, 200, "{got}");
        assert_eq!(got["Offsets"]["0"]["Sequence"], 12, "{got}");
        let (s, got) = call(
            &owner.base,
            Method::POST,
            &offsets,
            json!({"Action": "get", "ShardIds": ["0"]}),
        )
        .await;
        assert_eq!(s, 200, "{got}");
        assert_eq!(got["Offsets"]["0"]["Sequence"], 12, "the owner reads the store: {got}");

        // A new open (on the owner) answers that position and supersedes the first session.
        let (s, reopened) = call(
            &owner.base,
            Method::POST,
            &offsets,
            json!({"Action": "open", "ShardIds": ["0", "1"]}),
        )
        .await;
        assert_eq!(s, 200, "{reopened}");
        assert_eq!(reopened["Offsets"]["0"]["Sequence"], 12, "{reopened}");
        assert_eq!(reopened["Offsets"]["0"]["Timestamp"], 1012, "{reopened}");
        let second = reopened["Offsets"]["0"]["SessionId"].as_i64().unwrap();
        assert!(second > first, "{reopened}");
        let (s, e) = at_other(commit("0", 20, first, 0), Method::PUT).await;
        assert_eq!((s, e["ErrorCode"].as_str()), (400, Some("OffsetSessionChanged")), "{e}");
        let (s, e) = at_other(commit("0", 20, second, 9), Method::PUT).await;
        assert_eq!((s, e["ErrorCode"].as_str()), (400, Some("OffsetReseted")), "{e}");

        // All shards of a commit or none: shard 0's part is valid, shard 1's session is stale.
        let shard1 = reopened["Offsets"]["1"]["SessionId"].as_i64().unwrap();
        let both = json!({"Action": "commit", "Offsets": {
            "0": {"Sequence": 30, "Timestamp": 1030, "BatchIndex": 0, "Version": 0, "SessionId": second},
            "1": {"Sequence": 31, "Timestamp": 1031, "BatchIndex": 0, "Version": 0, "SessionId": shard1 - 1},
        }});
        let (s, e) = at_other(both, Method::PUT).await;
        assert_eq!((s, e["ErrorCode"].as_str()), (400, Some("OffsetSessionChanged")), "{e}");
        let (_, got) = at_other(json!({"Action": "get", "ShardIds": ["0", "1"]}), Method::POST).await;
        assert_eq!(got["Offsets"]["0"]["Sequence"], 12, "nothing of a refused commit lands: {got}");
        assert_eq!(got["Offsets"]["1"]["Sequence"], -1, "{got}");

        // Opens and resets still belong to the owner: marked as forwarded, the other node
        // refuses an open rather than serving it.
        let (s, e) = at_other(json!({"Action": "open", "ShardIds": ["0"]}), Method::POST).await;
        assert_eq!(s, 503, "{e}");

        b.server.shutdown().await;
        a.server.shutdown().await;
        b.serving.abort();
        a.serving.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_survivor_takes_a_dead_owners_subscription_from_the_stored_offsets_and_fences_it() {
    bounded(async {
        let url = fresh_database().await;
        let keys = tempfile::tempdir().unwrap();
        let a = node(&url, "node-a", &key_file(&keys)).await;
        let subs = setup(&a.base, 1).await;
        let sub = subs[0].clone();
        until(10, "A holds the subscription", || sub_keys(&a).len() == 1).await;
        let b = node(&url, "node-b", &key_file(&keys)).await;
        // Whoever wins it by placement, A holds it until it dies: drive A to commit offsets.
        let owner_is_a = sub_keys(&a).len() == 1;
        let (owner, survivor) = if owner_is_a { (&a, &b) } else { (&b, &a) };
        until(10, "the owner holds it", || sub_keys(owner).len() == 1).await;
        let offsets = format!("/projects/proj/topics/top/subscriptions/{sub}/offsets");
        let (s, opened) = call(
            &owner.base,
            reqwest::Method::POST,
            &offsets,
            json!({"Action": "open", "ShardIds": ["0"]}),
        )
        .await;
        assert_eq!(s, 200, "{opened}");
        let session = opened["Offsets"]["0"]["SessionId"].clone();
        let (s, b2) = call(
            &owner.base,
            reqwest::Method::PUT,
            &offsets,
            json!({"Action": "commit", "Offsets": {"0": {"Sequence": 41, "Timestamp": 777, "BatchIndex": 0, "Version": 0, "SessionId": session}}}),
        )
        .await;
        assert_eq!(s, 200, "{b2}");
        let (s, joined) = call(
            &owner.base,
            reqwest::Method::POST,
            &format!("/projects/proj/topics/top/subscriptions/{sub}"),
            json!({"Action": "joinGroup", "SessionTimeout": 60000}),
        )
        .await;
        assert_eq!(s, 200, "{joined}");

        // The owner freezes: no more renewals, its leases expire.
        let old_guard = owner
            .ownership()
            .guard(&sub_keys(owner)[0])
            .expect("the owner's lease");
        owner.ownership().halt().await;
        // Its guard, read while it holds the key (a fresh-clone CI run on a new, loaded machine
        // once found the key gone again right after the wait: not explained yet, see the note).
        let mut new_guard = None;
        until(15, "the survivor took the subscription over", || {
            new_guard = sub_keys(survivor)
                .first()
                .and_then(|k| survivor.ownership().guard(k));
            new_guard.is_some()
        })
        .await;
        let new_guard = new_guard.unwrap();
        assert!(new_guard.epoch > old_guard.epoch, "{new_guard:?} {old_guard:?}");

        // It serves the stored offsets and the stored group (the member keeps its id).
        let (s, got) = call(
            &survivor.base,
            reqwest::Method::POST,
            &offsets,
            json!({"Action": "get", "ShardIds": ["0"]}),
        )
        .await;
        assert_eq!(s, 200, "{got}");
        assert_eq!(got["Offsets"]["0"]["Sequence"], 41, "{got}");
        assert_eq!(got["Offsets"]["0"]["Timestamp"], 777, "{got}");
        let (s, hb) = call(
            &survivor.base,
            reqwest::Method::POST,
            &format!("/projects/proj/topics/top/subscriptions/{sub}"),
            json!({"Action": "heartbeat", "ConsumerId": joined["ConsumerId"], "VersionId": joined["VersionId"], "HoldShardList": []}),
        )
        .await;
        assert_eq!(s, 200, "the member got a session timeout of grace: {hb}");

        // The frozen owner's late group save is refused (fenced), and so is a checkpoint
        // under its old lease.
        let late = owner
            .server
            .state
            .catalog
            .join_group("proj", "top", &sub, 60_000)
            .await;
        let e = late.expect_err("a late group save of the old owner must be fenced");
        assert!(e.to_string().contains("fenced"), "{e}");
        // Offsets are checked in the store wherever a commit lands: once a consumer has opened
        // the shard through the survivor, a late commit under the first session, served by the
        // frozen node, is refused, and the stored offset stays the committed one.
        let (s, opened_again) = call(
            &survivor.base,
            reqwest::Method::POST,
            &offsets,
            json!({"Action": "open", "ShardIds": ["0"]}),
        )
        .await;
        assert_eq!(s, 200, "{opened_again}");
        assert_eq!(
            opened_again["Offsets"]["0"]["Sequence"], 41,
            "an open answers the stored position: {opened_again}"
        );
        let update = sluice_server::service::subscriptions::OffsetUpdate {
            sequence: 3,
            timestamp: 1,
            batch_index: 0,
            version: Some(0),
            session_id: session.as_i64(),
        };
        let late = owner
            .server
            .state
            .catalog
            .commit_offsets("proj", "top", &sub, &[("0".to_string(), update)])
            .await;
        let e = late.expect_err("a commit under a superseded session must be refused");
        assert!(
            matches!(e, sluice_server::service::Error::OffsetSessionChanged(_)),
            "{e}"
        );
        let (_, got) = call(
            &survivor.base,
            reqwest::Method::POST,
            &offsets,
            json!({"Action": "get", "ShardIds": ["0"]}),
        )
        .await;
        assert_eq!(got["Offsets"]["0"]["Sequence"], 41, "{got}");

        // The survivor moves the offset on; the frozen node, asked again, no longer answers
        // from its own memory (its lease is unconfirmed): it forwards to the survivor.
        let (s, reopened) = call(
            &survivor.base,
            reqwest::Method::POST,
            &offsets,
            json!({"Action": "open", "ShardIds": ["0"]}),
        )
        .await;
        assert_eq!(s, 200, "{reopened}");
        let session = reopened["Offsets"]["0"]["SessionId"].clone();
        let (s, b3) = call(
            &survivor.base,
            reqwest::Method::PUT,
            &offsets,
            json!({"Action": "commit", "Offsets": {"0": {"Sequence": 55, "Timestamp": 888, "BatchIndex": 0, "Version": 0, "SessionId": session}}}),
        )
        .await;
        assert_eq!(s, 200, "{b3}");
        let (s, via_old) = call(
            &owner.base,
            reqwest::Method::POST,
            &offsets,
            json!({"Action": "get", "ShardIds": ["0"]}),
        )
        .await;
        assert_eq!(s, 200, "{via_old}");
        assert_eq!(
            via_old["Offsets"]["0"]["Sequence"], 55,
            "the frozen node answered from its stale memory: {via_old}"
        );

        let meta: MetaStore = owner.server.state.catalog.meta.clone();
        let uid = owner.server.state.catalog.topic("proj", "top").unwrap().uid;
        let conn = ConnectorRow {
            topic_uid: uid,
            connector_id: "c1".into(),
            kind: "SINK_MYSQL".into(),
            state: "CONNECTOR_STOPPED".into(),
            column_fields: vec![],
            config: "{}".into(),
            creator: "t".into(),
            start_time: -1,
            create_time: 0,
            last_modify_time: 0,
        };
        let conn_sub = SubscriptionRow {
            sub_id: "c1-sub".into(),
            topic_uid: uid,
            comment: String::new(),
            state: 1,
            create_time: 0,
            last_modify_time: 0,
            connector_id: Some("c1".into()),
        };
        meta.insert_connector_with_subscription(&conn, &conn_sub)
            .await
            .unwrap();
        let cp = |seq: u64| CheckpointRow {
            shard_id: 0,
            next_seq: seq,
            last_time: 1,
            discard_count: 0,
            finished: false,
            update_time: 1,
            late_count: 0,
        };
        let stale = sluice_meta::LeaseGuard {
            kind: "conn".into(),
            key: format!("{uid}:c1"),
            owner: old_guard.owner.clone(),
            epoch: 1,
        };
        // Nobody holds conn:c1 under that epoch now (the frozen node's leases expired).
        let refused = meta.save_checkpoints_fenced(uid, "c1", &[cp(5)], &stale).await;
        assert!(
            matches!(refused, Err(sluice_meta::MetaError::Fenced(_))),
            "{refused:?}"
        );
        let stored = meta.load_checkpoints(uid, "c1").await.unwrap();
        assert!(stored.is_empty(), "nothing was written: {stored:?}");

        survivor.serving.abort();
        owner.serving.abort();
        let (a, b) = (a, b);
        b.server.shutdown().await;
        a.server.shutdown().await;
    })
    .await;
}
