//! The running binary at its edges: timeouts against slow and silent clients, shutdown with
//! requests half-sent, the connection limit, error bodies over a real socket, the open-file
//! limit, file modes of the data dir, and the root key from a file.
//!
//! Every wait is bounded; a server that never does what is asserted fails the test by timeout.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_client::Client;
use sluice_proto::{sign, Record, RecordData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const ID: &str = "edge-id";
const KEY: &str = "edge-key";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server started by a test: killed on drop if still running.
struct Sluice {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    data: PathBuf,
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sluice {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit; true if it exited 0 in time.
    async fn terminate_within(&mut self, limit: Duration) -> bool {
        // SAFETY: kill only sends a signal to our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

struct Start<'a> {
    config: &'a str,
    args: Vec<String>,
    prefix: Vec<String>,
    data: Option<PathBuf>,
}

impl<'a> Start<'a> {
    fn new(config: &'a str) -> Start<'a> {
        Start {
            config,
            args: vec![
                "--access-id".into(),
                ID.into(),
                "--access-key".into(),
                KEY.into(),
            ],
            prefix: vec![],
            data: None,
        }
    }

    async fn run(self) -> Sluice {
        let dir = tempfile::tempdir().unwrap();
        let data = self.data.unwrap_or_else(|| dir.path().join("data"));
        let config = dir.path().join("sluice.toml");
        std::fs::write(&config, self.config).unwrap();
        let log = dir.path().join("stderr.log");
        let port = free_port();
        let bin = env!("CARGO_BIN_EXE_sluice");
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .args(&self.args)
            .env("SLUICE_LOG", "info")
            .env_remove("SLUICE_ACCESS_KEY")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("start sluice");
        let s = Sluice {
            child,
            port,
            log,
            _dir: dir,
            data,
        };
        wait_healthy(port).await;
        s
    }
}

async fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
            let _ = s.write_all(b"GET /health HTTP/1.0\r\n\r\n").await;
            let mut buf = Vec::new();
            let _ = timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
            if buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "server did not become healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// What the server did with a connection within `limit`.
#[derive(Debug, PartialEq)]
enum Outcome {
    Closed,
    Open,
}

/// Reads until the server closes the connection (or `limit` passes).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Outcome, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => {
                let text = String::from_utf8_lossy(&got).to_string();
                return (Outcome::Open, text);
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                let text = String::from_utf8_lossy(&got).to_string();
                return (Outcome::Closed, text);
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response with a Content-Length body; `None` if none arrives within `limit`.
async fn read_response(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Some(text);
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

/// The head of a signed request (pydatahub's signing) with the given Content-Length.
fn signed_head(method: &str, path: &str, content_length: usize) -> String {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let ct = "application/json";
    let canonical = sign::canonical_string(method, ct, &date, &[], path, None);
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nDate: {date}\r\n\
         Authorization: DATAHUB {ID}:{}\r\nContent-Length: {content_length}\r\n\r\n",
        sign::signature(KEY, &canonical)
    )
}

fn json_error_of(response: &str) -> serde_json::Value {
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert!(v["ErrorCode"].as_str().is_some(), "{v}");
    assert!(v["RequestId"].as_str().is_some(), "{v}");
    v
}

#[tokio::test]
async fn slowloris_headers_are_cut_after_the_header_timeout() {
    let s = Start::new("header_read_timeout_ms = 1000\nidle_timeout_ms = 60000")
        .run()
        .await;
    let mut stream = connect(s.port).await;
    let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // One byte a second; the server must hang up long before the head is complete.
    for (i, byte) in head.iter().enumerate() {
        if stream.write_all(&[*byte]).await.is_err() {
            return;
        }
        match read_until_closed(&mut stream, Duration::from_secs(1)).await {
            (Outcome::Closed, text) => {
                assert!(text.is_empty(), "answered instead of closing: {text}");
                return;
            }
            (Outcome::Open, text) => assert!(text.is_empty(), "{text}"),
        }
        assert!(i < 10, "a head sent at 1 byte/s was held for {i} s");
    }
    panic!("the whole head went through at 1 byte/s");
}

#[tokio::test]
async fn half_sent_body_is_cut_after_the_body_timeout() {
    let s = Start::new("body_read_timeout_ms = 1000").run().await;
    let mut stream = connect(s.port).await;
    let mut request = signed_head("POST", "/projects/edgeproj", 100).into_bytes();
    request.extend_from_slice(b"{\"Comm");
    stream.write_all(&request).await.unwrap();
    let (outcome, text) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(outcome, Outcome::Closed, "{text}");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(json_error_of(&text)["ErrorMessage"]
        .as_str()
        .unwrap()
        .contains("body_read_timeout_ms"));
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let s = Start::new("idle_timeout_ms = 1000\nheader_read_timeout_ms = 60000")
        .run()
        .await;
    // A keep-alive connection, after one request.
    let mut kept = connect(s.port).await;
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut kept, Duration::from_secs(10)).await;
    assert!(first.is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    // A connection that never sends anything.
    let mut silent = connect(s.port).await;
    for stream in [&mut kept, &mut silent] {
        let (outcome, text) = read_until_closed(stream, Duration::from_secs(10)).await;
        assert_eq!(outcome, Outcome::Closed, "{text}");
        assert!(text.is_empty(), "{text}");
    }
}

#[tokio::test]
async fn sigterm_with_half_sent_requests_exits_within_the_shutdown_deadline() {
    let mut s = Start::new(
        "header_read_timeout_ms = 600000\nbody_read_timeout_ms = 600000\n\
         idle_timeout_ms = 600000\nshutdown_deadline_ms = 1000",
    )
    .run()
    .await;
    let mut half_head = connect(s.port).await;
    half_head
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Half: ")
        .await
        .unwrap();
    let mut half_body = connect(s.port).await;
    let mut request = signed_head("POST", "/projects/edgeproj", 100).into_bytes();
    request.extend_from_slice(b"{\"Comm");
    half_body.write_all(&request).await.unwrap();
    let mut idle = connect(s.port).await;
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut idle, Duration::from_secs(10))
        .await
        .is_some());
    tokio::time::sleep(Duration::from_millis(200)).await; // let the server see both requests
    assert!(
        s.terminate_within(Duration::from_secs(15)).await,
        "sluice did not exit 0 after SIGTERM with requests half-sent; stderr:\n{}",
        s.stderr()
    );
    assert!(
        s.stderr().contains("shutdown deadline passed"),
        "{}",
        s.stderr()
    );
}

#[tokio::test]
async fn connections_past_the_limit_wait_and_the_limit_is_logged_once() {
    let s = Start::new("max_connections = 2\nidle_timeout_ms = 600000")
        .run()
        .await;
    let get = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut served = Vec::new();
    for _ in 0..2 {
        let mut c = connect(s.port).await;
        c.write_all(get).await.unwrap();
        assert!(read_response(&mut c, Duration::from_secs(10))
            .await
            .is_some());
        served.push(c);
    }
    // Two more connect (the backlog takes them) but are not served while two are open.
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let mut c = connect(s.port).await;
        c.write_all(get).await.unwrap();
        waiting.push(c);
    }
    for c in waiting.iter_mut() {
        assert!(read_response(c, Duration::from_millis(500)).await.is_none());
    }
    // The ones already accepted are still served.
    served[0].write_all(get).await.unwrap();
    assert!(read_response(&mut served[0], Duration::from_secs(10))
        .await
        .is_some());
    // Closing one lets the first waiting connection in.
    drop(served.remove(0));
    let r = read_response(&mut waiting[0], Duration::from_secs(10)).await;
    assert!(r.is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    let log = s.stderr();
    assert_eq!(
        log.matches("connection limit reached").count(),
        1,
        "logged once per episode:\n{log}"
    );
}

#[tokio::test]
async fn oversized_heads_get_datahub_errors_over_a_socket() {
    let s = Start::new("").run().await;
    let long_uri = format!("/projects/{}", "a".repeat(20_000));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "v".repeat(70_000));
    for (what, request, status) in [
        (
            "uri",
            format!("GET {long_uri} HTTP/1.1\r\nHost: x\r\n\r\n"),
            "414",
        ),
        (
            "header count",
            format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
            "431",
        ),
        (
            "header bytes",
            format!("GET /health HTTP/1.1\r\nHost: x\r\n{big}\r\n"),
            "431",
        ),
    ] {
        let mut c = connect(s.port).await;
        c.write_all(request.as_bytes()).await.unwrap();
        let r = read_response(&mut c, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{what}: no response"));
        assert!(r.starts_with(&format!("HTTP/1.1 {status}")), "{what}: {r}");
        json_error_of(&r);
    }
}

#[tokio::test]
async fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let mut start = Start::new("");
    start.prefix = vec!["prlimit".into(), "--nofile=256:4096".into(), "--".into()];
    let s = start.run().await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{line}");
    let log = s.stderr();
    assert!(log.contains("open-file limit"), "{log}");
    assert!(log.contains("256") && log.contains("4096"), "{log}");
}

fn modes_under(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        out.push((p.clone(), meta.is_dir(), meta.permissions().mode() & 0o777));
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

fn assert_private(dir: &Path) {
    let modes = modes_under(dir);
    let names: Vec<String> = modes
        .iter()
        .map(|(p, _, _)| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for expected in ["meta.db", "meta.db-wal", "root-credentials"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(
        modes.iter().filter(|(_, d, _)| !d).count() > 4,
        "segment files too: {names:?}"
    );
    for (path, is_dir, mode) in modes {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", path.display());
    }
}

#[tokio::test]
async fn the_data_dir_is_private() {
    // Generated credentials (no --access-id), so root-credentials is written too.
    let mut start = Start::new("");
    start.args.clear();
    let mut s = start.run().await;
    let text = std::fs::read_to_string(s.data.join("root-credentials")).unwrap();
    let mut lines = text.lines();
    let (id, key) = (lines.next().unwrap(), lines.next().unwrap());
    let client = Client::new(&format!("http://127.0.0.1:{}", s.port), id, key).unwrap();
    client.create_project("modes", "").await.unwrap();
    client
        .create_topic("modes", "t", 2, 1, None, "")
        .await
        .unwrap();
    let records = vec![Record {
        data: RecordData::Blob(b"secret".to_vec()),
        attributes: vec![],
    }];
    for shard in ["0", "1"] {
        client
            .put_pb_to_shard("modes", "t", shard, &records)
            .await
            .unwrap();
    }
    assert_private(&s.data);

    // A data dir left readable by an older Sluice is made private at the next start.
    assert!(s.terminate_within(Duration::from_secs(30)).await);
    let status = Command::new("chmod")
        .args(["-R", "go+rX"])
        .arg(&s.data)
        .status()
        .unwrap();
    assert!(status.success());
    let mut again = Start::new("");
    again.args.clear();
    again.data = Some(s.data.clone());
    let s2 = again.run().await;
    assert_private(&s2.data);
}

#[tokio::test]
async fn the_root_key_can_come_from_a_file_and_a_command_line_key_warns() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\nignored second line\n")).unwrap();
    let mut start = Start::new("");
    start.args = vec![
        "--access-id".into(),
        ID.into(),
        "--access-key-file".into(),
        key_file.display().to_string(),
    ];
    let s = start.run().await;
    let client = Client::new(&format!("http://127.0.0.1:{}", s.port), ID, KEY).unwrap();
    client.create_project("keyfile", "").await.unwrap();
    let wrong = Client::new(&format!("http://127.0.0.1:{}", s.port), ID, "other").unwrap();
    assert!(wrong.create_project("keyfile2", "").await.is_err());
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", s.child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(KEY));
    assert!(!s.stderr().contains("command line"), "{}", s.stderr());

    // The key on the command line works, with a warning.
    let s = Start::new("").run().await;
    assert!(s.stderr().contains("command line"), "{}", s.stderr());
}
