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
//! Writes: rows are encoded in PostgreSQL's binary COPY format as they are written (see
//! [`CopyBuffer`]). A flush first tries one `COPY t (cols) FROM STDIN (FORMAT binary)` straight
//! into the table: COPY is all-or-nothing, and when it succeeds no key existed, so the result is
//! what the upsert would have left. When a key exists (23505) nothing was written and the flush
//! takes the upsert path: one transaction that COPYs into a temporary staging table, then runs
//! `INSERT INTO t (cols) SELECT ... FROM staging ON CONFLICT (primary key) DO UPDATE SET <other
//! columns> = EXCLUDED...` (upsert: the newest record for a key wins), or `DO NOTHING` in
//! ignore mode. After a conflict the next 1, 2, 4 ... 64 flushes skip the straight COPY. The
//! staging table (`pg_temp.sluice_stage`, `ON COMMIT DELETE ROWS`) is created once per
//! connection, when the pool opens it, so every commit empties it and a rolled-back flush leaves
//! nothing behind. Rows with equal keys inside one flush are collapsed first, to the last one
//! for an upsert (PostgreSQL refuses to update a row twice in one statement) and to the first
//! one for ignore. A table without a primary key gets plain INSERTs.
//!
//! Each value is encoded in its target column's binary type when the types match (integers
//! into bigint/integer/smallint, with the range checked here; float4, float8, bool; text into
//! text/varchar/char, whose length modifiers the server applies on COPY; TIMESTAMP into
//! timestamp/timestamptz/date as µs or days since 2000-01-01); the staging column then has the
//! target's exact type. Otherwise the staging column is int8 / float4 / float8 / bool / text and
//! the INSERT converts: text through an explicit cast to a non-string column, everything else
//! through the assignment cast, which keeps range and length checks strict. Only when every
//! column matches (and the table is a plain or partitioned table without rules) is the straight
//! COPY used. A value of the wrong kind or out of range is found at `write` and fails the next
//! `flush` as a bad record, like a row the server refuses.
//!
//! A failed flush rolls back its transaction and drops the buffer; the runtime re-writes what
//! it wants retried.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use sluice_proto::FieldType;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, Row};

use super::pg_copy::{Bind, CopyBuffer};
use super::sql_util::{opt_str_field, str_field};
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

const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
const STAGING: &str = "pg_temp.sluice_stage";
/// After a direct COPY met an existing key, the next flushes go straight to the upsert: at
/// first 1, doubling with every further conflict up to this many.
const MAX_DIRECT_PAUSE: u32 = 64;

