//! `sluice connector`: create, list, get (secrets masked), delete, stop, start, reload,
//! update-config, append-field, done-time, offset-reset, and `status [--watch]`: each shard's
//! state, position against the shard's end, lag, done time, discards and last error.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Map, Value as Json};
use sluice_client::{Client, CursorType};

use super::creds::resolve;
use super::error::{io, usage, Result};
use super::output::{cell, done, now_ms, show, time_ms, time_s, Table};
use super::{ClientArgs, Output};

#[derive(Subcommand)]
pub enum ConnectorCmd {
    /// List a topic's connectors.
    List { project: String, topic: String },
    /// Show a connector: type, state, columns, config (secrets masked unless --show-secrets).
    Get {
        project: String,
        topic: String,
        connector: String,
        #[arg(long)]
        show_secrets: bool,
    },
    /// Create a connector; prints its id.
    Create {
        project: String,
        topic: String,
        /// sink_mysql, sink_datahub, sink_es, sink_fc, sink_oss, sink_odps, sink_hologres, ...
        #[arg(long = "type")]
        kind: String,
        /// The type's config as a JSON object, or `@file` holding one.
        #[arg(long)]
        config: String,
        /// Topic fields to sync, comma-separated [default: all].
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// Start from records at or after this time (ms); -1 from the oldest.
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        start_time: i64,
    },
    /// Delete a connector.
    Delete {
        project: String,
        topic: String,
        connector: String,
    },
    /// Stop a connector (CONNECTOR_STOPPED).
    Stop {
        project: String,
        topic: String,
        connector: String,
    },
    /// Start a stopped connector (CONNECTOR_RUNNING).
    Start {
        project: String,
        topic: String,
        connector: String,
    },
    /// Restart a connector's shard tasks (all, or --shard).
    Reload {
        project: String,
        topic: String,
        connector: String,
        #[arg(long)]
        shard: Option<String>,
    },
    /// Replace a connector's config (a JSON object, or `@file`).
    UpdateConfig {
        project: String,
        topic: String,
        connector: String,
        #[arg(long)]
        config: String,
    },
    /// Add a topic field to the fields the connector syncs.
    AppendField {
        project: String,
        topic: String,
        connector: String,
        field: String,
    },
    /// Show the time up to which every record has been delivered.
    DoneTime {
        project: String,
        topic: String,
        connector: String,
    },
    /// Move a stopped connector's position (all shards, or --shard) to --sequence and/or --time.
    #[command(alias = "reset-offset")]
    OffsetReset {
        project: String,
        topic: String,
        connector: String,
        #[arg(long)]
        shard: Option<String>,
        /// The last record delivered: the connector resumes at the next one.
        #[arg(long)]
        sequence: Option<i64>,
        /// System time in ms: resumes at the first record at or after it.
        #[arg(long)]
        time: Option<i64>,
    },
    /// Each shard's state, position vs the shard's end, lag, done time, discards, last error.
    Status {
        project: String,
        topic: String,
        connector: String,
        #[arg(long)]
        shard: Option<String>,
        /// Refresh in place until interrupted.
        #[arg(long, short = 'w')]
        watch: bool,
        /// Seconds between refreshes with --watch.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
        /// With --watch: stop after this many refreshes.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// A JSON object given inline or as `@file`.
fn config_arg(spec: &str) -> Result<Json> {
    let text = match spec.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| io(format!("cannot read the config file {path}"), e))?,
        None => spec.to_string(),
    };
    match serde_json::from_str(&text) {
        Ok(v @ Json::Object(_)) => Ok(v),
        Ok(_) => Err(usage("--config must be a JSON object")),
        Err(e) => Err(usage(format!("--config is not JSON: {e}"))),
    }
}

/// Whether a config key holds a secret.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("accesskey") || k.contains("secret") || k.contains("token")
}

fn mask_secrets(config: &mut Json) {
    if let Json::Object(m) = config {
        for (k, v) in m.iter_mut() {
            if is_secret(k) && !v.is_null() {
                *v = json!("******");
            }
        }
    }
}

/// The next sequence a shard will write (its end).
async fn shard_end(c: &Client, project: &str, topic: &str, shard: &str) -> Result<i64> {
    let latest = c
        .cursor_info(project, topic, shard, CursorType::Latest)
        .await?;
    let (list, _) = c
        .get_records_pb(project, topic, shard, &latest.cursor, 1, None)
        .await?;
    Ok(match list.first() {
        Some(r) => r.sequence + 1,
        None => latest.sequence,
    })
}

