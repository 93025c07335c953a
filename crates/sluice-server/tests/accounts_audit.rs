//! The audit log of accounts (issue 15): reads, status queries, offset commits and heartbeats
//! add no entry; each kind of management change adds exactly one, with who, what, resource and
//! request id.

mod accounts_harness;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use sluice_server::app;
use tower::ServiceExt;

use accounts_harness::*;

impl Harness {
    /// A JSON request that must succeed; its answer and request id.
    async fn ok_with_id(
        &self,
        key: &Key,
        method: &str,
        path: &str,
        body: Value,
    ) -> (Value, String) {
        let raw = if body.is_null() {
            vec![]
        } else {
            body.to_string().into_bytes()
        };
        let resp = tokio::time::timeout(
            Duration::from_secs(20),
            app(self.server.state.clone()).oneshot(signed(key, method, path, &[], raw)),
        )
        .await
        .expect("the request is answered in time")
        .unwrap();
        let status = resp.status();
        let id = resp.headers()["x-datahub-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        assert_eq!(status, StatusCode::OK, "{method} {path}: {v}");
        (v, id)
    }

    /// The audit entries after `seq`, and the last seq.
    async fn audit_after(&self, seq: i64) -> (Vec<Value>, i64) {
        let page = self
            .ok(
                &root(),
                "GET",
                &format!("/accounts/audit?after={seq}"),
                Value::Null,
            )
            .await;
        let entries = page["Entries"].as_array().unwrap().clone();
        let next = entries.last().map_or(seq, |e| e["Seq"].as_i64().unwrap());
        (entries, next)
    }

    /// Makes a change as `key` and checks that it adds exactly one audit entry: who, what,
    /// resource and the request's id. Returns the change's answer.
    async fn change_audited_once(
        &self,
        seq: &mut i64,
        key: (&Key, &str),
        (method, path, body): (&str, &str, Value),
        what: &str,
        resource: &str,
    ) -> Value {
        let (v, id) = self.ok_with_id(key.0, method, path, body).await;
        let (entries, next) = self.audit_after(*seq).await;
        assert_eq!(entries.len(), 1, "{method} {path}: {entries:?}");
        let e = &entries[0];
        assert_eq!(e["Who"], key.1, "{e}");
        assert_eq!(e["What"], what, "{e}");
        assert_eq!(e["Resource"], resource, "{e}");
        assert_eq!(e["RequestId"], id.as_str(), "{e}");
        *seq = next;
        v
    }
}

#[tokio::test]
async fn reads_status_queries_commits_and_heartbeats_are_not_audited_and_each_change_is_once() {
    let h = harness().await;
    h.setup().await;
    let ops = h.create_key("ops", &["admin:*/*"], json!({})).await;
    let reader = h.create_key("reader", &["read:proj/t"], json!({})).await;
    let (_, mut seq) = h.audit_after(0).await;
    let t = "/projects/proj/topics/t";
    let who = (&ops, "ops");

    // changes first, so the routine run below has a subscription and a connector to use
    let v = h
        .change_audited_once(
            &mut seq,
            who,
            (
                "POST",
                &format!("{t}/subscriptions"),
                json!({"Action": "create", "Comment": "c"}),
            ),
            &format!("POST {t}/subscriptions (create)"),
            "proj/t",
        )
        .await;
    let sub = v["SubId"].as_str().unwrap().to_string();
    let mysql = json!({"Host": "127.0.0.1", "Port": "1", "Database": "d", "User": "u",
        "Password": "p", "Table": "x", "Ignore": "false"});
    let v = h
        .change_audited_once(
            &mut seq,
            who,
            (
                "POST",
                &format!("{t}/connectors/sink_mysql"),
                json!({"Action": "create", "ColumnFields": ["a"], "Config": mysql,
                    "SinkStartTime": -1}),
            ),
            &format!("POST {t}/connectors/sink_mysql (create)"),
            "proj/t",
        )
        .await;
    let conn = v["ConnectorId"].as_str().unwrap().to_string();
    let c = format!("{t}/connectors/{conn}");
    let s = format!("{t}/subscriptions/{sub}");

    // a run of reads, status and done-time queries, offset commits and heartbeats
    let before = seq;
    for path in [
        "/projects".to_string(),
        "/projects/proj".into(),
        "/projects/proj/topics".into(),
        t.into(),
        format!("{t}/shards"),
        format!("{t}/connectors"),
        c.clone(),
        format!("{c}?donetime"),
        s.clone(),
    ] {
        h.ok(&ops, "GET", &path, Value::Null).await;
    }
    let posts = [
        (t.to_string(), json!({"Action": "listschema"})),
        (t.into(), json!({"Action": "getschema", "VersionId": 0})),
        (c.clone(), json!({"Action": "status", "ShardId": "0"})),
        (c.clone(), json!({"Action": "Status"})),
        (
            format!("{t}/subscriptions"),
            json!({"Action": "list", "PageIndex": 1, "PageSize": 10}),
        ),
        (
            format!("{s}/offsets"),
            json!({"Action": "get", "ShardIds": ["0"]}),
        ),
    ];
    for (path, body) in posts {
        h.ok(&ops, "POST", &path, body).await;
    }
    let open = h
        .ok(
            &ops,
            "POST",
            &format!("{s}/offsets"),
            json!({"Action": "open", "ShardIds": ["0"]}),
        )
        .await;
    let o = &open["Offsets"]["0"];
    h.ok(
        &ops,
        "PUT",
        &format!("{s}/offsets"),
        json!({"Action": "commit", "Offsets": {"0": {"Sequence": 0, "Timestamp": 1,
            "Version": o["Version"], "SessionId": o["SessionId"]}}}),
    )
    .await;
    let joined = h
        .ok(
            &ops,
            "POST",
            &s,
            json!({"Action": "joingroup", "SessionTimeout": 60000}),
        )
        .await;
    let member = json!({"ConsumerId": joined["ConsumerId"], "VersionId": joined["VersionId"]});
    let mut heartbeat = member.clone();
    heartbeat["Action"] = json!("heartbeat");
    heartbeat["HoldShardList"] = json!([]);
    h.ok(&ops, "POST", &s, heartbeat).await;
    let mut leave = member;
    leave["Action"] = json!("leavegroup");
    h.ok(&ops, "POST", &s, leave).await;
    // record traffic, JSON reads included, by a key that only reads and by the admin
    h.ok(
        &ops,
        "POST",
        &format!("{t}/shards"),
        json!({"Action": "pub", "Records": [{"Data": ["1"], "ShardId": "0"}]}),
    )
    .await;
    for key in [&ops, &reader] {
        let cursor = h
            .ok(
                key,
                "POST",
                &format!("{t}/shards/0"),
                json!({"Action": "cursor", "Type": "OLDEST"}),
            )
            .await;
        h.ok(
            key,
            "POST",
            &format!("{t}/shards/0"),
            json!({"Action": "sub", "Cursor": cursor["Cursor"], "Limit": 10}),
        )
        .await;
    }
    let (entries, _) = h.audit_after(before).await;
    assert!(
        entries.is_empty(),
        "routine traffic was audited: {entries:?}"
    );

    // each kind of change adds exactly one entry
    let changes: Vec<(&str, String, Value, String, &str)> = vec![
        (
            "PUT",
            "/projects/proj".into(),
            json!({"Comment": "new"}),
            "PUT /projects/proj".into(),
            "proj/*",
        ),
        (
            "POST",
            "/projects/proj/topics/u".into(),
            json!({"Action": "appendfield", "FieldName": "b", "FieldType": "STRING"}),
            "POST /projects/proj/topics/u (appendfield)".into(),
            "proj/u",
        ),
        (
            "POST",
            "/projects/proj/topics/u/shards".into(),
            json!({"Action": "split", "ShardId": "0"}),
            "POST /projects/proj/topics/u/shards (split)".into(),
            "proj/u",
        ),
        (
            "PUT",
            s.clone(),
            json!({"State": 0}),
            format!("PUT {s}"),
            "proj/t",
        ),
        (
            "PUT",
            format!("{s}/offsets"),
            json!({"Action": "reset", "Offsets": {"0": {"Sequence": 0, "Timestamp": 1}}}),
            format!("PUT {s}/offsets (reset)"),
            "proj/t",
        ),
        (
            "POST",
            c.clone(),
            json!({"Action": "updatestate", "State": "CONNECTOR_STOPPED"}),
            format!("POST {c} (updatestate)"),
            "proj/t",
        ),
        (
            "POST",
            c.clone(),
            json!({"Action": "updateshardcontext", "ShardId": "0", "CurrentSequence": 0,
                "CurrentTime": 1}),
            format!("POST {c} (updateshardcontext)"),
            "proj/t",
        ),
        (
            "POST",
            c.clone(),
            json!({"Action": "updateconfig", "Config": mysql}),
            format!("POST {c} (updateconfig)"),
            "proj/t",
        ),
        (
            "DELETE",
            c.clone(),
            Value::Null,
            format!("DELETE {c}"),
            "proj/t",
        ),
        (
            "DELETE",
            s.clone(),
            Value::Null,
            format!("DELETE {s}"),
            "proj/t",
        ),
        (
            "POST",
            "/accounts/keys/reader".into(),
            json!({"Action": "disable"}),
            "DisableKey".into(),
            "key/reader",
        ),
        (
            "DELETE",
            "/projects/proj/topics/u".into(),
            Value::Null,
            "DELETE /projects/proj/topics/u".into(),
            "proj/u",
        ),
    ];
    for (method, path, body, what, resource) in changes {
        h.change_audited_once(&mut seq, who, (method, &path, body), &what, resource)
            .await;
    }
}
