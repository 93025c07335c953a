//! Accounts and access control (issue 15): stored access keys, policies checked on every
//! route, key management, rotation and the audit log, driven through the router with `oneshot`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use sluice_proto::sign;
use sluice_server::{app, Accounts, Server, ServerConfig};
use tower::ServiceExt;

const ROOT_ID: &str = "root-id";
const ROOT_KEY: &str = "root-key";

struct Harness {
    dir: tempfile::TempDir,
    server: Server,
}

#[derive(Clone)]
struct Key {
    id: String,
    secret: String,
}

fn root() -> Key {
    Key {
        id: ROOT_ID.into(),
        secret: ROOT_KEY.into(),
    }
}

async fn open(dir: &std::path::Path) -> Server {
    Server::open(
        dir,
        ServerConfig::default(),
        Accounts::with_root(ROOT_ID, ROOT_KEY),
    )
    .await
    .unwrap()
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let server = open(dir.path()).await;
    Harness { dir, server }
}

fn signed(
    key: &Key,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Vec<u8>,
) -> Request<Body> {
    let ct = "application/json";
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let mut headers: Vec<(&str, &str)> = vec![("x-datahub-client-version", "1.1")];
    headers.extend_from_slice(extra);
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let canonical = sign::canonical_string(method, ct, &date, &headers, p, q);
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .header("date", &date)
        .header(
            "authorization",
            format!(
                "DATAHUB {}:{}",
                key.id,
                sign::signature(&key.secret, &canonical)
            ),
        );
    for (k, v) in &headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body)).unwrap()
}

impl Harness {
    async fn raw(
        &self,
        key: &Key,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Value,
    ) -> (StatusCode, String) {
        let raw = if body.is_null() {
            vec![]
        } else {
            body.to_string().into_bytes()
        };
        let req = signed(key, method, path, extra, raw);
        let resp = tokio::time::timeout(
            Duration::from_secs(20),
            app(self.server.state.clone()).oneshot(req),
        )
        .await
        .expect("the request is answered in time")
        .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn call(&self, key: &Key, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, text) = self.raw(key, method, path, &[], body).await;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (s, v)
    }

    async fn ok(&self, key: &Key, method: &str, path: &str, body: Value) -> Value {
        let (s, v) = self.call(key, method, path, body).await;
        assert_eq!(s, StatusCode::OK, "{method} {path}: {v}");
        v
    }

    async fn create_key(&self, name: &str, allow: &[&str], extra: Value) -> Key {
        let mut body = json!({"Name": name, "Allow": allow});
        if let Value::Object(m) = extra {
            body.as_object_mut().unwrap().extend(m);
        }
        let v = self.ok(&root(), "POST", "/accounts/keys", body).await;
        Key {
            id: v["AccessId"].as_str().unwrap().into(),
            secret: v["AccessKey"].as_str().unwrap().into(),
        }
    }

    /// Project `proj` with topics `t` and `u`, and one record in `t`.
    async fn setup(&self) {
        let r = root();
        self.ok(&r, "POST", "/projects/proj", json!({"Comment": "c"}))
            .await;
        let schema = r#"{"fields":[{"name":"a","type":"bigint"}]}"#;
        for t in ["t", "u"] {
            self.ok(
                &r,
                "POST",
                &format!("/projects/proj/topics/{t}"),
                json!({"ShardCount": 1, "Lifecycle": 1, "RecordType": "TUPLE", "RecordSchema": schema, "Comment": ""}),
            )
            .await;
        }
        let v = self
            .ok(
                &r,
                "POST",
                "/projects/proj/topics/t/shards",
                json!({"Action": "pub", "Records": [{"Data": ["7"], "ShardId": "0"}]}),
            )
            .await;
        assert_eq!(v["FailedRecordCount"], 0);
    }
}

/// A 403 NoPermission whose message names `needs`.
fn assert_refused((s, v): (StatusCode, Value), needs: &str) {
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["ErrorCode"], "NoPermission", "{v}");
    let m = v["ErrorMessage"].as_str().unwrap();
    assert!(m.contains(needs), "{m:?} should name {needs}");
    assert!(
        v["RequestId"].as_str().is_some_and(|r| !r.is_empty()),
        "{v}"
    );
}

fn assert_unauthorized((s, v): (StatusCode, Value)) {
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["ErrorCode"], "Unauthorized", "{v}");
}

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
