//! The archiver and the reads across PostgreSQL and the archive, against real PostgreSQL and
//! s3s-fs (scripts/services.sh; absent = FAIL): reads by SEQUENCE and SYSTEM_TIME return the
//! same bytes before and after archiving, one read spans the boundary, a zombie archiver can
//! neither commit nor delete rows, a crash after the upload leaves an orphan collected only
//! after the grace period and no row lost, closed shards are archived whole.

mod lease_harness;

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lease_harness::{bounded, env, s3_store};
use object_store::ObjectStore;
use sluice_cluster::archive::{object_path, Archive, ArchiveConfig};
use sluice_cluster::archiver::{Archiver, ArchiverConfig, LEASE_KIND};
use sluice_cluster::archiver_read::TieredShardStore;
use sluice_cluster::lease::{LeaseConfig, LeaseStore};
use sluice_cluster::log::{PgLog, PgLogOptions};
use sluice_log::store::ShardStore;
use sluice_log::Entry;
use sqlx::postgres::{PgConnectOptions, PgPool};

const SHARD: &str = "project-1/topic-a/0";

struct Bed {
    log: PgLog,
    store: Arc<dyn ObjectStore>,
    archive: Archive,
    tiered: Arc<TieredShardStore>,
}

/// A PostgreSQL URL on a fresh schema of the test database (its own log, lease and archive
/// tables), so that tests and their orphan collectors do not meet.
async fn schema_url() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let url = env("SLUICE_TEST_PG_URL");
    let schema = format!(
        "arch{}x{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let admin = PgPool::connect_with(PgConnectOptions::from_str(&url).unwrap())
        .await
        .expect("connect to PostgreSQL");
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options[search_path]={schema}")
}

async fn bed(grace: Duration) -> Bed {
    let log = PgLog::connect(
        &schema_url().await,
        PgLogOptions {
            max_connections: 6,
            poll_interval: Duration::from_millis(50),
            ..PgLogOptions::default()
        },
    )
    .await
    .expect("connect to the test PostgreSQL");
    let store = s3_store();
    let config = ArchiveConfig {
        prefix: "hub/archive".into(),
        orphan_grace: grace,
        index_stride: 512,
        read_max_bytes: 4 << 10,
    };
    let archive = Archive::open(log.pool().clone(), store.clone(), config)
        .await
        .unwrap();
    assert!(log.create_shard(SHARD, 0).await.unwrap());
    let tiered = TieredShardStore::new(log.shard(SHARD).await.unwrap(), archive.clone());
    Bed {
        log,
        store,
        archive,
        tiered,
    }
}

impl Bed {
    async fn archiver(&self, node: &str, config: ArchiverConfig) -> (Archiver, LeaseStore) {
        let leases = LeaseStore::open(self.log.pool().clone(), node, LeaseConfig::default())
            .await
            .unwrap();
        let archiver =
            Archiver::new(&self.log, self.archive.clone(), leases.clone(), config).unwrap();
        (archiver, leases)
    }

    /// `puts` appends of 1..=5 entries of varied sizes, a few ms apart (distinct times).
    async fn fill(&self, puts: usize) {
        for p in 0..puts {
            let payloads: Vec<Bytes> = (0..1 + p % 5)
                .map(|i| {
                    Bytes::from(format!(
                        "put {p} entry {i} {}",
                        "x".repeat((p * 7 + i) % 90)
                    ))
                })
                .collect();
            self.tiered.clone().append(payloads, 0).await.unwrap();
            if p % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
    }

    async fn head(&self) -> (u64, u64) {
        let (archived, next): (i64, i64) =
            sqlx::query_as("SELECT archived_seq, next_seq FROM shard_head WHERE shard_key = $1")
                .bind(SHARD)
                .fetch_one(self.log.pool())
                .await
                .unwrap();
        (archived as u64, next as u64)
    }

    /// (rows, lowest base_seq) of the shard in `log_entry`.
    async fn log_rows(&self) -> (i64, Option<i64>) {
        sqlx::query_as("SELECT count(*), min(base_seq) FROM log_entry WHERE shard_key = $1")
            .bind(SHARD)
            .fetch_one(self.log.pool())
            .await
            .unwrap()
    }

    async fn exists(&self, object_key: &str) -> bool {
        match self.store.head(&object_path(object_key).unwrap()).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => panic!("head {object_key}: {e}"),
        }
    }
}

