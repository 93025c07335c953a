//! `sluice project`, `sluice topic` and `sluice shard`.

use clap::Subcommand;
use serde_json::{json, Value as Json};
use sluice_proto::RecordSchema;

use super::creds::resolve;
use super::error::{io, usage, Result};
use super::output::{cell, done, show, time_s, Table};
use super::{ClientArgs, Output};

#[derive(Subcommand)]
pub enum ProjectCmd {
    /// List the projects.
    List,
    /// Show one project.
    Get { project: String },
    /// Create a project.
    Create {
        project: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Change a project's comment.
    Update {
        project: String,
        #[arg(long)]
        comment: String,
    },
    /// Delete an empty project.
    Delete { project: String },
}

#[derive(Subcommand)]
pub enum TopicCmd {
    /// List a project's topics.
    List { project: String },
    /// Show a topic: type, shards, lifecycle, schema.
    Get { project: String, topic: String },
    /// Create a TUPLE topic (with --schema) or a BLOB topic (without).
    Create {
        project: String,
        topic: String,
        #[arg(long, default_value_t = 1)]
        shards: u32,
        /// Days records are kept.
        #[arg(long, default_value_t = 7)]
        lifecycle: u32,
        /// The schema: `name:TYPE,name:TYPE`, the SDK's JSON (`{"fields":[...]}`), or `@file`
        /// holding either.
        #[arg(long)]
        schema: Option<String>,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Change a topic's lifecycle or comment.
    Update {
        project: String,
        topic: String,
        #[arg(long)]
        lifecycle: Option<i64>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Delete a topic and its records.
    Delete { project: String, topic: String },
    /// Add a (nullable) field at the end of a TUPLE topic's schema.
    AppendField {
        project: String,
        topic: String,
        name: String,
        /// BIGINT, STRING, DOUBLE, BOOLEAN, TIMESTAMP, DECIMAL, INTEGER, ...
        field_type: String,
    },
}

#[derive(Subcommand)]
pub enum ShardCmd {
    /// List a topic's shards: state, hash key range, parents.
    List { project: String, topic: String },
    /// Split an active shard in two (at its middle, or at --split-key).
    Split {
        project: String,
        topic: String,
        shard: String,
        /// 32 hex digits inside the shard's range.
        #[arg(long)]
        split_key: Option<String>,
    },
    /// Merge an active shard with its right neighbour.
    Merge {
        project: String,
        topic: String,
        shard: String,
        adjacent: String,
    },
    /// Add shards until the topic has --count active shards.
    Extend {
        project: String,
        topic: String,
        #[arg(long)]
        count: i64,
    },
}

pub async fn project(args: &ClientArgs, cmd: ProjectCmd) -> Result<()> {
    let c = resolve(args)?.client()?;
    let out = args.output;
    match cmd {
        ProjectCmd::List => {
            let v = c.list_projects().await?;
            show(out, &v, |v| {
                let mut t = Table::new(&["PROJECT"]);
                for p in v["ProjectNames"].as_array().into_iter().flatten() {
                    t.row(vec![cell(p)]);
                }
                t
            });
        }
        ProjectCmd::Get { project } => {
            let v = c.get_project(&project).await?;
            show(out, &v, |v| {
                let mut t = Table::new(&["PROJECT", "COMMENT", "CREATED", "MODIFIED"]);
                t.row(vec![
                    cell(&v["ProjectName"]),
                    cell(&v["Comment"]),
                    time_s(&v["CreateTime"]),
                    time_s(&v["LastModifyTime"]),
                ]);
                t
            });
        }
        ProjectCmd::Create { project, comment } => {
            c.create_project(&project, &comment).await?;
            done(
                out,
                json!({"ProjectName": project}),
                &format!("created project {project}"),
            );
        }
        ProjectCmd::Update { project, comment } => {
            c.update_project(&project, &comment).await?;
            done(
                out,
                json!({"ProjectName": project}),
                &format!("updated project {project}"),
            );
        }
        ProjectCmd::Delete { project } => {
            c.delete_project(&project).await?;
            done(
                out,
                json!({"ProjectName": project}),
                &format!("deleted project {project}"),
            );
        }
    }
    Ok(())
}

/// Parses a schema given as `name:TYPE,...`, as the SDK's JSON, or as `@file` with either.
pub fn parse_schema_spec(spec: &str) -> Result<RecordSchema> {
    let text = match spec.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| io(format!("cannot read the schema file {path}"), e))?,
        None => spec.to_string(),
    };
    let text = text.trim();
    let json_text = if text.starts_with('{') {
        text.to_string()
    } else {
        let mut fields = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, ty) = part.split_once(':').ok_or_else(|| {
                usage(format!(
                    "--schema: {part:?} is not name:TYPE (e.g. id:BIGINT,name:STRING)"
                ))
            })?;
            let (ty, not_null) = match ty.trim().strip_suffix('!') {
                Some(t) => (t, true),
                None => (ty.trim(), false),
            };
            fields.push(json!({"name": name.trim(), "type": ty, "notnull": not_null}));
        }
        json!({ "fields": fields }).to_string()
    };
    RecordSchema::parse(&json_text).map_err(|e| usage(format!("--schema: {e}")))
}

