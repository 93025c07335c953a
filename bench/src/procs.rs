//! Child servers (sluice, nats-server) on private ports and temp dirs, and their memory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One running child server; killed on drop.
pub struct Proc {
    pub child: Child,
    pub pid: u32,
    pub port: u16,
}

impl Proc {
    /// Resets the kernel's peak-RSS counter (VmHWM) so the next phase gets its own peak.
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5");
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn mem(&self) -> (u64, u64) {
        mem_of(self.pid)
    }

    pub async fn stop(mut self) {
        // SIGTERM first so the server shuts down cleanly, then make sure.
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// CPU seconds (user + system, /proc/PID/stat fields 14 and 15) the process has used so far.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // rest starts at field 3 (state), so utime (14) is index 11 and stime (15) index 12.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The 1-minute load average (the machine is shared; a busy neighbour shows here).
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Samples a process's RssAnon every 20 ms until stopped; returns the peak (KiB).
pub struct AnonSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl AnonSampler {
    pub fn start(pid: u32) -> AnonSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(anon_of(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak.max(anon_of(pid))
        });
        AnonSampler { stop, task }
    }
    pub async fn finish(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap_or(0)
    }
}

pub fn anon_of(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Bytes the process has read through read(2)/pread(2) so far (`rchar` of /proc/<pid>/io).
pub fn rchar_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("rchar:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

pub fn mem_of(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn wait_port(port: u16, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited during start-up: {status}");
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("{what} did not listen on port {port} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub const ACCESS_ID: &str = "LTAIbenchbenchbench";
pub const ACCESS_KEY: &str = "benchbenchbenchbenchbenchbench";

/// The certificate and key `sluice serve` is started with (`--tls`), or none (plain HTTP).
pub static TLS: std::sync::OnceLock<(std::path::PathBuf, std::path::PathBuf)> = std::sync::OnceLock::new();

/// Makes a CA and a server certificate for localhost/127.0.0.1 in `dir` with `openssl`, serves
/// them from now on, and makes this process trust the CA (`SSL_CERT_FILE`, read by the
/// native-roots loader of every reqwest client built later).
pub fn use_tls(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output()?;
        anyhow::ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[&["req", "-x509"][..], &ec, &["-days", "2", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]].concat())?;
    run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat())?;
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")?;
    run(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "server.ext", "-out", "server.pem"])?;
    std::env::set_var("SSL_CERT_FILE", dir.join("ca.pem"));
    let _ = TLS.set((dir.join("server.pem"), dir.join("server.key")));
    Ok(())
}

/// The endpoint of a `sluice serve` on `port` (https with `--tls`).
pub fn endpoint(port: u16) -> String {
    match TLS.get() {
        Some(_) => format!("https://127.0.0.1:{port}"),
        None => format!("http://127.0.0.1:{port}"),
    }
}

/// `sluice serve` with the default configuration (fsync = always) on `data_dir`.
pub async fn start_sluice(bin: &Path, data_dir: &Path, log: &Path) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let logf = std::fs::File::create(log)?;
    let mut cmd = Command::new(bin);
    cmd.arg("serve");
    if let Some((cert, key)) = TLS.get() {
        cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
    }
    let mut child = cmd
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--access-id")
        .arg(ACCESS_ID)
        .arg("--access-key")
        .arg(ACCESS_KEY)
        .env_remove("SLUICE_CONFIG")
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    wait_port(port, &mut child, "sluice serve").await?;
    let pid = child.id().context("no pid")?;
    Ok(Proc {
        child,
        pid,
        port,
    })
}

/// `nats-server -js` with file storage in `store_dir`. With `sync_always`, a config file sets
/// `jetstream { sync_interval: always }` (nats-server 2.10+): fsync before every ack.
pub async fn start_nats(bin: &Path, store_dir: &Path, log: &Path, sync_always: bool) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let logf = std::fs::File::create(log)?;
    let mut cmd = Command::new(bin);
    if sync_always {
        std::fs::create_dir_all(store_dir)?;
        let conf = store_dir.with_extension("conf");
        // The store dir comes from -sd below (the config may not name it too).
        std::fs::write(&conf, "jetstream {\n  sync_interval: always\n}\n")?;
        cmd.arg("-c").arg(&conf);
    }
    let mut child = cmd
        .arg("-js")
        .arg("-sd")
        .arg(store_dir)
        .arg("-a")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    wait_port(port, &mut child, "nats-server").await?;
    let pid = child.id().context("no pid")?;
    Ok(Proc {
        child,
        pid,
        port,
    })
}

/// Finds nats-server on PATH or in the usual Debian place.
pub fn find_nats(given: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(p) = given {
        return p.exists().then_some(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/sbin", "/usr/bin"]) {
        let p = Path::new(dir).join("nats-server");
        if p.exists() {
            return Some(p);
        }
    }
    None
}
