//! The `sluice` command line against a live server started on a private port and data dir:
//! each client command's happy path and its errors (exit codes, DataHub codes, hints),
//! credentials (flags > environment > `sluice login` profile) and secrets kept out of output.

mod common;

use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use serde_json::Value;

use common::{binary, Sluice, ID, KEY};

/// A server with its runtime and a private config dir for the client's profile.
struct Env {
    server: Sluice,
    _runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Env {
    fn start() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime.block_on(Sluice::start(&dir.path().join("data")));
        Env {
            server,
            _runtime: runtime,
            dir,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    fn config_home(&self) -> std::path::PathBuf {
        self.dir.path().join("config")
    }

    /// `sluice ARGS` with no credentials at all: no SLUICE_* variables, an empty config home.
    fn bare(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        for var in [
            "SLUICE_ENDPOINT",
            "SLUICE_ACCESS_ID",
            "SLUICE_ACCESS_KEY",
            "SLUICE_PROFILE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("XDG_CONFIG_HOME", self.config_home())
            .env("HOME", self.dir.path())
            .args(args)
            .timeout(Duration::from_secs(60));
        cmd
    }

    /// `sluice ARGS` with the test key pair in flags.
    fn run(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare(args);
        cmd.args([
            "--endpoint",
            &self.endpoint(),
            "--access-id",
            ID,
            "--access-key",
            KEY,
        ]);
        cmd
    }

    /// Runs `sluice ARGS -o json`, expects success, parses stdout.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args).args(["-o", "json"]).assert().success();
        let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// Runs `sluice ARGS -o json` and parses each stdout line.
    fn json_lines(&self, args: &[&str]) -> Vec<Value> {
        let out = self.run(args).args(["-o", "json"]).assert().success();
        String::from_utf8(out.get_output().stdout.clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }

    /// Creates project `p` and a 2-shard TUPLE topic `t` (id BIGINT not null, name STRING).
    fn tuple_topic(&self, p: &str, t: &str) {
        self.run(&["project", "create", p]).assert().success();
        self.run(&[
            "topic",
            "create",
            p,
            t,
            "--shards",
            "2",
            "--schema",
            "id:BIGINT!,name:STRING",
        ])
        .assert()
        .success();
    }
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn projects_topics_and_shards_round_trip() {
    let env = Env::start();
    env.run(&["project", "create", "cli_proj", "--comment", "first"])
        .assert()
        .success()
        .stdout(contains("created project cli_proj"));
    env.run(&["project", "list"])
        .assert()
        .success()
        .stdout(contains("PROJECT").and(contains("cli_proj")));
    env.run(&["project", "update", "cli_proj", "--comment", "second"])
        .assert()
        .success();
    let p = env.json(&["project", "get", "cli_proj"]);
    assert_eq!(p["Comment"], "second");

    env.run(&[
        "topic",
        "create",
        "cli_proj",
        "tup",
        "--shards",
        "2",
        "--lifecycle",
        "3",
        "--schema",
        "id:BIGINT!,name:STRING,score:DOUBLE",
    ])
    .assert()
    .success()
    .stdout(contains("created TUPLE topic cli_proj/tup with 2 shard(s)"));
    env.run(&["topic", "create", "cli_proj", "blo"])
        .assert()
        .success()
        .stdout(contains("BLOB"));
    let t = env.json(&["topic", "get", "cli_proj", "tup"]);
    assert_eq!(t["RecordType"], "TUPLE");
    assert_eq!(t["ShardCount"], 2);
    assert_eq!(t["Lifecycle"], 3);
    let schema: Value = serde_json::from_str(t["RecordSchema"].as_str().unwrap()).unwrap();
    assert_eq!(schema["fields"][0]["name"], "id");
    assert_eq!(schema["fields"][0]["notnull"], true);
    env.run(&["topic", "get", "cli_proj", "tup"])
        .assert()
        .success()
        .stdout(contains("score").and(contains("DOUBLE")));
    env.run(&["topic", "update", "cli_proj", "tup", "--lifecycle", "5"])
        .assert()
        .success();
    env.run(&[
        "topic",
        "append-field",
        "cli_proj",
        "tup",
        "extra",
        "string",
    ])
    .assert()
    .success();
    let t = env.json(&["topic", "get", "cli_proj", "tup"]);
    assert_eq!(t["Lifecycle"], 5);
    assert!(t["RecordSchema"].as_str().unwrap().contains("extra"));
    let list = env.json(&["topic", "list", "cli_proj"]);
    assert_eq!(list["TopicNames"].as_array().unwrap().len(), 2);

    // A schema from a file in the SDK's JSON.
    let file = env.dir.path().join("schema.json");
    std::fs::write(&file, r#"{"fields":[{"name":"a","type":"STRING"}]}"#).unwrap();
    env.run(&[
        "topic",
        "create",
        "cli_proj",
        "from_file",
        "--schema",
        &format!("@{}", file.display()),
    ])
    .assert()
    .success();

    // Shards: split, merge back, extend.
    let split = env.json(&["shard", "split", "cli_proj", "tup", "0"]);
    let new: Vec<&str> = split["NewShards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ShardId"].as_str().unwrap())
        .collect();
    assert_eq!(new, ["2", "3"]);
    env.run(&["shard", "list", "cli_proj", "tup"])
        .assert()
        .success()
        .stdout(contains("CLOSED").and(contains("ACTIVE")));
    let merged = env.json(&["shard", "merge", "cli_proj", "tup", "2", "3"]);
    assert_eq!(merged["ShardId"], "4");
    env.run(&["shard", "extend", "cli_proj", "blo", "--count", "3"])
        .assert()
        .success();
    let shards = env.json(&["shard", "list", "cli_proj", "blo"]);
    assert_eq!(shards["Shards"].as_array().unwrap().len(), 3);

    env.run(&["topic", "delete", "cli_proj", "blo"])
        .assert()
        .success();
    env.run(&["topic", "get", "cli_proj", "blo"])
        .assert()
        .code(3)
        .stderr(contains("NoSuchTopic").and(contains("hint:")));
    for t in ["tup", "from_file"] {
        env.run(&["topic", "delete", "cli_proj", t])
            .assert()
            .success();
    }
    env.run(&["project", "delete", "cli_proj"])
        .assert()
        .success();
    let list = env.json(&["project", "list"]);
    assert_eq!(list["ProjectNames"], serde_json::json!([]));
}

#[test]
fn errors_carry_the_code_a_hint_and_distinct_exit_codes() {
    let env = Env::start();
    // A wrong key: the server's code, a hint, exit 3, and the secret is not printed.
    let out = env
        .bare(&[
            "project",
            "list",
            "--endpoint",
            &env.endpoint(),
            "--access-id",
            ID,
            "--access-key",
            "wrong-secret-123",
        ])
        .assert()
        .code(3)
        .stderr(contains("Unauthorized").and(contains("hint:")))
        .get_output()
        .clone();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("wrong-secret-123"));
    assert!(!stdout_of(&out).contains("wrong-secret-123"));
    // A missing project and topic.
    env.run(&["topic", "list", "no_such_project"])
        .assert()
        .code(3)
        .stderr(contains("NoSuchProject").and(contains("sluice project list")));
    env.run(&["project", "create", "err_proj"])
        .assert()
        .success();
    env.run(&["project", "create", "err_proj"])
        .assert()
        .code(3)
        .stderr(contains("ProjectAlreadyExist"));
    env.run(&["consume", "err_proj", "no_such_topic"])
        .assert()
        .code(3)
        .stderr(contains("NoSuchTopic"));
    // Usage errors: exit 2.
    env.run(&["topic", "create", "err_proj", "bad", "--schema", "id"])
        .assert()
        .code(2)
        .stderr(contains("name:TYPE"));
    env.run(&["topic", "create", "err_proj", "bad", "--schema", "id:NOPE"])
        .assert()
        .code(2)
        .stderr(contains("NOPE"));
    env.run(&["project", "frobnicate"]).assert().code(2);
    env.bare(&["project", "list", "--endpoint", &env.endpoint()])
        .assert()
        .code(2)
        .stderr(contains("sluice login"));
    // Nothing listens: exit 4.
    let port = common::free_port();
    env.bare(&[
        "project",
        "list",
        "--endpoint",
        &format!("http://127.0.0.1:{port}"),
        "--access-id",
        ID,
        "--access-key",
        KEY,
    ])
    .assert()
    .code(4)
    .stderr(contains("cannot reach the endpoint").and(contains("hint:")));
}

#[test]
fn credentials_come_from_flags_then_env_then_the_login_profile() {
    let env = Env::start();
    // Login checks the pair first: a wrong key is refused and nothing is kept.
    env.bare(&[
        "login",
        "--endpoint",
        &env.endpoint(),
        "--access-id",
        ID,
        "--access-key",
        "not-the-key",
    ])
    .assert()
    .code(3)
    .stderr(contains("Unauthorized"));
    let profile = env.config_home().join("sluice").join("profiles.toml");
    assert!(!profile.exists());
    // The secret from standard input, never echoed.
    let out = env
        .bare(&["login", "--endpoint", &env.endpoint(), "--access-id", ID])
        .write_stdin(format!("{KEY}\n"))
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(!stdout_of(&out).contains(KEY));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(KEY));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&profile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the profile file is private");
    // The profile alone is enough.
    env.bare(&["project", "create", "from_profile"])
        .assert()
        .success();
    // The environment wins over the profile, and a flag wins over the environment.
    env.bare(&["project", "list"])
        .env("SLUICE_ACCESS_KEY", "env-wrong")
        .env("SLUICE_ACCESS_ID", ID)
        .assert()
        .code(3)
        .stderr(contains("Unauthorized"));
    env.bare(&["project", "list", "--access-key", KEY])
        .env("SLUICE_ACCESS_KEY", "env-wrong")
        .env("SLUICE_ACCESS_ID", ID)
        .assert()
        .success()
        .stdout(contains("from_profile"));
    env.bare(&["project", "list"])
        .env("SLUICE_ENDPOINT", "http://127.0.0.1:1")
        .assert()
        .code(4);
    // The flags may follow or precede the subcommand.
    env.bare(&[
        "project",
        "--endpoint",
        &env.endpoint(),
        "--access-id",
        ID,
        "--access-key",
        KEY,
        "list",
    ])
    .assert()
    .success();
    // A named profile that does not exist gives the no-credentials usage error.
    env.bare(&["project", "list", "--profile", "other"])
        .assert()
        .code(2);
}

#[test]
fn produce_csv_and_json_lines_then_consume_and_tail() {
    let env = Env::start();
    env.tuple_topic("rec_proj", "people");
    let csv = env.dir.path().join("people.csv");
    std::fs::write(&csv, "name,id\nalice,1\nbob,2\n\"c, d\",3\nnull_name,4\n").unwrap();
    std::fs::write(
        &csv,
        std::fs::read_to_string(&csv)
            .unwrap()
            .replace("null_name", "\\N"),
    )
    .unwrap();
    let summary = env.json(&[
        "produce",
        "rec_proj",
        "people",
        "--file",
        csv.to_str().unwrap(),
        "--batch-size",
        "2",
    ]);
    assert_eq!(summary["Records"], 4);
    assert_eq!(summary["Failed"], 0);
    assert_eq!(summary["Complete"], true);
    // JSON lines from standard input, the table summary.
    env.run(&["produce", "rec_proj", "people", "--format", "json"])
        .write_stdin("{\"id\": 5, \"name\": \"eve\"}\n\n{\"id\": 6}\n")
        .assert()
        .success()
        .stdout(contains("produced 2 records to rec_proj/people"));
    let records = env.json_lines(&["consume", "rec_proj", "people"]);
    assert_eq!(records.len(), 6);
    let mut ids: Vec<i64> = records
        .iter()
        .map(|r| r["Data"]["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    let c_d = records.iter().find(|r| r["Data"]["id"] == 3).unwrap();
    assert_eq!(c_d["Data"]["name"], "c, d");
    let four = records.iter().find(|r| r["Data"]["id"] == 4).unwrap();
    assert!(four["Data"]["name"].is_null());
    // Round-robin over the two shards, and shard selection.
    let shard0 = env.json_lines(&["consume", "rec_proj", "people", "--shard", "0"]);
    assert_eq!(shard0.len(), 3);
    assert!(shard0.iter().all(|r| r["ShardId"] == "0"));
    // Text output and --limit; from a sequence.
    env.run(&["consume", "rec_proj", "people", "--limit", "2"])
        .assert()
        .success()
        .stdout(predicate::function(|s: &str| s.lines().count() == 2));
    let from_seq = env.json_lines(&[
        "consume", "rec_proj", "people", "--shard", "1", "--from", "seq:2",
    ]);
    assert_eq!(from_seq.len(), 1);
    assert_eq!(from_seq[0]["Sequence"], 2);
    env.run(&["consume", "rec_proj", "people", "--from", "seq:99"])
        .assert()
        .code(3)
        .stderr(contains("SeekOutOfRange").or(contains("InvalidParameter")));
    env.run(&["consume", "rec_proj", "people", "--from", "yesterday"])
        .assert()
        .code(2);
    // consume's JSON lines are read back by produce.
    let again = env
        .run(&["consume", "rec_proj", "people", "-o", "json"])
        .output()
        .unwrap()
        .stdout;
    env.run(&[
        "topic",
        "create",
        "rec_proj",
        "copy",
        "--schema",
        "id:BIGINT!,name:STRING",
    ])
    .assert()
    .success();
    env.run(&["produce", "rec_proj", "copy", "--format", "json"])
        .write_stdin(again)
        .assert()
        .success()
        .stdout(contains("produced 6 records"));
    // A bad CSV line stops the run, naming the line; exit 1.
    env.run(&["produce", "rec_proj", "people"])
        .write_stdin("id,name\n7,ok\nnot_a_number,bad\n8,never\n")
        .assert()
        .code(1)
        .stderr(contains("line 3").and(contains("bigint")));
    env.run(&["produce", "rec_proj", "people"])
        .write_stdin("id,nope\n7,x\n")
        .assert()
        .code(1)
        .stderr(contains("nope"));
    env.run(&["produce", "rec_proj", "people", "--format", "json"])
        .write_stdin("{\"id\": 9}\n{not json\n")
        .assert()
        .code(1)
        .stderr(contains("line 2"));
    // A NOT NULL field left out is refused before anything is sent.
    env.run(&["produce", "rec_proj", "people", "--no-header"])
        .write_stdin("\\N,x\n")
        .assert()
        .code(1)
        .stderr(contains("line 1"));
    // BLOB topics: CSV with one column, JSON strings; tail shows the last ones.
    env.run(&["topic", "create", "rec_proj", "blobs"])
        .assert()
        .success();
    env.run(&["produce", "rec_proj", "blobs"])
        .write_stdin("one\ntwo\nthree\n")
        .assert()
        .success();
    env.run(&["produce", "rec_proj", "blobs", "--format", "json"])
        .write_stdin("\"four\"\n")
        .assert()
        .success();
    let last = env.json_lines(&["tail", "rec_proj", "blobs", "-n", "2"]);
    let data: Vec<&str> = last.iter().map(|r| r["Data"].as_str().unwrap()).collect();
    assert_eq!(data, ["three", "four"]);
    env.run(&["tail", "rec_proj", "blobs", "-n", "1"])
        .assert()
        .success()
        .stdout(contains("\tfour").and(contains("three").not()));
}

#[test]
fn tail_follow_prints_records_put_after_it_started() {
    let env = Env::start();
    env.tuple_topic("tail_proj", "events");
    env.run(&["record", "put", "tail_proj", "events", "1", "before"])
        .assert()
        .success();
    let mut child = StdCommand::new(binary())
        .args([
            "tail",
            "tail_proj",
            "events",
            "--follow",
            "-n",
            "0",
            "--limit",
            "2",
            "--interval-ms",
            "50",
            "-o",
            "json",
            "--endpoint",
            &env.endpoint(),
            "--access-id",
            ID,
            "--access-key",
            KEY,
        ])
        .env("XDG_CONFIG_HOME", env.config_home())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "tail --follow waits");
    // Put records (both shards, in turn) until it has printed two and stopped: however long it
    // took to start, the records put after that are the ones it prints.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tail --follow --limit 2 did not stop after new records");
        }
        let (shard, name) = if n % 2 == 0 {
            ("1", "after")
        } else {
            ("0", "\\N")
        };
        env.run(&[
            "record",
            "put",
            "tail_proj",
            "events",
            "--shard",
            shard,
            &(10 + n).to_string(),
            name,
        ])
        .assert()
        .success();
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = stdout_of(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for r in &lines {
        assert!(
            r["Data"]["id"].as_i64().unwrap() >= 10,
            "only records put after it started: {r}"
        );
        assert!(r["Data"]["name"] == "after" || r["Data"]["name"].is_null());
    }
}

#[test]
fn record_cursor_get_and_put() {
    let env = Env::start();
    env.tuple_topic("raw_proj", "t");
    env.run(&["record", "put", "raw_proj", "t", "--shard", "0", "1", "x"])
        .assert()
        .success()
        .stdout(contains("put 1 record into shard 0"));
    env.run(&["record", "put", "raw_proj", "t", "--shard", "0", "2", "y"])
        .assert()
        .success();
    env.run(&["record", "put", "raw_proj", "t", "notnum", "y"])
        .assert()
        .code(2)
        .stderr(contains("notnum"));
    env.run(&["record", "put", "raw_proj", "t", "--shard", "9", "1", "y"])
        .assert()
        .code(1)
        .stderr(contains("NoSuchShard").or(contains("InvalidShardId")));
    let latest = env.json(&["record", "cursor", "raw_proj", "t", "0", "--from", "latest"]);
    assert_eq!(latest["Sequence"], 1);
    let cursor = env.json(&["record", "cursor", "raw_proj", "t", "0"])["Cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let lines = env.json_lines(&[
        "record", "get", "raw_proj", "t", "0", "--cursor", &cursor, "--limit", "1",
    ]);
    assert_eq!(lines.len(), 2, "one record and the next cursor");
    assert_eq!(lines[0]["Data"]["name"], "x");
    let next = lines[1]["NextCursor"].as_str().unwrap();
    let rest = env.json_lines(&["record", "get", "raw_proj", "t", "0", "--cursor", next]);
    assert_eq!(rest[0]["Data"]["name"], "y");
    env.run(&["record", "get", "raw_proj", "t", "0", "--cursor", "garbage"])
        .assert()
        .code(3)
        .stderr(contains("InvalidCursor").or(contains("InvalidParameter")));
}

#[test]
fn subscriptions_and_their_offsets() {
    let env = Env::start();
    env.tuple_topic("sub_proj", "t");
    let sub = env.json(&[
        "subscription",
        "create",
        "sub_proj",
        "t",
        "--comment",
        "mine",
    ]);
    let id = sub["SubId"].as_str().unwrap().to_string();
    env.run(&["subscription", "list", "sub_proj", "t"])
        .assert()
        .success()
        .stdout(contains(id.as_str()).and(contains("mine")));
    env.run(&[
        "subscription",
        "update",
        "sub_proj",
        "t",
        &id,
        "--state",
        "off",
    ])
    .assert()
    .success();
    let got = env.json(&["subscription", "get", "sub_proj", "t", &id]);
    assert_eq!(got["State"], 0);
    env.run(&["subscription", "update", "sub_proj", "t", &id])
        .assert()
        .code(2);
    env.run(&["produce", "sub_proj", "t", "--shard", "0"])
        .write_stdin("id,name\n1,a\n2,b\n3,c\n")
        .assert()
        .success();
    env.run(&[
        "subscription",
        "offset",
        "reset",
        "sub_proj",
        "t",
        &id,
        "--shard",
        "0",
        "--sequence",
        "2",
    ])
    .assert()
    .success();
    let offsets = env.json(&["subscription", "offset", "get", "sub_proj", "t", &id]);
    assert_eq!(offsets["Offsets"]["0"]["Sequence"], 2);
    env.run(&["subscription", "offset", "get", "sub_proj", "t", &id])
        .assert()
        .success()
        .stdout(contains("SEQUENCE"));
    env.run(&["subscription", "delete", "sub_proj", "t", &id])
        .assert()
        .success();
    env.run(&["subscription", "get", "sub_proj", "t", &id])
        .assert()
        .code(3)
        .stderr(contains("NoSuchSubscription").and(contains("hint:")));
}

/// Polls `connector status -o json` until `check` holds for it.
fn wait_status(env: &Env, args: &[&str], check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = env.json(args);
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "status never matched: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn total(v: &Value, key: &str) -> i64 {
    v["Shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[key].as_i64().unwrap())
        .sum()
}

#[test]
fn connector_lifecycle_and_status_with_a_datahub_sink_to_self() {
    let env = Env::start();
    env.tuple_topic("conn_proj", "src");
    env.run(&[
        "topic",
        "create",
        "conn_proj",
        "dst",
        "--schema",
        "id:BIGINT!,name:STRING",
    ])
    .assert()
    .success();
    env.run(&["produce", "conn_proj", "src"])
        .write_stdin("id,name\n1,a\n2,b\n3,c\n4,d\n")
        .assert()
        .success();
    let config = serde_json::json!({
        "Endpoint": env.endpoint(),
        "Project": "conn_proj",
        "Topic": "dst",
        "AuthMode": "ak",
        "AccessId": ID,
        "AccessKey": KEY,
    });
    let config_file = env.dir.path().join("sink.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let created = env.json(&[
        "connector",
        "create",
        "conn_proj",
        "src",
        "--type",
        "sink_datahub",
        "--config",
        &format!("@{}", config_file.display()),
    ]);
    let id = created["ConnectorId"].as_str().unwrap().to_string();
    let list = env.json(&["connector", "list", "conn_proj", "src"]);
    assert_eq!(list["Connectors"], serde_json::json!([id]));
    // The secret in the config is masked.
    let out = env
        .run(&["connector", "get", "conn_proj", "src", &id])
        .assert()
        .success()
        .stdout(contains("sink_datahub").and(contains("******")))
        .get_output()
        .clone();
    assert!(!stdout_of(&out).contains(KEY));
    let got = env.json(&["connector", "get", "conn_proj", "src", &id]);
    assert_eq!(got["Config"]["AccessKey"], "******");

    let status = ["connector", "status", "conn_proj", "src", id.as_str()];
    // CurrentSequence is the last record delivered: 2 shards, 4 records, so the sum is 4 - 2
    let v = wait_status(&env, &status, |v| {
        total(v, "CurrentSequence") == 2 && total(v, "LagRecords") == 0
    });
    assert_eq!(v["State"], "CONNECTOR_RUNNING");
    assert_eq!(total(&v, "EndSequence"), 4);
    assert_eq!(v["Shards"].as_array().unwrap().len(), 2);
    assert!(v["Shards"][0]["DoneTime"].as_i64().unwrap() > 0);
    assert_eq!(total(&v, "DiscardCount"), 0);
    env.run(&status).assert().success().stdout(
        contains("POSITION")
            .and(contains("LAG"))
            .and(contains("DONE TIME"))
            .and(contains("LAST ERROR"))
            .and(contains("EXECUTING")),
    );
    // --watch refreshes: two snapshots with --count 2.
    env.run(&[
        "connector",
        "status",
        "conn_proj",
        "src",
        &id,
        "--watch",
        "--interval",
        "0.2",
        "--count",
        "2",
    ])
    .assert()
    .success()
    .stdout(predicate::function(|s: &str| {
        s.matches("SHARD  STATE").count() == 2
    }));
    // Stop, move the position back to the start (by time: a sequence N resumes after N), see
    // the lag, start: it catches up again.
    env.run(&["connector", "stop", "conn_proj", "src", &id])
        .assert()
        .success();
    env.run(&[
        "connector",
        "offset-reset",
        "conn_proj",
        "src",
        &id,
        "--time",
        "0",
    ])
    .assert()
    .success();
    let v = env.json(&status);
    assert_eq!(v["State"], "CONNECTOR_STOPPED");
    assert_eq!(total(&v, "LagRecords"), 4);
    env.run(&["connector", "start", "conn_proj", "src", &id])
        .assert()
        .success();
    wait_status(&env, &status, |v| total(v, "LagRecords") == 0);
    env.run(&[
        "connector",
        "reload",
        "conn_proj",
        "src",
        &id,
        "--shard",
        "0",
    ])
    .assert()
    .success();
    env.run(&["connector", "done-time", "conn_proj", "src", &id])
        .assert()
        .success()
        .stdout(contains("DONE TIME"));
    let dst = env.json_lines(&["consume", "conn_proj", "dst"]);
    assert!(dst.len() >= 4, "the sink delivered the records: {dst:?}");
    // Errors: an offset reset while running, a missing connector, a bad config.
    env.run(&[
        "connector",
        "offset-reset",
        "conn_proj",
        "src",
        &id,
        "--sequence",
        "0",
    ])
    .assert()
    .code(3);
    env.run(&["connector", "status", "conn_proj", "src", "no_such"])
        .assert()
        .code(3)
        .stderr(contains("NoSuchConnector").or(contains("InvalidParameter")));
    env.run(&[
        "connector",
        "create",
        "conn_proj",
        "src",
        "--type",
        "sink_datahub",
        "--config",
        "[1]",
    ])
    .assert()
    .code(2)
    .stderr(contains("JSON object"));
    env.run(&["connector", "delete", "conn_proj", "src", &id])
        .assert()
        .success();
    let list = env.json(&["connector", "list", "conn_proj", "src"]);
    assert_eq!(list["Connectors"], serde_json::json!([]));
}

#[test]
fn help_keeps_the_secret_out() {
    let env = Env::start();
    // The key's env value is not shown in help.
    env.bare(&["project", "list", "--help"])
        .env("SLUICE_ACCESS_KEY", "env-secret-456")
        .assert()
        .success()
        .stdout(contains("env-secret-456").not());
}
