//! Stored batches are compressed with lz4, not PostgreSQL's default pglz (the CPU of every
//! append and every archiver read), on the parent table and every partition, and read back
//! unchanged. Needs a PostgreSQL built with lz4 (Debian's 14+, as scripts/services.sh starts).

mod log_support;

use bytes::Bytes;
use log_support::{bounded, connect, new_shard};
use sluice_log::store::ShardStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_batches_are_lz4_compressed_and_read_back_unchanged() {
    bounded(async {
        let log = connect().await;
        let store = new_shard(&log, "lz4").await;
        // Large and compressible: PostgreSQL compresses values over ~2 KB.
        let payload = Bytes::from("an event that repeats itself; ".repeat(1000));
        let info = store.clone().append(vec![payload.clone()], 0).await.unwrap();

        let pool = log.pool();
        let method: Option<String> = sqlx::query_scalar(
            "SELECT pg_column_compression(bytes) FROM log_entry WHERE shard_key = $1 AND base_seq = $2",
        )
        .bind(store.key())
        .bind(info.first_seq as i64)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(method.as_deref(), Some("lz4"));

        let settings: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.relname::text, a.attcompression::text FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             WHERE a.attname = 'bytes' AND (c.oid = 'log_entry'::regclass OR c.oid IN
               (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'log_entry'::regclass))",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert!(settings.len() >= 2, "the parent and its partitions: {settings:?}");
        for (table, compression) in &settings {
            assert_eq!(compression, "l", "{table} compresses with {compression:?}");
        }

        let back = store.clone().read(info.first_seq, 1, usize::MAX).await.unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].payload, payload);
    })
    .await;
}
