//! The server key: a random 256-bit key in its own 0600 file in the data dir (`server.key`,
//! created at first start), which seals the access keys' secrets (ChaCha20-Poly1305, a fresh
//! random nonce per seal) before they reach the meta store. A copy of meta.db alone reveals no
//! secret; losing the file makes the stored keys unusable (the root key still works).
//!
//! In the cluster mode every node must seal with the same key, so it is given as a file
//! (`--server-key-file`, [`ServerKey::load_file`]) that must exist and hold exactly 32 bytes
//! (raw, or 64 hex digits, or base64 of them, optionally followed by a newline); it is never
//! generated per node.

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::service::Error;

/// The file name of the server key in the data dir.
pub const SERVER_KEY_FILE: &str = "server.key";

const KEY_LEN: usize = 32;

/// Seals and opens secrets with the server key. Its Debug output shows no key material.
pub struct ServerKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

fn internal(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{what} {}: {e}", path.display()))
}

impl ServerKey {
    /// Reads the server key from `data_dir`, creating it (mode 0600) when missing.
    pub fn load_or_create(data_dir: &Path) -> Result<ServerKey, Error> {
        let path = data_dir.join(SERVER_KEY_FILE);
        let rng = SystemRandom::new();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = vec![0u8; KEY_LEN];
                rng.fill(&mut bytes).map_err(|_| {
                    internal("cannot draw a server key for", &path, "no randomness")
                })?;
                let mut file = open_private(&path)
                    .map_err(|e| internal("cannot create the server key", &path, e))?;
                file.write_all(&bytes)
                    .and_then(|_| file.sync_all())
                    .map_err(|e| internal("cannot write the server key", &path, e))?;
                bytes
            }
            Err(e) => return Err(internal("cannot read the server key", &path, e)),
        };
        if bytes.len() != KEY_LEN {
            return Err(internal(
                "the server key is damaged (not 32 bytes):",
                &path,
                "restore it from a backup",
            ));
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| internal("the server key is unusable:", &path, "bad length"))?;
        Ok(ServerKey {
            key: LessSafeKey::new(key),
            rng,
        })
    }

    /// Reads the shared server key from `path` (cluster mode): it must exist and hold 32 bytes
    /// (raw, 64 hex digits or base64; a trailing newline is ignored). Refuses anything else,
    /// naming the file; never creates one.
    pub fn load_file(path: &Path) -> Result<ServerKey, Error> {
        let raw = std::fs::read(path).map_err(|e| {
            internal(
                "cannot read the server key file (--server-key-file)",
                path,
                e,
            )
        })?;
        let bytes = decode_key_file(&raw).ok_or_else(|| {
            internal(
                "the server key file (--server-key-file)",
                path,
                "must hold 32 bytes: raw, 64 hex digits or base64",
            )
        })?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| internal("the server key is unusable:", path, "bad length"))?;
        Ok(ServerKey {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// Seals `secret`: base64 of nonce ‖ ciphertext ‖ tag. `aad` binds it to its key's name.
    pub fn seal(&self, secret: &str, aad: &str) -> Result<String, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| Error::Internal("no randomness for a nonce".into()))?;
        let mut data = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut data,
            )
            .map_err(|_| Error::Internal("cannot seal a secret".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(B64.encode(out))
    }

    /// Opens what [`ServerKey::seal`] sealed with the same `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<String, Error> {
        let bad = || {
            Error::Internal(format!(
                "the stored secret of key {aad:?} cannot be opened with this server key"
            ))
        };
        let raw = B64.decode(sealed).map_err(|_| bad())?;
        if raw.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut data = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut data)
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }

    /// `len` random bytes, for new access ids and secrets.
    pub fn random(&self, len: usize) -> Result<Vec<u8>, Error> {
        let mut bytes = vec![0u8; len];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| Error::Internal("no randomness".into()))?;
        Ok(bytes)
    }
}

/// The 32 key bytes of a key file: raw, hex or base64 (text trimmed of whitespace).
fn decode_key_file(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() == KEY_LEN {
        return Some(raw.to_vec());
    }
    let text = std::str::from_utf8(raw).ok()?.trim();
    let hex = (text.len() == 2 * KEY_LEN)
        .then(|| {
            (0..KEY_LEN)
                .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .flatten();
    hex.or_else(|| B64.decode(text).ok())
        .filter(|b| b.len() == KEY_LEN)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::load_or_create(dir.path()).unwrap();
        let sealed = key.seal("s3cret", "app").unwrap();
        assert!(!sealed.contains("s3cret"));
        assert_eq!(key.open(&sealed, "app").unwrap(), "s3cret");
        assert!(key.open(&sealed, "other").is_err());
        // the same file again: the same key
        let again = ServerKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open(&sealed, "app").unwrap(), "s3cret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SERVER_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        let stranger = ServerKey::load_or_create(other.path()).unwrap();
        assert!(stranger.open(&sealed, "app").is_err());
    }

    #[test]
    fn a_shared_key_file_is_read_in_any_of_its_forms_and_a_bad_one_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0u8..32).collect();
        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, &bytes).unwrap();
        let hex = dir.path().join("hex.key");
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&hex, format!("{text}\n")).unwrap();
        let b64 = dir.path().join("b64.key");
        std::fs::write(&b64, format!("{}\n", B64.encode(&bytes))).unwrap();
        let sealed = ServerKey::load_file(&raw)
            .unwrap()
            .seal("s3cret", "app")
            .unwrap();
        for p in [&hex, &b64] {
            let key = ServerKey::load_file(p).unwrap();
            assert_eq!(
                key.open(&sealed, "app").unwrap(),
                "s3cret",
                "{}",
                p.display()
            );
        }
        let short = dir.path().join("short.key");
        std::fs::write(&short, "abc").unwrap();
        let missing = dir.path().join("missing.key");
        for p in [&short, &missing] {
            let e = ServerKey::load_file(p).unwrap_err().to_string();
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert!(e.contains("--server-key-file"), "{e}");
        }
        assert!(!missing.exists(), "a missing key file is never created");
    }
}
