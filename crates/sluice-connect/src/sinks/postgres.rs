//! SINK_HOLOGRES: rows into a table over the PostgreSQL protocol (PostgreSQL, Hologres, ...).
//!
//! pydatahub's `HologresConnectorConfig` gets a self-hosted meaning:
//! - `Endpoint` = `host:port` (a `scheme://` prefix is dropped; no port → 5432);
//! - `Project` = database; `Topic` = table, parsed like an SQL name (`events`, `analytics.events`,
//!   `"MixedCase"`), so the schema comes from it or from the search path (`public`);
//! - `InstanceId` is not used (a Hologres instance id has no self-hosted meaning);
//! - `AccessId` / `AccessKey` = user / password. Without them (`AuthMode` `sts`) the sink
//!   connects as user `postgres` without a password (trust / peer set-ups);
//! - `TimestampUnit` (`MICROSECOND` default, `MILLISECOND`, `SECOND`) = the unit of the topic's
//!   TIMESTAMP values when they go into `timestamp`, `timestamptz` or `date` columns (UTC);
//!   other columns (e.g. `bigint`) keep the number as it is;
//! - `WriteMode` (optional, not sent by pydatahub): `INSERT_OR_UPDATE` (default) or
//!   `INSERT_OR_IGNORE`, Hologres' names for the two modes.
//!
//! Writes: `INSERT INTO t (cols) SELECT ... FROM UNNEST($1::int8[], $2::text[], ...)` with
//! `ON CONFLICT (primary key) DO UPDATE SET <other columns> = EXCLUDED...` (upsert: the newest
//! record for a key wins), or `DO NOTHING` in ignore mode. One array parameter per column, so a
//! statement carries thousands of rows with a constant number of parameters. Rows with equal
//! keys inside one flush are collapsed to the last one before an upsert (PostgreSQL refuses to
//! update a row twice in one statement). A table without a primary key gets plain INSERTs.
//!
//! Values bind as int8 / float4 / float8 / bool / text arrays; text goes through an explicit
//! cast to the column type unless the column is a string type (then the assignment cast keeps
//! PostgreSQL's length checks: a too-long string is an error, never truncated).
//!
//! A failed flush rolls back its transaction and drops the buffer; the runtime re-writes what
//! it wants retried.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value as Json;
use sluice_proto::{FieldType, Value};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, Row};

use super::sql_util::{date_text, datetime_text, opt_str_field, str_field};
use crate::sink::{SharedColumns, Sink, SinkData, SinkError, SinkRecord};

/// Connection and mode of a PostgreSQL-protocol sink, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    pub host: String,
    pub port: u16,
    pub database: String,
    /// The table as an SQL name (optionally schema-qualified, optionally quoted).
    pub table: String,
    pub user: String,
    pub password: Option<String>,
    /// Microseconds per unit of the topic's TIMESTAMP values (1, 1,000 or 1,000,000).
    pub timestamp_unit_micros: i64,
    /// true → `ON CONFLICT DO NOTHING`; false → upsert.
    pub ignore: bool,
}

/// Parses pydatahub's `HologresConnectorConfig` JSON; the error names the bad or missing field.
pub fn parse_config(config: &Json) -> Result<PostgresConfig, String> {
    if !config.is_object() {
        return Err(format!("config must be a JSON object, got {config}"));
    }
    let endpoint = str_field(config, "Endpoint")?.trim();
    let hostport = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let hostport = hostport.trim_end_matches('/');
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                format!("config field Endpoint must be host:port, got {endpoint:?}")
            })?;
            (h.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => (hostport, 5432),
    };
    if host.is_empty() {
        return Err(format!(
            "config field Endpoint must be host:port, got {endpoint:?}"
        ));
    }
    let database = str_field(config, "Project")?.trim();
    if database.is_empty() {
        return Err("config field Project (the database) must not be empty".into());
    }
    let table = str_field(config, "Topic")?.trim();
    if table.is_empty() {
        return Err("config field Topic (the table) must not be empty".into());
    }
    let unit = opt_str_field(config, "TimestampUnit")?.unwrap_or("MICROSECOND");
    let timestamp_unit_micros = match unit.to_ascii_uppercase().as_str() {
        "MICROSECOND" | "" => 1,
        "MILLISECOND" => 1_000,
        "SECOND" => 1_000_000,
        _ => {
            return Err(format!(
            "config field TimestampUnit must be MICROSECOND, MILLISECOND or SECOND, got {unit:?}"
        ))
        }
    };
    let ignore = match opt_str_field(config, "WriteMode")?.map(str::to_ascii_uppercase) {
        None => false,
        Some(m) if m == "INSERT_OR_UPDATE" => false,
        Some(m) if m == "INSERT_OR_IGNORE" => true,
        Some(m) => {
            return Err(format!(
                "config field WriteMode must be INSERT_OR_UPDATE or INSERT_OR_IGNORE, got {m:?}"
            ))
        }
    };
    let user = opt_str_field(config, "AccessId")?.filter(|s| !s.is_empty());
    Ok(PostgresConfig {
        host: host.to_string(),
        port,
        database: database.to_string(),
        table: table.to_string(),
        user: user.unwrap_or("postgres").to_string(),
        password: opt_str_field(config, "AccessKey")?.map(str::to_string),
        timestamp_unit_micros,
        ignore,
    })
}

