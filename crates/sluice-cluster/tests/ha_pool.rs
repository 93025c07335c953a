//! Against the HA test bed (scripts/cluster.sh; run by `scripts/test.sh cluster` with the
//! `ha-bed` feature): the cluster's PostgreSQL pools (`sluice_meta::pg_pool`) are given a
//! connection to each Patroni member directly, so a standby is offered to them for real. The
//! pool must refuse every standby and take the primary, and a write that reaches a standby
//! must count as a spent connection (closed, never pooled again).

use std::time::Duration;

use sluice_meta::pg_pool::{primary_pool_options, server_is_spent};
use sqlx::{Connection, PgConnection};

fn member_urls() -> Vec<String> {
    let urls = std::env::var("SLUICE_TEST_CLUSTER_PG_MEMBER_URLS").unwrap_or_else(|_| {
        panic!("SLUICE_TEST_CLUSTER_PG_MEMBER_URLS is not set: bring the bed up (scripts/cluster.sh up; eval \"$(scripts/cluster.sh env)\")")
    });
    urls.split(',').map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_refuse_standbys_take_the_primary_and_count_standby_writes_as_spent() {
    let mut primaries = 0;
    let mut standbys = 0;
    for url in member_urls() {
        let mut direct = PgConnection::connect(&url)
            .await
            .expect("the member answers");
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut direct)
            .await
            .unwrap();
        let pool = primary_pool_options(2)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(&url)
            .unwrap();
        let lent = pool.acquire().await;
        if in_recovery {
            standbys += 1;
            assert!(lent.is_err(), "a standby ({url}) was lent out by the pool");
            assert_eq!(pool.size(), 0, "a standby connection stayed in the pool");
            let write = sqlx::query("CREATE TABLE ha_pool_probe (x int)")
                .execute(&mut direct)
                .await
                .expect_err("a standby refuses writes");
            assert!(server_is_spent(&write), "{write}");
        } else {
            primaries += 1;
            let mut conn = lent.expect("the primary is lent out");
            let primary: bool = sqlx::query_scalar("SELECT NOT pg_is_in_recovery()")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert!(primary);
        }
        pool.close().await;
    }
    assert_eq!(
        (primaries, standbys),
        (1, 2),
        "the bed has one primary, two standbys"
    );
}
