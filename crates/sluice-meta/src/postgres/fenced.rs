//! Writes fenced by a lease (issue 14, cluster mode): [`check_guard`] runs first in a guarded
//! write's transaction. It needs the `lease` table, which `sluice_cluster::lease::LeaseStore`
//! creates in the same database.

use super::Tx;
use crate::rows::LeaseGuard;
use crate::MetaError;

/// Checks that `guard`'s lease is still held (owner, epoch, unexpired by PostgreSQL's clock),
/// locking its row until this transaction ends, so a takeover waits for the write in flight and
/// a write that comes after a takeover is refused ([`MetaError::Fenced`]). `None` checks nothing.
pub(super) async fn check_guard(
    tx: &mut Tx<'_>,
    guard: Option<&LeaseGuard>,
) -> Result<(), MetaError> {
    let Some(g) = guard else {
        return Ok(());
    };
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM lease WHERE kind = $1 AND key = $2 AND owner = $3 AND epoch = $4 \
         AND expires_at > now() FOR SHARE",
    )
    .bind(&g.kind)
    .bind(&g.key)
    .bind(&g.owner)
    .bind(g.epoch)
    .fetch_optional(&mut **tx)
    .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(MetaError::Fenced(format!(
            "lease {}/{} epoch {} of {} is no longer held",
            g.kind, g.key, g.epoch, g.owner
        ))),
    }
}
