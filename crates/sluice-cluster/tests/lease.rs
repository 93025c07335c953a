//! Leases against a real PostgreSQL (scripts/services.sh): one winner among contenders, a
//! zombie's writes fenced, epochs that only grow, renewal and release by the keeper, node
//! liveness.

mod lease_harness;

use std::time::Duration;

use lease_harness::{bounded, pg_pool};
use sluice_cluster::lease::{Fence, LeaseConfig, LeaseError, LeaseStore};
use sluice_cluster::lease_keeper::LeaseKeeper;
use sqlx::PgPool;

fn short() -> LeaseConfig {
    LeaseConfig {
        ttl: Duration::from_millis(2000),
        renew_every: Duration::from_millis(250),
    }
}

async fn store(pool: &PgPool, node: &str, cfg: LeaseConfig) -> LeaseStore {
    LeaseStore::open(pool.clone(), node, cfg).await.unwrap()
}

/// A protected write: the connector checkpoint of a task, only under its lease.
async fn write_checkpoint(pool: &PgPool, fence: &Fence, seq: i64) -> Result<u64, LeaseError> {
    let sql = format!(
        "INSERT INTO checkpoint (task, seq) SELECT $1, $2 WHERE {}
         ON CONFLICT (task) DO UPDATE SET seq = EXCLUDED.seq",
        Fence::condition(3)
    );
    let q = sqlx::query(&sql).bind(&fence.key).bind(seq);
    fence.execute(pool, q).await
}

