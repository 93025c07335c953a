//! Helpers shared by the tests that run the `sluice` binary: start it on a data dir, call it
//! with signed JSON requests, read a topic back.
//!
//! `SLUICE_TEST_BIN` runs the tests against another build (an older commit, to check that a
//! test fails there); by default they run the binary of this build.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use sluice_proto::sign;

pub const ID: &str = "test-id";
pub const KEY: &str = "test-key";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn binary() -> String {
    std::env::var("SLUICE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sluice").to_string())
}

/// A `sluice serve` child; killed (SIGKILL) when dropped.
pub struct Sluice {
    pub child: Child,
    pub port: u16,
    pub http: reqwest::Client,
    id: String,
    key: String,
}

impl Sluice {
    /// Starts the server on `dir` (with `wrap` as a command prefix, e.g. `prlimit ...`) and
    /// waits until it answers `/health`.
    pub async fn start_with(dir: &Path, wrap: &[&str], id: &str, key: &str) -> Sluice {
        Sluice::start_full(dir, wrap, &[], id, key).await
    }

    /// [`Sluice::start_with`] with `extra` arguments after `serve`'s own (issue 14: cluster).
    pub async fn start_full(
        dir: &Path,
        wrap: &[&str],
        extra: &[String],
        id: &str,
        key: &str,
    ) -> Sluice {
        let port = free_port();
        let bin = binary();
        let mut argv: Vec<String> = wrap.iter().map(|s| s.to_string()).collect();
        argv.push(bin);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--access-id",
                id,
                "--access-key",
                key,
                "--data-dir",
            ])
            .arg(dir)
            .args(extra)
            .env("SLUICE_LOG", "warn")
            .stdout(Stdio::null());
        let child = cmd.spawn().expect("start sluice");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut s = Sluice {
            child,
            port,
            http,
            id: id.to_string(),
            key: key.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = s
                .http
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .await
            {
                if r.status().is_success() {
                    return s;
                }
            }
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("sluice exited before it was healthy: {status}");
            }
            assert!(Instant::now() < deadline, "server did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn start(dir: &Path) -> Sluice {
        Sluice::start_with(dir, &[], ID, KEY).await
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A signed JSON request; the status and the parsed body (a string if it is not JSON).
    pub async fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let headers = [("x-datahub-client-version", "1.1")];
        let (p, q) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let canonical = sign::canonical_string(method, "application/json", &date, &headers, p, q);
        let raw = if body.is_null() {
            vec![]
        } else {
            body.to_string().into_bytes()
        };
        let resp = self
            .http
            .request(
                method.parse().unwrap(),
                format!("http://127.0.0.1:{}{path}", self.port),
            )
            .header("content-type", "application/json")
            .header("date", date)
            .header("x-datahub-client-version", "1.1")
            .header(
                "authorization",
                format!(
                    "DATAHUB {}:{}",
                    self.id,
                    sign::signature(&self.key, &canonical)
                ),
            )
            .body(raw)
            .send()
            .await
            .expect("the server answers");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v)
    }

    /// Every shard id of a topic, with its state.
    pub async fn shards(&self, topic: &str) -> Vec<(String, String)> {
        let (s, v) = self
            .call("GET", &format!("{topic}/shards"), Value::Null)
            .await;
        assert_eq!(s, 200, "{v}");
        v["Shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["ShardId"].as_str().unwrap().to_string(),
                    s["State"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Every record of a topic (`/projects/p/topics/t`), over all its shards, in shard then
    /// sequence order: BLOB data as text, TUPLE data as its JSON array.
    pub async fn read_topic(&self, topic: &str) -> Vec<String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = Vec::new();
        for (id, _) in self.shards(topic).await {
            let path = format!("{topic}/shards/{id}");
            let (s, c) = self
                .call("POST", &path, json!({"Action": "cursor", "Type": "OLDEST"}))
                .await;
            if s != 200 {
                // an empty closed shard has no oldest record
                continue;
            }
            let mut cursor = c["Cursor"].clone();
            loop {
                let (s, r) = self
                    .call(
                        "POST",
                        &path,
                        json!({"Action": "sub", "Cursor": cursor, "Limit": 1000}),
                    )
                    .await;
                if s != 200 {
                    assert_eq!(r["ErrorCode"], "InvalidShardOperation", "{r}");
                    break;
                }
                let records = r["Records"].as_array().unwrap();
                if records.is_empty() {
                    break;
                }
                for rec in records {
                    out.push(match &rec["Data"] {
                        Value::String(d) => String::from_utf8(b64.decode(d).unwrap()).unwrap(),
                        other => other.to_string(),
                    });
                }
                cursor = r["NextCursor"].clone();
            }
        }
        out
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn blob(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}
