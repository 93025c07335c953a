//! `_SUCCESS` markers of a SINK_ODPS table: written into a time partition once the
//! connector's done time has passed the partition's end (SYSTEM_TIME), or its end plus a
//! lateness allowance (EVENT_TIME). USER_DEFINE partitions carry no time and get none.
//!
//! The server calls [`mark`] periodically for every running SINK_ODPS connector with the
//! connector's done time: every record with an earlier system time is then in a visible file
//! (the checkpoint moves only after that), so for SYSTEM_TIME no row can arrive after the
//! marker. Windows are walked from a per-table watermark kept in memory (at start, up to
//! [`FIRST_LOOKBACK_WINDOWS`] windows back); a window without a partition folder has no rows
//! and gets no marker. A marker is an empty file written under a hidden name and renamed; in
//! an `s3://` warehouse it is an empty object (a partition "folder" exists when its prefix
//! holds objects). [`mark`] is blocking (the server runs it with `spawn_blocking`); for an
//! `s3://` warehouse it drives the requests on the calling runtime's handle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::layout::{table_path, Partitioner, Warehouse};
use super::{LakeSettings, OdpsConfig, PartitionMode};
use crate::sink::Columns;

/// The marker's file name (Hadoop's convention, read by Spark and Airflow sensors).
pub const SUCCESS: &str = "_SUCCESS";
/// How far back the first pass of a table looks for unmarked partitions.
pub const FIRST_LOOKBACK_WINDOWS: i64 = 7 * 24 * 4;

/// Per table folder: the end of the last window already considered.
static WATERMARKS: Mutex<Option<HashMap<PathBuf, i64>>> = Mutex::new(None);

/// Writes the `_SUCCESS` markers that `done_time` (ms) allows; returns the partitions marked.
/// `lateness_ms` is the EVENT_TIME allowance (None: one window).
pub fn mark(
    config: &OdpsConfig,
    columns: &Columns,
    done_time: i64,
    settings: LakeSettings,
    lateness_ms: Option<i64>,
) -> std::io::Result<Vec<String>> {
    let allowance = match config.partition_mode {
        PartitionMode::UserDefine => return Ok(vec![]),
        PartitionMode::SystemTime => 0,
        PartitionMode::EventTime => -1,
    };
    if config.partition_config.is_empty() {
        return Ok(vec![]);
    }
    let backend = match Warehouse::parse(&config.odps_endpoint) {
        Ok(Warehouse::Local(root)) => Backend::Local(root.join(table_path(config))),
        Ok(Warehouse::S3 { .. }) => {
            let Ok(handle) = tokio::runtime::Handle::try_current() else {
                return Ok(vec![]);
            };
            let store = super::layout::table_store(config).map_err(std::io::Error::other)?;
            Backend::Remote(handle, store)
        }
        _ => return Ok(vec![]),
    };
    let Ok(partitioner) = Partitioner::new(config, columns, settings.zone, settings.minute_ms)
    else {
        return Ok(vec![]);
    };
    let window = partitioner.window_ms();
    let allowance = if allowance < 0 {
        lateness_ms.unwrap_or(window)
    } else {
        0
    };
    let table = backend.key();
    let limit = done_time - allowance; // a window ending at or before this is complete
    let mut marks = WATERMARKS.lock().unwrap_or_else(|e| e.into_inner());
    let marks = marks.get_or_insert_with(HashMap::new);
    let from = marks
        .get(&table)
        .copied()
        .unwrap_or(limit - FIRST_LOOKBACK_WINDOWS * window);
    let mut marked = vec![];
    let Ok(mut start) = partitioner.window_start(from) else {
        return Ok(marked);
    };
    loop {
        let s = start.timestamp_millis();
        let end = s + window;
        if end > limit {
            break;
        }
        let path = partitioner.window_path(&start);
        if backend.mark_partition(&path)? {
            marked.push(path);
        }
        marks.insert(table.clone(), end);
        match partitioner.window_start(end) {
            Ok(next) => start = next,
            Err(_) => break,
        }
    }
    Ok(marked)
}

enum Backend {
    /// The table folder.
    Local(PathBuf),
    /// The table's store, driven from a blocking thread.
    Remote(tokio::runtime::Handle, crate::sinks::objstore::Store),
}

impl Backend {
    /// The watermark key of the table.
    fn key(&self) -> PathBuf {
        match self {
            Backend::Local(table) => table.clone(),
            Backend::Remote(_, store) => PathBuf::from(store.describe()),
        }
    }

