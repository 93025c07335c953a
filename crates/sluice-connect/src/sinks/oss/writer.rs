//! The SINK_OSS writer: each delivery becomes one object per time window (rotated by size),
//! written with one PUT (or a completed multipart upload) through `sinks/objstore.rs`.
//!
//! Object names are deterministic, so a re-delivery after a crash overwrites instead of
//! duplicating when it starts and ends at the same positions; when it ends elsewhere, the
//! leftover object of the crashed attempt is deleted once the new one is visible
//! (`remove_stale`), so no row stays twice:
//!
//! `<Prefix>/<window start formatted with TimeFormat>/<shard>_<first seq>.<first index>_<last seq>.<last index>.csv`
//!
//! The window is `TimeRange` minutes, taken from each record's system time (when it was
//! written to the topic, UTC), so a record always lands in the same directory. Sequences are
//! zero-padded to 20 digits so names sort in write order. `.csv` for TUPLE topics, `.bin` for
//! BLOB topics; the content is described in `format.rs`.
//!
//! An object appears complete or not at all; `flush` returns Ok only once every object of the
//! delivery is visible, so the checkpoint never passes a record that is not in the store.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};

use crate::sink::{SharedColumns, Sink, SinkData, SinkError, SinkRecord};
use crate::sinks::objstore::{Store, StoreSpec};
use crate::sinks::tls;
use crate::sinks::wire::AuthMode;

use super::{format, OssConfig};

/// A window's object is closed and a new one started past this size.
pub const ROTATE_BYTES: usize = 64 << 20;

/// What an STS connector's tasks report.
pub const STS_MESSAGE: &str = "AuthMode sts is not available self-hosted (there is no STS to \
     issue temporary credentials): set AuthMode ak with the bucket's AccessId and AccessKey";

/// Opens a SINK_OSS task's sink and checks that the bucket answers ([`Store::check`]).
pub async fn open(cfg: OssConfig, columns: SharedColumns) -> Result<Box<dyn Sink>, SinkError> {
    let sink = OssSink::new(&cfg, columns)?;
    sink.store.check().await?;
    Ok(Box::new(sink))
}

/// One object being assembled.
struct Part {
    first: (u64, u32),
    last: (u64, u32),
    shard: u32,
    data: Vec<u8>,
}

pub struct OssSink {
    store: Store,
    time_format: String,
    /// Window length, ms.
    window_ms: i64,
    blob: bool,
    rotate_bytes: usize,
    /// Objects of the current delivery, by window start (ms).
    parts: BTreeMap<i64, Vec<Part>>,
}

impl OssSink {
    /// Checks the config (auth, time format, endpoint) and builds the client; no request yet.
    pub fn new(cfg: &OssConfig, columns: SharedColumns) -> Result<OssSink, SinkError> {
        if cfg.auth.mode == AuthMode::Sts {
            return Err(SinkError::config(STS_MESSAGE.to_string()));
        }
        if cfg.auth.access_id.is_empty() {
            return Err(SinkError::config(
                "AuthMode ak needs Config.AccessId and Config.AccessKey".to_string(),
            ));
        }
        check_time_format(&cfg.time_format)?;
        let spec = StoreSpec::s3(&cfg.endpoint, &cfg.bucket, &cfg.prefix)
            .map_err(|e| SinkError::config(format!("SINK_OSS Endpoint/Bucket: {e}")))?
            .with_credentials(&cfg.auth.access_id, &cfg.auth.access_key);
        let store = Store::open(&spec, &tls::current())?;
        Ok(OssSink {
            store,
            time_format: cfg.time_format.clone(),
            window_ms: cfg.time_range.saturating_mul(60_000).max(1),
            blob: columns.names.is_empty(),
            rotate_bytes: ROTATE_BYTES,
            parts: BTreeMap::new(),
        })
    }

    /// Rotates objects at `bytes` instead of [`ROTATE_BYTES`] (tests).
    pub fn rotate_at(mut self, bytes: usize) -> OssSink {
        self.rotate_bytes = bytes.max(1);
        self
    }

    /// The directory (below the prefix) of the window holding `system_time` (ms).
    pub fn window_dir(&self, system_time: i64) -> String {
        let start = system_time.div_euclid(self.window_ms) * self.window_ms;
        let at = DateTime::<Utc>::from_timestamp_millis(start).unwrap_or_default();
        at.format(&self.time_format).to_string()
    }

    fn key(&self, window: i64, p: &Part) -> String {
        format!(
            "{}/{}_{:020}.{}_{:020}.{}.{}",
            self.window_dir(window).trim_matches('/'),
            p.shard,
            p.first.0,
            p.first.1,
            p.last.0,
            p.last.1,
            if self.blob { "bin" } else { "csv" }
        )
    }
}

/// A record's position: (sequence, index in the batch).
type Pos = (u64, u32);
/// A written object: key, shard, first and last position.
type Written = (String, u32, Pos, Pos);

