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