const MAX_ROWS_PER_STATEMENT: usize = 5000;
const MAX_BYTES_PER_STATEMENT: usize = 8 << 20;
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// How one connector column is bound (the array element type).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bind {
    Int,
    F32,
    F64,
    Bool,
    Text,
    /// TIMESTAMP into timestamp/timestamptz/date: text in UTC.
    DateTime {
        tz: bool,
    },
    Date,
}

impl Bind {
    fn array_type(self) -> &'static str {
        match self {
            Bind::Int => "int8[]",
            Bind::F32 => "float4[]",
            Bind::F64 => "float8[]",
            Bind::Bool => "bool[]",
            Bind::Text | Bind::DateTime { .. } | Bind::Date => "text[]",
        }
    }
}

/// One column of buffered values, typed like its bind.
enum ColumnData {
    Int(Vec<Option<i64>>),
    F32(Vec<Option<f32>>),
    F64(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
}

struct PostgresSink {
    pool: PgPool,
    where_: String,
    binds: Vec<Bind>,
    unit: i64,
    sql: String,
    /// Indexes of the primary-key columns when rows must be collapsed by key before a write.
    dedupe_key: Option<Vec<usize>>,
    rows: Vec<Vec<Value>>,
    bytes: usize,
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Maps a driver error onto what the runtime should do about it, by SQLSTATE.
fn classify(context: &str, e: sqlx::Error) -> SinkError {
    let mut msg = format!("{context}: {e}");
    match &e {
        sqlx::Error::Database(db) => {
            let state = db.code().map(|c| c.into_owned()).unwrap_or_default();
            msg.push_str(&format!(" (SQLSTATE {state})"));
            let class = state.get(..2).unwrap_or("");
            match (class, state.as_str()) {
                ("08" | "53" | "57" | "58", _) | (_, "40001" | "40P01" | "55P03" | "25P02") => {
                    SinkError::Transient(msg)
                }
                ("22" | "23", _) => SinkError::BadRecord(msg),
                ("42" | "28" | "3D" | "3F" | "0A", _) => SinkError::Config(msg),
                _ => SinkError::Transient(msg),
            }
        }
        sqlx::Error::Configuration(_) | sqlx::Error::ColumnNotFound(_) => SinkError::Config(msg),
        _ => SinkError::Transient(msg),
    }
}

/// Connects (pooled, reconnecting), finds the table, its column types and primary key.
pub async fn open(
    config: PostgresConfig,
    columns: SharedColumns,
) -> Result<Box<dyn Sink>, SinkError> {
    let where_ = format!(
        "postgres {}:{}/{} table {}",
        config.host, config.port, config.database, config.table
    );
    let mut options = PgConnectOptions::new()
        .host(&config.host)
        .port(config.port)
        .username(&config.user)
        .database(&config.database)
        .ssl_mode(sqlx::postgres::PgSslMode::Prefer)
        .application_name("sluice-connector");
    if let Some(p) = &config.password {
        options = options.password(p);
    }
    let pool = PgPoolOptions::new()
        .min_connections(0)
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(true)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("SET TIME ZONE 'UTC'").await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| classify(&where_, e))?;