impl OssSink {
    /// After a crash, the batch in flight is delivered again from the checkpoint, maybe with
    /// other boundaries: an object of the same shard and window that starts inside a range just
    /// written is a leftover of that attempt; deleting it (once the new objects are visible)
    /// leaves every row once. Normal operation never overlaps, so this only lists.
    async fn remove_stale(&self, window: i64, written: &[Written]) -> Result<(), SinkError> {
        let dir = self.window_dir(window);
        let dir = dir.trim_matches('/');
        for name in self.store.list_names(dir).await? {
            let Some((shard, first, _)) = parse_name(&name) else {
                continue;
            };
            let key = format!("{dir}/{name}");
            // It starts inside a range just written: its rows from there on are either in the
            // new objects or still to come (they are past the checkpoint). An object starting
            // before the range (an offset reset backwards) holds rows that will not come again.
            let stale = written
                .iter()
                .any(|(k, s, f, l)| *s == shard && *k != key && *f <= first && first <= *l);
            if stale {
                self.store.delete(&key).await?;
            }
        }
        Ok(())
    }
}

/// `<shard>_<seq>.<index>_<seq>.<index>.<ext>` → (shard, first, last).
fn parse_name(name: &str) -> Option<(u32, Pos, Pos)> {
    let (stem, _ext) = name.rsplit_once('.')?;
    let mut it = stem.splitn(3, '_');
    let shard = it.next()?.parse().ok()?;
    let pos = |t: &str| -> Option<Pos> {
        let (q, i) = t.split_once('.')?;
        Some((q.parse().ok()?, i.parse().ok()?))
    };
    Some((shard, pos(it.next()?)?, pos(it.next()?)?))
}

/// A time format chrono cannot render would panic later: refuse it now.
fn check_time_format(f: &str) -> Result<(), SinkError> {
    if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
        return Err(SinkError::config(format!(
            "Config.TimeFormat {f:?} is not a valid strftime format (e.g. %Y%m%d%H%M)"
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl Sink for OssSink {
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError> {
        for r in records {
            let window = r.system_time.div_euclid(self.window_ms) * self.window_ms;
            let at = (r.sequence, r.batch_index);
            let parts = self.parts.entry(window).or_default();
            let open = parts
                .last()
                .is_some_and(|p| p.shard == r.shard_id && p.data.len() < self.rotate_bytes);
            if !open {
                parts.push(Part {
                    first: at,
                    last: at,
                    shard: r.shard_id,
                    data: Vec::new(),
                });
            }
            let part = parts.last_mut().expect("pushed above");
            if let (SinkData::Tuple(_), true) | (SinkData::Blob(_), false) = (&r.data, self.blob) {
                // Columns and payload disagree: the topic changed under the task.
                self.parts.clear();
                return Err(SinkError::config(
                    "the topic's record type does not match the connector's columns".to_string(),
                ));
            }
            format::encode(&r.data, &mut part.data);
            part.last = at;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let parts = std::mem::take(&mut self.parts);
        for (window, list) in parts {
            let mut written = Vec::with_capacity(list.len());
            for p in list {
                let key = self.key(window, &p);
                self.store.put(&key, Bytes::from(p.data)).await?;
                written.push((key, p.shard, p.first, p.last));
            }
            self.remove_stale(window, &written).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Columns;
    use crate::sinks::wire::Auth;
    use crate::sinks::Secret;
    use std::sync::Arc;

    fn cfg(mode: AuthMode, time_format: &str) -> OssConfig {
        OssConfig {
            endpoint: "http://127.0.0.1:9".into(),
            bucket: "b".into(),
            prefix: "p".into(),
            time_format: time_format.into(),
            time_range: 15,
            auth: Auth {
                mode,
                access_id: "ak".into(),
                access_key: Secret::new("sk"),
            },
        }
    }

    fn cols() -> SharedColumns {
        Arc::new(Columns {
            names: vec!["a".into()],
            types: vec![sluice_proto::FieldType::Bigint],
        })
    }

    #[test]
    fn sts_and_bad_formats_are_refused_with_the_reason() {
        let e = OssSink::new(&cfg(AuthMode::Sts, "%Y"), cols())
            .err()
            .unwrap();
        assert_eq!(e.kind(), crate::sink::ErrorKind::Config);
        assert!(e.message().contains("STS"), "{e}");
        let e = OssSink::new(&cfg(AuthMode::Ak, "%Y%Q"), cols())
            .err()
            .unwrap();
        assert!(e.message().contains("TimeFormat"), "{e}");
    }

    #[test]
    fn windows_start_on_time_range_boundaries() {
        let sink = OssSink::new(&cfg(AuthMode::Ak, "%Y%m%d/%H%M"), cols()).unwrap();
        // 2023-11-14T22:13:20Z falls in the 22:00-22:15 window.
        assert_eq!(sink.window_dir(1_700_000_000_000), "20231114/2200");
        assert_eq!(
            sink.window_dir(1_700_000_000_000 - 800_001),
            "20231114/2145"
        );
        let p = Part {
            first: (3, 0),
            last: (9, 2),
            shard: 1,
            data: vec![],
        };
        assert_eq!(
            sink.key(1_700_000_000_000, &p),
            "20231114/2200/1_00000000000000000003.0_00000000000000000009.2.csv"
        );
        assert_eq!(
            parse_name("1_00000000000000000003.0_00000000000000000009.2.csv"),
            Some((1, (3, 0), (9, 2)))
        );
        assert_eq!(parse_name(".tmp.1.internal.part"), None);
    }
}
