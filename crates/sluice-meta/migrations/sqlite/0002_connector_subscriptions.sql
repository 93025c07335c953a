-- Migration 2 (issue 8 item 7): every connector is backed by its own subscription, and the
-- connector's per-shard checkpoints ARE that subscription's offsets (one source of truth).
--
-- * subscriptions.connector_id names the connector that owns the subscription (NULL: an
--   ordinary subscription). A connector has exactly one; (topic_uid, connector_id) is unique.
-- * sub_offsets gains the two checkpoint fields a subscription offset had no place for:
--   discard_count and update_time (ms). A checkpoint maps onto an offset row as
--   next_seq -> sequence, last_time -> timestamp, finished -> read_end (as the service does:
--   the connector's CurrentSequence equals its subscription's offset Sequence).
-- * every existing connector gets a subscription (id: its creation time in ms followed by
--   five digits, comment "connector <id>"), its checkpoints become that subscription's
--   offsets, and connector_checkpoints is dropped.
ALTER TABLE subscriptions ADD COLUMN connector_id TEXT;
CREATE UNIQUE INDEX subscriptions_by_connector ON subscriptions (topic_uid, connector_id)
    WHERE connector_id IS NOT NULL;
ALTER TABLE sub_offsets ADD COLUMN discard_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sub_offsets ADD COLUMN update_time INTEGER NOT NULL DEFAULT 0;

INSERT INTO subscriptions (sub_id, topic_uid, comment, state, create_time, last_modify_time,
                           connector_id)
SELECT printf('%d%05d', create_time * 1000, 99999 - (rowid % 100000)), topic_uid,
       'connector ' || connector_id, 1, create_time, last_modify_time, connector_id
FROM connectors;

INSERT INTO sub_offsets (sub_id, shard_id, sequence, timestamp, batch_index, version, session_id,
                         read_end, discard_count, update_time)
SELECT s.sub_id, k.shard_id, k.next_seq, k.last_time, 0, 0, -1, k.finished, k.discard_count,
       k.update_time
FROM connector_checkpoints k
JOIN subscriptions s ON s.topic_uid = k.topic_uid AND s.connector_id = k.connector_id;

DROP TABLE connector_checkpoints;
