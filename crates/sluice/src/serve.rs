//! `sluice serve`: open the data directory, settle the root credentials, listen, and shut down
//! cleanly on SIGTERM or SIGINT (stop accepting, finish in-flight requests, flush, exit 0).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use rand::distributions::Alphanumeric;
use rand::Rng;
use sluice_server::{app, Accounts, Server, ServerConfig};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Where metadata and shard logs live.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    data_dir: PathBuf,
    /// Root AccessId (with --access-key). Without both, one is generated on first start and kept in the data dir.
    #[arg(long, env = "SLUICE_ACCESS_ID", requires = "access_key")]
    access_id: Option<String>,
    /// Root AccessKey secret.
    #[arg(
        long,
        env = "SLUICE_ACCESS_KEY",
        requires = "access_id",
        hide_env_values = true
    )]
    access_key: Option<String>,
    /// TOML file with limits, fsync mode and housekeeping intervals.
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
}

const CREDENTIALS_FILE: &str = "root-credentials";

/// The root key pair: given, or kept in the data dir, or generated now and kept.
fn credentials(args: &ServeArgs) -> anyhow::Result<(String, String, bool)> {
    if let (Some(id), Some(key)) = (&args.access_id, &args.access_key) {
        if id.trim().is_empty() || key.trim().is_empty() {
            bail!("--access-id and --access-key must not be empty");
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

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let (id, key, generated) = credentials(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = Server::open(&args.data_dir, config, Accounts::with_root(&id, &key))
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot open data dir {}: {e}", args.data_dir.display())
            })?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
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
        println!(
            "Sluice is serving the DataHub API at http://{addr} (data in {})",
            args.data_dir.display()
        );
        let router = app(server.state.clone());
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        tracing::info!("stopped accepting; flushing");
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