struct PostgresSink {
    pool: PgPool,
    where_: String,
    names: Vec<String>,
    /// `COPY t (cols) FROM STDIN (FORMAT binary)` when every column is encoded in its target
    /// column's own binary format and the table takes COPY like INSERT (a plain or partitioned
    /// table without rules).
    direct_sql: Option<String>,
    /// `COPY staging FROM STDIN (FORMAT binary)`.
    staging_sql: String,
    /// `INSERT INTO t ... SELECT ... FROM staging [ON CONFLICT ...]`.
    insert_sql: String,
    /// Primary-key columns (connector column indexes) when rows are collapsed by key before a
    /// write, and whether the last (upsert) or the first (ignore) row of a key stays.
    dedupe: Option<(Vec<usize>, bool)>,
    /// Flushes left that skip the direct COPY, and the length of the last such pause.
    direct_pause: (u32, u32),
    rows: CopyBuffer,
    /// A value that cannot go into its column (wrong kind, out of range), found by `write`:
    /// the next `flush` fails with it as a bad record and drops the buffer, like a flush that
    /// the database refused.
    refused: Option<String>,
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Maps a driver error onto what the runtime should do about it, by SQLSTATE.
fn classify(context: &str, e: sqlx::Error) -> SinkError {
    let mut msg = format!("{context}: {e}");
    let error = match sqlstate(&e) {
        Some(state) => {
            msg.push_str(&format!(" (SQLSTATE {state})"));
            let class = state.get(..2).unwrap_or("");
            match (class, state.as_str()) {
                ("08" | "53" | "57" | "58", _) | (_, "40001" | "40P01" | "55P03" | "25P02") => {
                    SinkError::transient(msg)
                }
                ("22" | "23", _) => SinkError::bad_record(msg),
                ("42" | "28" | "3D" | "3F" | "0A", _) => SinkError::config(msg),
                _ => SinkError::transient(msg),
            }
        }
        None => match e {
            sqlx::Error::Configuration(_) | sqlx::Error::ColumnNotFound(_) => {
                SinkError::config(msg)
            }
            _ => SinkError::transient(msg),
        },
    };
    error.with_source(e)
}

/// A column of the target table.
struct Col {
    name: String,
    /// `format_type`: the type with its modifier, e.g. `character varying(100)`.
    type_name: String,
    typname: String,
    category: String,
    key: bool,
}

/// How a connector column of topic type `ty` goes into table column `c`: the encoding, and
/// whether the encoding is the column's own binary format (else it is the staging column's,
/// cast by the INSERT).
fn bind_for(ty: FieldType, c: &Col) -> (Bind, bool) {
    let t = c.typname.as_str();
    match ty {
        FieldType::Bigint | FieldType::Integer | FieldType::Smallint | FieldType::Tinyint => {
            match t {
                "int4" => (Bind::Int4, true),
                "int2" => (Bind::Int2, true),
                _ => (Bind::Int8, t == "int8"),
            }
        }
        FieldType::Timestamp => match t {
            "timestamp" | "timestamptz" => (Bind::Timestamp, true),
            "date" => (Bind::Date, true),
            "int4" => (Bind::Int4, true),
            "int2" => (Bind::Int2, true),
            _ => (Bind::Int8, t == "int8"),
        },
        FieldType::Double => (Bind::F64, t == "float8"),
        FieldType::Float => (Bind::F32, t == "float4"),
        FieldType::Boolean => (Bind::Bool, t == "bool"),
        FieldType::String | FieldType::Decimal => {
            (Bind::Text, matches!(t, "text" | "varchar" | "bpchar"))
        }
    }
}

/// Finds the table, its column types and primary key, then opens the pool (reconnecting; each
/// connection gets the staging table when it opens).
pub async fn open(
    config: PostgresConfig,
    columns: SharedColumns,
) -> Result<Box<dyn Sink>, SinkError> {
    let where_ = format!(
        "postgres {}:{}/{} table {}",
        config.host, config.port, config.database, config.table
    );
    let ctx = |e| classify(&where_, e);
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
    // The table is looked up on a connection of its own: the pool's connections need the
    // staging table's layout, which depends on what this finds.
    let mut conn = PgConnection::connect_with(&options).await.map_err(ctx)?;
    let oid: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::int8")
        .bind(&config.table)
        .fetch_one(&mut conn)
        .await
        .map_err(ctx)?;
    let Some(oid) = oid else {
        return Err(SinkError::config(format!(
            "{where_}: the table does not exist"
        )));
    };
    // The canonical, quoted name of what to_regclass found (never the raw config text), and
    // whether COPY into it behaves like INSERT.
    let (qualified, copy_ok): (String, bool) = sqlx::query_as(
        "SELECT $1::oid::regclass::text, relkind IN ('r', 'p') AND NOT relhasrules \
         FROM pg_class WHERE oid = $1::oid",
    )
    .bind(oid)
    .fetch_one(&mut conn)
    .await
    .map_err(ctx)?;
    let rows = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, \
                t.typcategory::text, \
                COALESCE(a.attnum = ANY(i.indkey::int2[]), false) \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
         WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut conn)
    .await
    .map_err(ctx)?;
    // Ignore errors: the pool's own connect below reports any that matter.
    let _ = conn.close().await;
    let mut table_cols = Vec::new();
    for r in &rows {
        let get = |i| r.try_get::<String, _>(i);
        table_cols.push(Col {
            name: get(0).map_err(ctx)?,
            type_name: get(1).map_err(ctx)?,
            typname: get(2).map_err(ctx)?,
            category: get(3).map_err(ctx)?,
            key: r.try_get(4).map_err(ctx)?,
        });
    }
    let mut names = Vec::new();
    let mut exprs = Vec::new();
    let mut staging = Vec::new();
    let mut binds = Vec::new();
    let mut used = Vec::new();
    let mut all_direct = copy_ok;
    for (i, (name, ty)) in columns.names.iter().zip(&columns.types).enumerate() {
        let col = table_cols
            .iter()
            .position(|c| &c.name == name)
            .or_else(|| table_cols.iter().position(|c| c.name.eq_ignore_ascii_case(name)))
            .ok_or_else(|| {
                SinkError::config(format!(
                    "{where_}: the table has no column {name} (connector columns must match table columns by name)"
                ))
            })?;
        let c = &table_cols[col];
        used.push(col);
        let (bind, direct) = bind_for(*ty, c);
        all_direct &= direct;
        let u = format!("u.c{i}");
        if direct {
            // The staging column has the target's type and modifier: nothing left to convert.
            staging.push(format!("c{i} {}", c.type_name));
            exprs.push(u);
        } else {
            staging.push(format!("c{i} {}", bind.base_type()));
            // Text into a non-string column needs an explicit cast; everything else uses the
            // assignment cast, which keeps length and range checks strict.
            exprs.push(if bind == Bind::Text && c.category != "S" {
                format!("CAST({u} AS {})", c.type_name)
            } else {
                u
            });
        }
        names.push(quote_ident(&c.name));
        binds.push(bind);
    }
    if names.is_empty() {
        return Err(SinkError::config(format!(
            "{where_}: the connector has no columns"
        )));
    }
    let mut insert_sql = format!(
        "INSERT INTO {qualified} AS t ({}) SELECT {} FROM {STAGING} AS u",
        names.join(", "),
        exprs.join(", "),
    );
    let key_cols: Vec<usize> = (0..table_cols.len())
        .filter(|&i| table_cols[i].key)
        .collect();
    let mut dedupe = None;
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
        let update = !config.ignore && !updates.is_empty();
        if update {
            insert_sql.push_str(&format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                key_names.join(", "),
                updates.join(", ")
            ));
        } else {
            insert_sql.push_str(&format!(
                " ON CONFLICT ({}) DO NOTHING",
                key_names.join(", ")
            ));
        }
        // Collapse equal keys only when the connector supplies every key column: the last
        // row wins an upsert, the first one an ignore (as DO NOTHING would decide).
        let positions: Option<Vec<usize>> = key_cols
            .iter()
            .map(|k| used.iter().position(|u| u == k))
            .collect();
        dedupe = positions.map(|p| (p, update));
    }

    let create: Arc<str> = format!(
        "CREATE TEMPORARY TABLE {} ({}) ON COMMIT DELETE ROWS",
        STAGING.trim_start_matches("pg_temp."),
        staging.join(", ")
    )
    .into();
    let pool = PgPoolOptions::new()
        .min_connections(0)
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(true)
        .after_connect(move |conn, _meta| {
            let create = create.clone();
            Box::pin(async move {
                conn.execute("SET TIME ZONE 'UTC'").await?;
                conn.execute(&*create).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(ctx)?;
    Ok(Box::new(PostgresSink {
        pool,
        where_,
        names: columns.names.clone(),
        direct_sql: all_direct.then(|| {
            format!(
                "COPY {qualified} ({}) FROM STDIN (FORMAT binary)",
                names.join(", ")
            )
        }),
        staging_sql: format!("COPY {STAGING} FROM STDIN (FORMAT binary)"),
        insert_sql,
        dedupe,
        direct_pause: (0, 0),
        refused: None,
        rows: CopyBuffer::new(binds, config.timestamp_unit_micros),
    }))
}

/// Streams COPY data into `conn` with statement `sql`.
async fn copy_in(conn: &mut PgConnection, sql: &str, data: &[u8]) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(sql).await?;
    // On a send error `copy` is dropped, which tells the server the COPY failed.
    copy.send(data).await?;
    copy.finish().await.map(|_| ())
}

impl PostgresSink {
    /// Rows straight into the table with one COPY, which is all-or-nothing. Ok(false) when a
    /// row's key already exists (or another unique index refuses a row): nothing was written,
    /// and the upsert decides.
    async fn write_direct(&self, sql: &str, data: &[u8]) -> Result<bool, SinkError> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.error(e))?;
        match copy_in(&mut conn, sql, data).await {
            Ok(()) => Ok(true),
            Err(e) if sqlstate(&e).as_deref() == Some("23505") => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// One transaction: COPY into the staging table, then INSERT ... SELECT from it.
    async fn write_staged(&self, data: &[u8]) -> Result<(), SinkError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        copy_in(&mut tx, &self.staging_sql, data)
            .await
            .map_err(|e| self.error(e))?;
        sqlx::query(&self.insert_sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(e))?;
        tx.commit().await.map_err(|e| self.error(e))
    }

    fn bad(&self, record: &SinkRecord, why: &str) -> SinkError {
        SinkError::bad_record(format!(
            "{}: record shard {} sequence {}: {why}",
            self.where_, record.shard_id, record.sequence
        ))
    }

    fn error(&self, e: sqlx::Error) -> SinkError {
        classify(&self.where_, e)
    }

    async fn write_all(&mut self, data: Vec<u8>) -> Result<(), SinkError> {
        if let Some(sql) = &self.direct_sql {
            let (left, last) = self.direct_pause;
            if left > 0 {
                self.direct_pause.0 -= 1;
            } else if self.write_direct(sql, &data).await? {
                self.direct_pause = (0, 0);
                return Ok(());
            } else {
                let pause = (last * 2).clamp(1, MAX_DIRECT_PAUSE);
                self.direct_pause = (pause, pause);
            }
        }
        self.write_staged(&data).await
    }
}

#[async_trait::async_trait]
impl Sink for PostgresSink {
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError> {
        // A record of the wrong shape fails the call (nothing of it is buffered); a value that
        // does not fit its column fails the next flush.
        for record in records {
            let problem = match &record.data {
                SinkData::Tuple(values) if values.len() == self.rows.columns() => None,
                SinkData::Tuple(values) => Some(format!(
                    "{} values for {} columns",
                    values.len(),
                    self.rows.columns()
                )),
                SinkData::Blob(_) => Some("BLOB records cannot be written to a table".into()),
            };
            if let Some(why) = problem {
                return Err(self.bad(record, &why));
            }
        }
        for record in records {
            let SinkData::Tuple(values) = &record.data else {
                continue;
            };
            if let Err(why) = self.rows.push_row(values, &self.names) {
                if self.refused.is_none() {
                    self.refused = Some(self.bad(record, &why).to_string());
                }
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if let Some(why) = self.refused.take() {
            self.rows.clear();
            return Err(SinkError::bad_record(why));
        }
        if self.rows.rows() == 0 {
            return Ok(());
        }
        if let Some((key, last)) = &self.dedupe {
            self.rows.keep_one_per_key(key, *last);
        }
        let rows = self.rows.rows();
        let data = self.rows.take_data();
        match tokio::time::timeout(FLUSH_TIMEOUT, self.write_all(data)).await {
            Ok(result) => result,
            Err(_) => Err(SinkError::transient(format!(
                "{}: writing {rows} rows took longer than {:?}",
                self.where_, FLUSH_TIMEOUT
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
