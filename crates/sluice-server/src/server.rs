//! A running server's state: opening the data directory, background housekeeping, shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice_meta::MetaStore;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::http::{auth::Accounts, AppState};
use crate::service::{retention, Catalog, Error, Result};

/// The open data directory and the tasks that keep it tidy.
pub struct Server {
    pub state: AppState,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Opens (or creates) a data directory: the meta store and every shard's log.
    pub async fn open(data_dir: &Path, config: ServerConfig, accounts: Accounts) -> Result<Server> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            Error::Internal(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let meta = MetaStore::open(&data_dir.join("meta.db")).await?;
        // issue 15: accounts — the stored access keys, sealed with the data dir's server key.
        let accounts = accounts.with_keys(crate::accounts::open(meta.clone(), data_dir).await?);
        let catalog = Arc::new(Catalog::load(meta, config.clone(), data_dir).await?);
        // issue 13: metrics — fsync latency and group size of every shard log.
        crate::metrics::install_log_observer(&catalog.metrics);
        // issue 9: tls — the connectors' TLS policy, process-wide, before any connector runs.
        sluice_connect::sinks::tls::install(
            config
                .connector_tls_policy()
                .map_err(|e| Error::Internal(e.to_string()))?,
        );
        // issue 10: lake — SINK_ODPS's time zone and window scale, process-wide.
        #[cfg(feature = "sink-odps")]
        sluice_connect::sinks::odps::configure(config.lake_settings());
        catalog.start_connectors().await?;
        let stop = CancellationToken::new();
        let retention = tokio::spawn(retention::run(
            catalog.clone(),
            Duration::from_secs(config.retention_check_interval_secs),
            stop.clone(),
        ));
        let mut tasks = vec![retention];
        // issue 10: lake — _SUCCESS markers of SINK_ODPS tables.
        #[cfg(feature = "sink-odps")]
        tasks.push(tokio::spawn(crate::service::lake_markers::run(
            catalog.clone(),
            stop.clone(),
        )));
        if config.fsync == crate::config::FsyncPolicy::Interval {
            tasks.push(tokio::spawn(retention::run_flusher(
                catalog.clone(),
                Duration::from_millis(config.fsync_interval_ms),
                stop.clone(),
            )));
        }
        Ok(Server {
            state: AppState {
                catalog,
                accounts: Arc::new(accounts),
                budget: crate::http::budget::MemoryBudget::new(config.max_inflight_bytes),
            },
            stop,
            tasks,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.state.catalog.data_dir.clone()
    }

    /// Stops background tasks and closes every log (synced, with its clean-shutdown marker).
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.state.catalog.stop_connectors().await;
        for t in self.tasks {
            let _ = t.await;
        }
        let catalog = self.state.catalog.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for topic in catalog.all_topics() {
                for shard in topic.shards.read().iter() {
                    if let Err(e) = shard.log.close() {
                        tracing::warn!(shard = shard.id, error = %e, "closing a log at shutdown failed");
                    }
                }
            }
        })
        .await;
    }
}
