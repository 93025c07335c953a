-- Migration 3 (issue 15): access keys and the audit log.
--
-- * access_keys: one row per access key pair other than the root (which comes from the config
--   and is never stored). Secrets are sealed with the server key (a 0600 file in the data dir,
--   not in this store), so a copy of meta.db alone reveals none. During a rotation a key holds
--   two secrets: `secret` (the current one) and `old_secret`, valid until retired or until
--   `old_secret_expire_time` (ms; NULL: until retired). `grants` is a JSON list of
--   "action:project/topic" strings. Times are ms since the epoch; `expire_time` NULL: never.
-- * audit_log: one row per management change: who (key name), what, on which resource, when
--   (ms), the request id, and a short detail that never holds a secret.
CREATE TABLE access_keys (
    name TEXT PRIMARY KEY,
    access_id TEXT NOT NULL UNIQUE,
    secret TEXT NOT NULL,
    old_secret TEXT,
    old_secret_expire_time INTEGER,
    grants TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    create_time INTEGER NOT NULL,
    last_used_time INTEGER NOT NULL DEFAULT 0,
    expire_time INTEGER
);

CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    request_id TEXT NOT NULL,
    detail TEXT NOT NULL
);
