//! Accounts and access control (issue 15): access keys other than the root, stored with
//! sealed secrets (`sealing`: the server key file; `keys`: the stored keys and their in-memory
//! copy), policies and the one table of what each route needs (`policy`), the key management
//! and audit API (`api`, documented in docs/accounts.md), and the audit log (`audit`).
//!
//! Connectors run as the server, not as their creator: disabling or deleting the creator's key
//! does not stop them (docs/accounts.md "Connectors").

pub mod api;
pub mod audit;
pub mod keys;
pub mod policy;
pub mod sealing;

use std::path::Path;
use std::sync::Arc;

use sluice_meta::MetaStore;

use crate::service::Error;

/// Opens the server key (creating it at first start) and loads the stored access keys.
pub async fn open(meta: MetaStore, data_dir: &Path) -> Result<Arc<keys::KeyRegistry>, Error> {
    let sealer = sealing::ServerKey::load_or_create(data_dir)?;
    Ok(Arc::new(keys::KeyRegistry::load(meta, sealer).await?))
}

// issue 14: cluster
/// Loads the stored access keys sealed with the cluster's shared server key (`key_file`).
pub async fn open_shared(
    meta: MetaStore,
    key_file: &Path,
) -> Result<Arc<keys::KeyRegistry>, Error> {
    let sealer = sealing::ServerKey::load_file(key_file)?;
    Ok(Arc::new(keys::KeyRegistry::load(meta, sealer).await?))
}

tokio::task_local! {
    /// Who signed the request being served (set by the authentication middleware).
    pub static CALLER: policy::Caller;
}

/// Checks the request being served against `need`, for handlers that learn what a request does
/// only from its body (a JSON `Action`); everything else is checked before the handler runs.
/// A management change found this way is audited by the middleware like any other.
pub fn check(need: &policy::Need, action: &str) -> Result<(), Error> {
    CALLER
        .try_with(|caller| {
            caller.check(need).map_err(Error::NoPermission)?;
            if policy::is_management(&axum::http::Method::POST, need) {
                *caller.late_audit.lock() = Some((Some(need.clone()), action.to_string()));
            }
            Ok(())
        })
        .unwrap_or_else(|_| {
            Err(Error::NoPermission(
                "the request has no authenticated caller".into(),
            ))
        })
}

/// Reports what a request whose route needs the body to decide (`policy::body_decides`) does:
/// `action` is audited, as a change of the route's resource, once the request succeeds,
/// unless it is one of the handler's `routine` actions (reads, status queries, offset
/// commits). Unknown actions count as changes, so a new one is audited until listed here.
pub fn audit_unless_routine(action: &str, routine: &[&str]) {
    if routine.iter().any(|r| r.eq_ignore_ascii_case(action)) {
        return;
    }
    let _ = CALLER.try_with(|caller| {
        *caller.late_audit.lock() = Some((None, action.to_string()));
    });
}

/// The name of the key that signed the request being served (Creator and Owner fields).
pub fn caller_name() -> Option<String> {
    CALLER.try_with(|c| c.name.clone()).ok()
}

/// The name of the stored key that signed the request being served; None for the root (whose
/// schema Creator stays "root", as before).
pub fn key_name() -> Option<String> {
    CALLER
        .try_with(|c| c.grants.as_ref().map(|_| c.name.clone()))
        .ok()
        .flatten()
}