/// A topic as text: its row, then its schema's fields (TUPLE topics).
fn topic_text(v: &Json) -> String {
    let mut t = Table::new(&["TOPIC", "TYPE", "SHARDS", "LIFECYCLE", "CREATED", "COMMENT"]);
    t.row(vec![
        format!("{}/{}", cell(&v["ProjectName"]), cell(&v["TopicName"])),
        cell(&v["RecordType"]),
        cell(&v["ShardCount"]),
        cell(&v["Lifecycle"]),
        time_s(&v["CreateTime"]),
        cell(&v["Comment"]),
    ]);
    let mut text = t.render();
    if let Some(schema) = v["RecordSchema"]
        .as_str()
        .and_then(|s| RecordSchema::parse(s).ok())
    {
        let mut fields = Table::new(&["FIELD", "TYPE", "NOT NULL"]);
        for f in &schema.fields {
            fields.row(vec![
                f.name.clone(),
                f.field_type.wire_name().to_string(),
                f.not_null.to_string(),
            ]);
        }
        text.push_str("\n\n");
        text.push_str(&fields.render());
    }
    text
}

pub async fn topic(args: &ClientArgs, cmd: TopicCmd) -> Result<()> {
    let c = resolve(args)?.client()?;
    let out = args.output;
    match cmd {
        TopicCmd::List { project } => {
            let v = c.list_topics(&project).await?;
            show(out, &v, |v| {
                let mut t = Table::new(&["TOPIC"]);
                for name in v["TopicNames"].as_array().into_iter().flatten() {
                    t.row(vec![cell(name)]);
                }
                t
            });
        }
        TopicCmd::Get { project, topic } => {
            let v = c.describe_topic(&project, &topic).await?;
            match out {
                Output::Json => println!("{v}"),
                Output::Table => println!("{}", topic_text(&v)),
            }
        }
        TopicCmd::Create {
            project,
            topic,
            shards,
            lifecycle,
            schema,
            comment,
        } => {
            let schema = schema.as_deref().map(parse_schema_spec).transpose()?;
            c.create_topic(
                &project,
                &topic,
                shards,
                lifecycle,
                schema.as_ref(),
                &comment,
            )
            .await?;
            let kind = if schema.is_some() { "TUPLE" } else { "BLOB" };
            done(
                out,
                json!({"ProjectName": project, "TopicName": topic, "RecordType": kind}),
                &format!("created {kind} topic {project}/{topic} with {shards} shard(s)"),
            );
        }
        TopicCmd::Update {
            project,
            topic,
            lifecycle,
            comment,
        } => {
            if lifecycle.is_none() && comment.is_none() {
                return Err(usage("give --lifecycle and/or --comment"));
            }
            c.update_topic(&project, &topic, lifecycle, comment.as_deref())
                .await?;
            done(
                out,
                json!({"ProjectName": project, "TopicName": topic}),
                &format!("updated topic {project}/{topic}"),
            );
        }
        TopicCmd::Delete { project, topic } => {
            c.delete_topic(&project, &topic).await?;
            done(
                out,
                json!({"ProjectName": project, "TopicName": topic}),
                &format!("deleted topic {project}/{topic}"),
            );
        }
        TopicCmd::AppendField {
            project,
            topic,
            name,
            field_type,
        } => {
            c.append_field(&project, &topic, &name, &field_type.to_ascii_uppercase())
                .await?;
            done(
                out,
                json!({"ProjectName": project, "TopicName": topic, "FieldName": name}),
                &format!("appended field {name} to {project}/{topic}"),
            );
        }
    }
    Ok(())
}

fn shards_table(list: &Json) -> Table {
    let mut t = Table::new(&["SHARD", "STATE", "BEGIN KEY", "END KEY", "PARENTS"]);
    for s in list.as_array().into_iter().flatten() {
        let parents: Vec<String> = s["ParentShardIds"]
            .as_array()
            .into_iter()
            .flatten()
            .map(cell)
            .collect();
        t.row(vec![
            cell(&s["ShardId"]),
            cell(&s["State"]),
            cell(&s["BeginHashKey"]),
            cell(&s["EndHashKey"]),
            parents.join(","),
        ]);
    }
    t
}

pub async fn shard(args: &ClientArgs, cmd: ShardCmd) -> Result<()> {
    let c = resolve(args)?.client()?;
    let out = args.output;
    match cmd {
        ShardCmd::List { project, topic } => {
            let v = c.describe_shards(&project, &topic).await?;
            show(out, &v, |v| shards_table(&v["Shards"]));
        }
        ShardCmd::Split {
            project,
            topic,
            shard,
            split_key,
        } => {
            let v = c
                .split_shard(&project, &topic, &shard, split_key.as_deref())
                .await?;
            show(out, &v, |v| shards_table(&v["NewShards"]));
        }
        ShardCmd::Merge {
            project,
            topic,
            shard,
            adjacent,
        } => {
            let v = c.merge_shards(&project, &topic, &shard, &adjacent).await?;
            show(out, &v, |v| shards_table(&json!([v])));
        }
        ShardCmd::Extend {
            project,
            topic,
            count,
        } => {
            c.extend_shards(&project, &topic, count).await?;
            done(
                out,
                json!({"ProjectName": project, "TopicName": topic, "ShardNumber": count}),
                &format!("{project}/{topic} now has {count} active shards"),
            );
        }
    }
    Ok(())
}
