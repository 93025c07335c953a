-- Migration 4 (PostgreSQL; see SQLite's for the columns): access keys and the audit log.
CREATE TABLE access_keys (
    name TEXT PRIMARY KEY,
    access_id TEXT NOT NULL UNIQUE,
    secret TEXT NOT NULL,
    old_secret TEXT,
    old_secret_expire_time BIGINT,
    grants TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    create_time BIGINT NOT NULL,
    last_used_time BIGINT NOT NULL DEFAULT 0,
    expire_time BIGINT
);

CREATE TABLE audit_log (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    request_id TEXT NOT NULL,
    detail TEXT NOT NULL
);
