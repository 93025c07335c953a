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
