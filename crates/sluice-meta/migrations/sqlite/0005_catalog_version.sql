-- Migration 5 (issue 14): the catalog version, one row bumped in the same transaction by every
-- catalog change (projects, topics, schemas, shards, subscriptions, connectors, consumer groups,
-- access keys), so that another node notices a change by reading one number.
CREATE TABLE catalog_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (1, 0);