/// The status entries with each shard's end and lag added (`EndSequence`, `LagRecords`,
/// `LagSeconds`), sorted by shard id.
async fn status_rows(
    c: &Client,
    project: &str,
    topic: &str,
    connector: &str,
    shard: Option<&str>,
) -> Result<Vec<Json>> {
    let fields = match shard {
        Some(s) => json!({ "ShardId": s }),
        None => json!({}),
    };
    let v = c
        .connector_action(project, topic, connector, "Status", fields)
        .await?;
    let infos: Map<String, Json> = v["ShardStatusInfos"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut rows: Vec<(u64, Json)> = Vec::new();
    let now = now_ms();
    for (id, mut entry) in infos {
        let end = shard_end(c, project, topic, &id).await?;
        // CurrentSequence is the last record delivered (-1: none), so it resumes one later.
        let resumes_at = entry["CurrentSequence"].as_i64().unwrap_or(-1).max(-1) + 1;
        let finished = entry["State"].as_str() == Some("CONTEXT_FINISHED");
        let lag = if finished {
            0
        } else {
            (end - resumes_at).max(0)
        };
        let done_time = entry["DoneTime"].as_i64().unwrap_or(0);
        let lag_seconds = if lag > 0 && done_time > 0 {
            ((now - done_time).max(0)) / 1000
        } else {
            0
        };
        entry["ShardId"] = json!(id);
        entry["EndSequence"] = json!(end);
        entry["LagRecords"] = json!(lag);
        entry["LagSeconds"] = json!(lag_seconds);
        rows.push((id.parse().unwrap_or(u64::MAX), entry));
    }
    rows.sort_by_key(|(k, _)| *k);
    Ok(rows.into_iter().map(|(_, e)| e).collect())
}

fn status_table(rows: &[Json]) -> Table {
    let mut t = Table::new(&[
        "SHARD",
        "STATE",
        "POSITION",
        "END",
        "LAG",
        "LAG(S)",
        "DONE TIME",
        "DISCARDS",
        "LAST ERROR",
    ]);
    for e in rows {
        t.row(vec![
            cell(&e["ShardId"]),
            cell(&e["State"]).trim_start_matches("CONTEXT_").to_string(),
            cell(&e["CurrentSequence"]),
            cell(&e["EndSequence"]),
            cell(&e["LagRecords"]),
            cell(&e["LagSeconds"]),
            time_ms(e["DoneTime"].as_i64().unwrap_or(0)),
            cell(&e["DiscardCount"]),
            cell(&e["LastErrorMessage"]).replace('\n', " "),
        ]);
    }
    t
}

#[allow(clippy::too_many_arguments)]
async fn status(
    c: &Client,
    out: Output,
    project: &str,
    topic: &str,
    connector: &str,
    shard: Option<&str>,
    watch: bool,
    interval: f64,
    count: Option<u64>,
) -> Result<()> {
    let in_place = watch && std::io::stdout().is_terminal();
    let mut shown = 0u64;
    loop {
        let rows = status_rows(c, project, topic, connector, shard).await?;
        let info = c.get_connector(project, topic, connector).await?;
        let text = match out {
            Output::Json => json!({
                "ConnectorId": info["ConnectorId"],
                "State": info["State"],
                "Time": now_ms(),
                "Shards": rows,
            })
            .to_string(),
            Output::Table => format!(
                "{} {} on {project}/{topic}: {} at {}\n{}",
                cell(&info["Type"]),
                cell(&info["ConnectorId"]),
                cell(&info["State"]),
                time_ms(now_ms()),
                status_table(&rows).render()
            ),
        };
        let mut stdout = std::io::stdout().lock();
        let written = if in_place {
            // Home the cursor and clear the screen, then redraw.
            writeln!(stdout, "\x1b[H\x1b[2J{text}")
        } else {
            writeln!(stdout, "{text}")
        };
        written
            .and_then(|_| stdout.flush())
            .map_err(|e| io("cannot write to standard output", e))?;
        shown += 1;
        if !watch || count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs_f64(interval.max(0.1))).await;
    }
}

