//! A running server's state: opening the data directory (embedded mode) or joining the
//! cluster's shared PostgreSQL (cluster mode, [`Server::open_cluster`]), background
//! housekeeping, shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice_meta::MetaStore;
use tokio_util::sync::CancellationToken;

use crate::cluster::runtime::ClusterRuntime;
use crate::cluster::ClusterOptions;
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
        create_data_dir(data_dir)?;
        let meta = MetaStore::open(&data_dir.join("meta.db")).await?;
        // issue 15: accounts — the stored access keys, sealed with the data dir's server key.
        let accounts = accounts.with_keys(crate::accounts::open(meta.clone(), data_dir).await?);
        let catalog = Arc::new(Catalog::load(meta, config.clone(), data_dir).await?);
        Server::start(catalog, config, accounts).await
    }

    // issue 14: cluster
    /// Joins the cluster: metadata in the shared PostgreSQL (`MetaStore::connect`), every shard
    /// on the shared log, the access keys sealed with the shared server key file, and the
    /// catalog following other nodes' changes. `data_dir` is scratch only. `options` are
    /// validated here.
    pub async fn open_cluster(
        options: &ClusterOptions,
        data_dir: &Path,
        config: ServerConfig,
        accounts: Accounts,
    ) -> Result<Server> {
        options.validate()?;
        create_data_dir(data_dir)?;
        // The key first: a node that cannot seal like the others must not join.
        let sealer = crate::accounts::sealing::ServerKey::load_file(&options.server_key_file)?;
        let meta = MetaStore::connect(&options.url).await.map_err(|e| {
            Error::Internal(format!(
                "cannot open the cluster metadata at {}: {e}",
                crate::cluster::redacted_url(&options.url)
            ))
        })?;
        let runtime = ClusterRuntime::connect(options).await?;
        let keys = crate::accounts::keys::KeyRegistry::load(meta.clone(), sealer).await?;
        let accounts = accounts.with_keys(Arc::new(keys));
        let catalog = Arc::new(
            Catalog::load_with(meta, config.clone(), data_dir, Some(runtime.clone())).await?,
        );
        // issue 14: part B — connectors run only on the node holding their lease.
        catalog.connectors.set_clustered(&options.advertise);
        let mut server = Server::start(catalog.clone(), config, accounts).await?;
        crate::cluster::work::start(&catalog, options.work_leases).await?;
        server
            .tasks
            .push(tokio::spawn(crate::service::catalog_refresh::run(
                catalog.clone(),
                options.catalog_poll,
                server.stop.clone(),
            )));
        if let Some(archiver) = runtime.archiver.clone() {
            server
                .tasks
                .push(tokio::spawn(crate::cluster::archiving::run(
                    catalog,
                    archiver,
                    options.archive_every,
                    server.stop.clone(),
                )));
        }
        Ok(server)
    }

    /// What both modes start once the catalog is loaded.
    async fn start(
        catalog: Arc<Catalog>,
        config: ServerConfig,
        accounts: Accounts,
    ) -> Result<Server> {
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
    /// In the cluster mode: connectors first, then the background tasks; the shared log's
    /// appends in flight are awaited (never cancelled: sluice-cluster `PgLog::shutdown`) and
    /// this node's leases released, so other nodes take its work at once.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.state.catalog.stop_connectors().await;
        for t in self.tasks {
            let _ = t.await;
        }
        let catalog = self.state.catalog.clone();
        if let Some(cluster) = &catalog.cluster {
            // issue 14: part B — hand this node's subscriptions and connectors over at once.
            if let Some(ownership) = cluster.ownership.get() {
                ownership.shutdown().await;
            }
            cluster.log.shutdown().await;
            if let Err(e) = cluster.leases.release_all().await {
                tracing::warn!(error = %e, "releasing this node's leases at shutdown failed");
            }
            return;
        }
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

fn create_data_dir(data_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Error::Internal(format!(
            "cannot create data dir {}: {e}",
            data_dir.display()
        ))
    })
}
