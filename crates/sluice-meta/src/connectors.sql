CREATE TABLE IF NOT EXISTS connectors (
    topic_uid INTEGER NOT NULL,
    connector_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    column_fields TEXT NOT NULL,
    config TEXT NOT NULL,
    creator TEXT NOT NULL,
    start_time INTEGER NOT NULL,
    create_time INTEGER NOT NULL,
    last_modify_time INTEGER NOT NULL,
    PRIMARY KEY (topic_uid, connector_id)
);
CREATE TABLE IF NOT EXISTS connector_checkpoints (
    topic_uid INTEGER NOT NULL,
    connector_id TEXT NOT NULL,
    shard_id INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    last_time INTEGER NOT NULL,
    discard_count INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    PRIMARY KEY (topic_uid, connector_id, shard_id)
)
