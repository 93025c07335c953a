//! SINK_MYSQL and SINK_ADS: rows into a table over the MySQL protocol (MySQL, MariaDB,
//! AnalyticDB for MySQL, TiDB, ...).
//!
//! Config: [`MysqlConfig`] (`config.rs`), pydatahub's `DatabaseConnectorConfig`.
//!
//! Write modes, both keyed on the table's primary/unique keys:
//! - `Ignore=false` → `REPLACE INTO`: the newest record for a key wins;
//! - `Ignore=true` → `INSERT ... ON DUPLICATE KEY UPDATE <col> = <col>`: a record whose key
//!   already exists is skipped (the first one wins). This is "insert, ignoring key conflicts",
//!   what DataHub's IgnoreInto mode promises. Plain `INSERT IGNORE` is *not* used because it also
//!   turns data errors (NULL into NOT NULL, too-long strings, failed CHECKs) into warnings and
//!   silently stores truncated or default values.
//!
//! Every session runs with a strict `sql_mode` and `time_zone = '+00:00'`, so a value that does
//! not fit its column is an error (→ [`ErrorKind::BadRecord`](crate::sink::ErrorKind::BadRecord)), never a silent truncation.
//!
//! Column mapping: the connector's columns go to the same-named table columns (compared
//! case-insensitively, as MySQL does). Values: integers as BIGINT parameters, DOUBLE/FLOAT as
//! floating point, BOOLEAN as 0/1, STRING as text, DECIMAL as its exact text (→ DECIMAL
//! columns convert exactly). TIMESTAMP (µs since the epoch) becomes `YYYY-MM-DD
//! HH:MM:SS.ffffff` UTC when the target column is DATETIME or TIMESTAMP (declare them `(6)` to
//! keep the microseconds), a date when it is DATE, and otherwise stays the number (e.g. a
//! BIGINT column).
//!
//! Buffering: [`Sink::write`] converts and buffers; [`Sink::flush`] writes the buffer in one
//! transaction as multi-row statements chunked by row count and bytes. A failed flush rolls the
//! transaction back and drops the buffer: the runtime re-writes whatever it wants retried.

use std::fmt::Write as _;
use std::time::Duration;

use sluice_proto::{FieldType, Value};
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};
use sqlx::{Executor, Row};

use super::mapping::{date_text, datetime_text, Cell, TimestampAs};
use super::MysqlConfig;
use crate::sink::{SharedColumns, Sink, SinkData, SinkError, SinkRecord};

/// Most rows in one statement (also bounded by 65,535 placeholders).
const MAX_ROWS_PER_STATEMENT: usize = 2000;
/// Approximate payload bytes per statement (well below the 4 MiB `max_allowed_packet` of old
/// servers; MariaDB defaults to 16 MiB).
const MAX_BYTES_PER_STATEMENT: usize = 2 << 20;
/// A flush that takes longer than this is abandoned as transient (a hung server).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
const STRICT_SESSION: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,\
NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION', time_zone = '+00:00'";

