//! `sluice serve`: open the data directory, settle the root credentials, listen, and shut down
//! cleanly on SIGTERM or SIGINT (stop accepting, finish in-flight requests, close what is still
//! open after `shutdown_deadline_ms`, flush, exit 0).
//!
//! At start it raises the soft open-file limit to the hard one, and keeps the data dir private:
//! umask 077 for everything it creates, and existing files made 0600 (directories 0700).
//!
//! With `--tls-cert` and `--tls-key` (or the config keys `tls_cert`/`tls_key`; the flags win)
//! it serves HTTPS; a certificate or key that cannot be served stops the start, naming the file.
//! Plain HTTP on an address other than loopback is served with a warning.
//!
//! Prometheus `/metrics` is served unsigned on its own listener (`metrics_listen`, by default
//! 127.0.0.1:9464; `""` turns it off), never on the API's address.
//!
//! Cluster mode (issue 14): `--cluster postgres://...` keeps metadata and records in a shared
//! PostgreSQL (every node the same), `--archive s3://...` adds the archive. It needs
//! `--server-key-file` (the key all nodes seal stored access keys with) and the root
//! credentials given (never generated per node); `--data-dir` is scratch. A URL without
//! `sslmode` to a host other than loopback is served with a warning; the password never
//! reaches a log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use rand::distributions::Alphanumeric;
use rand::Rng;
use sluice_server::cluster::ClusterOptions;
use sluice_server::http::{listen, tls};
use sluice_server::{app, Accounts, Server, ServerConfig};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Where metadata and shard logs live.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    data_dir: PathBuf,
    /// Root AccessId (with --access-key or --access-key-file). Without them, one is generated on first start and kept in the data dir.
    #[arg(long, env = "SLUICE_ACCESS_ID", requires = "access_key")]
    access_id: Option<String>,
    /// Root AccessKey secret (visible in the process list: prefer the env var or --access-key-file).
    #[arg(
        long,
        env = "SLUICE_ACCESS_KEY",
        requires = "access_id",
        conflicts_with = "access_key_file",
        hide_env_values = true
    )]
    access_key: Option<String>,
    /// File whose first line is the root AccessKey secret (with --access-id).
    #[arg(long, env = "SLUICE_ACCESS_KEY_FILE", requires = "access_id")]
    access_key_file: Option<PathBuf>,
    /// TOML file with limits, fsync mode and housekeeping intervals.
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "SLUICE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SLUICE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    // issue 14: cluster
    /// Cluster mode: metadata and records in this shared PostgreSQL
    /// (postgres://user:password@host:port/db[?sslmode=...]).
    #[arg(long, env = "SLUICE_CLUSTER", hide_env_values = true)]
    cluster: Option<String>,
    /// Cluster mode: archive older records to s3://bucket/prefix?endpoint=URL (S3 keys in
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "SLUICE_ARCHIVE", requires = "cluster")]
    archive: Option<String>,
    /// Cluster mode: this node's id (default: <hostname>-<listen port>).
    #[arg(long, env = "SLUICE_NODE_ID", requires = "cluster")]
    node_id: Option<String>,
    /// Cluster mode: host:port where other nodes reach this one (default: the listen address).
    #[arg(long, env = "SLUICE_ADVERTISE", requires = "cluster")]
    advertise: Option<String>,
    /// Cluster mode: the server key file all nodes share (32 bytes: raw, hex or base64).
    #[arg(long, env = "SLUICE_SERVER_KEY_FILE", requires = "cluster")]
    server_key_file: Option<PathBuf>,
}

/// The cluster settings of the flags, if `--cluster` is given; refuses what the cluster mode
/// cannot run with (naming the flag).
fn cluster_options(args: &ServeArgs) -> anyhow::Result<Option<ClusterOptions>> {
    let Some(url) = &args.cluster else {
        return Ok(None);
    };
    let Some(key_file) = &args.server_key_file else {
        bail!("--cluster needs --server-key-file: every node must seal stored access keys with the same key");
    };
    if args.access_id.is_none() {
        bail!("--cluster needs the root credentials (--access-id with --access-key or --access-key-file): they are not generated per node");
    }
    let node_id = match &args.node_id {
        Some(id) => id.clone(),
        None => format!("{}-{}", hostname(), args.listen.port()),
    };
    let advertise = args
        .advertise
        .clone()
        .unwrap_or_else(|| args.listen.to_string());
    let mut options = ClusterOptions::new(url.clone(), node_id, advertise, key_file.clone());
    options.archive = args.archive.clone();
    if options.archive.is_some() {
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        options.archive_keys = Some(sluice_server::cluster::ArchiveCredentials {
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
        });
    }
    let unencrypted = options.validate()?;
    if unencrypted {
        tracing::warn!(
            cluster = %sluice_server::cluster::redacted_url(url),
            "the --cluster URL has no sslmode and reaches a host other than loopback: the \
             connection may be unencrypted; add ?sslmode=verify-full (or require)"
        );
    }
    Ok(Some(options))
}

/// This machine's host name (for the default node id).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

const CREDENTIALS_FILE: &str = "root-credentials";

