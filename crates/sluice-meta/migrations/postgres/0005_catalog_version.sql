-- Migration 5 (issue 14): the catalog version, one row bumped in the same transaction by every
-- catalog change; its row lock also serializes catalog changes across nodes.
CREATE TABLE catalog_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (1, 0);