struct MysqlSink {
    pool: MySqlPool,
    where_: String,
    types: Vec<FieldType>,
    timestamp_as: Vec<TimestampAs>,
    /// `REPLACE INTO t (...) VALUES ` or `INSERT INTO t (...) VALUES `.
    head: String,
    /// `` or ` ON DUPLICATE KEY UPDATE a = a`.
    tail: String,
    /// `(?,?,...)` for one row.
    row_placeholders: String,
    rows: Vec<Vec<Cell>>,
    bytes: usize,
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Maps a driver error onto what the runtime should do about it.
fn classify(context: &str, e: sqlx::Error) -> SinkError {
    let msg = format!("{context}: {e}");
    let error = match &e {
        sqlx::Error::Database(db) => {
            let number = db
                .try_downcast_ref::<MySqlDatabaseError>()
                .map(|m| m.number());
            let state = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match number {
                // Lock wait timeout, deadlock, too many connections, server shutting down,
                // connection killed, statement/execution timeouts, read-only, query interrupted.
                Some(1205 | 1213 | 1040 | 1053 | 1927 | 1969 | 3024 | 1290 | 1317 | 1836) => {
                    SinkError::transient(msg)
                }
                // No table, no database, access denied, unknown column, packet too big.
                Some(1146 | 1049 | 1044 | 1045 | 1142 | 1143 | 1054 | 1153 | 1064 | 1109) => {
                    SinkError::config(msg)
                }
                // Cannot be null, too long, out of range, incorrect value, truncated, bad
                // date/time, FK, CHECK (MySQL 3819, MariaDB 4025), duplicate key (a
                // secondary unique key under REPLACE/INSERT), division by zero.
                Some(
                    1048 | 1406 | 1264 | 1366 | 1265 | 1292 | 1452 | 1451 | 3819 | 4025 | 1062
                    | 1690 | 1367 | 1411 | 1365 | 1416,
                ) => SinkError::bad_record(msg),
                _ if state.starts_with("22") || state.starts_with("23") => {
                    SinkError::bad_record(msg)
                }
                _ if state.starts_with("42") || state.starts_with("28") => SinkError::config(msg),
                _ => SinkError::transient(msg),
            }
        }
        sqlx::Error::Configuration(_) | sqlx::Error::ColumnNotFound(_) => SinkError::config(msg),
        // Io (refused, reset, broken pipe), Tls, Protocol, PoolTimedOut, PoolClosed, ...
        _ => SinkError::transient(msg),
    };
    error.with_source(e)
}

/// Connects (pooled; dead connections are replaced on the next acquire), checks that the table
/// has every connector column and learns the column types.
pub async fn open(config: MysqlConfig, columns: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    let where_ = format!(
        "mysql {}:{}/{}.{}",
        config.host, config.port, config.database, config.table
    );
    let options = MySqlConnectOptions::new()
        .host(&config.host)
        .port(config.port)
        .username(&config.user)
        .password(config.password.expose())
        .database(&config.database)
        .charset("utf8mb4")
        .pipes_as_concat(false)
        .timezone(Some("+00:00".to_string()));
    let pool_options = MySqlPoolOptions::new()
        .min_connections(0)
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(true)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(STRICT_SESSION).await?;
                Ok(())
            })
        });
    // TLS as connector_tls says (sinks/tls.rs): the options that worked serve reconnects.
    let (pool, _) = crate::sinks::tls::connect(
        &crate::sinks::tls::current(),
        &where_,
        &format!("{}:{}", config.host, config.port),
        options,
        |o| pool_options.clone().connect_with(o),
        |e| classify(&where_, e),
    )
    .await?;

    let table_columns = sqlx::query(
        "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
    )
    .bind(&config.table)
    .fetch_all(&pool)
    .await
    .map_err(|e| classify(&where_, e))?;
    if table_columns.is_empty() {
        return Err(SinkError::config(format!(
            "{where_}: table {} does not exist in database {} (or the user cannot see it)",
            config.table, config.database
        )));
    }
    let mut found = Vec::with_capacity(table_columns.len());
    for row in &table_columns {
        let name: String = row.try_get(0).map_err(|e| classify(&where_, e))?;
        let data_type: String = row.try_get(1).map_err(|e| classify(&where_, e))?;
        found.push((name, data_type.to_ascii_lowercase()));
    }
    let mut names = Vec::with_capacity(columns.names.len());
    let mut timestamp_as = Vec::with_capacity(columns.names.len());
    for (name, ty) in columns.names.iter().zip(&columns.types) {
        let Some((real, data_type)) = found.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))
        else {
            return Err(SinkError::config(format!(
                "{where_}: the table has no column {name} (connector columns must match table columns by name)"
            )));
        };
        names.push(quote_ident(real));
        timestamp_as.push(match (ty, data_type.as_str()) {
            (FieldType::Timestamp, "datetime" | "timestamp") => TimestampAs::DateTime,
            (FieldType::Timestamp, "date") => TimestampAs::Date,
            _ => TimestampAs::Number,
        });
    }
    if names.is_empty() {
        return Err(SinkError::config(format!(
            "{where_}: the connector has no columns"
        )));
    }
    let head = format!(
        "{} INTO {} ({}) VALUES ",
        if config.ignore { "INSERT" } else { "REPLACE" },
        quote_ident(&config.table),
        names.join(",")
    );
    let tail = if config.ignore {
        format!(" ON DUPLICATE KEY UPDATE {0} = {0}", names[0])
    } else {
        String::new()
    };
    let row_placeholders = format!("({})", vec!["?"; names.len()].join(","));
    Ok(Box::new(MysqlSink {
        pool,
        where_,
        types: columns.types.clone(),
        timestamp_as,
        head,
        tail,
        row_placeholders,
        rows: Vec::new(),
        bytes: 0,
    }))
}

