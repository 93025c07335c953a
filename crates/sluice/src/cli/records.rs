//! `sluice record` (cursor, get, put: one API call each), `sluice consume` (from a cursor up to
//! the end) and `sluice tail [--follow]` (the last records, then new ones as they come).
//!
//! Records print as text (`--output table`: shard, sequence, system time, then the values,
//! tab-separated) or as JSON lines (`--output json`: `{"ShardId", "Sequence", "SystemTime",
//! "Data", "Attributes"}`, with a BLOB that is not UTF-8 as `DataBase64` instead of `Data`).

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value as Json};
use sluice_client::{Client, CursorType, ReadRecord};
use sluice_proto::{Record, RecordData, RecordSchema, Value};

use super::creds::resolve;
use super::error::{input, usage, CliError, Result};
use super::output::{done, time_ms};
use super::{ClientArgs, Output};

/// Records asked for per read call.
const READ_BATCH: i32 = 100;

#[derive(Subcommand)]
pub enum RecordCmd {
    /// Get a cursor: --from oldest | latest | seq:N | time:MS (or an RFC 3339 time).
    Cursor {
        project: String,
        topic: String,
        shard: String,
        #[arg(long, default_value = "oldest")]
        from: String,
    },
    /// Read up to --limit records of one shard from --cursor (or --from); prints the next cursor.
    Get {
        project: String,
        topic: String,
        shard: String,
        #[arg(long, conflicts_with = "from")]
        cursor: Option<String>,
        #[arg(long, default_value = "oldest")]
        from: String,
        #[arg(long, default_value_t = 10)]
        limit: i32,
    },
    /// Put one record: the values of a TUPLE topic in schema order (`\N` is null), or one
    /// BLOB value.
    Put {
        project: String,
        topic: String,
        /// Shard to write to [default: the first active shard].
        #[arg(long)]
        shard: Option<String>,
        #[arg(required = true)]
        values: Vec<String>,
    },
}

#[derive(Args)]
pub struct ConsumeArgs {
    pub project: String,
    pub topic: String,
    /// Shards to read (repeat the flag) [default: all].
    #[arg(long = "shard")]
    pub shards: Vec<String>,
    /// Start: oldest | latest | seq:N | time:MS (or an RFC 3339 time).
    #[arg(long, default_value = "oldest")]
    pub from: String,
    /// Stop after this many records in all.
    #[arg(long)]
    pub limit: Option<u64>,
}

#[derive(Args)]
pub struct TailArgs {
    pub project: String,
    pub topic: String,
    /// Shards to read (repeat the flag) [default: all].
    #[arg(long = "shard")]
    pub shards: Vec<String>,
    /// The last N records of each shard to print first.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub lines: u64,
    /// Keep waiting for new records (until interrupted, or --limit).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// How often to look for new records, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub interval_ms: u64,
    /// Stop after this many records in all.
    #[arg(long)]
    pub limit: Option<u64>,
}

/// Parses a start position.
pub fn parse_from(from: &str) -> Result<CursorType> {
    let lower = from.trim().to_ascii_lowercase();
    let bad = || {
        usage(format!(
            "--from {from:?}: expected oldest, latest, seq:N, or time:MS (or time:RFC3339)"
        ))
    };
    Ok(match lower.as_str() {
        "oldest" => CursorType::Oldest,
        "latest" => CursorType::Latest,
        _ => match lower.split_once(':') {
            Some(("seq" | "sequence", n)) => {
                CursorType::Sequence(n.trim().parse().map_err(|_| bad())?)
            }
            Some(("time" | "system_time", t)) => {
                let t = from.trim().split_once(':').map(|x| x.1).unwrap_or(t).trim();
                let ms = match t.parse::<i64>() {
                    Ok(ms) => ms,
                    Err(_) => chrono::DateTime::parse_from_rfc3339(t)
                        .map_err(|_| bad())?
                        .timestamp_millis(),
                };
                CursorType::SystemTime(ms)
            }
            _ => return Err(bad()),
        },
    })
}

/// A value as JSON: numbers and booleans typed, infinities and NaN as text.
fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(f) if f.is_finite() => json!(f),
        Value::Double(d) if d.is_finite() => json!(d),
        other => json!(other.to_text()),
    }
}

