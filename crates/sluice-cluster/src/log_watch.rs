//! The node's watch poll: one query every `poll_interval` reads `shard_head.next_seq` of the
//! shards somebody on this node watches, so that other nodes' appends wake local tails.
//! Appends through this node publish at once (see `log_append.rs`); no LISTEN/NOTIFY.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use sqlx::Row;

use crate::log::{to_u64, Inner, ShardState};

/// Polls while the log lives.
pub(crate) fn spawn_poller(inner: Weak<Inner>) {
    tokio::spawn(async move {
        let period = match inner.upgrade() {
            Some(i) => i.opts.poll_interval,
            None => return,
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            if let Err(e) = poll_once(&inner).await {
                tracing::debug!(error = %e, "cluster log watch poll failed");
            }
        }
    });
}

/// One poll of the watched shards.
async fn poll_once(inner: &Inner) -> Result<(), sqlx::Error> {
    let watched: HashMap<String, Arc<ShardState>> = {
        let shards = inner.shards.lock();
        shards
            .values()
            .filter_map(Weak::upgrade)
            .filter(|s| s.watch_tx.receiver_count() > 0)
            .map(|s| (s.key.clone(), s))
            .collect()
    };
    if watched.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = watched.keys().map(String::as_str).collect();
    let rows = sqlx::query("SELECT shard_key, next_seq FROM shard_head WHERE shard_key = ANY($1)")
        .bind(&keys)
        .fetch_all(&inner.pool)
        .await?;
    for row in rows {
        let key: String = row.try_get(0)?;
        let next: i64 = row.try_get(1)?;
        if let Some(s) = watched.get(&key) {
            s.publish(to_u64(next));
        }
    }
    Ok(())
}