    let oid: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::int8")
        .bind(&config.table)
        .fetch_one(&pool)
        .await
        .map_err(|e| classify(&where_, e))?;
    let Some(oid) = oid else {
        return Err(SinkError::Config(format!(
            "{where_}: the table does not exist"
        )));
    };
    // The canonical, quoted name of what to_regclass found (never the raw config text).
    let qualified: String = sqlx::query_scalar("SELECT $1::oid::regclass::text")
        .bind(oid)
        .fetch_one(&pool)
        .await
        .map_err(|e| classify(&where_, e))?;
    let rows = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, \
                t.typcategory::text, \
                COALESCE(a.attnum = ANY(i.indkey::int2[]), false) \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
         WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&pool)
    .await
    .map_err(|e| classify(&where_, e))?;
    struct Col {
        name: String,
        type_name: String,
        typname: String,
        category: String,
        key: bool,
    }
    let mut table_cols = Vec::new();
    for r in &rows {
        let get = |i| r.try_get::<String, _>(i);
        table_cols.push(Col {
            name: get(0).map_err(|e| classify(&where_, e))?,
            type_name: get(1).map_err(|e| classify(&where_, e))?,
            typname: get(2).map_err(|e| classify(&where_, e))?,
            category: get(3).map_err(|e| classify(&where_, e))?,
            key: r.try_get(4).map_err(|e| classify(&where_, e))?,
        });
    }
    let mut names = Vec::new();
    let mut exprs = Vec::new();
    let mut arrays = Vec::new();
    let mut binds = Vec::new();
    let mut used = Vec::new();
    for (i, (name, ty)) in columns.names.iter().zip(&columns.types).enumerate() {
        let col = table_cols
            .iter()
            .position(|c| &c.name == name)
            .or_else(|| table_cols.iter().position(|c| c.name.eq_ignore_ascii_case(name)))
            .ok_or_else(|| {
                SinkError::Config(format!(
                    "{where_}: the table has no column {name} (connector columns must match table columns by name)"
                ))
            })?;
        let c = &table_cols[col];
        used.push(col);
        let bind = match ty {
            FieldType::Bigint | FieldType::Integer | FieldType::Smallint | FieldType::Tinyint => {
                Bind::Int
            }
            FieldType::Timestamp => match c.typname.as_str() {
                "timestamp" => Bind::DateTime { tz: false },
                "timestamptz" => Bind::DateTime { tz: true },
                "date" => Bind::Date,
                _ => Bind::Int,
            },
            FieldType::Double => Bind::F64,
            FieldType::Float => Bind::F32,
            FieldType::Boolean => Bind::Bool,
            FieldType::String | FieldType::Decimal => Bind::Text,
        };
        let u = format!("u.c{i}");
        // Text into a non-string column needs an explicit cast; everything else uses the
        // assignment cast, which keeps length and range checks strict.
        let text_source = matches!(bind, Bind::Text | Bind::DateTime { .. } | Bind::Date);
        exprs.push(if text_source && c.category != "S" {
            format!("CAST({u} AS {})", c.type_name)
        } else {
            u
        });
        names.push(quote_ident(&c.name));
        arrays.push(format!("${}::{}", i + 1, bind.array_type()));
        binds.push(bind);
    }
    if names.is_empty() {
        return Err(SinkError::Config(format!(
            "{where_}: the connector has no columns"
        )));
    }
    let aliases: Vec<String> = (0..names.len()).map(|i| format!("c{i}")).collect();
    let mut sql = format!(
        "INSERT INTO {} AS t ({}) SELECT {} FROM UNNEST({}) AS u({})",
        qualified,
        names.join(", "),
        exprs.join(", "),
        arrays.join(", "),
        aliases.join(", ")
    );
    let key_cols: Vec<usize> = (0..table_cols.len())
        .filter(|&i| table_cols[i].key)
        .collect();
    let mut dedupe_key = None;
    if !key_cols.is_empty() {
        let key_names: Vec<String> = key_cols
            .iter()
            .map(|&i| quote_ident(&table_cols[i].name))
            .collect();
        let updates: Vec<String> = used
            .iter()
            .filter(|&&i| !table_cols[i].key)
            .map(|&i| {
                let n = quote_ident(&table_cols[i].name);
                format!("{n} = EXCLUDED.{n}")
            })
            .collect();
        if config.ignore || updates.is_empty() {
            sql.push_str(&format!(
                " ON CONFLICT ({}) DO NOTHING",
                key_names.join(", ")
            ));
        } else {
            sql.push_str(&format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                key_names.join(", "),
                updates.join(", ")
            ));
            // Collapse equal keys only when the connector supplies every key column.
            let positions: Option<Vec<usize>> = key_cols
                .iter()
                .map(|k| used.iter().position(|u| u == k))
                .collect();
            dedupe_key = positions;
        }
    }
    Ok(Box::new(PostgresSink {
        pool,
        where_,
        binds,
        unit: config.timestamp_unit_micros,
        sql,
        dedupe_key,
        rows: Vec::new(),
        bytes: 0,
    }))
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::Str(s) | Value::Decimal(s) => s.len() + 4,
        _ => 9,
    }
}