/// The root key pair: given, or kept in the data dir, or generated now and kept.
fn credentials(args: &ServeArgs) -> anyhow::Result<(String, String, bool)> {
    if let Some(path) = &args.access_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --access-key-file {}", path.display()))?;
        let key = text.lines().next().unwrap_or("").trim();
        let id = args.access_id.as_deref().unwrap_or("").trim();
        if id.is_empty() || key.is_empty() {
            bail!(
                "--access-id must not be empty, and the first line of {} must hold the AccessKey",
                path.display()
            );
        }
        return Ok((id.to_string(), key.to_string(), false));
    }
    if let (Some(id), Some(key)) = (&args.access_id, &args.access_key) {
        if id.trim().is_empty() || key.trim().is_empty() {
            bail!("--access-id and --access-key must not be empty");
        }
        if std::env::var("SLUICE_ACCESS_KEY").ok().as_ref() != Some(key) {
            tracing::warn!(
                "the root AccessKey was given on the command line, where other users of this \
                 machine can read it in the process list; prefer SLUICE_ACCESS_KEY or --access-key-file"
            );
        }
        return Ok((id.trim().to_string(), key.trim().to_string(), false));
    }
    let path = args.data_dir.join(CREDENTIALS_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut lines = text.lines();
        if let (Some(id), Some(key)) = (lines.next(), lines.next()) {
            return Ok((id.to_string(), key.to_string(), false));
        }
        bail!(
            "{} is damaged: expected the AccessId and AccessKey on two lines",
            path.display()
        );
    }
    let random = |n: usize| -> String {
        rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(n)
            .map(char::from)
            .collect()
    };
    let (id, key) = (format!("LTAI{}", random(16)), random(30));
    write_private(&path, &format!("{id}\n{key}\n"))?;
    Ok((id, key, true))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn load_config(path: Option<&Path>) -> anyhow::Result<ServerConfig> {
    let Some(path) = path else {
        return Ok(ServerConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    ServerConfig::from_toml(&text).with_context(|| format!("config file {}", path.display()))
}

/// Raises the soft open-file limit to the hard one (each shard and connection holds a file).
fn raise_fd_limit() -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!(soft = before, hard = lim.rlim_max, error = %e, "cannot raise the open-file limit");
            return Ok(before);
        }
    }
    tracing::info!(
        soft_before = before,
        soft = lim.rlim_cur,
        hard = lim.rlim_max,
        "open-file limit"
    );
    Ok(lim.rlim_cur)
}

/// Makes the data dir private: what is created from now on (umask 077), and what exists
/// (directories 0700, files 0600), since meta.db holds connector passwords.
fn make_private(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let mut stack = vec![data_dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        let private = mode & !0o077;
        if private != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(private))
                .with_context(|| format!("cannot chmod {}", path.display()))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)
                .with_context(|| format!("cannot list {}", path.display()))?
            {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// The TLS acceptor, when a certificate and key are configured (the flags win over the file).
fn tls_acceptor(
    args: &ServeArgs,
    config: &mut ServerConfig,
) -> anyhow::Result<Option<sluice_server::http::tls::TlsAcceptor>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
    }
    config.validate()?;
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(tls::acceptor(cert, key)?)),
        _ => Ok(None),
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = load_config(args.config.as_deref())?;
    let tls = tls_acceptor(&args, &mut config)?;
    let fd_limit = raise_fd_limit()?;
    if config.max_connections as u64 + 256 > fd_limit {
        tracing::warn!(
            max_connections = config.max_connections,
            fd_limit,
            "max_connections is close to the open-file limit: shard files may fail to open"
        );
    }
    make_private(&args.data_dir)?;
    let cluster = cluster_options(&args)?;
    let (id, key, generated) = credentials(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = match &cluster {
            None => Server::open(
                &args.data_dir,
                config.clone(),
                Accounts::with_root(&id, &key),
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot open data dir {}: {e}", args.data_dir.display())
            })?,
            Some(options) => Server::open_cluster(
                options,
                &args.data_dir,
                config.clone(),
                Accounts::with_root(&id, &key),
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot join the cluster: {e}"))?,
        };
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        // issue 13: metrics — unsigned, so never on the API's port.
        let metrics_addr = config.metrics_listen.as_deref().unwrap_or("").trim();
        if metrics_addr.parse::<SocketAddr>().ok() == Some(addr) {
            bail!("metrics_listen {addr} is the API's address: give /metrics its own port");
        }
        let metrics = sluice_server::metrics::bind(&config)
            .await
            .with_context(|| format!("cannot listen on metrics_listen {metrics_addr}"))?;
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(metrics) = metrics {
            println!(
                "Prometheus metrics at http://{}/metrics",
                metrics.local_addr()?
            );
            tokio::spawn(sluice_server::metrics::serve(
                metrics,
                server.state.catalog.clone(),
                async move {
                    let _ = metrics_stopped.await;
                },
            ));
        }
        if tls.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "serving plain HTTP on an address other than loopback: requests and responses \
                 (records, connector passwords) travel unencrypted; give --tls-cert and --tls-key"
            );
        }
        if generated {
            println!(
                "Generated root credentials (kept in {}):",
                args.data_dir.join(CREDENTIALS_FILE).display()
            );
            println!("  AccessId:  {id}");
            println!("  AccessKey: {key}");
        } else {
            println!("Root AccessId: {id}");
        }
        match &cluster {
            None => println!(
                "Sluice is serving the DataHub API at {}://{addr} (data in {})",
                if tls.is_some() { "https" } else { "http" },
                args.data_dir.display()
            ),
            Some(options) => println!(
                "Sluice is serving the DataHub API at {}://{addr} (cluster node {}, data in {})",
                if tls.is_some() { "https" } else { "http" },
                options.node_id,
                sluice_server::cluster::redacted_url(&options.url)
            ),
        }
        let router = app(server.state.clone());
        listen::serve(listener, router, &config, tls, shutdown_signal()).await;
        let _ = metrics_stop.send(());
        tracing::info!("connections closed; flushing");
        server.shutdown().await;
        println!("Sluice stopped cleanly");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
