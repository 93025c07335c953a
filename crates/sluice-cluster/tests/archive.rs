//! The archive against real PostgreSQL and s3s-fs (scripts/services.sh): reads by SEQUENCE and
//! SYSTEM_TIME return the log's bytes, damage is detected, a zombie archiver cannot commit,
//! segments stay contiguous, orphans go only after the grace period.

mod lease_harness;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lease_harness::{bounded, pg_pool, s3_store};
use object_store::{ObjectStore, PutPayload};
use sluice_cluster::archive::{
    object_path, Archive, ArchiveConfig, ArchiveCursor, ArchiveError, SegmentRow,
};
use sluice_cluster::lease::{Fence, LeaseConfig, LeaseError, LeaseStore};
use sluice_log::{Entry, FsyncMode, LogConfig, ShardLog};
use sqlx::PgPool;

const SHARD: &str = "project-1/topic-a/0";

struct Bed {
    pool: PgPool,
    store: Arc<dyn ObjectStore>,
    archive: Archive,
    leases: LeaseStore,
    fence: Fence,
}

async fn bed(grace: Duration, stride: u64) -> Bed {
    let pool = pg_pool().await;
    let store = s3_store();
    let config = ArchiveConfig {
        prefix: "hub/archive".into(),
        orphan_grace: grace,
        index_stride: stride,
        read_max_bytes: 16 << 10,
    };
    let archive = Archive::open(pool.clone(), store.clone(), config)
        .await
        .unwrap();
    let leases = LeaseStore::open(pool.clone(), "archiver-a", LeaseConfig::default())
        .await
        .unwrap();
    let fence = leases.try_acquire("archive", SHARD).await.unwrap().unwrap();
    Bed {
        pool,
        store,
        archive,
        leases,
        fence,
    }
}

/// A real shard log with 3,000 entries of varied sizes over a few hundred system times, and
/// everything read back from it.
fn log_entries() -> (tempfile::TempDir, Vec<Entry>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncMode::Never,
        ..LogConfig::default()
    };
    let log = ShardLog::open(dir.path(), cfg).unwrap();
    let mut seq = 0u64;
    let mut time = 1_700_000_000_000i64;
    while seq < 3000 {
        let n = 1 + (seq % 7) as usize;
        let payloads: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let s = seq + i as u64;
                (0..(s * 13 % 300)).map(|b| (b as u8) ^ (s as u8)).collect()
            })
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        log.append(&refs, time).unwrap();
        seq += n as u64;
        time += if seq.is_multiple_of(5) { 0 } else { 17 };
    }
    let all = log.read(0, usize::MAX, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, seq);
    (dir, all)
}

/// Reads page by page (each [`Archive::read`] is bounded by `read_max_bytes`) until `max`
/// entries or the end of the archive.
async fn read_all(
    archive: &Archive,
    cursor: ArchiveCursor,
    max: usize,
) -> Result<Vec<Entry>, ArchiveError> {
    let mut out: Vec<Entry> = Vec::new();
    let mut cursor = cursor;
    while out.len() < max {
        let page = archive.read(SHARD, cursor, max - out.len()).await?;
        let Some(last) = page.last() else { break };
        cursor = ArchiveCursor::Sequence(last.seq + 1);
        out.extend(page);
    }
    Ok(out)
}

