//! The server key: a random 256-bit key in its own 0600 file in the data dir (`server.key`,
//! created at first start), which seals the access keys' secrets (ChaCha20-Poly1305, a fresh
//! random nonce per seal) before they reach the meta store. A copy of meta.db alone reveals no
//! secret; losing the file makes the stored keys unusable (the root key still works).

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
}
