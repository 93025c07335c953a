-- Migration 3 (issue 10: lake): a connector checkpoint also counts its late rows (SINK_ODPS
-- EVENT_TIME rows written into a partition that already had `_SUCCESS`), durably, next to
-- discard_count; reported as the shard status's LateCount. Only checkpoints write it.
ALTER TABLE sub_offsets ADD COLUMN late_count INTEGER NOT NULL DEFAULT 0;
