-- Migration 1: the tables as Sluice created them before versioned migrations. Every statement is
-- IF NOT EXISTS, so this also adopts a store written by such a Sluice (tables, no _sqlx_migrations).
CREATE TABLE IF NOT EXISTS projects (
    name TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
    comment TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    last_modify_time INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS topics (
    uid INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL COLLATE NOCASE,
    name TEXT NOT NULL COLLATE NOCASE,
    record_type TEXT NOT NULL,
    lifecycle_days INTEGER NOT NULL,
    comment TEXT NOT NULL,
    expand_mode TEXT NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT -1,
    create_time INTEGER NOT NULL,
    last_modify_time INTEGER NOT NULL,
    UNIQUE (project, name)
);
CREATE TABLE IF NOT EXISTS schemas (
    topic_uid INTEGER NOT NULL,
    version_id INTEGER NOT NULL,
    schema_json TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    creator TEXT NOT NULL,
    PRIMARY KEY (topic_uid, version_id)
);
CREATE TABLE IF NOT EXISTS shards (
    topic_uid INTEGER NOT NULL,
    shard_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    begin_key TEXT NOT NULL,
    end_key TEXT NOT NULL,
    parents TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    closed_time INTEGER NOT NULL,
    PRIMARY KEY (topic_uid, shard_id)
);

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
);
CREATE TABLE IF NOT EXISTS subscriptions (
    sub_id TEXT NOT NULL PRIMARY KEY,
    topic_uid INTEGER NOT NULL,
    comment TEXT NOT NULL,
    state INTEGER NOT NULL,
    create_time INTEGER NOT NULL,
    last_modify_time INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_by_topic ON subscriptions (topic_uid);
CREATE TABLE IF NOT EXISTS sub_offsets (
    sub_id TEXT NOT NULL,
    shard_id INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    batch_index INTEGER NOT NULL,
    version INTEGER NOT NULL,
    session_id INTEGER NOT NULL,
    read_end INTEGER NOT NULL,
    PRIMARY KEY (sub_id, shard_id)
);
CREATE TABLE IF NOT EXISTS consumer_groups (
    sub_id TEXT NOT NULL PRIMARY KEY,
    generation INTEGER NOT NULL,
    state TEXT NOT NULL
);
