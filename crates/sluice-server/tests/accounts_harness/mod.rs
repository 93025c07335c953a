//! The harness of the accounts tests (tests/accounts.rs, tests/accounts_audit.rs): a server on a
//! temporary data dir, signed requests through the router with `oneshot`, and the checks of a
//! refusal.

#![allow(dead_code)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use sluice_proto::sign;
use sluice_server::{app, Accounts, Server, ServerConfig};
use tower::ServiceExt;

pub const ROOT_ID: &str = "root-id";
pub const ROOT_KEY: &str = "root-key";

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub server: Server,
}

#[derive(Clone)]
pub struct Key {
    pub id: String,
    pub secret: String,
}

pub fn root() -> Key {
    Key {
        id: ROOT_ID.into(),
        secret: ROOT_KEY.into(),
    }
}

pub async fn open(dir: &std::path::Path) -> Server {
    Server::open(
        dir,
        ServerConfig::default(),
        Accounts::with_root(ROOT_ID, ROOT_KEY),
    )
    .await
    .unwrap()
}

pub async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let server = open(dir.path()).await;
    Harness { dir, server }
}

pub fn signed(
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
    pub async fn raw(
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

    pub async fn call(
        &self,
        key: &Key,
        method: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let (s, text) = self.raw(key, method, path, &[], body).await;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (s, v)
    }

    pub async fn ok(&self, key: &Key, method: &str, path: &str, body: Value) -> Value {
        let (s, v) = self.call(key, method, path, body).await;
        assert_eq!(s, StatusCode::OK, "{method} {path}: {v}");
        v
    }

    pub async fn create_key(&self, name: &str, allow: &[&str], extra: Value) -> Key {
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
    pub async fn setup(&self) {
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
pub fn assert_refused((s, v): (StatusCode, Value), needs: &str) {
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["ErrorCode"], "NoPermission", "{v}");
    let m = v["ErrorMessage"].as_str().unwrap();
    assert!(m.contains(needs), "{m:?} should name {needs}");
    assert!(
        v["RequestId"].as_str().is_some_and(|r| !r.is_empty()),
        "{v}"
    );
}

pub fn assert_unauthorized((s, v): (StatusCode, Value)) {
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["ErrorCode"], "Unauthorized", "{v}");
}
