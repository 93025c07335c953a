//! `sluice produce`: records from CSV or JSON lines (a file or standard input) put in batches,
//! with a progress bar on a terminal and a summary at the end.
//!
//! CSV for a TUPLE topic starts with a header naming the fields (any order; fields left out are
//! null), or with `--no-header` holds the fields in schema order; `\N` is null, and so is an
//! empty cell of a field that is not STRING. CSV for a BLOB topic has one column, no header.
//! A JSON line is an object of field values (TUPLE), or a string (BLOB); the JSON lines that
//! `sluice consume -o json` prints are read back too (`Data`, `DataBase64`, `Attributes`).
//! Records go round-robin to the active shards, or all to `--shard`. A bad line stops the run,
//! naming the line; what was put before it stays put.

use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value as Json};
use sluice_proto::{Field, FieldType, Record, RecordData, RecordSchema, Value};

use super::creds::resolve;
use super::error::{input, io, usage, Result};
use super::output::done;
use super::records::topic_schema;
use super::ClientArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Args)]
pub struct ProduceArgs {
    pub project: String,
    pub topic: String,
    /// Input file [default: standard input].
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Input format [default: json for *.json, *.jsonl, *.ndjson files, else csv].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// CSV without a header line: the columns are the fields in schema order.
    #[arg(long)]
    pub no_header: bool,
    /// Records per put request.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub batch_size: u32,
    /// Put every record into this shard [default: round-robin over the active shards].
    #[arg(long)]
    pub shard: Option<String>,
}

/// Counts the bytes read through it (for the progress bar).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type Source = Counting<Box<dyn Read>>;

/// Where records come from, one at a time, with the line each came from.
enum Lines {
    Csv {
        reader: csv::Reader<Source>,
        /// For each CSV column, the schema field it fills.
        columns: Option<Vec<usize>>,
    },
    Json {
        reader: BufReader<Source>,
        line: u64,
    },
}

fn null_text(field: &Field, text: &str) -> bool {
    text == "\\N" || (text.is_empty() && field.field_type != FieldType::String)
}

fn parse_value(field: &Field, text: Option<&str>, line: u64) -> Result<Value> {
    let text = text.filter(|t| !null_text(field, t));
    Value::parse(field, text).map_err(|e| input(format!("line {line}: {e}")))
}

/// A JSON value as the text form `Value::parse` reads.
fn json_text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn json_record(schema: Option<&RecordSchema>, v: Json, line: u64) -> Result<Record> {
    let bad = |what: &str| input(format!("line {line}: {what}"));
    let (data, attrs) = match v {
        Json::Object(mut m)
            if m.contains_key("Data")
                || m.contains_key("DataBase64")
                || m.contains_key("Attributes") =>
        {
            let data = m
                .remove("Data")
                .or_else(|| m.remove("DataBase64").map(|b| json!({ "base64": b })))
                .unwrap_or(Json::Null);
            (data, m.remove("Attributes"))
        }
        other => (other, None),
    };
    let attributes = match attrs {
        None | Some(Json::Null) => vec![],
        Some(Json::Object(m)) => m
            .into_iter()
            .map(|(k, v)| (k, json_text(&v).unwrap_or_default()))
            .collect(),
        Some(_) => return Err(bad("Attributes must be an object")),
    };
    let data = match schema {
        None => match data {
            Json::String(s) => RecordData::Blob(s.into_bytes()),
            Json::Object(m) if m.contains_key("base64") => {
                let text = m["base64"]
                    .as_str()
                    .ok_or_else(|| bad("DataBase64 must be a string"))?;
                RecordData::Blob(
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|e| bad(&format!("DataBase64: {e}")))?,
                )
            }
            _ => return Err(bad("a BLOB record is a JSON string")),
        },
        Some(schema) => {
            let mut values = vec![None; schema.len()];
            match data {
                Json::Object(m) => {
                    for (k, v) in m {
                        let i = schema
                            .index_of(&k)
                            .ok_or_else(|| bad(&format!("the topic has no field {k:?}")))?;
                        values[i] = json_text(&v);
                    }
                }
                Json::Array(list) if list.len() == schema.len() => {
                    for (i, v) in list.iter().enumerate() {
                        values[i] = json_text(v);
                    }
                }
                _ => return Err(bad("a TUPLE record is an object of field values")),
            }
            let mut out = Vec::with_capacity(values.len());
            for (f, text) in schema.fields.iter().zip(&values) {
                // In JSON, null is null; text is taken as it is.
                out.push(
                    Value::parse(f, text.as_deref())
                        .map_err(|e| input(format!("line {line}: {e}")))?,
                );
            }
            RecordData::Tuple(out)
        }
    };
    Ok(Record { data, attributes })
}

