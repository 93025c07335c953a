//! Append statements that carry several shards' puts, against a real PostgreSQL: one commit for
//! many shards, two nodes over overlapping shards without deadlocks, a closed shard failing
//! alone inside a shared statement.

mod log_support;

use std::sync::Arc;

use bytes::Bytes;
use log_support::{
    assert_dense, bounded, connect_to, connect_with, new_shard, payloads, pg_url, read_all,
};
use sluice_cluster::log::PgShardStore;
use sluice_log::store::{ShardStore, StoreError};
use sluice_log::AppendInfo;

/// The test PostgreSQL's URL with a planner that takes no hash join, merge join or
/// sequential scan: the UPDATE then visits the heads in the order of the statement's shard list
/// (a nested loop over it, index lookups into `shard_head`), which is the ready list's order and
/// differs between nodes. Only the statement's own key-ordered locking keeps two such nodes from
/// deadlocking.
fn list_ordered_planner_url() -> String {
    let url = pg_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{sep}options=-c%20enable_hashjoin%3Doff%20-c%20enable_mergejoin%3Doff%20-c%20enable_seqscan%3Doff"
    )
}

/// Puts `rounds` puts on every store at once (one task per store); returns each store's puts.
async fn put_on_all(
    stores: &[Arc<PgShardStore>],
    rounds: usize,
    tag: usize,
) -> Vec<Vec<(Vec<Bytes>, AppendInfo)>> {
    let tasks: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(s, store)| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut done = Vec::new();
                for r in 0..rounds {
                    let p = payloads(tag * 10_000 + s * 100 + r, 1 + r % 3);
                    done.push((p.clone(), store.clone().append(p, 0).await.unwrap()));
                }
                done
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_statement_carries_the_puts_of_many_shards() {
    bounded(async {
        let log = connect_with(1).await;
        let mut stores = Vec::new();
        for _ in 0..24 {
            stores.push(new_shard(&log, "batch").await);
        }
        let before = log.append_statements();
        let done = put_on_all(&stores, 5, 1).await;
        let statements = log.append_statements() - before;
        // 120 puts on 24 shards, one statement in flight: with a statement per shard there
        // would be at least 120 (every shard has one put at a time).
        assert!(
            statements < 60,
            "{statements} statements for 120 puts on 24 shards"
        );
        let shared = stores.iter().map(|s| s.append_statements()).sum::<u64>();
        assert!(shared > statements, "no statement carried two shards");
        for (s, infos) in done.iter().enumerate() {
            let by_seq = assert_dense(infos);
            let expected: Vec<Bytes> = by_seq.values().flat_map(|(p, _)| p.clone()).collect();
            let got: Vec<Bytes> = read_all(&stores[s], 1000)
                .await
                .into_iter()
                .map(|e| e.payload)
                .collect();
            assert_eq!(got, expected, "shard {s}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_over_the_same_shards_in_opposite_orders_do_not_deadlock() {
    bounded(async {
        let url = list_ordered_planner_url();
        let node_a = connect_to(&url, 1).await;
        let node_b = connect_to(&url, 1).await;
        let mut on_a = Vec::new();
        for _ in 0..8 {
            on_a.push(new_shard(&node_a, "overlap").await);
        }
        // Node B opens them in the opposite order, so its ready list runs the other way.
        let mut on_b = Vec::new();
        for s in on_a.iter().rev() {
            on_b.push(node_b.shard(s.key()).await.unwrap());
        }
        let (a, b) = tokio::join!(put_on_all(&on_a, 30, 2), put_on_all(&on_b, 30, 3));
        assert_eq!(
            node_a.append_conflicts() + node_b.append_conflicts(),
            0,
            "PostgreSQL rolled back appends to break deadlocks between the nodes"
        );
        for (s, store) in on_a.iter().enumerate() {
            let mut infos = a[s].clone();
            infos.extend(b[on_a.len() - 1 - s].iter().cloned());
            assert_dense(&infos);
            assert_eq!(
                read_all(store, 1000).await.len(),
                infos.iter().map(|(p, _)| p.len()).sum::<usize>()
            );
        }
        assert!(
            node_a.append_statements() < 240 && node_b.append_statements() < 240,
            "no statement carried two shards"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_shard_fails_alone_in_a_shared_statement() {
    bounded(async {
        let node_a = connect_with(1).await;
        let node_b = connect_with(1).await;
        let open = new_shard(&node_a, "mixed-open").await;
        let closed_here = new_shard(&node_a, "mixed-closed").await;
        // Closed by another node: this node's queue for it is still open, so its puts reach
        // the statement and are refused there.
        node_b
            .shard(closed_here.key())
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        let before = node_a.append_statements();
        let mut tasks = Vec::new();
        for i in 0..20usize {
            let (open, closed) = (open.clone(), closed_here.clone());
            tasks.push(tokio::spawn(async move {
                let (o, c) = tokio::join!(
                    open.append(payloads(i, 2), 0),
                    closed.append(payloads(100 + i, 1), 0)
                );
                (o, c)
            }));
        }
        for t in tasks {
            let (o, c) = t.await.unwrap();
            o.unwrap();
            assert!(matches!(c, Err(StoreError::Closed)), "{c:?}");
        }
        let statements = node_a.append_statements() - before;
        assert!(statements < 40, "the shards never shared a statement");
        assert_eq!(open.clone().next_seq().await.unwrap(), 40);
        assert_eq!(closed_here.clone().next_seq().await.unwrap(), 0);
    })
    .await;
}
