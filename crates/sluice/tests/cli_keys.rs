//! `sluice key` (issue 15, "Interface that scripts rely on") against a live server: `create`
//! prints exactly `{"AccessId", "AccessKey"}`, the new key has only its grants (NoPermission,
//! exit 3, for anything else), `list` shows no secret, `disable` refuses the key at once,
//! `delete` removes it, a bad `--expires` is a usage error, and the changes are in the audit log.

mod common;

use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use serde_json::Value;

use common::{binary, Sluice, ID, KEY};

/// `sluice ARGS` against `endpoint` with the given key pair in the environment only.
fn sluice(endpoint: &str, id: &str, key: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.env("SLUICE_ENDPOINT", endpoint)
        .env("SLUICE_ACCESS_ID", id)
        .env("SLUICE_ACCESS_KEY", key)
        .env("XDG_CONFIG_HOME", "/nonexistent/sluice-test")
        .env_remove("SLUICE_PROFILE")
        .args(args)
        .timeout(Duration::from_secs(60));
    cmd
}

fn stdout_json(cmd: &mut Command) -> Value {
    let out = cmd.assert().success().get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[test]
fn key_commands_make_keys_with_only_their_grants() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(Sluice::start(&dir.path().join("data")));
    let endpoint = format!("http://127.0.0.1:{}", server.port);
    let root = |args: &[&str]| sluice(&endpoint, ID, KEY, args);

    root(&["project", "create", "keys_p"]).assert().success();
    root(&[
        "topic",
        "create",
        "keys_p",
        "t",
        "--shards",
        "1",
        "--schema",
        "id:BIGINT",
    ])
    .assert()
    .success();

    // create: one JSON object with exactly the two fields, whatever --output says
    let made = stdout_json(&mut root(&[
        "key",
        "create",
        "--name",
        "reader",
        "--allow",
        "read:keys_p/t",
        "--expires",
        "30d",
    ]));
    let fields: Vec<&str> = made
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["AccessId", "AccessKey"], "{made}");
    let (id, secret) = (
        made["AccessId"].as_str().unwrap().to_string(),
        made["AccessKey"].as_str().unwrap().to_string(),
    );
    let reader = |args: &[&str]| sluice(&endpoint, &id, &secret, args);

    // the key reads its topic, and is refused anything else with NoPermission (exit 3)
    reader(&["consume", "keys_p", "t", "-o", "json"])
        .assert()
        .success();
    reader(&["project", "create", "other_p"])
        .assert()
        .code(3)
        .stderr(contains("NoPermission"));
    reader(&["record", "put", "keys_p", "t", "--shard", "0", "1"])
        .assert()
        .code(3)
        .stderr(contains("NoPermission").and(contains("write")));
    // ... including key management
    reader(&["key", "list"])
        .assert()
        .code(3)
        .stderr(contains("NoPermission"));

    // list: the key, its grant and expiry, never a secret
    let out = root(&["key", "list", "-o", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains(&secret), "a secret in `key list`: {text}");
    let keys: Value = serde_json::from_str(text.trim()).unwrap();
    let listed = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["Name"] == "reader")
        .unwrap_or_else(|| panic!("reader not listed: {keys}"));
    assert_eq!(listed["Allow"], serde_json::json!(["read:keys_p/t"]));
    assert!(listed["ExpireTime"].as_i64().unwrap() > 0, "{listed}");

    // disable: refused at once; delete: gone
    root(&["key", "disable", "reader"]).assert().success();
    reader(&["consume", "keys_p", "t"])
        .assert()
        .code(3)
        .stderr(contains("Unauthorized"));
    root(&["key", "delete", "reader"]).assert().success();
    let keys = stdout_json(&mut root(&["key", "list", "-o", "json"]));
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .all(|k| k["Name"] != "reader"),
        "{keys}"
    );

    // a bad lifetime is a usage error; nothing is created
    root(&[
        "key",
        "create",
        "--name",
        "x",
        "--allow",
        "read:*/*",
        "--expires",
        "0s",
    ])
    .assert()
    .code(2);
    root(&[
        "key",
        "create",
        "--name",
        "y",
        "--allow",
        "read:*/*",
        "--expires",
        "soon",
    ])
    .assert()
    .code(2)
    .stderr(contains("soon"));

    // the audit log has the key's life, and no secret
    let audit = root(&["key", "audit", "-o", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let audit = String::from_utf8(audit).unwrap();
    assert!(!audit.contains(&secret), "a secret in the audit log");
    let audit: Value = serde_json::from_str(audit.trim()).unwrap();
    let whats: Vec<String> = audit["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e["What"], e["Resource"]))
        .collect();
    assert!(
        whats.iter().filter(|w| w.contains("reader")).count() >= 3,
        "create, disable and delete of the key audited: {whats:?}"
    );
}
