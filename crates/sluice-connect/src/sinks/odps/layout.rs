//! Where SINK_ODPS puts things: the warehouse ([`Warehouse`] from `OdpsEndpoint`), the table
//! folder `<warehouse>/<project>.db/<table>/`, the Hive partition path of a record
//! ([`Partitioner`]: SYSTEM_TIME, EVENT_TIME, USER_DEFINE) and the data file names
//! ([`FileName`]: shard plus first and last position); the object store of an `s3://`
//! warehouse's table ([`table_store`]).

use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use sluice_proto::{FieldType, Value};

use super::{OdpsConfig, PartitionMode};
use crate::sink::{Columns, SinkData, SinkError, SinkRecord};

/// DataHub's EVENT_TIME mode reads this topic field (TIMESTAMP, µs since the epoch).
pub const EVENT_TIME_FIELD: &str = "event_time";
/// The window when a time mode's config has no `TimeRange` (DataHub's default).
pub const DEFAULT_TIME_RANGE_MINUTES: i64 = 15;

/// Where the table lives, from `OdpsEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warehouse {
    /// `file:///path`: a local directory.
    Local(PathBuf),
    /// `s3://bucket/prefix`.
    S3 { bucket: String, prefix: String },
    /// `http(s)://`: a real MaxCompute, stored but not written self-hosted.
    MaxCompute(String),
}

impl Warehouse {
    pub fn parse(endpoint: &str) -> Result<Warehouse, SinkError> {
        let e = endpoint.trim();
        if let Some(path) = e.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(SinkError::config(format!(
                    "OdpsEndpoint {e:?}: a file:// warehouse needs an absolute path (file:///dir)"
                )));
            }
            return Ok(Warehouse::Local(PathBuf::from(path)));
        }
        if let Some(rest) = e.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(SinkError::config(format!(
                    "OdpsEndpoint {e:?}: an s3:// warehouse needs a bucket"
                )));
            }
            return Ok(Warehouse::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        let lower = e.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(Warehouse::MaxCompute(e.to_string()));
        }
        Err(SinkError::config(format!(
            "OdpsEndpoint {e:?} is neither a file:///path nor an s3://bucket/prefix warehouse"
        )))
    }
}

/// The message of a task whose `OdpsEndpoint` is a real MaxCompute.
pub fn maxcompute_message(endpoint: &str) -> String {
    format!(
        "OdpsEndpoint {endpoint:?} is a MaxCompute service: the MaxCompute tunnel is not \
         available self-hosted; point OdpsEndpoint at a file:///path or s3://bucket/prefix \
         warehouse to write a Parquet table"
    )
}

/// The table's path below the warehouse root.
pub fn table_path(config: &OdpsConfig) -> String {
    format!("{}.db/{}", config.project, config.table)
}

/// The store of an `s3://bucket/prefix` warehouse's table (`TunnelEndpoint` is the S3
/// endpoint, `AccessId`/`AccessKey` its credentials), its prefix ending at the table folder.
/// No request is made yet.
pub fn table_store(config: &OdpsConfig) -> Result<crate::sinks::objstore::Store, SinkError> {
    use crate::sinks::objstore::{Store, StoreSpec};
    let Warehouse::S3 { bucket, prefix } = Warehouse::parse(&config.odps_endpoint)? else {
        return Err(SinkError::config(format!(
            "OdpsEndpoint {:?} is not an s3://bucket/prefix warehouse",
            config.odps_endpoint
        )));
    };
    let table = table_path(config);
    let prefix = if prefix.is_empty() {
        table
    } else {
        format!("{prefix}/{table}")
    };
    let spec = StoreSpec::s3(&config.tunnel_endpoint, &bucket, &prefix)
        .map_err(|e| {
            SinkError::config(format!(
                "SINK_ODPS TunnelEndpoint (the S3 endpoint of an s3:// warehouse): {e}"
            ))
        })?
        .with_credentials(&config.access_id, &config.access_key);
    Store::open(&spec, &crate::sinks::tls::current())
}