/// Prints one record in the chosen form.
pub fn print_record(
    out: &mut impl Write,
    format: Output,
    shard: &str,
    r: &ReadRecord,
    schema: Option<&RecordSchema>,
) -> std::io::Result<()> {
    match format {
        Output::Json => {
            let mut line = json!({
                "ShardId": shard,
                "Sequence": r.sequence,
                "SystemTime": r.system_time,
            });
            match (&r.record.data, schema) {
                (RecordData::Tuple(values), Some(schema)) => {
                    let data: Map<String, Json> = schema
                        .fields
                        .iter()
                        .zip(values)
                        .map(|(f, v)| (f.name.clone(), value_json(v)))
                        .collect();
                    line["Data"] = Json::Object(data);
                }
                (RecordData::Tuple(values), None) => {
                    line["Data"] = Json::Array(values.iter().map(value_json).collect());
                }
                (RecordData::Blob(b), _) => match std::str::from_utf8(b) {
                    Ok(text) => line["Data"] = json!(text),
                    Err(_) => {
                        line["DataBase64"] =
                            json!(base64::engine::general_purpose::STANDARD.encode(b))
                    }
                },
            }
            let attrs: Map<String, Json> = r
                .record
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            line["Attributes"] = Json::Object(attrs);
            writeln!(out, "{line}")
        }
        Output::Table => {
            let data = match &r.record.data {
                RecordData::Tuple(values) => values
                    .iter()
                    .map(|v| v.to_text().unwrap_or_else(|| "\\N".into()))
                    .collect::<Vec<_>>()
                    .join("\t"),
                RecordData::Blob(b) => String::from_utf8_lossy(b).into_owned(),
            };
            writeln!(
                out,
                "{shard}\t{}\t{}\t{data}",
                r.sequence,
                time_ms(r.system_time)
            )
        }
    }
}

/// The topic's schema (None for BLOB).
pub async fn topic_schema(c: &Client, project: &str, topic: &str) -> Result<Option<RecordSchema>> {
    Ok(c.get_topic(project, topic).await?.schema)
}

/// The shards to read: those named, or all of the topic's.
async fn shard_ids(
    c: &Client,
    project: &str,
    topic: &str,
    named: &[String],
) -> Result<Vec<String>> {
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    Ok(c.list_shards(project, topic)
        .await?
        .into_iter()
        .map(|s| s.shard_id)
        .collect())
}

/// The first active shard (where a single put goes when no shard is named).
pub async fn first_active_shard(c: &Client, project: &str, topic: &str) -> Result<String> {
    c.list_shards(project, topic)
        .await?
        .into_iter()
        .find(|s| s.state.eq_ignore_ascii_case("ACTIVE"))
        .map(|s| s.shard_id)
        .ok_or_else(|| input(format!("{project}/{topic} has no active shard")))
}

/// Parses command-line values into a record of the topic.
fn record_from_values(schema: Option<&RecordSchema>, values: &[String]) -> Result<Record> {
    let data = match schema {
        None => match values {
            [one] => RecordData::Blob(one.clone().into_bytes()),
            _ => return Err(usage("a BLOB topic takes exactly one value")),
        },
        Some(schema) => {
            if values.len() != schema.len() {
                return Err(usage(format!(
                    "the topic has {} fields, {} values were given",
                    schema.len(),
                    values.len()
                )));
            }
            let mut out = Vec::with_capacity(values.len());
            for (f, v) in schema.fields.iter().zip(values) {
                let text = (v != "\\N").then_some(v.as_str());
                out.push(Value::parse(f, text).map_err(|e| usage(e.to_string()))?);
            }
            RecordData::Tuple(out)
        }
    };
    Ok(Record {
        data,
        attributes: vec![],
    })
}

fn stdout_err(e: std::io::Error) -> CliError {
    super::error::io("cannot write to standard output", e)
}

pub async fn record(args: &ClientArgs, cmd: RecordCmd) -> Result<()> {
    let c = resolve(args)?.client()?;
    let out = args.output;
    match cmd {
        RecordCmd::Cursor {
            project,
            topic,
            shard,
            from,
        } => {
            let info = c
                .cursor_info(&project, &topic, &shard, parse_from(&from)?)
                .await?;
            done(
                out,
                json!({"Cursor": info.cursor, "Sequence": info.sequence, "RecordTime": info.record_time}),
                &format!(
                    "{}\tsequence {}\t{}",
                    info.cursor,
                    info.sequence,
                    time_ms(info.record_time)
                ),
            );
        }
        RecordCmd::Get {
            project,
            topic,
            shard,
            cursor,
            from,
            limit,
        } => {
            let schema = topic_schema(&c, &project, &topic).await?;
            let cursor = match cursor {
                Some(cursor) => cursor,
                None => {
                    c.get_cursor(&project, &topic, &shard, parse_from(&from)?)
                        .await?
                }
            };
            let (list, next) = c
                .get_records_pb(&project, &topic, &shard, &cursor, limit, schema.as_ref())
                .await?;
            let mut stdout = std::io::stdout().lock();
            for r in &list {
                print_record(&mut stdout, out, &shard, r, schema.as_ref()).map_err(stdout_err)?;
            }
            match out {
                Output::Json => writeln!(stdout, "{}", json!({ "NextCursor": next })),
                Output::Table => writeln!(stdout, "next cursor: {next}"),
            }
            .map_err(stdout_err)?;
        }
        RecordCmd::Put {
            project,
            topic,
            shard,
            values,
        } => {
            let schema = topic_schema(&c, &project, &topic).await?;
            let record = record_from_values(schema.as_ref(), &values)?;
            let shard = match shard {
                Some(s) => s,
                None => first_active_shard(&c, &project, &topic).await?,
            };
            let failed = c
                .put_records_pb(&project, &topic, &[(record, shard.clone())])
                .await?;
            if let Some((_, code)) = failed.first() {
                return Err(input(format!("the server refused the record: {code}")));
            }
            done(
                out,
                json!({"ShardId": shard, "FailedRecordCount": 0}),
                &format!("put 1 record into shard {shard}"),
            );
        }
    }
    Ok(())
}