    /// Writes the partition's marker if it has files and no marker yet; true if written.
    fn mark_partition(&self, path: &str) -> std::io::Result<bool> {
        match self {
            Backend::Local(table) => {
                let dir = table.join(path);
                if dir.is_dir() && !dir.join(SUCCESS).exists() {
                    write_marker(&dir)?;
                    return Ok(true);
                }
                Ok(false)
            }
            Backend::Remote(handle, store) => handle.block_on(async {
                let names = store
                    .list_names(path)
                    .await
                    .map_err(std::io::Error::other)?;
                if names.is_empty() || names.iter().any(|n| n == SUCCESS) {
                    return Ok(false);
                }
                store
                    .put(&format!("{path}/{SUCCESS}"), bytes::Bytes::new())
                    .await
                    .map_err(std::io::Error::other)?;
                Ok(true)
            }),
        }
    }
}

/// Whether a partition of an `s3://` table already has its marker (an unreachable store
/// says no: the answer only decides a warning).
pub async fn is_marked_remote(store: &crate::sinks::objstore::Store, partition: &str) -> bool {
    let key = super::writer::object_key(partition, SUCCESS);
    store.inner().head(&store.path(&key)).await.is_ok()
}

fn write_marker(dir: &Path) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{SUCCESS}.tmp"));
    std::fs::File::create(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(SUCCESS))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Whether a partition folder already has its marker (a row written there now is late).
pub fn is_marked(dir: &Path) -> bool {
    dir.join(SUCCESS).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(root: &Path, mode: &str) -> OdpsConfig {
        OdpsConfig::from_wire(&json!({"Project": "p", "Table": "t",
            "OdpsEndpoint": format!("file://{}", root.display()), "TunnelEndpoint": "local",
            "PartitionMode": mode, "TimeRange": 15,
            "PartitionConfig": json!([{"key":"ds","value":"%Y%m%d"},{"key":"hm","value":"%H%M"}]).to_string()}))
        .unwrap()
    }

    fn columns() -> Columns {
        Columns {
            names: vec!["event_time".into()],
            types: vec![sluice_proto::FieldType::Timestamp],
        }
    }

    const MIN: i64 = 60_000;
    /// 2026-11-24 18:00:00 UTC.
    const T0: i64 = 1_795_543_200_000;

    #[test]
    fn markers_follow_the_done_time_exactly() {
        for (mode, allowance) in [("SYSTEM_TIME", 0), ("EVENT_TIME", 15 * MIN)] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config(dir.path(), mode);
            let table = dir.path().join("p.db/t");
            for hm in ["1800", "1815", "1830"] {
                std::fs::create_dir_all(table.join(format!("ds=20261124/hm={hm}"))).unwrap();
            }
            let s = LakeSettings::default();
            // Just before the end of 18:15-18:30 (+ allowance): only 18:00 is complete.
            let got = mark(&cfg, &columns(), T0 + 30 * MIN - 1 + allowance, s, None).unwrap();
            assert_eq!(got, vec!["ds=20261124/hm=1800"], "{mode}");
            assert!(table.join("ds=20261124/hm=1800/_SUCCESS").exists());
            assert!(!table.join("ds=20261124/hm=1815/_SUCCESS").exists());
            let got = mark(&cfg, &columns(), T0 + 30 * MIN + allowance, s, None).unwrap();
            assert_eq!(got, vec!["ds=20261124/hm=1815"], "{mode}");
            // 18:45 has no folder (no rows): nothing to mark; 18:30 is marked once.
            let got = mark(&cfg, &columns(), T0 + 60 * MIN + allowance, s, None).unwrap();
            assert_eq!(got, vec!["ds=20261124/hm=1830"], "{mode}");
            assert!(mark(&cfg, &columns(), T0 + 90 * MIN + allowance, s, None)
                .unwrap()
                .is_empty());
        }
        // The EVENT_TIME allowance is configurable: a shorter or longer one moves the marker.
        for allowance in [2 * MIN, 40 * MIN] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config(dir.path(), "EVENT_TIME");
            let table = dir.path().join("p.db/t");
            std::fs::create_dir_all(table.join("ds=20261124/hm=1800")).unwrap();
            let s = LakeSettings::default();
            let end = T0 + 15 * MIN;
            let got = mark(&cfg, &columns(), end + allowance - 1, s, Some(allowance)).unwrap();
            assert!(got.is_empty(), "marked {allowance} ms early: {got:?}");
            let got = mark(&cfg, &columns(), end + allowance, s, Some(allowance)).unwrap();
            assert_eq!(got, vec!["ds=20261124/hm=1800"], "allowance {allowance}");
        }
        let dir = tempfile::tempdir().unwrap();
        let user = config(dir.path(), "USER_DEFINE");
        let cols = Columns {
            names: vec!["ds".into(), "hm".into()],
            types: vec![sluice_proto::FieldType::String; 2],
        };
        assert!(mark(&user, &cols, T0 * 2, LakeSettings::default(), None)
            .unwrap()
            .is_empty());
    }
}
