//! Puts by shard that skip the per-request catalog query (cluster mode; see
//! [`super::http_refresh`]): the put is checked against the metadata this node has, and its
//! append stores it only if the shared catalog is still at the version the node had seen when
//! the request came in. When it is not, or the put failed on this node's metadata while another
//! node had changed it, the node catches up (catalog and access keys), checks the caller's
//! signature and rights again against the keys it now has, and runs the put again.
//!
//! A failure is final, without a retry, when the catalog had not moved (this node's metadata
//! was current: the put is refused on its merits), and when it is a storage error (the append
//! may have been stored: running it again could store it twice).

use std::future::Future;

use axum::http::{HeaderMap, Method, Uri};

use super::http_refresh::{catch_up, CatalogSeen};
use crate::http::{authorize, AppState};
use crate::service::{Error, Result};

/// How many times a put runs in all while the catalog keeps moving under it.
const ATTEMPTS: usize = 4;

/// What of the request is needed to authenticate it again.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
}

/// Runs `put` with the catalog version to check (`None` outside a checked put: the embedded
/// mode, or a request the HTTP layer did not mark), again after catching up when the catalog
/// moved under it (see the module docs).
pub async fn run<T, F, Fut>(
    state: &AppState,
    head: RequestHead<'_>,
    seen: Option<CatalogSeen>,
    mut put: F,
) -> Result<T>
where
    F: FnMut(Option<i64>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let Some(CatalogSeen(mut seen)) = seen else {
        return put(None).await;
    };
    let mut attempt = 1;
    loop {
        let error = match put(Some(seen)).await {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        if matches!(error, Error::Storage(_)) || attempt >= ATTEMPTS {
            return Err(error);
        }
        let now = catch_up(state).await?;
        if now <= seen {
            return Err(error);
        }
        authorize(state, head.method, head.uri, head.headers)?;
        tracing::debug!(seen, now, error = %error, "the catalog moved under a put: again");
        seen = now;
        attempt += 1;
    }
}