async fn checkpoint(pool: &PgPool, task: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT seq FROM checkpoint WHERE task = $1")
        .bind(task)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_contenders_exactly_one_wins() {
    bounded(60, async {
        let pool = pg_pool().await;
        let a = store(&pool, "node-a", LeaseConfig::default()).await;
        let b = store(&pool, "node-b", LeaseConfig::default()).await;
        for i in 0..40 {
            let key = format!("orders/{i}");
            let (ra, rb) = tokio::join!(a.try_acquire("task", &key), b.try_acquire("task", &key));
            let (ra, rb) = (ra.unwrap(), rb.unwrap());
            assert!(ra.is_some() != rb.is_some(), "key {key}: a={ra:?} b={rb:?}");
            let winner = ra.or(rb).unwrap();
            assert_eq!(winner.epoch, 1);
            let state = a.state("task", &key).await.unwrap().unwrap();
            assert_eq!(
                (state.owner.as_str(), state.live),
                (winner.owner.as_str(), true)
            );
            // The loser keeps losing while the lease is held; the winner may retake it idempotently.
            let loser = if winner.owner == "node-a" { &b } else { &a };
            assert_eq!(loser.try_acquire("task", &key).await.unwrap(), None);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_owners_writes_are_fenced() {
    bounded(60, async {
        let pool = pg_pool().await;
        sqlx::raw_sql("CREATE TABLE checkpoint (task text PRIMARY KEY, seq bigint NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        let a = store(&pool, "node-a", short()).await;
        let b = store(&pool, "node-b", short()).await;
        let old = a.try_acquire("task", "t1").await.unwrap().unwrap();
        assert_eq!(write_checkpoint(&pool, &old, 10).await.unwrap(), 1);
        assert!(b.try_acquire("task", "t1").await.unwrap().is_none());

        // a freezes: no renewals. Once the ttl has passed by PostgreSQL's clock, even before
        // anyone takes over, its writes no longer pass.
        tokio::time::sleep(Duration::from_millis(2300)).await;
        let err = write_checkpoint(&pool, &old, 11).await.unwrap_err();
        assert!(
            matches!(err, LeaseError::Fenced { epoch, .. } if epoch == old.epoch),
            "{err}"
        );
        assert!(matches!(
            a.renew(&old).await,
            Err(LeaseError::Fenced { .. })
        ));

        let new = b.try_acquire("task", "t1").await.unwrap().unwrap();
        assert_eq!(new.epoch, old.epoch + 1);
        assert_eq!(write_checkpoint(&pool, &new, 20).await.unwrap(), 1);
        // The zombie wakes up and writes with its old epoch: fenced, the checkpoint stays.
        let err = write_checkpoint(&pool, &old, 12).await.unwrap_err();
        assert!(matches!(err, LeaseError::Fenced { .. }), "{err}");
        assert_eq!(checkpoint(&pool, "t1").await, Some(20));
        // Nor can it release or renew what is no longer its.
        assert!(!a.release(&old).await.unwrap());
        assert!(a.renew(&old).await.is_err());
        assert!(a.try_acquire("task", "t1").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_flight_holds_off_a_takeover() {
    bounded(60, async {
        let pool = pg_pool().await;
        sqlx::raw_sql("CREATE TABLE checkpoint (task text PRIMARY KEY, seq bigint NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        let a = store(&pool, "node-a", short()).await;
        let b = store(&pool, "node-b", short()).await;
        let fence = a.try_acquire("task", "t2").await.unwrap().unwrap();
        // a's fenced write is in a transaction that stays open past the lease's expiry.
        let mut tx = pool.begin().await.unwrap();
        write_checkpoint_tx(&mut tx, &fence, 5).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2300)).await;
        let takeover = tokio::spawn({
            let b = b.clone();
            async move { b.try_acquire("task", "t2").await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !takeover.is_finished(),
            "takeover did not wait for the write in flight"
        );
        tx.commit().await.unwrap();
        let new = takeover.await.unwrap().unwrap().unwrap();
        assert_eq!(new.epoch, fence.epoch + 1);
        // The new owner sees the write that was made under the old epoch.
        assert_eq!(checkpoint(&pool, "t2").await, Some(5));
    })
    .await;
}

async fn write_checkpoint_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    fence: &Fence,
    seq: i64,
) -> Result<u64, LeaseError> {
    let sql = format!(
        "INSERT INTO checkpoint (task, seq) SELECT $1, $2 WHERE {}
         ON CONFLICT (task) DO UPDATE SET seq = EXCLUDED.seq",
        Fence::condition(3)
    );
    fence
        .execute(&mut **tx, sqlx::query(&sql).bind(&fence.key).bind(seq))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_only_grow() {
    bounded(60, async {
        let pool = pg_pool().await;
        let a = store(&pool, "node-a", short()).await;
        let b = store(&pool, "node-b", short()).await;
        let mut seen = Vec::new();
        let f = a.try_acquire("group", "g").await.unwrap().unwrap();
        seen.push(f.epoch);
        // Renewal and an idempotent retake by the holder keep the epoch.
        a.renew(&f).await.unwrap();
        assert_eq!(
            a.try_acquire("group", "g").await.unwrap().unwrap().epoch,
            f.epoch
        );
        // Released (the row stays): the next owner gets a higher epoch, so does a retake by the
        // same node after a release or an expiry.
        assert!(a.release(&f).await.unwrap());
        let f = b.try_acquire("group", "g").await.unwrap().unwrap();
        seen.push(f.epoch);
        assert_eq!(b.release_all().await.unwrap(), 1);
        let f = b.try_acquire("group", "g").await.unwrap().unwrap();
        seen.push(f.epoch);
        tokio::time::sleep(Duration::from_millis(2300)).await;
        let f = b.try_acquire("group", "g").await.unwrap().unwrap();
        seen.push(f.epoch);
        let f = a.try_acquire("group", "g").await;
        assert!(f.unwrap().is_none());
        assert!(b
            .release(&b.try_acquire("group", "g").await.unwrap().unwrap())
            .await
            .unwrap());
        seen.push(a.try_acquire("group", "g").await.unwrap().unwrap().epoch);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "epochs {seen:?}");
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keeper_renews_reports_losses_and_releases_on_shutdown() {
    bounded(60, async {
        let pool = pg_pool().await;
        let a = store(&pool, "node-a", short()).await;
        let b = store(&pool, "node-b", short()).await;
        let (keeper, mut lost) = LeaseKeeper::spawn(a.clone(), "10.0.0.1:8080".into());
        let f1 = keeper.acquire("task", "k1").await.unwrap().unwrap();
        let f2 = keeper.acquire("task", "k2").await.unwrap().unwrap();
        // Held across more than two ttls by renewals alone.
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            assert!(b.try_acquire("task", "k1").await.unwrap().is_none());
        }
        let live = b.live_nodes().await.unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(
            (live[0].id.as_str(), live[0].address.as_str()),
            ("node-a", "10.0.0.1:8080")
        );

        // Someone expires k2 behind the keeper's back and b takes it: the keeper reports it.
        sqlx::query("UPDATE lease SET expires_at = now() - interval '1 second' WHERE key = 'k2'")
            .execute(&pool)
            .await
            .unwrap();
        let taken = b.try_acquire("task", "k2").await.unwrap().unwrap();
        assert_eq!(taken.epoch, f2.epoch + 1);
        let reported = tokio::time::timeout(Duration::from_secs(5), lost.recv())
            .await
            .expect("loss reported within a few renewals")
            .unwrap();
        assert_eq!(reported, f2);
        assert_eq!(keeper.held().await, vec![f1.clone()]);

        // SIGTERM path: everything is released at once, well before the ttl.
        assert_eq!(keeper.shutdown().await.unwrap(), 1);
        let next = b.try_acquire("task", "k1").await.unwrap().unwrap();
        assert_eq!(next.epoch, f1.epoch + 1);
        assert!(b.live_nodes().await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keeper_cut_off_from_postgres_gives_its_leases_up_in_time() {
    bounded(60, async {
        let pool = pg_pool().await;
        let a = store(&pool, "node-a", short()).await;
        let (keeper, mut lost) = LeaseKeeper::spawn(a, "a:1".into());
        let fence = keeper.acquire("task", "k").await.unwrap().unwrap();
        let cut = std::time::Instant::now();
        pool.close().await; // every renewal fails from now on
        let reported = tokio::time::timeout(Duration::from_secs(5), lost.recv())
            .await
            .expect("loss reported")
            .unwrap();
        assert_eq!(reported, fence);
        // Before PostgreSQL can hand the lease to anyone else (ttl after the last renewal).
        assert!(
            cut.elapsed() < short().ttl,
            "reported after {:?}",
            cut.elapsed()
        );
        assert!(keeper.held().await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_renewal_still_gives_leases_up_in_time() {
    bounded(60, async {
        let pool = pg_pool().await;
        let a = store(&pool, "node-a", short()).await;
        let (keeper, mut lost) = LeaseKeeper::spawn(a, "a:1".into());
        let fence = keeper.acquire("task", "k").await.unwrap().unwrap();
        // Renewals now block on the table lock, as on a PostgreSQL that stopped answering.
        let mut blocker = pool.begin().await.unwrap();
        sqlx::query("LOCK TABLE lease IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *blocker)
            .await
            .unwrap();
        let cut = std::time::Instant::now();
        let reported = tokio::time::timeout(Duration::from_secs(5), lost.recv())
            .await
            .expect("loss reported although the renewal hangs")
            .unwrap();
        assert_eq!(reported, fence);
        assert!(
            cut.elapsed() < short().ttl,
            "reported after {:?}",
            cut.elapsed()
        );
        blocker.rollback().await.unwrap();
        keeper.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_heartbeats_drops_out_of_the_live_set() {
    bounded(60, async {
        let pool = pg_pool().await;
        let a = store(&pool, "node-a", short()).await;
        let b = store(&pool, "node-b", short()).await;
        a.heartbeat("a:1").await.unwrap();
        b.heartbeat("b:1").await.unwrap();
        let ids = |v: Vec<sluice_cluster::lease::NodeInfo>| {
            v.into_iter().map(|n| n.id).collect::<Vec<_>>()
        };
        assert_eq!(ids(a.live_nodes().await.unwrap()), vec!["node-a", "node-b"]);
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            b.heartbeat("b:1").await.unwrap();
        }
        assert_eq!(ids(b.live_nodes().await.unwrap()), vec!["node-b"]);
    })
    .await;
}

#[test]
fn lease_config_is_checked() {
    let bad = LeaseConfig {
        ttl: Duration::from_secs(1),
        renew_every: Duration::from_secs(1),
    };
    assert!(matches!(bad.validate(), Err(LeaseError::Config(m)) if m.contains("renew_every")));
    assert!(LeaseConfig::default().validate().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_leases_are_listed_by_key_prefix_with_their_holders_addresses() {
    bounded(60, async {
        let pool = pg_pool().await;
        let a = store(&pool, "node-a", short()).await;
        let b = store(&pool, "node-b", short()).await;
        a.heartbeat("a:1").await.unwrap();
        b.heartbeat("b:1").await.unwrap();
        // `_` and `%` in a prefix are plain characters, not patterns.
        a.try_acquire("task", "7:sink_x:0").await.unwrap().unwrap();
        b.try_acquire("task", "7:sink_x:1").await.unwrap().unwrap();
        a.try_acquire("task", "7:sinkAx:0").await.unwrap().unwrap();
        a.try_acquire("conn", "7:sink_x:2").await.unwrap().unwrap();
        let released = b.try_acquire("task", "7:sink_x:2").await.unwrap().unwrap();
        b.release(&released).await.unwrap();
        let listed = a.live_with_prefix("task", "7:sink_x:").await.unwrap();
        let own = |k: &str, o: &str, ad: &str| (k.to_string(), o.to_string(), ad.to_string());
        assert_eq!(
            listed,
            vec![
                own("7:sink_x:0", "node-a", "a:1"),
                own("7:sink_x:1", "node-b", "b:1")
            ]
        );
    })
    .await;
}
