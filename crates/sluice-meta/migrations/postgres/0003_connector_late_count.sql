-- Migration 3 (PostgreSQL): a connector checkpoint also counts its late rows.
ALTER TABLE sub_offsets ADD COLUMN late_count BIGINT NOT NULL DEFAULT 0;
