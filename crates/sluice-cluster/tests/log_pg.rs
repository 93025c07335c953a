//! The shard log on PostgreSQL against a real server: dense sequences under concurrent
//! appenders (coalescing), many shards, reads by sequence and time, closed and deleted shards,
//! time never going backwards, watches across nodes, appends that cannot be cancelled,
//! retention by dropping partitions.

mod log_support;

use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use log_support::{assert_dense, bounded, connect, new_shard, payloads, pg_url, read_all};
use sluice_cluster::log::{PgLog, PgLogOptions};
use sluice_log::store::{ShardStore, StoreError};
use sluice_log::AppendInfo;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_appenders_on_one_shard_get_dense_sequences_and_coalesce() {
    bounded(async {
        let log = connect().await;
        let store = new_shard(&log, "hot").await;
        let mut tasks = Vec::new();
        for w in 0..16usize {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut done = Vec::new();
                for k in 0..40usize {
                    let p = payloads(w * 1000 + k, 1 + (w + k) % 5);
                    let info = store.clone().append(p.clone(), 0).await.unwrap();
                    done.push((p, info));
                }
                done
            }));
        }
        let mut infos = Vec::new();
        for t in tasks {
            infos.extend(t.await.unwrap());
        }
        let by_seq = assert_dense(&infos);
        let total: u64 = infos.iter().map(|(p, _)| p.len() as u64).sum();
        assert_eq!(store.clone().next_seq().await.unwrap(), total);
        // Every caller's payloads are at its own sequences.
        let entries = read_all(&store, 97).await;
        assert_eq!(entries.len() as u64, total);
        for (first, (p, info)) in &by_seq {
            for (i, payload) in p.iter().enumerate() {
                let e = &entries[(*first as usize) + i];
                assert_eq!(e.seq, first + i as u64);
                assert_eq!(&e.payload, payload);
                assert_eq!(e.system_time, info.system_time);
            }
        }
        // One row per put, fewer statements than puts.
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM log_entry WHERE shard_key = $1")
            .bind(store.key())
            .fetch_one(log.pool())
            .await
            .unwrap();
        assert_eq!(rows, 640);
        let statements = store.append_statements();
        assert!(
            statements < 640,
            "no coalescing: {statements} statements for 640 puts"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_shards_each_get_their_own_dense_sequences() {
    bounded(async {
        let log = connect().await;
        let mut stores = Vec::new();
        for _ in 0..24 {
            stores.push(new_shard(&log, "many").await);
        }
        let mut tasks = Vec::new();
        for (s, store) in stores.iter().enumerate() {
            for w in 0..2usize {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let mut done = Vec::new();
                    for k in 0..10usize {
                        let p = payloads(s * 100 + w * 10 + k, 1 + k % 3);
                        done.push((s, p.clone(), store.clone().append(p, 0).await.unwrap()));
                    }
                    done
                }));
            }
        }
        let mut per_shard: Vec<Vec<(Vec<Bytes>, AppendInfo)>> = vec![Vec::new(); stores.len()];
        for t in tasks {
            for (s, p, info) in t.await.unwrap() {
                per_shard[s].push((p, info));
            }
        }
        for (s, infos) in per_shard.iter().enumerate() {
            let by_seq = assert_dense(infos);
            let entries = read_all(&stores[s], 1000).await;
            let expected: Vec<Bytes> = by_seq.values().flat_map(|(p, _)| p.clone()).collect();
            let got: Vec<Bytes> = entries.into_iter().map(|e| e.payload).collect();
            assert_eq!(got, expected, "shard {s}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_by_sequence_and_time_return_what_was_appended() {
    bounded(async {
        let log = connect().await;
        let store = new_shard(&log, "read").await;
        let mut infos = Vec::new();
        for k in 0..30usize {
            let p = payloads(k, 1 + k % 4);
            infos.push((p.clone(), store.clone().append(p, 0).await.unwrap()));
            if k % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        let all: Vec<(u64, i64, Bytes)> = infos
            .iter()
            .flat_map(|(p, i)| {
                p.iter()
                    .enumerate()
                    .map(move |(n, b)| (i.first_seq + n as u64, i.system_time, b.clone()))
            })
            .collect();
        let total = all.len() as u64;
        // By sequence, from every position, with entry and byte limits.
        for from in 0..=total {
            for (max_entries, max_bytes) in [(1, usize::MAX), (7, usize::MAX), (1000, 40), (5, 0)] {
                let got = store
                    .clone()
                    .read(from, max_entries, max_bytes)
                    .await
                    .unwrap();
                let mut want = Vec::new();
                let mut bytes = 0;
                for (seq, t, b) in all.iter().skip(from as usize) {
                    let full = bytes >= max_bytes || bytes + b.len() > max_bytes;
                    if want.len() >= max_entries || (!want.is_empty() && full) {
                        break;
                    }
                    bytes += b.len();
                    want.push((*seq, *t, b.clone()));
                }
                let got: Vec<_> = got
                    .into_iter()
                    .map(|e| (e.seq, e.system_time, e.payload))
                    .collect();
                assert_eq!(got, want, "read({from}, {max_entries}, {max_bytes})");
            }
        }
        assert!(store
            .clone()
            .read(total + 5, 10, 1000)
            .await
            .unwrap()
            .is_empty());
        // By system time: the first entry at or after each time.
        let last_time = all.last().unwrap().1;
        for t in all.iter().map(|e| e.1).flat_map(|t| [t - 1, t, t + 1]) {
            let want = all.iter().find(|e| e.1 >= t).map(|e| e.0);
            let got = store.clone().seq_at_or_after_time(t).await.unwrap();
            assert_eq!(got, want, "time {t}");
        }
        assert_eq!(
            store
                .clone()
                .seq_at_or_after_time(last_time + 1)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store.clone().seq_at_or_after_time(0).await.unwrap(),
            Some(0)
        );
        assert_eq!(store.clone().first_seq().await.unwrap(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_shard_refuses_appends_on_every_node_and_stays_readable() {
    bounded(async {
        let node_a = connect().await;
        let node_b = connect().await;
        let a = new_shard(&node_a, "closed").await;
        let b = node_b.shard(a.key()).await.unwrap();
        a.clone().append(payloads(1, 3), 0).await.unwrap();
        b.clone().append(payloads(2, 2), 0).await.unwrap();
        a.clone().close().await.unwrap();
        assert!(matches!(
            a.clone().append(payloads(3, 1), 0).await,
            Err(StoreError::Closed)
        ));
        // Node B's coalescer is open, so this goes to PostgreSQL and is refused there.
        assert!(matches!(
            b.clone().append(payloads(4, 1), 0).await,
            Err(StoreError::Closed)
        ));
        assert_eq!(b.clone().next_seq().await.unwrap(), 5);
        assert_eq!(b.clone().read(0, 100, usize::MAX).await.unwrap().len(), 5);
        // A deleted shard is NotFound.
        node_a.delete_shard(a.key()).await.unwrap();
        assert!(matches!(
            b.clone().append(payloads(5, 1), 0).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            b.clone().read(0, 1, 1).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            node_a.shard(a.key()).await,
            Err(sluice_cluster::log::PgLogError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn system_time_never_goes_backwards() {
    bounded(async {
        let log = connect().await;
        let store = new_shard(&log, "time").await;
        let first = store.clone().append(payloads(0, 1), 0).await.unwrap();
        // The head's time is an hour ahead (as if an earlier primary's clock was fast).
        let ahead = first.system_time + 3_600_000;
        sqlx::query("UPDATE shard_head SET last_time_ms = $2 WHERE shard_key = $1")
            .bind(store.key())
            .bind(ahead)
            .execute(log.pool())
            .await
            .unwrap();
        let clamped = store
            .clone()
            .append(payloads(1, 1), i64::MAX)
            .await
            .unwrap();
        assert_eq!(clamped.system_time, ahead, "time went back to the clock");
        // Concurrent appends: times follow sequence order.
        let mut tasks = Vec::new();
        for w in 0..8usize {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut v = Vec::new();
                for k in 0..10 {
                    v.push(
                        store
                            .clone()
                            .append(payloads(w * 10 + k, 2), 0)
                            .await
                            .unwrap(),
                    );
                }
                v
            }));
        }
        let mut infos = Vec::new();
        for t in tasks {
            infos.extend(t.await.unwrap());
        }
        infos.sort_by_key(|i| i.first_seq);
        assert!(infos
            .windows(2)
            .all(|w| w[0].system_time <= w[1].system_time));
        assert!(infos.iter().all(|i| i.system_time >= ahead));
        let entries = read_all(&store, 50).await;
        assert!(entries
            .windows(2)
            .all(|w| w[0].system_time <= w[1].system_time));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_see_local_appends_at_once_and_other_nodes_by_polling() {
    bounded(async {
        let node_a = connect().await;
        let node_b = connect().await;
        let a = new_shard(&node_a, "watch").await;
        let b = node_b.shard(a.key()).await.unwrap();
        let mut local = a.watch();
        let mut remote = b.watch();
        assert_eq!(*local.borrow_and_update(), 0);
        let info = a.clone().append(payloads(0, 3), 0).await.unwrap();
        // Published before the append returned: no poll needed.
        assert_eq!(*local.borrow_and_update(), info.last_seq + 1);
        // Node B learns of it by its poll.
        tokio::time::timeout(Duration::from_secs(5), remote.wait_for(|v| *v == 3))
            .await
            .expect("node B's watch never saw node A's append")
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_append_future_does_not_cancel_the_statement() {
    bounded(async {
        let log = connect().await;
        let store = new_shard(&log, "nocancel").await;
        let mut fut = store.clone().append(payloads(0, 2), 0);
        // Polled once (queued, its statement task spawned), then dropped.
        let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "the append finished at its first poll?");
        drop(fut);
        let mut watch = store.watch();
        tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|v| *v == 2))
            .await
            .expect("the dropped append was cancelled")
            .unwrap();
        assert_eq!(
            store.clone().read(0, 10, usize::MAX).await.unwrap().len(),
            2
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_have_no_statement_timeout_whatever_the_url_says() {
    bounded(async {
        let url = pg_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}options=-c%20statement_timeout%3D7");
        let log = PgLog::connect(&url, PgLogOptions::default()).await.unwrap();
        let t: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(log.pool())
            .await
            .unwrap();
        assert_eq!(t, "0");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_appends_in_flight_and_refuses_new_ones() {
    bounded(async {
        let log = connect().await;
        let store = new_shard(&log, "shutdown").await;
        let pending: Vec<_> = (0..8)
            .map(|k| tokio::spawn(store.clone().append(payloads(k, 1), 0)))
            .collect();
        tokio::task::yield_now().await;
        log.shutdown().await;
        let mut ok = 0u64;
        for p in pending {
            match p.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::Closed) => {}
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        // Everything acknowledged is there, and nothing runs any more.
        assert_eq!(store.clone().next_seq().await.unwrap(), ok);
        assert!(matches!(
            store.clone().append(payloads(9, 1), 0).await,
            Err(StoreError::Closed)
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_old_partitions_and_reads_before_start_are_out_of_range() {
    bounded(async {
        let log = connect().await;
        let store = new_shard(&log, "retention").await;
        // A partition for a day long past (2001-01-01), holding the shard's first three entries.
        let day: i64 = 978_307_200_000;
        let pool = log.pool();
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS log_entry_p20010101 PARTITION OF log_entry \
             FOR VALUES FROM ({day}) TO ({})",
            day + 86_400_000
        ))
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO log_entry (shard_key, base_seq, count, system_time_ms, bytes) \
             VALUES ($1, 0, 3, $2, '\\x010000006101000000620100000063'::bytea)",
        )
        .bind(store.key())
        .bind(day + 1000)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("UPDATE shard_head SET next_seq = 3, last_time_ms = $2 WHERE shard_key = $1")
            .bind(store.key())
            .bind(day + 1000)
            .execute(pool)
            .await
            .unwrap();
        let info = store.clone().append(payloads(0, 2), 0).await.unwrap();
        assert_eq!(info.first_seq, 3);
        let before: Vec<_> = store.clone().read(0, 10, usize::MAX).await.unwrap();
        assert_eq!(before.len(), 5);
        assert_eq!(&before[1].payload[..], b"b");
        assert_eq!(
            store.clone().seq_at_or_after_time(0).await.unwrap(),
            Some(0)
        );

        let dropped = log.drop_partitions_before(day + 86_400_000).await.unwrap();
        assert!(dropped >= 1);
        assert_eq!(store.clone().first_seq().await.unwrap(), 3);
        match store.clone().read(1, 10, usize::MAX).await {
            Err(StoreError::OutOfRange {
                requested: 1,
                first: 3,
            }) => {}
            other => panic!("expected OutOfRange, got {other:?}"),
        }
        let after = store.clone().read(3, 10, usize::MAX).await.unwrap();
        assert_eq!(after.len(), 2);
        assert_eq!(
            store.clone().seq_at_or_after_time(0).await.unwrap(),
            Some(3)
        );
        // Today's partitions are untouched.
        let today: i64 = sqlx::query_scalar("SELECT count(*) FROM log_entry WHERE shard_key = $1")
            .bind(store.key())
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(today, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_gone_below_the_head_are_out_of_range_never_skipped() {
    bounded(async {
        let log = connect().await;
        let store = new_shard(&log, "gap").await;
        for k in 0..3 {
            store.clone().append(payloads(k, 2), 0).await.unwrap();
        }
        // Rows vanish while the head still says they are there (as if dropped between the
        // head and the rows of a read).
        let delete = |base: i64| {
            sqlx::query("DELETE FROM log_entry WHERE shard_key = $1 AND base_seq = $2")
                .bind(store.key().to_string())
                .bind(base)
                .execute(log.pool())
        };
        delete(0).await.unwrap();
        for from in [0, 1] {
            match store.clone().read(from, 10, usize::MAX).await {
                Err(StoreError::OutOfRange { requested, .. }) => assert_eq!(requested, from),
                other => panic!("read({from}): expected OutOfRange, got {other:?}"),
            }
        }
        assert_eq!(
            store.clone().read(2, 10, usize::MAX).await.unwrap().len(),
            4
        );
        delete(2).await.unwrap();
        delete(4).await.unwrap();
        assert!(matches!(
            store.clone().read(3, 10, usize::MAX).await,
            Err(StoreError::OutOfRange { requested: 3, .. })
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_partitions_exist_from_yesterday_to_two_days_ahead() {
    bounded(async {
        let log = connect().await;
        let days: Vec<String> = sqlx::query_scalar(
            "SELECT 'log_entry_p' || to_char((now() AT TIME ZONE 'UTC')::date + d, 'YYYYMMDD')
               FROM generate_series(-1, 2) AS d",
        )
        .fetch_all(log.pool())
        .await
        .unwrap();
        let parts: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'log_entry'::regclass",
        )
        .fetch_all(log.pool())
        .await
        .unwrap();
        for d in days {
            assert!(parts.contains(&d), "partition {d} missing from {parts:?}");
        }
    })
    .await;
}