/// One shard being read: its id and where the next read starts.
struct Reader {
    shard: String,
    cursor: String,
}

/// Reads every reader once (up to [`READ_BATCH`] records each) and prints what it got;
/// returns how many records were printed. Stops early when `left` reaches 0.
async fn read_round(
    c: &Client,
    project: &str,
    topic: &str,
    readers: &mut [Reader],
    schema: Option<&RecordSchema>,
    format: Output,
    left: &mut Option<u64>,
) -> Result<u64> {
    let mut printed = 0;
    for r in readers.iter_mut() {
        if *left == Some(0) {
            break;
        }
        let limit = left.map_or(READ_BATCH, |l| l.min(READ_BATCH as u64) as i32);
        let (list, next) = c
            .get_records_pb(project, topic, &r.shard, &r.cursor, limit, schema)
            .await?;
        let mut stdout = std::io::stdout().lock();
        for rec in &list {
            print_record(&mut stdout, format, &r.shard, rec, schema).map_err(stdout_err)?;
        }
        stdout.flush().map_err(stdout_err)?;
        printed += list.len() as u64;
        if let Some(l) = left.as_mut() {
            *l -= list.len() as u64;
        }
        r.cursor = next;
    }
    Ok(printed)
}

pub async fn consume(args: &ClientArgs, a: ConsumeArgs) -> Result<()> {
    let c = resolve(args)?.client()?;
    let from = parse_from(&a.from)?;
    let schema = topic_schema(&c, &a.project, &a.topic).await?;
    let mut readers = Vec::new();
    for shard in shard_ids(&c, &a.project, &a.topic, &a.shards).await? {
        let cursor = c.get_cursor(&a.project, &a.topic, &shard, from).await?;
        readers.push(Reader { shard, cursor });
    }
    let mut left = a.limit;
    // Each shard is read until it has nothing more (its end at the time of reading).
    let mut active: Vec<Reader> = readers;
    while !active.is_empty() && left != Some(0) {
        let mut next_round = Vec::new();
        for mut r in active {
            let got = read_round(
                &c,
                &a.project,
                &a.topic,
                std::slice::from_mut(&mut r),
                schema.as_ref(),
                args.output,
                &mut left,
            )
            .await?;
            if got > 0 {
                next_round.push(r);
            }
        }
        active = next_round;
    }
    Ok(())
}

/// Where tail starts in a shard: `lines` records before its end.
async fn tail_cursor(
    c: &Client,
    project: &str,
    topic: &str,
    shard: &str,
    lines: u64,
) -> Result<String> {
    let latest = c
        .cursor_info(project, topic, shard, CursorType::Latest)
        .await?;
    let (list, after_latest) = c
        .get_records_pb(project, topic, shard, &latest.cursor, 1, None)
        .await?;
    if list.is_empty() {
        // An empty shard: its LATEST cursor is where the next record will be.
        return Ok(latest.cursor);
    }
    if lines == 0 {
        return Ok(after_latest);
    }
    let oldest = c
        .cursor_info(project, topic, shard, CursorType::Oldest)
        .await?;
    let start = (latest.sequence + 1 - lines as i64).max(oldest.sequence);
    c.get_cursor(project, topic, shard, CursorType::Sequence(start))
        .await
        .map_err(Into::into)
}

pub async fn tail(args: &ClientArgs, a: TailArgs) -> Result<()> {
    let c = resolve(args)?.client()?;
    let schema = topic_schema(&c, &a.project, &a.topic).await?;
    let mut readers = Vec::new();
    for shard in shard_ids(&c, &a.project, &a.topic, &a.shards).await? {
        let cursor = tail_cursor(&c, &a.project, &a.topic, &shard, a.lines).await?;
        readers.push(Reader { shard, cursor });
    }
    let mut left = a.limit;
    loop {
        let got = read_round(
            &c,
            &a.project,
            &a.topic,
            &mut readers,
            schema.as_ref(),
            args.output,
            &mut left,
        )
        .await?;
        if left == Some(0) || (got == 0 && !a.follow) {
            return Ok(());
        }
        if got == 0 {
            tokio::time::sleep(Duration::from_millis(a.interval_ms.max(10))).await;
        }
    }
}