/// A hashable identity for a value (floats by bits).
fn key_part(v: &Value) -> String {
    match v {
        Value::Null => "n".into(),
        Value::Bool(b) => format!("b{b}"),
        Value::Int(n) => format!("i{n}"),
        Value::Float(f) => format!("f{}", f.to_bits()),
        Value::Double(d) => format!("d{}", d.to_bits()),
        Value::Str(s) => format!("s{s}"),
        Value::Decimal(s) => format!("m{s}"),
    }
}

impl PostgresSink {
    fn column(&self, rows: &[&Vec<Value>], i: usize) -> Result<ColumnData, String> {
        let wrong = |v: &Value| format!("column {i}: value {v:?} does not fit {:?}", self.binds[i]);
        macro_rules! collect {
            ($variant:ident, $pat:pat => $e:expr) => {{
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    out.push(match &r[i] {
                        Value::Null => None,
                        $pat => Some($e),
                        v => return Err(wrong(v)),
                    });
                }
                ColumnData::$variant(out)
            }};
        }
        Ok(match self.binds[i] {
            Bind::Int => collect!(Int, Value::Int(n) => *n),
            Bind::F32 => collect!(F32, Value::Float(f) => *f),
            Bind::F64 => collect!(F64, Value::Double(d) => *d),
            Bind::Bool => collect!(Bool, Value::Bool(b) => *b),
            Bind::Text => collect!(Text, Value::Str(s) | Value::Decimal(s) => s.clone()),
            Bind::DateTime { tz } => {
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    out.push(match &r[i] {
                        Value::Null => None,
                        Value::Int(n) => {
                            let us = n.checked_mul(self.unit).ok_or_else(|| wrong(&r[i]))?;
                            let text = datetime_text(us);
                            Some(if tz { text + "+00" } else { text })
                        }
                        v => return Err(wrong(v)),
                    });
                }
                ColumnData::Text(out)
            }
            Bind::Date => {
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    out.push(match &r[i] {
                        Value::Null => None,
                        Value::Int(n) => Some(date_text(
                            n.checked_mul(self.unit).ok_or_else(|| wrong(&r[i]))?,
                        )),
                        v => return Err(wrong(v)),
                    });
                }
                ColumnData::Text(out)
            }
        })
    }

    async fn write_all(&self, rows: &[&Vec<Value>]) -> Result<(), SinkError> {
        let ctx = |e| classify(&self.where_, e);
        let mut tx = self.pool.begin().await.map_err(ctx)?;
        let mut start = 0;
        while start < rows.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < rows.len()
                && end - start < MAX_ROWS_PER_STATEMENT
                && (end == start || bytes < MAX_BYTES_PER_STATEMENT)
            {
                bytes += rows[end].iter().map(value_size).sum::<usize>();
                end += 1;
            }
            let chunk = &rows[start..end];
            let mut query = sqlx::query(&self.sql);
            for i in 0..self.binds.len() {
                let data = self
                    .column(chunk, i)
                    .map_err(|why| SinkError::BadRecord(format!("{}: {why}", self.where_)))?;
                query = match data {
                    ColumnData::Int(v) => query.bind(v),
                    ColumnData::F32(v) => query.bind(v),
                    ColumnData::F64(v) => query.bind(v),
                    ColumnData::Bool(v) => query.bind(v),
                    ColumnData::Text(v) => query.bind(v),
                };
            }
            query.execute(&mut *tx).await.map_err(ctx)?;
            start = end;
        }
        tx.commit().await.map_err(ctx)
    }
}