/// Escapes a partition value as Hive does (`%XX` for path-unsafe characters).
pub fn escape_partition_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() || "\"#%'*/:=?\\{}[]^".contains(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// How a record's partition is found.
#[derive(Debug, Clone)]
enum Source {
    SystemTime,
    /// Index of `event_time` in the columns.
    EventTime(usize),
    /// Index of each partition column's field in the columns.
    UserDefine(Vec<usize>),
}

/// Computes the Hive partition path (`ds=20261124/hh=18/mm=30`) of each record.
#[derive(Debug, Clone)]
pub struct Partitioner {
    source: Source,
    /// (column, time format) in order.
    columns: Vec<(String, String)>,
    window_ms: i64,
    zone: Tz,
}

impl Partitioner {
    pub fn new(
        config: &OdpsConfig,
        columns: &Columns,
        zone: Tz,
        minute_ms: i64,
    ) -> Result<Partitioner, SinkError> {
        let find = |name: &str| {
            columns
                .names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(name))
        };
        let source = match config.partition_mode {
            PartitionMode::SystemTime => Source::SystemTime,
            PartitionMode::EventTime => match find(EVENT_TIME_FIELD) {
                Some(i) if columns.types[i] == FieldType::Timestamp => Source::EventTime(i),
                _ => {
                    return Err(SinkError::config(format!(
                        "PartitionMode EVENT_TIME needs a TIMESTAMP field named \
                         {EVENT_TIME_FIELD:?} among the connector's ColumnFields"
                    )))
                }
            },
            PartitionMode::UserDefine => Source::UserDefine(
                config
                    .partition_config
                    .iter()
                    .map(|(name, _)| {
                        find(name).ok_or_else(|| {
                            SinkError::config(format!(
                                "PartitionMode USER_DEFINE: partition column {name:?} is not \
                                 among the connector's ColumnFields"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        let minutes = config.time_range.unwrap_or(DEFAULT_TIME_RANGE_MINUTES);
        Ok(Partitioner {
            source,
            columns: config.partition_config.clone(),
            window_ms: minutes.max(1) * minute_ms.max(1),
            zone,
        })
    }

    /// The partition columns' names (kept out of the data files: they are in the path).
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|(n, _)| n.as_str())
    }

    /// The window (ms) records are partitioned by in the time modes.
    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// The partition path of a record, `""` for a table without partition columns.
    pub fn path_of(&self, record: &SinkRecord) -> Result<String, String> {
        if self.columns.is_empty() {
            return Ok(String::new());
        }
        let values = match &record.data {
            SinkData::Tuple(v) => v.as_slice(),
            SinkData::Blob(_) => &[],
        };
        let time_ms = self.time_of(record)?;
        let mut parts = Vec::with_capacity(self.columns.len());
        match (time_ms, &self.source) {
            (Some(ms), _) => return Ok(self.window_path(&self.window_start(ms)?)),
            (None, Source::UserDefine(idx)) => {
                for ((name, _), i) in self.columns.iter().zip(idx) {
                    let text = match values.get(*i) {
                        None | Some(Value::Null) => {
                            return Err(format!("partition field {name:?} is null"))
                        }
                        Some(v) => value_text(v),
                    };
                    if text.is_empty() {
                        return Err(format!("partition field {name:?} is empty"));
                    }
                    parts.push(format!("{name}={}", escape_partition_value(&text)));
                }
            }
            (None, _) => unreachable!("only USER_DEFINE has no time"),
        }
        Ok(parts.join("/"))
    }

    /// The time (ms) that places `record` in a window: None for USER_DEFINE or a table
    /// without partition columns.
    pub fn time_of(&self, record: &SinkRecord) -> Result<Option<i64>, String> {
        if self.columns.is_empty() {
            return Ok(None);
        }
        Ok(match &self.source {
            Source::SystemTime => Some(record.system_time),
            Source::EventTime(i) => match &record.data {
                SinkData::Tuple(v) => match v.get(*i) {
                    Some(Value::Int(us)) => Some(us.div_euclid(1000)),
                    _ => return Err(format!("{EVENT_TIME_FIELD} is null or missing")),
                },
                SinkData::Blob(_) => return Err(format!("{EVENT_TIME_FIELD} is null or missing")),
            },
            Source::UserDefine(_) => None,
        })
    }

    /// The partition path of the window starting at `start` (time modes).
    pub fn window_path(&self, start: &DateTime<Tz>) -> String {
        self.columns
            .iter()
            .map(|(name, format)| {
                let value = start.format(format).to_string();
                format!("{name}={}", escape_partition_value(&value))
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The start of the window holding `ms`, in the partition time zone (windows are aligned
    /// on the local clock, so `mm=00/15/30/45` and `hh` follow the zone).
    pub fn window_start(&self, ms: i64) -> Result<DateTime<Tz>, String> {
        let utc = Utc
            .timestamp_millis_opt(ms)
            .single()
            .ok_or_else(|| format!("time {ms} ms is out of range"))?;
        let local = utc.with_timezone(&self.zone);
        let offset_ms = (local.naive_local() - utc.naive_utc()).num_milliseconds();
        let local_ms = ms + offset_ms;
        let start_local_ms = local_ms - local_ms.rem_euclid(self.window_ms);
        let start = Utc
            .timestamp_millis_opt(start_local_ms - offset_ms)
            .single()
            .ok_or_else(|| format!("time {ms} ms is out of range"))?;
        Ok(start.with_timezone(&self.zone))
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Str(s) | Value::Decimal(s) => s.clone(),
    }
}

/// A record's position in its shard: (sequence, index in the batch-protocol entry).
pub type Position = (u64, u32);

/// A data file's name: `shard-<id>_<first>-<last>_batch-<start>[_late].parquet`, each
/// position as `<sequence>.<index>`: the shard, the first and last record of the file, the
/// first position of the delivery it came from (what tells a re-delivery from an offset
/// reset), and `_late` when it was written into a partition that already had `_SUCCESS` (so
/// that its rows are counted as late again when a crash lost the count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileName {
    pub shard: u32,
    pub first: Position,
    pub last: Position,
    pub batch: Position,
    pub late: bool,
}

impl FileName {
    pub fn render(&self) -> String {
        let p = |p: Position| format!("{}.{}", p.0, p.1);
        format!(
            "shard-{}_{}-{}_batch-{}{}.parquet",
            self.shard,
            p(self.first),
            p(self.last),
            p(self.batch),
            if self.late { "_late" } else { "" }
        )
    }

    pub fn parse(name: &str) -> Option<FileName> {
        let rest = name.strip_prefix("shard-")?.strip_suffix(".parquet")?;
        let (rest, late) = match rest.strip_suffix("_late") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let (shard, rest) = rest.split_once('_')?;
        let (range, batch) = rest.split_once("_batch-")?;
        let (first, last) = range.split_once('-')?;
        let pos = |s: &str| -> Option<Position> {
            let (a, b) = s.split_once('.')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        };
        Some(FileName {
            shard: shard.parse().ok()?,
            first: pos(first)?,
            last: pos(last)?,
            batch: pos(batch)?,
            late,
        })
    }

    pub fn holds(&self, p: Position) -> bool {
        self.first <= p && p <= self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(mode: &str, range: i64, pc: serde_json::Value) -> OdpsConfig {
        OdpsConfig::from_wire(&json!({"Project": "p", "Table": "t",
            "OdpsEndpoint": "file:///tmp/w", "TunnelEndpoint": "local",
            "PartitionMode": mode, "TimeRange": range, "PartitionConfig": pc.to_string()}))
        .unwrap()
    }

    fn rec(system_time: i64, values: Vec<Value>) -> SinkRecord {
        SinkRecord {
            shard_id: 0,
            sequence: 1,
            batch_index: 0,
            system_time,
            data: SinkData::Tuple(values),
            attributes: vec![],
        }
    }

    fn cols(names: &[&str], types: &[FieldType]) -> Columns {
        Columns {
            names: names.iter().map(|s| s.to_string()).collect(),
            types: types.to_vec(),
        }
    }

    #[test]
    fn warehouses_are_told_apart() {
        assert_eq!(
            Warehouse::parse("file:///data/w").unwrap(),
            Warehouse::Local("/data/w".into())
        );
        assert_eq!(
            Warehouse::parse("s3://b/x/y/").unwrap(),
            Warehouse::S3 {
                bucket: "b".into(),
                prefix: "x/y".into()
            }
        );
        assert!(matches!(
            Warehouse::parse("http://service.odps.aliyun.com/api").unwrap(),
            Warehouse::MaxCompute(_)
        ));
        assert!(Warehouse::parse("file://relative").is_err());
        assert!(Warehouse::parse("ftp://x").is_err());
    }

    #[test]
    fn system_time_windows_follow_the_formats_in_order() {
        let pc = json!([{"key":"ds","value":"%Y%m%d"},{"key":"hh","value":"%H"},{"key":"mm","value":"%M"}]);
        let p = Partitioner::new(
            &config("SYSTEM_TIME", 15, pc),
            &cols(&[], &[]),
            Tz::UTC,
            60_000,
        )
        .unwrap();
        // 2026-11-24 18:44:59.999 UTC
        let ms = 1_795_545_899_999;
        assert_eq!(
            p.path_of(&rec(ms, vec![])).unwrap(),
            "ds=20261124/hh=18/mm=30"
        );
        assert_eq!(
            p.path_of(&rec(ms + 1, vec![])).unwrap(),
            "ds=20261124/hh=18/mm=45"
        );
    }

    #[test]
    fn the_zone_moves_the_windows() {
        let pc = json!([{"key":"ds","value":"%Y%m%d"},{"key":"hh","value":"%H"}]);
        let zone: Tz = "Asia/Kolkata".parse().unwrap(); // +05:30
        let p = Partitioner::new(
            &config("SYSTEM_TIME", 60, pc),
            &cols(&[], &[]),
            zone,
            60_000,
        )
        .unwrap();
        // 2026-11-24 18:44:59 UTC = 2026-11-25 00:14:59 +05:30
        assert_eq!(
            p.path_of(&rec(1_795_545_899_000, vec![])).unwrap(),
            "ds=20261125/hh=00"
        );
    }

    #[test]
    fn event_time_and_user_define_read_fields() {
        let pc = json!([{"key":"ds","value":"%Y%m%d"}]);
        let c = cols(
            &["id", "event_time"],
            &[FieldType::Bigint, FieldType::Timestamp],
        );
        let p =
            Partitioner::new(&config("EVENT_TIME", 15, pc.clone()), &c, Tz::UTC, 60_000).unwrap();
        let r = rec(0, vec![Value::Int(1), Value::Int(1_795_545_899_000_000)]);
        assert_eq!(p.path_of(&r).unwrap(), "ds=20261124");
        assert!(p
            .path_of(&rec(0, vec![Value::Int(1), Value::Null]))
            .is_err());
        let no_field = cols(&["id"], &[FieldType::Bigint]);
        assert!(Partitioner::new(
            &config("EVENT_TIME", 15, pc.clone()),
            &no_field,
            Tz::UTC,
            60_000
        )
        .is_err());

        let c = cols(&["id", "ds"], &[FieldType::Bigint, FieldType::String]);
        let p =
            Partitioner::new(&config("USER_DEFINE", 15, pc.clone()), &c, Tz::UTC, 60_000).unwrap();
        let r = rec(0, vec![Value::Int(1), Value::Str("a/b=c".into())]);
        assert_eq!(p.path_of(&r).unwrap(), "ds=a%2Fb%3Dc");
        assert!(
            Partitioner::new(&config("USER_DEFINE", 15, pc), &no_field, Tz::UTC, 60_000).is_err()
        );
    }

    #[test]
    fn file_names_carry_shard_and_positions() {
        let f = FileName {
            shard: 3,
            first: (10, 0),
            last: (12, 4),
            batch: (9, 1),
            late: false,
        };
        let name = f.render();
        assert_eq!(name, "shard-3_10.0-12.4_batch-9.1.parquet");
        assert_eq!(FileName::parse(&name), Some(f));
        let late = FileName { late: true, ..f };
        assert_eq!(late.render(), "shard-3_10.0-12.4_batch-9.1_late.parquet");
        assert_eq!(FileName::parse(&late.render()), Some(late));
        assert!(f.holds((11, 9)) && f.holds((12, 4)) && !f.holds((12, 5)) && !f.holds((9, 9)));
        assert_eq!(FileName::parse(".tmp-x.parquet"), None);
    }
}