/// Everything a reader can see: all entries in pages of several sizes (with and without a
/// byte limit), and for many times the SYSTEM_TIME lookup plus a read from there.
#[derive(Debug, PartialEq)]
struct View {
    pages: Vec<Vec<(u64, i64, Bytes)>>,
    /// How many entries each read returned (the limits are kept the same way).
    read_lens: Vec<Vec<usize>>,
    by_time: Vec<(i64, Option<u64>)>,
}

fn flat(entries: &[Entry]) -> Vec<(u64, i64, Bytes)> {
    entries
        .iter()
        .map(|e| (e.seq, e.system_time, e.payload.clone()))
        .collect()
}

async fn view(store: &Arc<TieredShardStore>) -> View {
    let next = store.clone().next_seq().await.unwrap();
    let mut pages = Vec::new();
    let mut read_lens = Vec::new();
    for (page, max_bytes) in [
        (1usize, usize::MAX),
        (7, usize::MAX),
        (1000, usize::MAX),
        (50, 300),
    ] {
        let mut all = Vec::new();
        let mut lens = Vec::new();
        let mut from = 0;
        while from < next {
            let got = store.clone().read(from, page, max_bytes).await.unwrap();
            assert!(
                !got.is_empty(),
                "read from {from} below next {next} was empty"
            );
            assert!(got.len() <= page);
            lens.push(got.len());
            from = got.last().unwrap().seq + 1;
            all.extend(flat(&got));
        }
        let seqs: Vec<u64> = all.iter().map(|e| e.0).collect();
        assert_eq!(seqs, (0..next).collect::<Vec<_>>(), "dense sequences");
        pages.push(all);
        read_lens.push(lens);
    }
    let times: Vec<i64> = pages[0].iter().map(|e| e.1).collect();
    let mut probes = vec![0, i64::MAX];
    for t in times.iter().step_by(3) {
        probes.extend([t - 1, *t, t + 1]);
    }
    let mut by_time = Vec::new();
    for t in probes {
        let seq = store.clone().seq_at_or_after_time(t).await.unwrap();
        let want = pages[0].iter().find(|e| e.1 >= t).map(|e| e.0);
        assert_eq!(seq, want, "first sequence at or after time {t}");
        by_time.push((t, seq));
    }
    View {
        pages,
        read_lens,
        by_time,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_by_sequence_and_time_are_identical_before_and_after_archiving() {
    bounded(120, async {
        let b = bed(Duration::from_secs(3600)).await;
        b.fill(90).await;
        let before = view(&b.tiered).await;
        let config = ArchiverConfig {
            segment_bytes: 1500,
            max_age: Duration::from_secs(3600),
            max_segments_per_pass: 100,
        };
        let (archiver, _leases) = b.archiver("node-a", config).await;
        let segments = archiver
            .run_shard(SHARD)
            .await
            .unwrap()
            .expect("lease held");
        let (archived, next) = b.head().await;
        assert!(segments.len() >= 3, "{} segments", segments.len());
        // The rest is below the byte threshold and young: it stays in PostgreSQL.
        assert!(
            0 < archived && archived < next,
            "archived {archived} of {next}"
        );
        assert_eq!(segments.last().unwrap().last_seq + 1, archived);
        let (rows, lowest) = b.log_rows().await;
        assert!(
            rows > 0 && lowest == Some(archived as i64),
            "{rows} rows from {lowest:?}"
        );
        let after = view(&b.tiered).await;
        assert_eq!(before, after);
        // A second pass finds nothing due.
        assert!(archiver.run_shard(SHARD).await.unwrap().unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_read_spans_the_archive_and_postgresql() {
    bounded(120, async {
        let b = bed(Duration::from_secs(3600)).await;
        b.fill(40).await;
        let all = b.tiered.clone().read(0, 10_000, usize::MAX).await.unwrap();
        let config = ArchiverConfig {
            segment_bytes: 1000,
            max_age: Duration::from_secs(3600),
            max_segments_per_pass: 1,
        };
        let (archiver, _leases) = b.archiver("node-a", config).await;
        assert_eq!(archiver.run_shard(SHARD).await.unwrap().unwrap().len(), 1);
        let (archived, next) = b.head().await;
        assert!(0 < archived && archived + 5 < next);
        for from in [archived - 3, archived - 1] {
            let got = b.tiered.clone().read(from, 8, usize::MAX).await.unwrap();
            assert_eq!(flat(&got), flat(&all[from as usize..from as usize + 8]));
            assert!(got.first().unwrap().seq < archived && got.last().unwrap().seq >= archived);
        }
        // Everything in one read, across both.
        let got = b.tiered.clone().read(0, 10_000, usize::MAX).await.unwrap();
        assert_eq!(flat(&got), flat(&all));
        // Past the end: empty.
        assert!(b
            .tiered
            .clone()
            .read(next, 5, usize::MAX)
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_decide_when_a_segment_is_cut() {
    bounded(120, async {
        let b = bed(Duration::from_secs(3600)).await;
        b.fill(10).await;
        let by_age = ArchiverConfig {
            segment_bytes: 1 << 20,
            max_age: Duration::from_secs(3),
            max_segments_per_pass: 10,
        };
        let (archiver, _leases) = b.archiver("node-a", by_age).await;
        // Young and small: nothing moves.
        assert!(archiver.run_shard(SHARD).await.unwrap().unwrap().is_empty());
        assert_eq!(b.head().await.0, 0);
        tokio::time::sleep(Duration::from_millis(3200)).await;
        // Old enough: everything unarchived moves, as one segment.
        assert_eq!(archiver.run_shard(SHARD).await.unwrap().unwrap().len(), 1);
        let (archived, next) = b.head().await;
        assert_eq!(archived, next);
        assert_eq!(b.log_rows().await.0, 0);

        // By size: 20 more puts pass 1000 bytes; young, but moved in segments of ~1000 bytes.
        b.fill(20).await;
        let by_size = ArchiverConfig {
            segment_bytes: 1000,
            max_age: Duration::from_secs(3600),
            max_segments_per_pass: 10,
        };
        let (archiver, _leases) = b.archiver("node-a", by_size).await;
        let cut = archiver.run_shard(SHARD).await.unwrap().unwrap();
        assert!(!cut.is_empty());
        assert!(cut.iter().all(|s| s.bytes < 4000), "{cut:?}");
        assert!(b.head().await.0 > archived);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_archiver_cannot_commit_or_delete_rows() {
    bounded(120, async {
        let b = bed(Duration::from_secs(3600)).await;
        b.fill(30).await;
        let before = view(&b.tiered).await;
        let config = ArchiverConfig {
            segment_bytes: 800,
            max_age: Duration::from_secs(3600),
            max_segments_per_pass: 100,
        };
        let (zombie, zombie_leases) = b.archiver("node-a", config).await;
        let old = zombie_leases
            .try_acquire(LEASE_KIND, SHARD)
            .await
            .unwrap()
            .unwrap();
        let prepared = zombie.prepare(&old, SHARD).await.unwrap().expect("due");
        // node-a stalls; its lease lapses and node-b takes the shard over (a newer epoch).
        assert!(zombie_leases.release(&old).await.unwrap());
        let (taker, taker_leases) = b.archiver("node-b", config).await;
        let new = taker_leases.try_acquire(LEASE_KIND, SHARD).await.unwrap();
        assert!(new.is_some_and(|f| f.epoch > old.epoch));
        let rows_before = b.log_rows().await;
        let err = zombie.commit(&old, &prepared).await.unwrap_err();
        assert!(err.is_fenced(), "{err}");
        assert_eq!(b.head().await.0, 0, "archived_seq moved");
        assert_eq!(b.log_rows().await, rows_before, "rows deleted");
        assert!(b.archive.segments(SHARD).await.unwrap().is_empty());
        // node-b archives; the zombie, still on its old fence, is refused again.
        let done = taker
            .run_shard(SHARD)
            .await
            .unwrap()
            .expect("node-b holds the lease");
        assert!(!done.is_empty());
        assert!(
            zombie.run_shard(SHARD).await.unwrap().is_none(),
            "node-b holds it"
        );
        let archived = b.head().await.0;
        let rows = b.log_rows().await;
        b.fill(30).await;
        let err = zombie.step(&old, SHARD).await.unwrap_err();
        assert!(err.is_fenced(), "{err}");
        assert_eq!(b.head().await.0, archived);
        assert!(b.log_rows().await.0 > rows.0);
        // The segments are node-b's only, contiguous, and the reads unchanged.
        let segs = b.archive.segments(SHARD).await.unwrap();
        assert_eq!(segs, done);
        assert!(segs.windows(2).all(|w| w[0].last_seq + 1 == w[1].first_seq));
        let after = view(&b.tiered).await;
        for (a, w) in after.pages.iter().zip(&before.pages) {
            assert_eq!(&a[..w.len()], &w[..]);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_upload_leaves_an_orphan_collected_after_the_grace_period() {
    bounded(120, async {
        let grace = Duration::from_secs(3);
        let b = bed(grace).await;
        b.fill(30).await;
        let before = view(&b.tiered).await;
        let config = ArchiverConfig {
            segment_bytes: 100_000,
            max_age: Duration::ZERO,
            max_segments_per_pass: 10,
        };
        let (archiver, leases) = b.archiver("node-a", config).await;
        let fence = leases
            .try_acquire(LEASE_KIND, SHARD)
            .await
            .unwrap()
            .unwrap();
        // The archiver dies after the upload, before the commit.
        let crashed = archiver.prepare(&fence, SHARD).await.unwrap().unwrap();
        let crashed_key = crashed.row.object_key.clone();
        drop(crashed);
        assert!(b.exists(&crashed_key).await);
        assert_eq!(b.head().await.0, 0);
        assert_eq!(view(&b.tiered).await, before, "no row lost");
        // Within the grace period the collector leaves it alone.
        assert!(b.archive.collect_orphans().await.unwrap().is_empty());
        // The archiver, restarted, archives the same range again under a new object.
        let done = archiver.run_shard(SHARD).await.unwrap().unwrap();
        assert_eq!(done.len(), 1);
        assert_ne!(done[0].object_key, crashed_key);
        assert_eq!(b.head().await, (done[0].last_seq + 1, done[0].last_seq + 1));
        assert!(b.exists(&crashed_key).await && b.exists(&done[0].object_key).await);
        assert_eq!(view(&b.tiered).await, before);
        // After the grace period only the orphan goes.
        tokio::time::sleep(grace + Duration::from_millis(300)).await;
        assert_eq!(
            b.archive.collect_orphans().await.unwrap(),
            vec![crashed_key.clone()]
        );
        assert!(!b.exists(&crashed_key).await);
        assert!(b.exists(&done[0].object_key).await);
        assert_eq!(view(&b.tiered).await, before);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_shards_are_archived_whole() {
    bounded(120, async {
        let b = bed(Duration::from_secs(3600)).await;
        b.fill(50).await;
        let before = view(&b.tiered).await;
        b.tiered.clone().close().await.unwrap();
        // Far below both thresholds, but closed: all of it moves (in segments of ~1 KiB).
        let config = ArchiverConfig {
            segment_bytes: 1000,
            max_age: Duration::from_secs(3600),
            max_segments_per_pass: 1000,
        };
        let (archiver, _leases) = b.archiver("node-a", config).await;
        let done = archiver.run_shard(SHARD).await.unwrap().unwrap();
        assert!(done.len() > 1);
        let (archived, next) = b.head().await;
        assert_eq!(archived, next);
        assert_eq!(b.log_rows().await, (0, None));
        assert_eq!(view(&b.tiered).await, before);
        assert!(archiver.run_shard(SHARD).await.unwrap().unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_range_prepared_twice_is_committed_once() {
    bounded(120, async {
        let b = bed(Duration::from_secs(3600)).await;
        b.fill(30).await;
        let before = view(&b.tiered).await;
        let config = ArchiverConfig {
            segment_bytes: 1000,
            max_age: Duration::from_secs(3600),
            max_segments_per_pass: 10,
        };
        let (archiver, leases) = b.archiver("node-a", config).await;
        let fence = leases
            .try_acquire(LEASE_KIND, SHARD)
            .await
            .unwrap()
            .unwrap();
        // Two attempts at the same range (a retry after a timeout that did commit).
        let first = archiver.prepare(&fence, SHARD).await.unwrap().unwrap();
        let again = archiver.prepare(&fence, SHARD).await.unwrap().unwrap();
        assert_eq!(
            (first.row.first_seq, first.row.last_seq),
            (again.row.first_seq, again.row.last_seq)
        );
        archiver.commit(&fence, &first).await.unwrap();
        let head = b.head().await;
        let rows = b.log_rows().await;
        let err = archiver.commit(&fence, &again).await.unwrap_err();
        assert!(!err.is_fenced(), "{err}");
        assert_eq!(b.head().await, head);
        assert_eq!(b.log_rows().await, rows);
        assert_eq!(b.archive.segments(SHARD).await.unwrap(), vec![first.row]);
        assert_eq!(view(&b.tiered).await, before);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_the_archiver_neither_fail_nor_skip() {
    bounded(120, async {
        let b = bed(Duration::from_secs(3600)).await;
        b.fill(120).await;
        let all = flat(&b.tiered.clone().read(0, 100_000, usize::MAX).await.unwrap());
        let config = ArchiverConfig {
            segment_bytes: 300,
            max_age: Duration::from_secs(3600),
            max_segments_per_pass: 1,
        };
        let (archiver, _leases) = b.archiver("node-a", config).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for r in 0..2u64 {
            let (store, stop, all) = (b.tiered.clone(), stop.clone(), all.clone());
            readers.push(tokio::spawn(async move {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // From places spread over the shard, while it moves.
                    let from = (reads * 7 + r * 3) % all.len() as u64;
                    let got = store.clone().read(from, 40, usize::MAX).await.unwrap();
                    let want = &all[from as usize..(from as usize + 40).min(all.len())];
                    assert_eq!(flat(&got), want, "read from {from}");
                    let t = all[from as usize].1;
                    let seq = store.clone().seq_at_or_after_time(t).await.unwrap();
                    assert_eq!(seq, all.iter().find(|e| e.1 >= t).map(|e| e.0));
                    reads += 1;
                }
                reads
            }));
        }
        let mut segments = 0;
        while let Some(done) = archiver.run_shard(SHARD).await.unwrap() {
            if done.is_empty() {
                break;
            }
            segments += done.len();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.await.unwrap() > 0);
        }
        assert!(segments > 10, "{segments} segments");
        assert!(b.head().await.0 > all.len() as u64 / 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_retires_old_segments_and_their_objects_go_after_the_grace_period() {
    bounded(120, async {
        let grace = Duration::from_secs(2);
        let b = bed(grace).await;
        b.fill(60).await;
        let config = ArchiverConfig {
            segment_bytes: 600,
            max_age: Duration::ZERO,
            max_segments_per_pass: 1000,
        };
        let (archiver, _leases) = b.archiver("node-a", config).await;
        let done = archiver.run_shard(SHARD).await.unwrap().unwrap();
        assert!(done.len() >= 4, "{} segments", done.len());
        // Retire everything that ended before the third segment's last record.
        let cutoff = done[2].last_time;
        let old: Vec<_> = done.iter().filter(|s| s.last_time < cutoff).collect();
        assert!(!old.is_empty() && old.len() < done.len());
        // Another node does not hold the shard's lease: it retires nothing.
        let (other, _) = b.archiver("node-b", config).await;
        assert_eq!(other.retire_expired(SHARD, cutoff).await.unwrap(), None);
        assert_eq!(
            archiver.retire_expired(SHARD, cutoff).await.unwrap(),
            Some(old.len() as u64)
        );
        let kept = b.archive.segments(SHARD).await.unwrap();
        assert_eq!(kept.len(), done.len() - old.len());
        assert!(kept.iter().all(|s| s.last_time >= cutoff));
        assert_eq!(kept[0].first_seq, old.last().unwrap().last_seq + 1);
        // Nothing more to retire at the same cutoff.
        assert_eq!(
            archiver.retire_expired(SHARD, cutoff).await.unwrap(),
            Some(0)
        );
        // The objects stay through the grace period, then exactly they go.
        for s in &old {
            assert!(b.exists(&s.object_key).await);
        }
        assert!(b.archive.collect_orphans().await.unwrap().is_empty());
        tokio::time::sleep(grace + Duration::from_millis(300)).await;
        let mut collected = b.archive.collect_orphans().await.unwrap();
        collected.sort();
        let mut want: Vec<String> = old.iter().map(|s| s.object_key.clone()).collect();
        want.sort();
        assert_eq!(collected, want);
        for s in &old {
            assert!(!b.exists(&s.object_key).await);
        }
        for s in &kept {
            assert!(b.exists(&s.object_key).await);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_segments_of_a_deleted_shard_are_retired_and_collected() {
    bounded(120, async {
        let grace = Duration::from_secs(1);
        let b = bed(grace).await;
        b.fill(30).await;
        let config = ArchiverConfig {
            segment_bytes: 600,
            max_age: Duration::ZERO,
            max_segments_per_pass: 1000,
        };
        let (archiver, _leases) = b.archiver("node-a", config).await;
        let done = archiver.run_shard(SHARD).await.unwrap().unwrap();
        assert!(!done.is_empty());
        // While the shard exists, the sweep leaves it alone.
        assert_eq!(b.archive.retire_deleted_shards().await.unwrap(), 0);
        b.log.delete_shard(SHARD).await.unwrap();
        assert_eq!(
            b.archive.retire_deleted_shards().await.unwrap(),
            done.len() as u64
        );
        assert!(b.archive.segments(SHARD).await.unwrap().is_empty());
        tokio::time::sleep(grace + Duration::from_millis(300)).await;
        assert_eq!(b.archive.collect_orphans().await.unwrap().len(), done.len());
        for s in &done {
            assert!(!b.exists(&s.object_key).await);
        }
    })
    .await;
}
