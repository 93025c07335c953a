//! `sluice key`: access keys and the audit log (Sluice only; the root or a key holding
//! `admin:*/*`; docs/accounts.md). `create` and `rotate` print the one JSON object
//! `{"AccessId": ..., "AccessKey": ...}` on stdout whatever `--output` says, since scripts read
//! it and the secret is shown only then; nothing else ever prints a secret.

use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value as Json};

use super::creds::resolve;
use super::error::{usage, Result};
use super::output::{cell, done, show, time_ms, Table};
use super::ClientArgs;

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Create a key; prints {"AccessId": ..., "AccessKey": ...} (the only time the secret shows).
    Create {
        #[arg(long)]
        name: String,
        /// A grant ACTION:PROJECT/TOPIC (ACTION: read, write, topics, connectors,
        /// subscriptions, admin; `*` in either part). Repeat for more.
        #[arg(long = "allow", required = true)]
        allow: Vec<String>,
        /// Lifetime, e.g. 90d, 12h, 30m.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<Duration>,
    },
    /// List the keys (never their secrets).
    List,
    /// Refuse the key's requests from now on.
    Disable { name: String },
    /// Accept the key's requests again.
    Enable { name: String },
    /// Give the key a new secret (printed like `create`); the old one works until `retire` or
    /// until --old-expires.
    Rotate {
        name: String,
        #[arg(long, value_parser = parse_duration)]
        old_expires: Option<Duration>,
    },
    /// End the change-over: the old secret of a rotated key stops working.
    Retire { name: String },
    /// Delete the key.
    Delete { name: String },
    /// Print the audit log (management changes: who, what, when, request id).
    Audit {
        /// Entries after this sequence.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 90d, 12h or 30m: {e}"))?;
    if d.as_secs() == 0 {
        return Err(format!("{text:?} is shorter than a second"));
    }
    Ok(d)
}

fn keys_table(v: &Json) -> Table {
    let mut t = Table::new(&[
        "NAME",
        "ACCESS ID",
        "ALLOW",
        "ENABLED",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "ROTATING",
    ]);
    for k in v.as_array().into_iter().flatten() {
        let allow: Vec<String> = k["Allow"]
            .as_array()
            .into_iter()
            .flatten()
            .map(cell)
            .collect();
        t.row(vec![
            cell(&k["Name"]),
            cell(&k["AccessId"]),
            allow.join(","),
            cell(&k["Enabled"]),
            time_ms(k["CreateTime"].as_i64().unwrap_or(0)),
            time_ms(k["LastUsedTime"].as_i64().unwrap_or(0)),
            time_ms(k["ExpireTime"].as_i64().unwrap_or(0)),
            cell(&k["Rotating"]),
        ]);
    }
    t
}

fn audit_table(v: &Json) -> Table {
    let mut t = Table::new(&["SEQ", "TIME", "WHO", "WHAT", "RESOURCE", "REQUEST ID"]);
    for e in v["Entries"].as_array().into_iter().flatten() {
        t.row(vec![
            cell(&e["Seq"]),
            time_ms(e["Time"].as_i64().unwrap_or(0)),
            cell(&e["Who"]),
            cell(&e["What"]),
            cell(&e["Resource"]),
            cell(&e["RequestId"]),
        ]);
    }
    t
}

fn to_json<T: serde::Serialize>(v: &T) -> Json {
    serde_json::to_value(v).unwrap_or(Json::Null)
}

pub async fn run(args: &ClientArgs, cmd: KeyCmd) -> Result<()> {
    let c = resolve(args)?.client()?;
    let out = args.output;
    match cmd {
        KeyCmd::Create {
            name,
            allow,
            expires,
        } => {
            if allow.iter().any(|a| a.trim().is_empty()) {
                return Err(usage("--allow needs ACTION:PROJECT/TOPIC"));
            }
            let key = c
                .create_key(&name, &allow, expires.map(|d| d.as_secs()))
                .await?;
            println!("{}", to_json(&key));
        }
        KeyCmd::List => {
            let keys = c.list_keys().await?;
            show(out, &to_json(&keys), keys_table);
        }
        KeyCmd::Disable { name } => {
            c.disable_key(&name).await?;
            done(
                out,
                json!({ "Name": name }),
                &format!("disabled key {name}"),
            );
        }
        KeyCmd::Enable { name } => {
            c.enable_key(&name).await?;
            done(out, json!({ "Name": name }), &format!("enabled key {name}"));
        }
        KeyCmd::Rotate { name, old_expires } => {
            let key = c
                .rotate_key(&name, old_expires.map(|d| d.as_secs()))
                .await?;
            println!("{}", to_json(&key));
        }
        KeyCmd::Retire { name } => {
            c.retire_key(&name).await?;
            done(
                out,
                json!({ "Name": name }),
                &format!("retired the old secret of key {name}"),
            );
        }
        KeyCmd::Delete { name } => {
            c.delete_key(&name).await?;
            done(out, json!({ "Name": name }), &format!("deleted key {name}"));
        }
        KeyCmd::Audit { after, limit } => {
            let (entries, next) = c.audit_log(after, limit).await?;
            let v = json!({ "Entries": to_json(&entries), "NextAfter": next });
            show(out, &v, audit_table);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(
            parse_duration("90d").unwrap(),
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3_600)
        );
        assert_eq!(
            parse_duration("1h 30m").unwrap(),
            Duration::from_secs(5_400)
        );
        assert!(parse_duration("soon").unwrap_err().contains("soon"));
        assert!(parse_duration("0s").is_err());
    }
}
