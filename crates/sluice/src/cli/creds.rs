//! Where the endpoint and key pair come from: flags, then the environment (`SLUICE_ENDPOINT`,
//! `SLUICE_ACCESS_ID`, `SLUICE_ACCESS_KEY`, the names `sluice serve` takes for its root key),
//! then a profile written by `sluice login` (`$XDG_CONFIG_HOME/sluice/profiles.toml`, else
//! `~/.config/sluice/profiles.toml`, kept 0600). The secret is never printed: [`Credentials`]
//! has no `Display`, and its `Debug` hides the key.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_client::Client;

use super::error::{io, usage, CliError, Result};
use super::ClientArgs;

/// The endpoint `sluice serve` listens on by default.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8090";

/// One profile as kept in the file.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    pub endpoint: Option<String>,
    pub access_id: Option<String>,
    pub access_key: Option<String>,
}

/// The endpoint and key pair a command uses.
#[derive(Clone)]
pub struct Credentials {
    pub endpoint: String,
    pub access_id: String,
    access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("endpoint", &self.endpoint)
            .field("access_id", &self.access_id)
            .field("access_key", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    pub fn client(&self) -> Result<Client> {
        Ok(Client::new(
            &self.endpoint,
            &self.access_id,
            &self.access_key,
        )?)
    }
}

/// The profiles file: `$XDG_CONFIG_HOME/sluice/profiles.toml`, else under `~/.config`.
pub fn profiles_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("sluice").join("profiles.toml"))
}

fn read_profiles(path: &Path) -> Result<BTreeMap<String, Profile>> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| CliError::Io(format!("profile file {} is damaged: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(io(format!("cannot read {}", path.display()), e)),
    }
}

/// Resolves the credentials: flags and environment (clap already put flags first), then the
/// profile named by `--profile`.
pub fn resolve(args: &ClientArgs) -> Result<Credentials> {
    let profile = match profiles_path() {
        Some(path) => read_profiles(&path)?
            .remove(&args.profile)
            .unwrap_or_default(),
        None => Profile::default(),
    };
    let endpoint = args
        .endpoint
        .clone()
        .or(profile.endpoint)
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let (access_id, access_key) = match (&args.access_id, &args.access_key) {
        (Some(id), Some(key)) => (id.clone(), key.clone()),
        (None, None) => match (profile.access_id, profile.access_key) {
            (Some(id), Some(key)) => (id, key),
            _ => {
                return Err(usage(
                    "no credentials: give --access-id and --access-key, set SLUICE_ACCESS_ID and \
                     SLUICE_ACCESS_KEY, or run `sluice login`",
                ))
            }
        },
        (Some(_), None) => {
            return Err(usage(
                "--access-id (or SLUICE_ACCESS_ID) is given without --access-key (or SLUICE_ACCESS_KEY)",
            ))
        }
        (None, Some(_)) => {
            return Err(usage(
                "--access-key (or SLUICE_ACCESS_KEY) is given without --access-id (or SLUICE_ACCESS_ID)",
            ))
        }
    };
    if access_id.trim().is_empty() || access_key.trim().is_empty() {
        return Err(usage("the AccessId and AccessKey must not be empty"));
    }
    Ok(Credentials {
        endpoint,
        access_id,
        access_key,
    })
}

/// `sluice login`: checks the key pair against the endpoint, then keeps it in the profile.
/// Without `--access-key` (or SLUICE_ACCESS_KEY) the secret is read from the first line of
/// standard input, so it stays out of the process list and the shell history.
pub async fn login(args: &ClientArgs) -> Result<PathBuf> {
    let mut args = args.clone();
    if args.access_id.is_none() {
        return Err(usage(
            "`sluice login` needs --access-id (or SLUICE_ACCESS_ID)",
        ));
    }
    if args.access_key.is_none() {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            eprint!("AccessKey: ");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| io("cannot read the AccessKey from standard input", e))?;
        args.access_key = Some(line.trim().to_string());
    }
    let creds = resolve(&args)?;
    creds.client()?.list_projects().await?;
    let path = profiles_path().ok_or_else(|| {
        usage("neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the profile")
    })?;
    let mut profiles = read_profiles(&path)?;
    profiles.insert(
        args.profile.clone(),
        Profile {
            endpoint: Some(creds.endpoint.clone()),
            access_id: Some(creds.access_id.clone()),
            access_key: Some(creds.access_key.clone()),
        },
    );
    let text = toml::to_string(&profiles)
        .map_err(|e| CliError::Io(format!("cannot write the profile: {e}")))?;
    write_private(&path, &text)?;
    Ok(path)
}

/// Writes `text` to `path` with mode 0600 (its directory 0700), replacing it atomically.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io(format!("cannot create {}", dir.display()), e))?;
    let tmp = path.with_extension("toml.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(format!("cannot write {}", tmp.display()), e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| io(format!("cannot write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(format!("cannot write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let c = Credentials {
            endpoint: "http://e".into(),
            access_id: "the-id".into(),
            access_key: "the-secret-key".into(),
        };
        let text = format!("{c:?}");
        assert!(text.contains("the-id"));
        assert!(!text.contains("the-secret-key"));
    }
}