impl Lines {
    fn open(
        format: Format,
        source: Source,
        schema: Option<&RecordSchema>,
        header: bool,
    ) -> Result<Lines> {
        match format {
            Format::Json => Ok(Lines::Json {
                reader: BufReader::new(source),
                line: 0,
            }),
            Format::Csv => {
                let header = header && schema.is_some();
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(header)
                    .flexible(true)
                    .from_reader(source);
                let columns = match (header, schema) {
                    (true, Some(schema)) => {
                        let names = reader
                            .headers()
                            .map_err(|e| input(format!("the CSV header: {e}")))?
                            .clone();
                        let mut columns = Vec::with_capacity(names.len());
                        for name in names.iter() {
                            columns.push(schema.index_of(name.trim()).ok_or_else(|| {
                                input(format!(
                                    "line 1: the CSV header names {name:?}, which the topic does not have \
                                     (use --no-header for a file without a header)"
                                ))
                            })?);
                        }
                        Some(columns)
                    }
                    _ => None,
                };
                Ok(Lines::Csv { reader, columns })
            }
        }
    }

    /// The next record and its line number, or None at the end.
    fn next(&mut self, schema: Option<&RecordSchema>) -> Result<Option<(u64, Record)>> {
        match self {
            Lines::Json { reader, line } => loop {
                let mut text = String::new();
                *line += 1;
                let n = reader
                    .read_line(&mut text)
                    .map_err(|e| input(format!("line {line}: {e}")))?;
                if n == 0 {
                    return Ok(None);
                }
                if text.trim().is_empty() {
                    continue;
                }
                let v: Json = serde_json::from_str(&text)
                    .map_err(|e| input(format!("line {line}: not JSON: {e}")))?;
                return Ok(Some((*line, json_record(schema, v, *line)?)));
            },
            Lines::Csv { reader, columns } => {
                let mut row = csv::StringRecord::new();
                let more = reader.read_record(&mut row).map_err(|e| {
                    let line = e.position().map_or(0, |p| p.line());
                    input(format!("line {line}: {e}"))
                })?;
                if !more {
                    return Ok(None);
                }
                let line = row.position().map_or(0, |p| p.line());
                let data = match schema {
                    None => match row.len() {
                        1 => RecordData::Blob(row[0].as_bytes().to_vec()),
                        n => {
                            return Err(input(format!(
                                "line {line}: a BLOB topic takes one column, this line has {n}"
                            )))
                        }
                    },
                    Some(schema) => {
                        let expected = columns.as_ref().map_or(schema.len(), Vec::len);
                        if row.len() != expected {
                            return Err(input(format!(
                                "line {line}: expected {expected} columns, found {}",
                                row.len()
                            )));
                        }
                        let mut texts: Vec<Option<&str>> = vec![None; schema.len()];
                        for (col, text) in row.iter().enumerate() {
                            let field = columns.as_ref().map_or(col, |c| c[col]);
                            texts[field] = Some(text);
                        }
                        let mut values = Vec::with_capacity(schema.len());
                        for (f, text) in schema.fields.iter().zip(texts) {
                            values.push(parse_value(f, text, line)?);
                        }
                        RecordData::Tuple(values)
                    }
                };
                Ok(Some((
                    line,
                    Record {
                        data,
                        attributes: vec![],
                    },
                )))
            }
        }
    }
}