pub async fn run(args: &ClientArgs, cmd: ConnectorCmd) -> Result<()> {
    let c = resolve(args)?.client()?;
    let out = args.output;
    let said = |connector: &str, what: &str| {
        done(
            out,
            json!({ "ConnectorId": connector }),
            &format!("{what} connector {connector}"),
        )
    };
    match cmd {
        ConnectorCmd::List { project, topic } => {
            let v = c.list_connectors(&project, &topic).await?;
            show(out, &v, |v| {
                let mut t = Table::new(&["CONNECTOR"]);
                for id in v["Connectors"].as_array().into_iter().flatten() {
                    t.row(vec![cell(id)]);
                }
                t
            });
        }
        ConnectorCmd::Get {
            project,
            topic,
            connector,
            show_secrets,
        } => {
            let mut v = c.get_connector(&project, &topic, &connector).await?;
            if !show_secrets {
                mask_secrets(&mut v["Config"]);
            }
            match out {
                Output::Json => println!("{v}"),
                Output::Table => {
                    let mut t = Table::new(&["CONNECTOR", "TYPE", "STATE", "CREATOR", "CREATED"]);
                    t.row(vec![
                        cell(&v["ConnectorId"]),
                        cell(&v["Type"]),
                        cell(&v["State"]),
                        cell(&v["Creator"]),
                        time_s(&v["CreateTime"]),
                    ]);
                    let mut config = Table::new(&["CONFIG", "VALUE"]);
                    config.row(vec!["(columns)".into(), cell(&v["ColumnFields"])]);
                    for (k, val) in v["Config"].as_object().into_iter().flatten() {
                        config.row(vec![k.clone(), cell(val)]);
                    }
                    println!("{}\n\n{}", t.render(), config.render());
                }
            }
        }
        ConnectorCmd::Create {
            project,
            topic,
            kind,
            config,
            columns,
            start_time,
        } => {
            let config = config_arg(&config)?;
            let columns = if columns.is_empty() {
                c.get_topic(&project, &topic)
                    .await?
                    .schema
                    .map(|s| s.fields.into_iter().map(|f| f.name).collect())
                    .unwrap_or_default()
            } else {
                columns
            };
            let id = c
                .create_connector(&project, &topic, &kind, &columns, config, start_time)
                .await?;
            said(&id, "created");
        }
        ConnectorCmd::Delete {
            project,
            topic,
            connector,
        } => {
            c.delete_connector(&project, &topic, &connector).await?;
            said(&connector, "deleted");
        }
        ConnectorCmd::Stop {
            project,
            topic,
            connector,
        } => {
            c.connector_action(
                &project,
                &topic,
                &connector,
                "UpdateState",
                json!({"State": "CONNECTOR_STOPPED"}),
            )
            .await?;
            said(&connector, "stopped");
        }
        ConnectorCmd::Start {
            project,
            topic,
            connector,
        } => {
            c.connector_action(
                &project,
                &topic,
                &connector,
                "UpdateState",
                json!({"State": "CONNECTOR_RUNNING"}),
            )
            .await?;
            said(&connector, "started");
        }
        ConnectorCmd::Reload {
            project,
            topic,
            connector,
            shard,
        } => {
            let fields = match &shard {
                Some(s) => json!({ "ShardId": s }),
                None => json!({}),
            };
            c.connector_action(&project, &topic, &connector, "Reload", fields)
                .await?;
            said(&connector, "reloaded");
        }
        ConnectorCmd::UpdateConfig {
            project,
            topic,
            connector,
            config,
        } => {
            let config = config_arg(&config)?;
            c.connector_action(
                &project,
                &topic,
                &connector,
                "updateconfig",
                json!({ "Config": config }),
            )
            .await?;
            said(&connector, "updated the config of");
        }
        ConnectorCmd::AppendField {
            project,
            topic,
            connector,
            field,
        } => {
            c.connector_action(
                &project,
                &topic,
                &connector,
                "appendfield",
                json!({ "FieldName": field }),
            )
            .await?;
            said(&connector, &format!("appended field {field} to"));
        }
        ConnectorCmd::DoneTime {
            project,
            topic,
            connector,
        } => {
            let v = c.connector_done_time(&project, &topic, &connector).await?;
            show(out, &v, |v| {
                let mut t = Table::new(&["DONE TIME", "TIME ZONE", "WINDOW(S)"]);
                t.row(vec![
                    time_ms(v["DoneTime"].as_i64().unwrap_or(0)),
                    cell(&v["TimeZone"]),
                    cell(&v["TimeWindow"]),
                ]);
                t
            });
        }
        ConnectorCmd::OffsetReset {
            project,
            topic,
            connector,
            shard,
            sequence,
            time,
        } => {
            if sequence.is_none() && time.is_none() {
                return Err(usage("give --sequence and/or --time"));
            }
            let mut fields = json!({
                "CurrentSequence": sequence.unwrap_or(-1),
                "CurrentTime": time.unwrap_or(-1),
            });
            if let Some(s) = &shard {
                fields["ShardId"] = json!(s);
            }
            c.connector_action(&project, &topic, &connector, "UpdateShardContext", fields)
                .await?;
            said(&connector, "moved the position of");
        }
        ConnectorCmd::Status {
            project,
            topic,
            connector,
            shard,
            watch,
            interval,
            count,
        } => {
            status(
                &c,
                out,
                &project,
                &topic,
                &connector,
                shard.as_deref(),
                watch,
                interval,
                count,
            )
            .await?;
        }
    }
    Ok(())
}
