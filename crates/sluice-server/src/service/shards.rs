//! Shard topology: list, split, merge, extend (protocol doc §4.4, §6.1–6.2).
//!
//! New shards are ACTIVE from the first list that contains them; closed shards stay listed,
//! readable to their end, and reject writes. A change is one metadata transaction, and the new
//! shards' logs exist before it commits; routed puts wait while shards are switched.

use std::sync::Arc;

use sluice_meta::ShardRow;
use sluice_proto::hashkey;

use super::catalog::{now_ms, now_secs, Catalog, Shard, ShardMeta, ShardState, Topic};
use super::error::{Error, Result};

/// A shard as list-shards shows it.
pub struct ShardView {
    pub id: u32,
    pub meta: ShardMeta,
    pub left: Option<u32>,
    pub right: Option<u32>,
}

/// A shard created by a split or merge.
pub struct NewShard {
    pub id: u32,
    pub begin_key: u128,
    pub end_key: u128,
}

impl Catalog {
    pub fn list_shards(&self, project: &str, topic: &str) -> Result<Vec<ShardView>> {
        let topic = self.topic(project, topic)?;
        let shards: Vec<(u32, ShardMeta)> = topic
            .shards
            .read()
            .iter()
            .map(|s| (s.id, s.meta.read().clone()))
            .collect();
        // Neighbours in hash order among the shards that are open.
        let mut open: Vec<&(u32, ShardMeta)> = shards
            .iter()
            .filter(|(_, m)| m.state == ShardState::Active)
            .collect();
        open.sort_by_key(|(_, m)| m.begin_key);
        Ok(shards
            .iter()
            .map(|(id, meta)| {
                let pos = open.iter().position(|(o, _)| o == id);
                ShardView {
                    id: *id,
                    meta: meta.clone(),
                    left: pos.and_then(|p| p.checked_sub(1)).map(|p| open[p].0),
                    right: pos.and_then(|p| open.get(p + 1)).map(|(i, _)| *i),
                }
            })
            .collect())
    }

    fn next_shard_id(topic: &Topic) -> u32 {
        topic
            .shards
            .read()
            .iter()
            .map(|s| s.id + 1)
            .max()
            .unwrap_or(0)
    }

    fn check_shard_room(&self, topic: &Topic, adding: usize) -> Result<()> {
        let count = topic.shards.read().len() + adding;
        if count > self.config.max_shards_per_topic as usize {
            return Err(Error::LimitExceeded(format!(
                "topic {} would have {count} shards, more than the limit of {}",
                topic.name, self.config.max_shards_per_topic
            )));
        }
        Ok(())
    }

    /// Switches `parents` for `children` atomically. Routed puts wait while it runs (the
    /// topic's topology lock), so they see the parents or the children, never neither. The
    /// parents are marked CLOSING (waiting for in-flight appends); the children's logs are
    /// created inside the metadata transaction, before its COMMIT; then the parents are CLOSED
    /// and the children added. On failure nothing is committed, the parents reopen and the
    /// children's directories are removed.
    async fn replace_shards(
        &self,
        topic: &Arc<Topic>,
        parents: &[Arc<Shard>],
        children: Vec<ShardRow>,
    ) -> Result<()> {
        let _switch = topic.topology.write().await;
        for p in parents {
            if p.meta.read().state != ShardState::Active {
                return Err(Error::ShardNotActive(p.id));
            }
        }
        for p in parents {
            p.set_meta(|m| m.state = ShardState::Closing);
        }
        let ids: Vec<u32> = parents.iter().map(|p| p.id).collect();
        let closed_time = now_ms();
        let result = self
            .add_shards(topic, &ids, closed_time, &children, &[])
            .await;
        for p in parents {
            p.set_meta(|meta| {
                if result.is_ok() {
                    meta.state = ShardState::Closed;
                    meta.closed_time = closed_time;
                } else {
                    meta.state = ShardState::Active;
                }
            });
        }
        topic.shards.write().extend(result?);
        // issue 14: cluster — closed for every node: a put to a parent on any node is refused
        // by the shared log (after this node's appends in flight).
        if self.cluster.is_some() {
            for p in parents {
                if let Err(e) = p.log.close_shared().await {
                    tracing::warn!(shard = p.id, error = %e, "cannot close a parent shard in the shared log");
                }
            }
        }
        Ok(())
    }

    /// Commits a topology change with the logs of the `created` shards made before the COMMIT;
    /// returns those shards, or removes their directories if nothing was committed.
    async fn add_shards(
        &self,
        topic: &Topic,
        closed: &[u32],
        closed_time: i64,
        created: &[ShardRow],
        ranges: &[(String, String)],
    ) -> Result<Vec<Arc<Shard>>> {
        let result = self
            .meta
            .change_shards(topic.uid, closed, closed_time, created, ranges, || {
                created
                    .iter()
                    .map(|row| self.create_shard_log(topic.uid, &topic.dir, row))
                    .collect::<Result<Vec<_>>>()
            })
            .await;
        if result.is_err() {
            for row in created {
                let dir = topic.shard_dir(row.shard_id);
                if let Err(e) = sluice_log::remove_log(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the directory of a shard that was not created");
                }
            }
        }
        result
    }

