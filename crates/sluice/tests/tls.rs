//! `sluice serve` over HTTPS: a CA and a server certificate made here with `openssl`, a client
//! that trusts the CA and one that does not, the handshake timeout against a client that never
//! finishes its handshake, the start-up errors (bad PEM, a key of another certificate, only one
//! of the pair given) and the warning for plain HTTP off loopback.
//!
//! Every wait is bounded; a server that never does what is asserted fails the test by timeout.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `openssl` with `args` in `dir`; panics (the test fails) if it is missing or fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed to test HTTPS");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA, a server certificate it signed (localhost, 127.0.0.1), its key, and the key of
/// another certificate.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut ca = vec!["req", "-x509", "-nodes", "-days", "2"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=Sluice test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(d, &ca);
        let mut csr = vec!["req", "-nodes"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(d, &csr);
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "other.key",
            ],
        );
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client that trusts the test CA (`trusting`) or only an empty root store.
    fn connector(&self, trusting: bool) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        if trusting {
            for cert in CertificateDer::pem_file_iter(self.path("ca.pem")).unwrap() {
                roots.add(cert.unwrap()).unwrap();
            }
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        // Offer HTTP/2 first, as many clients do: only HTTP/1.1 is served.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    }
}

/// A server started by a test: killed on drop if still running.
struct Sluice {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sluice {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for the process to exit; its success, or `None` if it still runs.
    async fn exit_within(&mut self, limit: Duration) -> Option<bool> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.success());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

/// Starts `sluice serve` on `host` with `config` (TOML), `args` and `envs`.
fn spawn(
    host: &str,
    config: &str,
    args: &[&Path],
    flags: &[&str],
    envs: &[(&str, &Path)],
) -> Sluice {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, config).unwrap();
    let log = dir.path().join("stderr.log");
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("{host}:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config_path)
        .args(["--access-id", "tls-id"])
        .env("SLUICE_ACCESS_KEY", "tls-key")
        .env_remove("SLUICE_TLS_CERT")
        .env_remove("SLUICE_TLS_KEY")
        .env("SLUICE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (i, flag) in flags.iter().enumerate() {
        cmd.arg(flag);
        if let Some(path) = args.get(i) {
            cmd.arg(path);
        }
    }
    for (name, value) in envs {
        cmd.env(name, value);
    }
    Sluice {
        child: cmd.spawn().expect("start sluice"),
        port,
        log,
        _dir: dir,
    }
}

/// Sends `GET /health` on `stream` and returns the response's first line (empty if none).
async fn health<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> String {
    let _ = stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let _ = timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// A TLS connection to the server with `connector` (the handshake bounded by `limit`).
async fn tls_connect(
    port: u16,
    connector: &TlsConnector,
    limit: Duration,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("localhost").unwrap();
    timeout(limit, connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake did not finish"))?
}

/// Waits until the server answers `GET /health` over TLS with the trusting client.
async fn wait_healthy_tls(s: &Sluice, pki: &Pki) {
    let connector = pki.connector(true);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut stream) = tls_connect(s.port, &connector, Duration::from_secs(2)).await {
            if health(&mut stream).await.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "server did not become healthy over TLS; stderr:\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_healthy_plain(s: &Sluice) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", s.port)).await {
            if health(&mut stream).await.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "not healthy:\n{}", s.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn https_is_served_to_a_client_that_trusts_the_ca_and_refused_to_one_that_does_not() {
    let pki = Pki::new();
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let s = spawn(
        "127.0.0.1",
        "",
        &[&cert, &key],
        &["--tls-cert", "--tls-key"],
        &[],
    );
    wait_healthy_tls(&s, &pki).await;
    let mut ok = tls_connect(s.port, &pki.connector(true), Duration::from_secs(10))
        .await
        .expect("the trusting client connects");
    assert_eq!(ok.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(health(&mut ok).await.starts_with("HTTP/1.1 200"));
    let refused = tls_connect(s.port, &pki.connector(false), Duration::from_secs(10)).await;
    let err = refused.expect_err("a client without the CA must refuse the certificate");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let mut plain = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
    assert!(!health(&mut plain).await.starts_with("HTTP/1.1 200"));
    assert!(!s.stderr().contains("plain HTTP"), "{}", s.stderr());
}

#[tokio::test]
async fn the_certificate_and_key_can_come_from_the_environment_or_the_config_file() {
    let pki = Pki::new();
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let s = spawn(
        "127.0.0.1",
        "",
        &[],
        &[],
        &[("SLUICE_TLS_CERT", &cert), ("SLUICE_TLS_KEY", &key)],
    );
    wait_healthy_tls(&s, &pki).await;
    let config = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let s = spawn("127.0.0.1", &config, &[], &[], &[]);
    wait_healthy_tls(&s, &pki).await;
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_dropped_and_frees_its_slot() {
    let pki = Pki::new();
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let s = spawn(
        "127.0.0.1",
        "max_connections = 1\ntls_handshake_timeout_ms = 1000\n\
         header_read_timeout_ms = 600000\nidle_timeout_ms = 600000",
        &[&cert, &key],
        &["--tls-cert", "--tls-key"],
        &[],
    );
    wait_healthy_tls(&s, &pki).await;
    // The start of a TLS record announcing 128 bytes of handshake, and then nothing.
    let mut stalled = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x80])
        .await
        .unwrap();
    // The only slot is taken: a real client waits behind it, and gets in once it is dropped.
    let waiting = tokio::spawn({
        let connector = pki.connector(true);
        let port = s.port;
        async move {
            let mut stream = tls_connect(port, &connector, Duration::from_secs(15)).await?;
            Ok::<_, std::io::Error>(health(&mut stream).await)
        }
    });
    let mut buf = [0u8; 64];
    let closed = timeout(Duration::from_secs(15), stalled.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the stalled handshake was not dropped: {closed:?}"
    );
    let served = timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the waiting client was not served")
        .unwrap()
        .expect("the waiting client's handshake");
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

/// Starts the server with the given TLS settings and expects it to stop at once, failing.
async fn start_fails(
    config: &str,
    args: &[&Path],
    flags: &[&str],
    envs: &[(&str, &Path)],
) -> String {
    let mut s = spawn("127.0.0.1", config, args, flags, envs);
    let exit = s.exit_within(Duration::from_secs(20)).await;
    assert_eq!(
        exit,
        Some(false),
        "it should refuse to start:\n{}",
        s.stderr()
    );
    s.stderr()
}

#[tokio::test]
async fn a_certificate_or_key_that_cannot_be_served_stops_the_start_naming_the_file() {
    let pki = Pki::new();
    let (cert, key, other) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("other.key"),
    );
    let flags = ["--tls-cert", "--tls-key"];
    // A key of another certificate.
    let err = start_fails("", &[&cert, &other], &flags, &[]).await;
    assert!(err.contains("does not belong"), "{err}");
    assert!(err.contains(&*other.to_string_lossy()), "{err}");
    // A certificate file that is not PEM, or whose PEM does not parse.
    let not_pem = pki.path("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let err = start_fails("", &[&not_pem, &key], &flags, &[]).await;
    assert!(err.contains(&*not_pem.to_string_lossy()), "{err}");
    let broken = pki.path("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nMIIBroken!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = start_fails("", &[&broken, &key], &flags, &[]).await;
    assert!(err.contains(&*broken.to_string_lossy()), "{err}");
    let garbage = pki.path("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = start_fails("", &[&garbage, &key], &flags, &[]).await;
    assert!(err.contains(&*garbage.to_string_lossy()), "{err}");
    // A key file with a certificate in it, and a missing file.
    let err = start_fails("", &[&cert, &cert], &flags, &[]).await;
    assert!(err.contains("private key"), "{err}");
    assert!(err.contains(&*cert.to_string_lossy()), "{err}");
    let missing = pki.path("missing.key");
    let err = start_fails("", &[&cert, &missing], &flags, &[]).await;
    assert!(err.contains(&*missing.to_string_lossy()), "{err}");
}

#[tokio::test]
async fn only_one_of_certificate_and_key_stops_the_start_naming_the_other() {
    let pki = Pki::new();
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let err = start_fails("", &[&cert], &["--tls-cert"], &[]).await;
    assert!(err.contains("--tls-key"), "{err}");
    let err = start_fails("", &[&key], &["--tls-key"], &[]).await;
    assert!(err.contains("--tls-cert"), "{err}");
    let err = start_fails("", &[], &[], &[("SLUICE_TLS_CERT", &cert)]).await;
    assert!(err.contains("--tls-key"), "{err}");
    let config = format!("tls_key = {:?}\n", key.display().to_string());
    let err = start_fails(&config, &[], &[], &[]).await;
    assert!(err.contains("tls_cert"), "{err}");
    let err = start_fails("tls_handshake_timeout_ms = 0", &[], &[], &[]).await;
    assert!(err.contains("tls_handshake_timeout_ms"), "{err}");
}

#[tokio::test]
async fn plain_http_off_loopback_warns_and_https_or_loopback_does_not() {
    let warning = "plain HTTP on an address other than loopback";
    let s = spawn("0.0.0.0", "", &[], &[], &[]);
    wait_healthy_plain(&s).await;
    assert!(s.stderr().contains(warning), "{}", s.stderr());
    let s = spawn("127.0.0.1", "", &[], &[], &[]);
    wait_healthy_plain(&s).await;
    assert!(!s.stderr().contains(warning), "{}", s.stderr());
    let pki = Pki::new();
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let s = spawn(
        "0.0.0.0",
        "",
        &[&cert, &key],
        &["--tls-cert", "--tls-key"],
        &[],
    );
    wait_healthy_tls(&s, &pki).await;
    assert!(!s.stderr().contains(warning), "{}", s.stderr());
}