fn same(got: &[Entry], want: &[Entry]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.seq, g.system_time), (w.seq, w.system_time));
        assert_eq!(g.payload, w.payload, "payload of {}", w.seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_by_sequence_and_time_return_the_logs_bytes() {
    bounded(120, async {
        let b = bed(Duration::from_secs(3600), 2048).await;
        let (_dir, all) = log_entries();
        // Three segments, as an archiver would cut them.
        let mut rows = Vec::new();
        for part in [&all[..1000], &all[1000..2200], &all[2200..]] {
            let row = b
                .archive
                .write_segment(&b.fence, SHARD, part)
                .await
                .unwrap()
                .unwrap();
            rows.push(row);
        }
        assert_eq!(b.archive.segments(SHARD).await.unwrap(), rows);
        assert_eq!(
            (rows[0].first_seq, rows[2].last_seq),
            (0, all.len() as u64 - 1)
        );

        // By SEQUENCE, from many places, across segment boundaries.
        for from in [
            0u64,
            1,
            499,
            999,
            1000,
            1001,
            2199,
            2200,
            2999,
            all.len() as u64 - 1,
        ] {
            for max in [1usize, 10, 700, 5000] {
                let got = read_all(&b.archive, ArchiveCursor::Sequence(from), max)
                    .await
                    .unwrap();
                let want: Vec<Entry> = all
                    .iter()
                    .filter(|e| e.seq >= from)
                    .take(max)
                    .cloned()
                    .collect();
                same(&got, &want);
            }
        }
        // By SYSTEM_TIME: the first entry at or after the time, as the log's own order says.
        let times: Vec<i64> = vec![
            0,
            all[0].system_time,
            all[0].system_time + 1,
            all[999].system_time,
            all[1000].system_time,
            all[1500].system_time + 3,
            all[all.len() - 1].system_time,
        ];
        for t in times {
            let got = read_all(&b.archive, ArchiveCursor::SystemTime(t), 300)
                .await
                .unwrap();
            let want: Vec<Entry> = all
                .iter()
                .filter(|e| e.system_time >= t)
                .take(300)
                .cloned()
                .collect();
            same(&got, &want);
        }
        // Past the end: nothing.
        let end = all.len() as u64;
        let none = read_all(&b.archive, ArchiveCursor::Sequence(end), 10)
            .await
            .unwrap();
        assert!(none.is_empty());
        let none = read_all(&b.archive, ArchiveCursor::SystemTime(i64::MAX), 10)
            .await
            .unwrap();
        assert!(none.is_empty());
        // One read fetches at most read_max_bytes (16 KiB) of frames, plus one index interval.
        let page = b
            .archive
            .read(SHARD, ArchiveCursor::Sequence(0), usize::MAX)
            .await
            .unwrap();
        let payload: usize = page.iter().map(|e| e.payload.len() + 4).sum();
        assert!(
            !page.is_empty() && payload <= (16 << 10) + 8192,
            "{payload} bytes read"
        );
        same(&page, &all[..page.len()]);
    })
    .await;
}

async fn object(b: &Bed, row: &SegmentRow) -> Vec<u8> {
    let path = object_path(&row.object_key).unwrap();
    b.store
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

async fn replace(b: &Bed, row: &SegmentRow, bytes: Vec<u8>) {
    let path = object_path(&row.object_key).unwrap();
    b.store
        .put(&path, PutPayload::from(Bytes::from(bytes)))
        .await
        .unwrap();
}

fn corrupt_mentions(r: Result<Vec<Entry>, ArchiveError>, what: &str) {
    match r {
        Err(ArchiveError::Corrupt { source, .. }) => {
            assert!(source.to_string().contains(what), "{source}")
        }
        other => panic!("expected a corrupt object ({what}), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_torn_objects_are_detected() {
    bounded(120, async {
        let b = bed(Duration::from_secs(3600), 1024).await;
        let (_dir, all) = log_entries();
        let row = b
            .archive
            .write_segment(&b.fence, SHARD, &all[..500])
            .await
            .unwrap()
            .unwrap();
        let good = object(&b, &row).await;
        let footer = b.archive.footer(&row).await.unwrap();
        // A fresh reader each time: readers cache footers, and objects are never rewritten in
        // place except here.
        let read = || async {
            let fresh = Archive::open(b.pool.clone(), b.store.clone(), b.archive.config().clone())
                .await
                .unwrap();
            read_all(&fresh, ArchiveCursor::Sequence(0), 500).await
        };
        same(&read().await.unwrap(), &all[..500]);

        // One flipped bit inside the footer index: its CRC catches it.
        let mut bad = good.clone();
        bad[footer.frames_len as usize + 30] ^= 0x08;
        replace(&b, &row, bad).await;
        corrupt_mentions(read().await, "footer CRC mismatch");

        // A torn upload (the same length, the tail never written): no trailer magic.
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 8..].fill(0);
        replace(&b, &row, bad).await;
        corrupt_mentions(read().await, "magic");

        // Damage in a frame: the frame's own CRC catches it when that range is read.
        let mut bad = good.clone();
        bad[footer.points[1].offset as usize + 40] ^= 0x01;
        replace(&b, &row, bad).await;
        corrupt_mentions(read().await, "CRC mismatch");

        // A shorter object than its row says.
        replace(&b, &row, good[..good.len() - 100].to_vec()).await;
        assert!(read().await.is_err());

        replace(&b, &row, good).await;
        same(&read().await.unwrap(), &all[..500]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_archiver_cannot_commit_and_segments_stay_contiguous() {
    bounded(120, async {
        let mut b = bed(Duration::from_secs(3600), 4096).await;
        let (_dir, all) = log_entries();
        let fast = LeaseConfig {
            ttl: Duration::from_millis(600),
            renew_every: Duration::from_millis(100),
        };
        let zombie = LeaseStore::open(b.pool.clone(), "archiver-z", fast)
            .await
            .unwrap();
        b.leases.release(&b.fence).await.unwrap();
        let old = zombie.try_acquire("archive", SHARD).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        b.fence = b
            .leases
            .try_acquire("archive", SHARD)
            .await
            .unwrap()
            .unwrap();
        assert!(b.fence.epoch > old.epoch);

        let zombie_archive =
            Archive::open(b.pool.clone(), b.store.clone(), b.archive.config().clone())
                .await
                .unwrap();
        let err = zombie_archive
            .write_segment(&old, SHARD, &all[..100])
            .await
            .unwrap_err();
        assert!(
            matches!(err, ArchiveError::Lease(LeaseError::Fenced { .. })),
            "{err}"
        );
        assert!(b.archive.segments(SHARD).await.unwrap().is_empty());

        b.archive
            .write_segment(&b.fence, SHARD, &all[..100])
            .await
            .unwrap()
            .unwrap();
        // Overlapping, or leaving a gap: refused.
        for part in [&all[50..150], &all[101..200]] {
            let err = b
                .archive
                .write_segment(&b.fence, SHARD, part)
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    ArchiveError::NotContiguous {
                        archived_last: 99,
                        ..
                    }
                ),
                "{err}"
            );
        }
        b.archive
            .write_segment(&b.fence, SHARD, &all[100..200])
            .await
            .unwrap()
            .unwrap();
        let got = read_all(&b.archive, ArchiveCursor::Sequence(0), 1000)
            .await
            .unwrap();
        same(&got, &all[..200]);
    })
    .await;
}

async fn exists(store: &Arc<dyn ObjectStore>, key: &str) -> bool {
    match store.head(&object_path(key).unwrap()).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => panic!("head {key}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_collected_only_after_the_grace_period() {
    bounded(120, async {
        let grace = Duration::from_secs(3);
        let b = bed(grace, 4096).await;
        let (_dir, all) = log_entries();
        let kept = b
            .archive
            .write_segment(&b.fence, SHARD, &all[..100])
            .await
            .unwrap()
            .unwrap();
        let retired = b
            .archive
            .write_segment(&b.fence, SHARD, &all[100..200])
            .await
            .unwrap()
            .unwrap();
        let live = b
            .archive
            .write_segment(&b.fence, SHARD, &all[200..300])
            .await
            .unwrap()
            .unwrap();
        // An archiver that died between upload and commit.
        let pending = SegmentRow {
            shard_key: SHARD.into(),
            first_seq: 300,
            last_seq: 399,
            first_time: all[300].system_time,
            last_time: all[399].system_time,
            object_key: String::new(),
            bytes: 0,
        };
        let never_committed = b
            .archive
            .upload(&b.fence, &pending, Bytes::from_static(b"partial"))
            .await
            .unwrap();
        // Retention retires the first two segments.
        assert_eq!(
            b.archive.retire_before(&b.fence, SHARD, 200).await.unwrap(),
            2
        );
        assert_eq!(b.archive.segments(SHARD).await.unwrap(), vec![live.clone()]);

        // Within the grace period nothing is deleted.
        assert!(b.archive.collect_orphans().await.unwrap().is_empty());
        for key in [
            &kept.object_key,
            &retired.object_key,
            &never_committed,
            &live.object_key,
        ] {
            assert!(exists(&b.store, key).await, "{key} deleted early");
        }
        tokio::time::sleep(grace + Duration::from_millis(300)).await;
        let mut gone = b.archive.collect_orphans().await.unwrap();
        gone.sort();
        let mut want = vec![
            kept.object_key.clone(),
            retired.object_key.clone(),
            never_committed.clone(),
        ];
        want.sort();
        assert_eq!(gone, want);
        for key in &want {
            assert!(!exists(&b.store, key).await, "{key} not deleted");
        }
        assert!(
            exists(&b.store, &live.object_key).await,
            "a committed object was deleted"
        );
        let got = read_all(&b.archive, ArchiveCursor::Sequence(0), 1000)
            .await
            .unwrap();
        same(&got, &all[200..300]);
        // Collected once only.
        assert!(b.archive.collect_orphans().await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_slower_than_half_the_grace_is_not_committed() {
    bounded(60, async {
        let b = bed(Duration::from_secs(1), 4096).await;
        let (_dir, all) = log_entries();
        let mut builder = sluice_cluster::archive_format::SegmentBuilder::new(4096);
        builder.push(&all[..10]).unwrap();
        let (bytes, _) = builder.finish().unwrap().unwrap();
        let mut row = SegmentRow {
            shard_key: SHARD.into(),
            first_seq: 0,
            last_seq: 9,
            first_time: all[0].system_time,
            last_time: all[9].system_time,
            object_key: String::new(),
            bytes: bytes.len() as u64,
        };
        row.object_key = b.archive.upload(&b.fence, &row, bytes).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let err = b.archive.commit(&b.fence, &row).await.unwrap_err();
        assert!(matches!(err, ArchiveError::UploadTooSlow { .. }), "{err}");
        assert!(b.archive.segments(SHARD).await.unwrap().is_empty());
    })
    .await;
}