    pub async fn split_shard(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        split_key: Option<&str>,
    ) -> Result<[NewShard; 2]> {
        // issue 14: cluster — decide on the topology other nodes left (routed with puts,
        // so the HTTP layer did not refresh).
        self.refresh_if_changed().await?;
        let _guard = self.change_lock.lock().await;
        let topic = self.topic(project, topic)?;
        if topic.expand_mode == "extend" {
            return Err(Error::InvalidOperation(format!(
                "topic {} is in extend mode; it grows with extend, not split",
                topic.name
            )));
        }
        let parent = topic.shard_by_text(shard)?;
        let (begin, end) = {
            let m = parent.meta.read();
            if m.state != ShardState::Active {
                return Err(Error::ShardNotActive(parent.id));
            }
            (m.begin_key, m.end_key)
        };
        let key = match split_key {
            Some(k) if !k.trim().is_empty() => hashkey::parse_key(k).ok_or_else(|| {
                Error::InvalidParameter(format!("SplitKey {k:?} is not a hex hash key"))
            })?,
            _ => begin + (end - begin) / 2,
        };
        if key <= begin || key >= end {
            return Err(Error::InvalidParameter(format!(
                "The key range is invalid: split key {} is not inside shard {}'s range [{}, {})",
                hashkey::format_key(key),
                parent.id,
                hashkey::format_key(begin),
                hashkey::format_key(end)
            )));
        }
        self.check_shard_room(&topic, 2)?;
        let first = Catalog::next_shard_id(&topic);
        let now = now_secs();
        let row = |id: u32, b: u128, e: u128| ShardRow {
            topic_uid: topic.uid,
            shard_id: id,
            state: "ACTIVE".to_string(),
            begin_key: hashkey::format_key(b),
            end_key: hashkey::format_key(e),
            parents: vec![parent.id],
            create_time: now,
            closed_time: 0,
        };
        let children = vec![row(first, begin, key), row(first + 1, key, end)];
        self.replace_shards(&topic, &[parent], children).await?;
        Ok([
            NewShard {
                id: first,
                begin_key: begin,
                end_key: key,
            },
            NewShard {
                id: first + 1,
                begin_key: key,
                end_key: end,
            },
        ])
    }

    pub async fn merge_shards(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        adjacent: &str,
    ) -> Result<NewShard> {
        // issue 14: cluster — decide on the topology other nodes left (routed with puts,
        // so the HTTP layer did not refresh).
        self.refresh_if_changed().await?;
        let _guard = self.change_lock.lock().await;
        let topic = self.topic(project, topic)?;
        if topic.expand_mode == "extend" {
            return Err(Error::InvalidOperation(format!(
                "topic {} is in extend mode; its shards cannot be merged",
                topic.name
            )));
        }
        let a = topic.shard_by_text(shard)?;
        let b = topic.shard_by_text(adjacent)?;
        let (ma, mb) = (a.meta.read().clone(), b.meta.read().clone());
        for (s, m) in [(&a, &ma), (&b, &mb)] {
            if m.state != ShardState::Active {
                return Err(Error::ShardNotActive(s.id));
            }
        }
        let (begin, end) = if ma.end_key == mb.begin_key {
            (ma.begin_key, mb.end_key)
        } else if mb.end_key == ma.begin_key {
            (mb.begin_key, ma.end_key)
        } else {
            return Err(Error::InvalidParameter(format!(
                "The two shards are not adjacent: shard {} and shard {}",
                a.id, b.id
            )));
        };
        self.check_shard_room(&topic, 1)?;
        let id = Catalog::next_shard_id(&topic);
        let child = ShardRow {
            topic_uid: topic.uid,
            shard_id: id,
            state: "ACTIVE".to_string(),
            begin_key: hashkey::format_key(begin),
            end_key: hashkey::format_key(end),
            parents: vec![a.id, b.id],
            create_time: now_secs(),
            closed_time: 0,
        };
        self.replace_shards(&topic, &[a, b], vec![child]).await?;
        Ok(NewShard {
            id,
            begin_key: begin,
            end_key: end,
        })
    }

    /// Grows a topic to `target` shards. Allowed on extend-mode topics and on topics that were
    /// never split or merged; the hash space is re-divided evenly over all shards.
    pub async fn extend_shards(&self, project: &str, topic: &str, target: i64) -> Result<()> {
        // issue 14: cluster — decide on the topology other nodes left (routed with puts,
        // so the HTTP layer did not refresh).
        self.refresh_if_changed().await?;
        let _guard = self.change_lock.lock().await;
        let topic = self.topic(project, topic)?;
        let current = topic.shards.read().len() as i64;
        let reshaped = topic.shards.read().iter().any(|s| {
            s.meta.read().state != ShardState::Active || !s.meta.read().parents.is_empty()
        });
        if reshaped {
            return Err(Error::InvalidOperation(format!(
                "topic {} has been split or merged; it cannot be extended",
                topic.name
            )));
        }
        if target <= current {
            return Err(Error::InvalidParameter(format!(
                "ShardNumber {target} must be larger than the current shard count {current}"
            )));
        }
        self.check_shard_room(&topic, (target - current) as usize)?;
        let ranges = hashkey::initial_ranges(target as u32);
        let now = now_secs();
        let children: Vec<ShardRow> = (current..target)
            .map(|i| ShardRow {
                topic_uid: topic.uid,
                shard_id: i as u32,
                state: "ACTIVE".to_string(),
                begin_key: hashkey::format_key(ranges[i as usize].0),
                end_key: hashkey::format_key(ranges[i as usize].1),
                parents: vec![],
                create_time: now,
                closed_time: 0,
            })
            .collect();
        let range_keys: Vec<(String, String)> = ranges
            .iter()
            .map(|(b, e)| (hashkey::format_key(*b), hashkey::format_key(*e)))
            .collect();
        let _switch = topic.topology.write().await;
        let opened = self
            .add_shards(&topic, &[], 0, &children, &range_keys)
            .await?;
        let shards = topic.shards.read().clone();
        for s in shards {
            let (b, e) = ranges[s.id as usize];
            s.set_meta(|m| {
                m.begin_key = b;
                m.end_key = e;
            });
        }
        topic.shards.write().extend(opened);
        Ok(())
    }
}