#[async_trait::async_trait]
impl Sink for PostgresSink {
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError> {
        let mut converted = Vec::with_capacity(records.len());
        for record in records {
            let bad = |why: String| {
                SinkError::BadRecord(format!(
                    "{}: record shard {} sequence {}: {why}",
                    self.where_, record.shard_id, record.sequence
                ))
            };
            match &record.data {
                SinkData::Tuple(values) if values.len() == self.binds.len() => {
                    converted.push(values.clone())
                }
                SinkData::Tuple(values) => {
                    return Err(bad(format!(
                        "{} values for {} columns",
                        values.len(),
                        self.binds.len()
                    )))
                }
                SinkData::Blob(_) => {
                    return Err(bad("BLOB records cannot be written to a table".into()))
                }
            }
        }
        for row in converted {
            self.bytes += row.iter().map(value_size).sum::<usize>();
            self.rows.push(row);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        self.bytes = 0;
        let mut kept: Vec<&Vec<Value>> = Vec::with_capacity(rows.len());
        match &self.dedupe_key {
            Some(key) => {
                // Keep the last row per key, in the order of those last rows.
                let mut last: HashMap<Vec<String>, usize> = HashMap::with_capacity(rows.len());
                for (i, row) in rows.iter().enumerate() {
                    last.insert(key.iter().map(|&k| key_part(&row[k])).collect(), i);
                }
                let mut keep: Vec<usize> = last.into_values().collect();
                keep.sort_unstable();
                kept.extend(keep.into_iter().map(|i| &rows[i]));
            }
            None => kept.extend(rows.iter()),
        }
        match tokio::time::timeout(FLUSH_TIMEOUT, self.write_all(&kept)).await {
            Ok(result) => result,
            Err(_) => Err(SinkError::Transient(format!(
                "{}: writing {} rows took longer than {:?}",
                self.where_,
                kept.len(),
                FLUSH_TIMEOUT
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Json {
        json!({"Endpoint": "db.local:6432", "Project": "warehouse", "Topic": "public.events",
               "InstanceId": "hgpostcn-x", "AuthMode": "ak", "TimestampUnit": "MILLISECOND",
               "AccessId": "u", "AccessKey": "p"})
    }

    #[test]
    fn parses_hologres_config() {
        let c = parse_config(&good()).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("db.local", 6432));
        assert_eq!(c.database, "warehouse");
        assert_eq!(c.table, "public.events");
        assert_eq!(c.user, "u");
        assert_eq!(c.password.as_deref(), Some("p"));
        assert_eq!(c.timestamp_unit_micros, 1000);
        assert!(!c.ignore);
        let mut j = good();
        j["Endpoint"] = json!("http://db.local");
        j["WriteMode"] = json!("INSERT_OR_IGNORE");
        j.as_object_mut().unwrap().remove("AccessId");
        j.as_object_mut().unwrap().remove("TimestampUnit");
        let c = parse_config(&j).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str()),
            ("db.local", 5432, "postgres")
        );
        assert_eq!(c.timestamp_unit_micros, 1);
        assert!(c.ignore);
    }

    #[test]
    fn errors_name_the_field() {
        for (key, value) in [
            ("Endpoint", json!("h:notaport")),
            ("Endpoint", json!("")),
            ("TimestampUnit", json!("HOUR")),
            ("Project", json!(" ")),
            ("Topic", json!(3)),
            ("WriteMode", json!("MERGE")),
        ] {
            let mut j = good();
            j[key] = value;
            let e = parse_config(&j).unwrap_err();
            assert!(e.contains(key), "{e}");
        }
        for key in ["Endpoint", "Project", "Topic"] {
            let mut j = good();
            j.as_object_mut().unwrap().remove(key);
            assert!(parse_config(&j).unwrap_err().contains(key));
        }
    }
}
