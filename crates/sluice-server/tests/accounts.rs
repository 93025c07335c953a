//! Accounts and access control (issue 15): stored access keys, policies checked on every
//! route, key management, rotation and the audit log, driven through the router with `oneshot`.

mod accounts_harness;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use accounts_harness::*;

#[tokio::test]
async fn a_key_limited_to_reading_one_topic_reads_it_and_nothing_else() {
    let h = harness().await;
    h.setup().await;
    let reader = h.create_key("reader", &["read:proj/t"], json!({})).await;

    // what it may do
    h.ok(&reader, "GET", "/projects/proj/topics/t", Value::Null)
        .await;
    let c = h
        .ok(
            &reader,
            "POST",
            "/projects/proj/topics/t/shards/0",
            json!({"Action": "cursor", "Type": "OLDEST"}),
        )
        .await;
    let r = h
        .ok(
            &reader,
            "POST",
            "/projects/proj/topics/t/shards/0",
            json!({"Action": "sub", "Cursor": c["Cursor"], "Limit": 10}),
        )
        .await;
    assert_eq!(r["Records"][0]["Data"], json!(["7"]));
    // metering is read
    h.ok(
        &reader,
        "POST",
        "/projects/proj/topics/t/shards/0",
        json!({"Action": "meter"}),
    )
    .await;

    // a put, JSON and protobuf
    let put = json!({"Action": "pub", "Records": [{"Data": ["8"], "ShardId": "0"}]});
    assert_refused(
        h.call(
            &reader,
            "POST",
            "/projects/proj/topics/t/shards",
            put.clone(),
        )
        .await,
        "write:proj/t",
    );
    assert_refused(
        h.call(&reader, "POST", "/projects/proj/topics/t/shards/0", put)
            .await,
        "write:proj/t",
    );
    let (s, text) = h
        .raw(
            &reader,
            "POST",
            "/projects/proj/topics/t/shards/0",
            &[("x-datahub-request-action", "pub")],
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{text}");
    // another topic
    assert_refused(
        h.call(
            &reader,
            "POST",
            "/projects/proj/topics/u/shards/0",
            json!({"Action": "cursor", "Type": "OLDEST"}),
        )
        .await,
        "read:proj/u",
    );
    let (s, _) = h
        .call(&reader, "GET", "/projects/proj/topics/u", Value::Null)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // a connector change, a topic change, a split, a project change, key management
    assert_refused(
        h.call(
            &reader,
            "POST",
            "/projects/proj/topics/t/connectors/sink_mysql",
            json!({"Action": "create"}),
        )
        .await,
        "connectors:proj/t",
    );
    assert_refused(
        h.call(&reader, "DELETE", "/projects/proj/topics/t", Value::Null)
            .await,
        "topics:proj/t",
    );
    assert_refused(
        h.call(
            &reader,
            "POST",
            "/projects/proj/topics/t/shards",
            json!({"Action": "split", "ShardId": "0", "SplitKey": "7"}),
        )
        .await,
        "topics:proj/t",
    );
    assert_refused(
        h.call(&reader, "POST", "/projects/other", json!({"Comment": ""}))
            .await,
        "admin:other/*",
    );
    assert_refused(
        h.call(
            &reader,
            "POST",
            "/projects/proj/topics/t/subscriptions",
            json!({"Action": "create", "Comment": ""}),
        )
        .await,
        "subscriptions:proj/t",
    );
    assert_refused(
        h.call(&reader, "GET", "/accounts/keys", Value::Null).await,
        "admin:*/*",
    );
    // nothing was written by the refused put
    let r = h
        .ok(
            &root(),
            "POST",
            "/projects/proj/topics/t/shards/0",
            json!({"Action": "sub", "Cursor": c["Cursor"], "Limit": 10}),
        )
        .await;
    assert_eq!(r["RecordCount"], 1, "{r}");

    // a producer key writes, a topic admin with a wildcard manages topics
    let producer = h.create_key("producer", &["write:proj/t"], json!({})).await;
    let v = h
        .ok(
            &producer,
            "POST",
            "/projects/proj/topics/t/shards",
            json!({"Action": "pub", "Records": [{"Data": ["9"], "ShardId": "0"}]}),
        )
        .await;
    assert_eq!(v["FailedRecordCount"], 0);
    let admin = h
        .create_key("proj-admin", &["admin:proj/*"], json!({}))
        .await;
    h.ok(&admin, "DELETE", "/projects/proj/topics/u", Value::Null)
        .await;
    assert_refused(
        h.call(&admin, "POST", "/accounts/keys", json!({"Name": "x"}))
            .await,
        "admin:*/*",
    );
}

#[tokio::test]
async fn disabled_and_expired_keys_are_refused_at_once() {
    let h = harness().await;
    let k = h.create_key("app", &["read:*/*"], json!({})).await;
    h.ok(&k, "GET", "/projects", Value::Null).await;
    h.ok(
        &root(),
        "POST",
        "/accounts/keys/app",
        json!({"Action": "disable"}),
    )
    .await;
    assert_unauthorized(h.call(&k, "GET", "/projects", Value::Null).await);
    h.ok(
        &root(),
        "POST",
        "/accounts/keys/app",
        json!({"Action": "enable"}),
    )
    .await;
    h.ok(&k, "GET", "/projects", Value::Null).await;
    h.ok(&root(), "DELETE", "/accounts/keys/app", Value::Null)
        .await;
    assert_unauthorized(h.call(&k, "GET", "/projects", Value::Null).await);

    let short = h
        .create_key("short", &["read:*/*"], json!({"ExpiresInSecs": 1}))
        .await;
    h.ok(&short, "GET", "/projects", Value::Null).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_unauthorized(h.call(&short, "GET", "/projects", Value::Null).await);
}

#[tokio::test]
async fn a_rotated_keys_old_secret_works_only_during_the_change_over() {
    let h = harness().await;
    let old = h.create_key("app", &["read:*/*"], json!({})).await;
    let v = h
        .ok(
            &root(),
            "POST",
            "/accounts/keys/app",
            json!({"Action": "rotate"}),
        )
        .await;
    let new = Key {
        id: v["AccessId"].as_str().unwrap().into(),
        secret: v["AccessKey"].as_str().unwrap().into(),
    };
    assert_eq!(new.id, old.id);
    assert_ne!(new.secret, old.secret);
    h.ok(&old, "GET", "/projects", Value::Null).await;
    h.ok(&new, "GET", "/projects", Value::Null).await;
    let list = h.ok(&root(), "GET", "/accounts/keys", Value::Null).await;
    assert_eq!(list["Keys"][0]["Rotating"], true);
    h.ok(
        &root(),
        "POST",
        "/accounts/keys/app",
        json!({"Action": "retire"}),
    )
    .await;
    assert_unauthorized(h.call(&old, "GET", "/projects", Value::Null).await);
    h.ok(&new, "GET", "/projects", Value::Null).await;

    // a rotation with an expiry for the old secret
    let v = h
        .ok(
            &root(),
            "POST",
            "/accounts/keys/app",
            json!({"Action": "rotate", "OldExpiresInSecs": 1}),
        )
        .await;
    let newer = Key {
        id: new.id.clone(),
        secret: v["AccessKey"].as_str().unwrap().into(),
    };
    h.ok(&new, "GET", "/projects", Value::Null).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_unauthorized(h.call(&new, "GET", "/projects", Value::Null).await);
    h.ok(&newer, "GET", "/projects", Value::Null).await;
}

/// A log writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_are_shown_once_and_never_in_lists_logs_audit_or_the_meta_store() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = harness().await;
    let k = h.create_key("app", &["read:*/*"], json!({})).await;
    let v = h
        .ok(
            &root(),
            "POST",
            "/accounts/keys/app",
            json!({"Action": "rotate"}),
        )
        .await;
    let rotated = v["AccessKey"].as_str().unwrap().to_string();
    // a refused request and a wrong signature, which may be logged
    let wrong = Key {
        id: k.id.clone(),
        secret: "wrong".into(),
    };
    assert_unauthorized(h.call(&wrong, "GET", "/projects", Value::Null).await);
    h.ok(&k, "GET", "/projects", Value::Null).await;

    let list = h.ok(&root(), "GET", "/accounts/keys", Value::Null).await;
    let key = &list["Keys"][0];
    assert_eq!(key["Name"], "app");
    assert_eq!(key["AccessId"], k.id.as_str());
    assert_eq!(key["Allow"], json!(["read:*/*"]));
    assert!(key.get("AccessKey").is_none(), "{key}");
    let audit = h.ok(&root(), "GET", "/accounts/audit", Value::Null).await;
    let whats: Vec<&str> = audit["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["What"].as_str().unwrap())
        .collect();
    assert_eq!(whats, ["CreateKey", "RotateKey"]);
    let debug = format!("{:?}", h.server.state.accounts);
    for secret in [&k.secret, &rotated] {
        assert!(!list.to_string().contains(secret.as_str()));
        assert!(!audit.to_string().contains(secret.as_str()));
        assert!(!debug.contains(secret.as_str()), "{debug}");
        assert!(!String::from_utf8_lossy(&logs.0.lock().unwrap()).contains(secret.as_str()));
    }
    assert!(!debug.contains(ROOT_KEY));

    // the meta store holds no secret in clear; the server key is a 0600 file of its own
    let dir = h.dir.path().to_path_buf();
    h.server.shutdown().await;
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("meta.db")
        {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!stored.is_empty());
    let stored = String::from_utf8_lossy(&stored);
    assert!(stored.contains(&k.id), "the key is stored");
    assert!(!stored.contains(&k.secret) && !stored.contains(&rotated));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn keys_survive_a_restart_and_management_changes_are_audited() {
    let h = harness().await;
    h.setup().await;
    let ops = h.create_key("ops", &["admin:*/*"], json!({})).await;
    // an admin:*/* key manages keys too, and its name is the audit's "who"
    h.ok(
        &ops,
        "POST",
        "/accounts/keys",
        json!({"Name": "reader", "Allow": ["read:proj/t"]}),
    )
    .await;
    h.ok(
        &ops,
        "POST",
        "/projects/proj/topics/t/subscriptions",
        json!({"Action": "create", "Comment": "c"}),
    )
    .await;
    // a JSON split is a management change the middleware learns of from the handler
    h.ok(
        &ops,
        "POST",
        "/projects/proj/topics/u/shards",
        json!({"Action": "split", "ShardId": "0"}),
    )
    .await;
    // routine traffic is not audited
    h.ok(
        &ops,
        "POST",
        "/projects/proj/topics/t/shards",
        json!({"Action": "pub", "Records": [{"Data": ["1"], "ShardId": "0"}]}),
    )
    .await;
    h.ok(&ops, "GET", "/projects/proj/topics/t", Value::Null)
        .await;
    // a refused change is not audited
    let (s, _) = h
        .call(&ops, "POST", "/projects/proj", json!({"Comment": ""}))
        .await;
    assert_eq!(s.as_u16(), 409);

    let dir = h.dir;
    h.server.shutdown().await;
    let server = open(dir.path()).await;
    let h = Harness { dir, server };
    h.ok(&ops, "GET", "/projects", Value::Null).await;

    let page = h
        .ok(&root(), "GET", "/accounts/audit?limit=4", Value::Null)
        .await;
    let entries = page["Entries"].as_array().unwrap();
    let seen: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            assert!(!e["RequestId"].as_str().unwrap().is_empty(), "{e}");
            (
                e["Who"].as_str().unwrap().into(),
                e["What"].as_str().unwrap().into(),
                e["Resource"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expect =
        |who: &str, what: &str, res: &str| (who.to_string(), what.to_string(), res.to_string());
    assert_eq!(
        seen,
        vec![
            expect(ROOT_ID, "POST /projects/proj", "proj/*"),
            expect(ROOT_ID, "POST /projects/proj/topics/t (create)", "proj/t"),
            expect(ROOT_ID, "POST /projects/proj/topics/u (create)", "proj/u"),
            expect(ROOT_ID, "CreateKey", "key/ops"),
        ]
    );
    let next = page["NextAfter"].as_i64().unwrap();
    let rest = h
        .ok(
            &root(),
            "GET",
            &format!("/accounts/audit?after={next}"),
            Value::Null,
        )
        .await;
    let whats: Vec<(&str, &str)> = rest["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["Who"].as_str().unwrap(), e["What"].as_str().unwrap()))
        .collect();
    assert_eq!(
        whats,
        [
            ("ops", "CreateKey"),
            ("ops", "POST /projects/proj/topics/t/subscriptions (create)"),
            ("ops", "POST /projects/proj/topics/u/shards (split)"),
        ]
    );
    let list = h.ok(&root(), "GET", "/accounts/keys", Value::Null).await;
    let names: Vec<&str> = list["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ops", "reader"]);
    assert!(list["Keys"][0]["LastUsedTime"].as_i64().unwrap() > 0);
}