fn progress_bar(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {msg} ({elapsed}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {bytes} read, {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

pub async fn run(args: &ClientArgs, a: ProduceArgs) -> Result<()> {
    let c = resolve(args)?.client()?;
    let format = a.format.unwrap_or_else(|| match &a.file {
        Some(p)
            if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("json" | "jsonl" | "ndjson")
            ) =>
        {
            Format::Json
        }
        _ => Format::Csv,
    });
    let schema = topic_schema(&c, &a.project, &a.topic).await?;
    let shards = match &a.shard {
        Some(s) => vec![s.clone()],
        None => c
            .list_shards(&a.project, &a.topic)
            .await?
            .into_iter()
            .filter(|s| s.state.eq_ignore_ascii_case("ACTIVE"))
            .map(|s| s.shard_id)
            .collect(),
    };
    if shards.is_empty() {
        return Err(usage(format!(
            "{}/{} has no active shard",
            a.project, a.topic
        )));
    }
    let (raw, total): (Box<dyn Read>, Option<u64>) = match &a.file {
        Some(path) if path.as_os_str() != "-" => {
            let f = std::fs::File::open(path)
                .map_err(|e| io(format!("cannot open {}", path.display()), e))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), len)
        }
        _ => (Box::new(std::io::stdin()), None),
    };
    let read_bytes = Arc::new(AtomicU64::new(0));
    let source = Counting {
        inner: raw,
        count: read_bytes.clone(),
    };
    let mut lines = Lines::open(format, source, schema.as_ref(), !a.no_header)?;
    let bar = progress_bar(total);
    let started = Instant::now();
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut first_refusal: Option<String> = None;
    let mut batch: Vec<(Record, String)> = Vec::with_capacity(a.batch_size as usize);
    let mut next_shard = 0usize;
    let mut stop: Option<super::error::CliError> = None;
    loop {
        let item = match lines.next(schema.as_ref()) {
            Ok(item) => item,
            Err(e) => {
                stop = Some(e);
                None
            }
        };
        let at_end = item.is_none();
        if let Some((_, record)) = item {
            batch.push((record, shards[next_shard % shards.len()].clone()));
            next_shard += 1;
        }
        if !batch.is_empty() && (at_end || batch.len() >= a.batch_size as usize) {
            let refused = c.put_records_pb(&a.project, &a.topic, &batch).await?;
            sent += (batch.len() - refused.len()) as u64;
            failed += refused.len() as u64;
            if first_refusal.is_none() {
                first_refusal = refused.first().map(|(_, code)| code.clone());
            }
            batch.clear();
            bar.set_position(read_bytes.load(Ordering::Relaxed));
            bar.set_message(format!("{sent} records"));
        }
        if at_end {
            break;
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let rate = if seconds > 0.0 {
        sent as f64 / seconds
    } else {
        0.0
    };
    done(
        args.output,
        json!({
            "ProjectName": a.project,
            "TopicName": a.topic,
            "Records": sent,
            "Failed": failed,
            "Bytes": read_bytes.load(Ordering::Relaxed),
            "Seconds": seconds,
            "Complete": stop.is_none() && failed == 0,
        }),
        &format!(
            "produced {sent} records to {}/{} in {seconds:.2} s ({rate:.0} records/s); {failed} refused",
            a.project, a.topic
        ),
    );
    if let Some(e) = stop {
        return Err(input(format!(
            "{e}; stopped there ({sent} records were put before it)"
        )));
    }
    if failed > 0 {
        return Err(input(format!(
            "the server refused {failed} records (first: {})",
            first_refusal.unwrap_or_default()
        )));
    }
    Ok(())
}
