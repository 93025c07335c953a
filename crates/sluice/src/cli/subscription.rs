//! `sluice subscription`: create, list, get, update, delete, and `offset get|reset`.

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Map, Value as Json};

use super::creds::resolve;
use super::error::{usage, Result};
use super::output::{cell, done, show, time_ms, time_s, Table};
use super::ClientArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SubState {
    On,
    Off,
}

#[derive(Subcommand)]
pub enum SubscriptionCmd {
    /// Create a subscription; prints its id.
    Create {
        project: String,
        topic: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List a topic's subscriptions.
    List {
        project: String,
        topic: String,
        #[arg(long, default_value_t = 1)]
        page: i64,
        #[arg(long, default_value_t = 100)]
        page_size: i64,
    },
    /// Show one subscription.
    Get {
        project: String,
        topic: String,
        sub_id: String,
    },
    /// Change the comment and/or switch the subscription on or off.
    Update {
        project: String,
        topic: String,
        sub_id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, value_enum)]
        state: Option<SubState>,
    },
    /// Delete a subscription.
    Delete {
        project: String,
        topic: String,
        sub_id: String,
    },
    /// A subscription's offsets: get or reset.
    #[command(subcommand)]
    Offset(OffsetCmd),
}

#[derive(Subcommand)]
pub enum OffsetCmd {
    /// Show the offsets (all shards, or each --shard).
    Get {
        project: String,
        topic: String,
        sub_id: String,
        #[arg(long = "shard")]
        shards: Vec<String>,
    },
    /// Reset the offsets (all shards, or each --shard) to --sequence and/or --time.
    Reset {
        project: String,
        topic: String,
        sub_id: String,
        #[arg(long = "shard")]
        shards: Vec<String>,
        #[arg(long)]
        sequence: Option<i64>,
        /// System time in ms.
        #[arg(long)]
        time: Option<i64>,
    },
}

fn offsets_table(v: &Json) -> Table {
    let mut t = Table::new(&["SHARD", "SEQUENCE", "TIMESTAMP", "VERSION"]);
    let mut rows: Vec<(&String, &Json)> = v["Offsets"].as_object().into_iter().flatten().collect();
    rows.sort_by_key(|(k, _)| k.parse::<u64>().unwrap_or(u64::MAX));
    for (shard, o) in rows {
        t.row(vec![
            shard.clone(),
            cell(&o["Sequence"]),
            time_ms(o["Timestamp"].as_i64().unwrap_or(-1)),
            cell(&o["Version"]),
        ]);
    }
    t
}

pub async fn run(args: &ClientArgs, cmd: SubscriptionCmd) -> Result<()> {
    let c = resolve(args)?.client()?;
    let out = args.output;
    match cmd {
        SubscriptionCmd::Create {
            project,
            topic,
            comment,
        } => {
            let id = c.create_subscription(&project, &topic, &comment).await?;
            done(out, json!({ "SubId": id }), &id);
        }
        SubscriptionCmd::List {
            project,
            topic,
            page,
            page_size,
        } => {
            let v = c
                .list_subscriptions(&project, &topic, page, page_size)
                .await?;
            show(out, &v, |v| {
                let mut t = Table::new(&["SUBSCRIPTION", "STATE", "CREATED", "COMMENT"]);
                for s in v["Subscriptions"].as_array().into_iter().flatten() {
                    t.row(vec![
                        cell(&s["SubId"]),
                        if s["State"].as_i64() == Some(1) {
                            "on"
                        } else {
                            "off"
                        }
                        .into(),
                        time_s(&s["CreateTime"]),
                        cell(&s["Comment"]),
                    ]);
                }
                t
            });
        }
        SubscriptionCmd::Get {
            project,
            topic,
            sub_id,
        } => {
            let v = c.get_subscription(&project, &topic, &sub_id).await?;
            show(out, &v, |s| {
                let mut t = Table::new(&["SUBSCRIPTION", "TOPIC", "STATE", "CREATED", "COMMENT"]);
                t.row(vec![
                    cell(&s["SubId"]),
                    cell(&s["TopicName"]),
                    if s["State"].as_i64() == Some(1) {
                        "on"
                    } else {
                        "off"
                    }
                    .into(),
                    time_s(&s["CreateTime"]),
                    cell(&s["Comment"]),
                ]);
                t
            });
        }
        SubscriptionCmd::Update {
            project,
            topic,
            sub_id,
            comment,
            state,
        } => {
            if comment.is_none() && state.is_none() {
                return Err(usage("give --comment and/or --state"));
            }
            let state = state.map(|s| i64::from(s == SubState::On));
            c.update_subscription(&project, &topic, &sub_id, comment.as_deref(), state)
                .await?;
            done(
                out,
                json!({ "SubId": sub_id }),
                &format!("updated subscription {sub_id}"),
            );
        }
        SubscriptionCmd::Delete {
            project,
            topic,
            sub_id,
        } => {
            c.delete_subscription(&project, &topic, &sub_id).await?;
            done(
                out,
                json!({ "SubId": sub_id }),
                &format!("deleted subscription {sub_id}"),
            );
        }
        SubscriptionCmd::Offset(OffsetCmd::Get {
            project,
            topic,
            sub_id,
            shards,
        }) => {
            let v = c.get_offsets(&project, &topic, &sub_id, &shards).await?;
            show(out, &v, offsets_table);
        }
        SubscriptionCmd::Offset(OffsetCmd::Reset {
            project,
            topic,
            sub_id,
            shards,
            sequence,
            time,
        }) => {
            if sequence.is_none() && time.is_none() {
                return Err(usage("give --sequence and/or --time"));
            }
            let shards = if shards.is_empty() {
                c.list_shards(&project, &topic)
                    .await?
                    .into_iter()
                    .map(|s| s.shard_id)
                    .collect()
            } else {
                shards
            };
            let offsets: Map<String, Json> = shards
                .iter()
                .map(|s| {
                    (
                        s.clone(),
                        json!({"Sequence": sequence.unwrap_or(-1), "Timestamp": time.unwrap_or(-1)}),
                    )
                })
                .collect();
            c.reset_offsets(&project, &topic, &sub_id, Json::Object(offsets))
                .await?;
            done(
                out,
                json!({ "SubId": sub_id, "Shards": shards }),
                &format!(
                    "reset the offsets of subscription {sub_id} ({} shards)",
                    shards.len()
                ),
            );
        }
    }
    Ok(())
}
