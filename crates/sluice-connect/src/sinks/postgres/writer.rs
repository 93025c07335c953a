//! SINK_HOLOGRES: rows into a table over the PostgreSQL protocol (PostgreSQL, Hologres, ...).
//!
//! pydatahub's `HologresConnectorConfig` gets a self-hosted meaning: see [`PostgresConfig`]
//! (`config.rs`) and docs/connectors.md. `WriteMode` (not sent by pydatahub) picks what an
//! existing key does: `INSERT_OR_UPDATE` (default), `INSERT_OR_IGNORE` or `INSERT_OR_REPLACE`.
//!
//! Writes: rows are encoded in PostgreSQL's binary COPY format as they are written (see
//! [`CopyBuffer`]). A flush first tries one `COPY t (cols) FROM STDIN (FORMAT binary)` straight
//! into the table: COPY is all-or-nothing, and when it succeeds no key existed, so the result is
//! what the upsert would have left. When a key exists (23505) nothing was written and the flush
//! takes the upsert path: one transaction that COPYs into a temporary staging table, then runs
//! `INSERT INTO t (cols) SELECT ... FROM staging ON CONFLICT (primary key) DO UPDATE SET <other
//! columns> = EXCLUDED...` (upsert: the newest record for a key wins; replace mode also sets the
//! table's columns the connector does not write back to `DEFAULT`), or `DO NOTHING` in ignore
//! mode. After a conflict the next 1, 2, 4 ... 64 flushes skip the straight COPY. The
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

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, Row};

use super::mapping::{bind_for, Col};
use super::pg_copy::{Bind, CopyBuffer};
use super::{PostgresConfig, WriteMode};
use crate::sink::{SharedColumns, Sink, SinkData, SinkError, SinkRecord};

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
        .application_name("sluice-connector");
    if let Some(p) = &config.password {
        options = options.password(p.expose());
    }
    // The table is looked up on a connection of its own: the pool's connections need the
    // staging table's layout, which depends on what this finds.
    // TLS as connector_tls says (sinks/tls.rs); the pool reuses the options that worked.
    let (mut conn, options) = crate::sinks::tls::connect(
        &crate::sinks::tls::current(),
        &where_,
        &format!("{}:{}", config.host, config.port),
        options,
        |o| async move { PgConnection::connect_with(&o).await },
        ctx,
    )
    .await?;
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
        let mut updates: Vec<String> = used
            .iter()
            .filter(|&&i| !table_cols[i].key)
            .map(|&i| {
                let n = quote_ident(&table_cols[i].name);
                format!("{n} = EXCLUDED.{n}")
            })
            .collect();
        let update = match config.write_mode {
            WriteMode::InsertOrIgnore => false,
            WriteMode::InsertOrUpdate => !updates.is_empty(),
            WriteMode::InsertOrReplace => {
                // The whole row is replaced: columns the connector does not write go back to
                // their defaults, as a fresh insert would leave them.
                updates.extend(
                    (0..table_cols.len())
                        .filter(|i| !table_cols[*i].key && !used.contains(i))
                        .map(|i| format!("{} = DEFAULT", quote_ident(&table_cols[i].name))),
                );
                !updates.is_empty()
            }
        };
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
        rows: CopyBuffer::new(binds, config.timestamp_unit.micros()),
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

    async fn write_all(&mut self, data: &[u8]) -> Result<(), SinkError> {
        if let Some(sql) = &self.direct_sql {
            let (left, last) = self.direct_pause;
            if left > 0 {
                self.direct_pause.0 -= 1;
            } else if self.write_direct(sql, data).await? {
                self.direct_pause = (0, 0);
                return Ok(());
            } else {
                let pause = (last * 2).clamp(1, MAX_DIRECT_PAUSE);
                self.direct_pause = (pause, pause);
            }
        }
        self.write_staged(data).await
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
        let result = match tokio::time::timeout(FLUSH_TIMEOUT, self.write_all(&data)).await {
            Ok(result) => result,
            Err(_) => Err(SinkError::transient(format!(
                "{}: writing {rows} rows took longer than {:?}",
                self.where_, FLUSH_TIMEOUT
            ))),
        };
        self.rows.recycle(data);
        result
    }
}
