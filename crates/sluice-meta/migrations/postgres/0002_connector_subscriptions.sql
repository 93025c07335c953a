-- Migration 2 (PostgreSQL; see SQLite's for the why): every connector is backed by its own
-- subscription, whose offsets hold the connector's checkpoints; connector_checkpoints goes.
ALTER TABLE subscriptions ADD COLUMN connector_id TEXT;
CREATE UNIQUE INDEX subscriptions_by_connector ON subscriptions (topic_uid, connector_id)
    WHERE connector_id IS NOT NULL;
ALTER TABLE sub_offsets ADD COLUMN discard_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sub_offsets ADD COLUMN update_time BIGINT NOT NULL DEFAULT 0;

INSERT INTO subscriptions (sub_id, topic_uid, comment, state, create_time, last_modify_time,
                           connector_id)
SELECT (create_time * 1000)::text
           || lpad((99999 - (row_number() OVER (ORDER BY topic_uid, connector_id)) % 100000)::text,
                   5, '0'),
       topic_uid, 'connector ' || connector_id, 1, create_time, last_modify_time, connector_id
FROM connectors;

INSERT INTO sub_offsets (sub_id, shard_id, sequence, timestamp, batch_index, version, session_id,
                         read_end, discard_count, update_time)
SELECT s.sub_id, k.shard_id, k.next_seq, k.last_time, 0, 0, -1, k.finished, k.discard_count,
       k.update_time
FROM connector_checkpoints k
JOIN subscriptions s ON s.topic_uid = k.topic_uid AND s.connector_id = k.connector_id;

DROP TABLE connector_checkpoints;