impl MysqlSink {
    fn convert(&self, record: &SinkRecord) -> Result<Vec<Cell>, SinkError> {
        let bad = |why: String| {
            SinkError::bad_record(format!(
                "{}: record shard {} sequence {}: {why}",
                self.where_, record.shard_id, record.sequence
            ))
        };
        let values = match &record.data {
            SinkData::Tuple(values) => values,
            SinkData::Blob(_) => {
                return Err(bad("BLOB records cannot be written to a table".into()))
            }
        };
        if values.len() != self.types.len() {
            return Err(bad(format!(
                "{} values for {} columns",
                values.len(),
                self.types.len()
            )));
        }
        let mut cells = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            cells.push(match value {
                Value::Null => Cell::Null,
                Value::Bool(b) => Cell::Bool(*b),
                Value::Int(n) => match self.timestamp_as[i] {
                    TimestampAs::DateTime => Cell::Text(datetime_text(*n)),
                    TimestampAs::Date => Cell::Text(date_text(*n)),
                    TimestampAs::Number => Cell::Int(*n),
                },
                Value::Float(f) => Cell::F32(*f),
                Value::Double(d) => Cell::F64(*d),
                Value::Str(s) | Value::Decimal(s) => Cell::Text(s.clone()),
            });
        }
        Ok(cells)
    }

    async fn write_all(&self, rows: &[Vec<Cell>]) -> Result<(), SinkError> {
        let ctx = |e| classify(&self.where_, e);
        let mut tx = self.pool.begin().await.map_err(ctx)?;
        let ncols = self.types.len();
        let max_rows = MAX_ROWS_PER_STATEMENT.min(65_535 / ncols).max(1);
        let mut start = 0;
        let mut sql = String::new();
        while start < rows.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < rows.len()
                && end - start < max_rows
                && (end == start || bytes < MAX_BYTES_PER_STATEMENT)
            {
                bytes += rows[end].iter().map(Cell::size).sum::<usize>();
                end += 1;
            }
            sql.clear();
            sql.push_str(&self.head);
            for i in 0..end - start {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&self.row_placeholders);
            }
            let _ = write!(sql, "{}", self.tail);
            let mut query = sqlx::query(&sql);
            for row in &rows[start..end] {
                for cell in row {
                    query = match cell {
                        Cell::Null => query.bind(None::<i64>),
                        Cell::Int(n) => query.bind(*n),
                        Cell::F32(f) => query.bind(*f),
                        Cell::F64(d) => query.bind(*d),
                        Cell::Bool(b) => query.bind(*b),
                        Cell::Text(s) => query.bind(s.as_str()),
                    };
                }
            }
            // Only the full-size statement is worth keeping prepared.
            let persistent = end - start == max_rows;
            query
                .persistent(persistent)
                .execute(&mut *tx)
                .await
                .map_err(ctx)?;
            start = end;
        }
        tx.commit().await.map_err(ctx)
    }
}

#[async_trait::async_trait]
impl Sink for MysqlSink {
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError> {
        let mut converted = Vec::with_capacity(records.len());
        for record in records {
            converted.push(self.convert(record)?);
        }
        for row in converted {
            self.bytes += row.iter().map(Cell::size).sum::<usize>();
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
        match tokio::time::timeout(FLUSH_TIMEOUT, self.write_all(&rows)).await {
            Ok(result) => result,
            Err(_) => Err(SinkError::transient(format!(
                "{}: writing {} rows took longer than {:?}",
                self.where_,
                rows.len(),
                FLUSH_TIMEOUT
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }
}
