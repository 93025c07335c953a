//! The connector runtime against the testkit's in-memory source and a fake sink that can be told to fail
//! transiently or to reject specific records.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_connect::runtime::{
    Checkpoint, ConnectorRuntime, ConnectorSpec, ContextState, RuntimeConfig, SinkOpener,
};
use sluice_connect::sink::{Columns, Sink, SinkData, SinkError, SinkRecord};
use sluice_connect::testkit::{self, MemSource};
use sluice_proto::{FieldType, Record, RecordData, Value};

/// What the fake sink has done, shared with the test.
#[derive(Default)]
struct SinkState {
    /// Flushed records, in order.
    flushed: Vec<SinkRecord>,
    /// Sizes of the successful flushes.
    batches: Vec<usize>,
    /// Fail this many more flushes transiently.
    transient_failures: usize,
    /// Sequences the sink rejects as bad records.
    bad: HashSet<u64>,
    /// Flushes never finish while set (a target that hangs).
    hang_flushes: bool,
    /// Flushes started (including hung and panicked ones).
    flush_calls: usize,
    /// Panic in this many more flushes ...
    panics: usize,
    /// ... and when each panic happened.
    panicked_at: Vec<Instant>,
}

struct FakeSink {
    state: Arc<Mutex<SinkState>>,
    pending: Vec<SinkRecord>,
}

#[async_trait::async_trait]
impl Sink for FakeSink {
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError> {
        let st = self.state.lock().unwrap();
        if let Some(r) = records.iter().find(|r| st.bad.contains(&r.sequence)) {
            return Err(SinkError::bad_record(format!(
                "sequence {} is bad",
                r.sequence
            )));
        }
        self.pending.extend_from_slice(records);
        Ok(())
    }
    async fn flush(&mut self) -> Result<(), SinkError> {
        let hang = {
            let mut st = self.state.lock().unwrap();
            st.flush_calls += 1;
            if st.panics > 0 {
                st.panics -= 1;
                st.panicked_at.push(Instant::now());
                let left = st.panics;
                drop(st);
                panic!("sink invariant broken ({left} panics left)");
            }
            st.hang_flushes
        };
        if hang {
            std::future::pending::<()>().await;
        }
        let mut st = self.state.lock().unwrap();
        if st.transient_failures > 0 {
            st.transient_failures -= 1;
            self.pending.clear();
            return Err(SinkError::transient("target is down".into()));
        }
        let n = self.pending.len();
        st.flushed.append(&mut self.pending);
        if n > 0 {
            st.batches.push(n);
        }
        Ok(())
    }
}

/// Appends one record per value to an in-memory topic with one BIGINT field `v`, with the
/// attribute `k` = the value.
fn put(source: &MemSource, shard: u32, values: &[i64]) {
    source.put(
        shard,
        values
            .iter()
            .map(|v| Record {
                data: RecordData::Tuple(vec![Value::Int(*v)]),
                attributes: vec![("k".into(), v.to_string())],
            })
            .collect(),
    );
}

/// An in-memory source whose checkpoints are checked against the fake sink: commit after
/// flush, so every record before a checkpoint has been flushed (or discarded).
fn mem_source(sink: Arc<Mutex<SinkState>>) -> Arc<MemSource> {
    let source = MemSource::new(Some(testkit::schema(&[("v", FieldType::Bigint)])));
    source.on_checkpoint(move |cp| {
        let st = sink.lock().unwrap();
        let flushed: HashSet<u64> = st
            .flushed
            .iter()
            .filter(|r| r.shard_id == cp.shard_id)
            .map(|r| r.sequence)
            .collect();
        let missing = (0..cp.next_seq)
            .filter(|s| !flushed.contains(s) && !st.bad.contains(s))
            .count();
        assert!(
            cp.finished || missing == 0 || cp.next_seq == 0,
            "checkpoint {cp:?} saved before {missing} records were flushed"
        );
    });
    source
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        max_batch_records: 1000,
        max_batch_bytes: 1 << 20,
        max_batch_age: Duration::from_millis(200),
        linger: Duration::from_millis(5),
        retry_base: Duration::from_millis(10),
        retry_max: Duration::from_millis(50),
        topology_interval: Duration::from_millis(20),
        worker_address: "test".into(),
        stop_grace: Duration::from_secs(5),
    }
}

fn start(
    source: &Arc<MemSource>,
    sink: &Arc<Mutex<SinkState>>,
    cfg: RuntimeConfig,
    cps: Vec<Checkpoint>,
) -> ConnectorRuntime {
    start_on(source, sink, cfg, cps, None)
}

/// [`start`], running only the `allowed` shards (None: all).
fn start_on(
    source: &Arc<MemSource>,
    sink: &Arc<Mutex<SinkState>>,
    cfg: RuntimeConfig,
    cps: Vec<Checkpoint>,
    allowed: Option<BTreeSet<u32>>,
) -> ConnectorRuntime {
    let state = sink.clone();
    let open: SinkOpener = Arc::new(move |_cols| {
        let state = state.clone();
        Box::pin(async move {
            Ok(Box::new(FakeSink {
                state,
                pending: Vec::new(),
            }) as Box<dyn Sink>)
        })
    });
    let spec = ConnectorSpec {
        name: "test".into(),
        columns: Arc::new(Columns {
            names: vec!["v".into()],
            types: vec![FieldType::Bigint],
        }),
        open_sink: open,
        start_time: -1,
        config: cfg,
    };
    ConnectorRuntime::start_on(spec, source.clone(), cps, None, allowed)
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn flushed_values(sink: &Arc<Mutex<SinkState>>) -> Vec<i64> {
    flushed_where(sink, |_| true)
}

/// The flushed values of the records `keep` accepts, in order.
fn flushed_where(sink: &Arc<Mutex<SinkState>>, keep: impl Fn(&SinkRecord) -> bool) -> Vec<i64> {
    sink.lock()
        .unwrap()
        .flushed
        .iter()
        .filter(|r| keep(r))
        .map(|r| match &r.data {
            SinkData::Tuple(v) => match v[0] {
                Value::Int(x) => x,
                _ => panic!("not a bigint"),
            },
            SinkData::Blob(_) => panic!("blob"),
        })
        .collect()
}

fn setup() -> (Arc<Mutex<SinkState>>, Arc<MemSource>) {
    let sink = Arc::new(Mutex::new(SinkState::default()));
    let source = mem_source(sink.clone());
    source.add_shard(0, vec![]);
    (sink, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_by_count_and_bytes() {
    let (sink, source) = setup();
    put(&source, 0, &(0..10).collect::<Vec<_>>());
    let cfg = RuntimeConfig {
        max_batch_records: 3,
        ..config()
    };
    let rt = start(&source, &sink, cfg, vec![]);
    wait_until("10 records", || flushed_values(&sink).len() == 10).await;
    assert_eq!(sink.lock().unwrap().batches, vec![3, 3, 3, 1]);
    rt.stop().await;

    let (sink, source) = setup();
    put(&source, 0, &(0..10).collect::<Vec<_>>());
    let cfg = RuntimeConfig {
        max_batch_bytes: 400, // four 100-byte entries
        ..config()
    };
    let rt = start(&source, &sink, cfg, vec![]);
    wait_until("10 records", || flushed_values(&sink).len() == 10).await;
    assert_eq!(sink.lock().unwrap().batches, vec![4, 4, 2]);
    assert_eq!(flushed_values(&sink), (0..10).collect::<Vec<_>>());
    let attrs = sink.lock().unwrap().flushed[3].attributes.clone();
    assert_eq!(attrs, vec![("k".to_string(), "3".to_string())]);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_records_go_back_to_the_source_for_refilling() {
    let (sink, source) = setup();
    put(&source, 0, &(0..10).collect::<Vec<_>>());
    let cfg = RuntimeConfig {
        max_batch_records: 3,
        ..config()
    };
    let rt = start(&source, &sink, cfg, vec![]);
    wait_until("10 records", || flushed_values(&sink).len() == 10).await;
    rt.stop().await;
    assert_eq!(flushed_values(&sink), (0..10).collect::<Vec<_>>());
    let spare = source.spare_handed_back();
    // The first reads come before any delivery; after that each read gets the records of a
    // delivered batch back, never more than a batch holds.
    assert_eq!(spare.first(), Some(&0), "{spare:?}");
    assert!(spare.iter().any(|n| *n > 0), "{spare:?}");
    assert!(spare.iter().all(|n| *n <= 3), "{spare:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_by_age_under_a_trickle() {
    let (sink, source) = setup();
    let cfg = RuntimeConfig {
        linger: Duration::from_secs(60),
        max_batch_age: Duration::from_millis(150),
        ..config()
    };
    let rt = start(&source, &sink, cfg, vec![]);
    let began = Instant::now();
    for i in 0..8 {
        put(&source, 0, &[i]);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    wait_until("8 records", || flushed_values(&sink).len() == 8).await;
    // Records kept coming faster than the linger, yet nothing waited much beyond the age.
    assert!(began.elapsed() < Duration::from_secs(2));
    let batches = sink.lock().unwrap().batches.clone();
    assert!(
        batches.len() >= 2 && batches.iter().all(|b| *b <= 5),
        "{batches:?}"
    );
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_hang_then_recover() {
    let (sink, source) = setup();
    sink.lock().unwrap().transient_failures = 4;
    put(&source, 0, &[1, 2, 3]);
    let rt = start(&source, &sink, config(), vec![]);
    wait_until("a HANG status", || {
        rt.task_status()
            .get(&0)
            .is_some_and(|s| s.state == ContextState::Hang && s.last_error.contains("down"))
    })
    .await;
    wait_until("recovery", || flushed_values(&sink) == vec![1, 2, 3]).await;
    wait_until("EXECUTING", || {
        rt.task_status()[&0].state == ContextState::Executing
    })
    .await;
    assert_eq!(rt.checkpoints()[&0].next_seq, 3);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_isolated_and_counted() {
    let (sink, source) = setup();
    sink.lock().unwrap().bad = [3u64, 7].into_iter().collect();
    put(&source, 0, &(0..10).collect::<Vec<_>>());
    let rt = start(&source, &sink, config(), vec![]);
    wait_until("checkpoint at 10", || {
        rt.checkpoints().get(&0).is_some_and(|c| c.next_seq == 10)
    })
    .await;
    let mut got = flushed_values(&sink);
    got.sort();
    got.dedup();
    assert_eq!(got, vec![0, 1, 2, 4, 5, 6, 8, 9]);
    assert_eq!(rt.checkpoints()[&0].discard_count, 2);
    assert!(rt.task_status()[&0].last_error.contains("sequence 7"));
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_only_after_flush_and_restart_resumes_there() {
    let (sink, source) = setup();
    sink.lock().unwrap().transient_failures = usize::MAX;
    put(&source, 0, &[0, 1, 2, 3]);
    let rt = start(&source, &sink, config(), vec![]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        source.saved().is_empty(),
        "checkpoint saved without a flush"
    );
    sink.lock().unwrap().transient_failures = 0;
    wait_until("checkpoint at 4", || rt.checkpoints()[&0].next_seq == 4).await;
    let cps: Vec<Checkpoint> = rt.checkpoints().into_values().collect();
    rt.stop().await;

    // Stopped: new records wait; a restart from the checkpoint delivers only them.
    put(&source, 0, &[4, 5]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(flushed_values(&sink), vec![0, 1, 2, 3]);
    let rt = start(&source, &sink, config(), cps);
    wait_until("6 records", || flushed_values(&sink).len() == 6).await;
    assert_eq!(flushed_values(&sink), vec![0, 1, 2, 3, 4, 5]);

    // Reload restarts from the checkpoint without re-delivering.
    rt.reload(Some(0));
    put(&source, 0, &[6]);
    wait_until("7 records", || flushed_values(&sink).len() == 7).await;
    rt.stop().await;

    // An offset moved back (what update_connector_offset does while stopped) re-delivers.
    let rt = start(&source, &sink, config(), vec![Checkpoint::at(0, 5)]);
    wait_until("re-delivery", || flushed_values(&sink).len() == 9).await;
    assert_eq!(&flushed_values(&sink)[7..], &[5, 6]);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_parents_finish_before_children_start() {
    let (sink, source) = setup();
    put(&source, 0, &(0..50).collect::<Vec<_>>());
    source.close(0);
    source.add_shard(1, vec![0]);
    source.add_shard(2, vec![0]);
    put(&source, 1, &[100, 101]);
    put(&source, 2, &[200]);
    sink.lock().unwrap().transient_failures = 3; // slow the parent down
    let rt = start(
        &source,
        &sink,
        RuntimeConfig {
            max_batch_records: 7,
            ..config()
        },
        vec![],
    );
    wait_until("all records", || flushed_values(&sink).len() == 53).await;
    let order = flushed_values(&sink);
    let last_parent = order.iter().rposition(|v| *v < 100).unwrap();
    let first_child = order.iter().position(|v| *v >= 100).unwrap();
    assert!(last_parent < first_child, "{order:?}");
    wait_until("parent FINISHED", || {
        rt.task_status()[&0].state == ContextState::Finished
    })
    .await;
    assert!(rt.checkpoints()[&0].finished);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_waits_for_both_parents() {
    let (sink, source) = setup();
    source.add_shard(1, vec![]);
    put(&source, 0, &(0..30).collect::<Vec<_>>());
    put(&source, 1, &(100..130).collect::<Vec<_>>());
    source.merge([0, 1], 2);
    put(&source, 2, &[1000, 1001, 1002]);
    sink.lock().unwrap().transient_failures = 3; // slow a parent down
    let rt = start(
        &source,
        &sink,
        RuntimeConfig {
            max_batch_records: 4,
            ..config()
        },
        vec![],
    );
    wait_until("all records", || flushed_values(&sink).len() == 63).await;
    let order = flushed_values(&sink);
    let last_parent = order.iter().rposition(|v| *v < 1000).unwrap();
    let first_child = order.iter().position(|v| *v >= 1000).unwrap();
    assert!(last_parent < first_child, "{order:?}");
    wait_until("both parents FINISHED", || {
        let st = rt.task_status();
        st[&0].state == ContextState::Finished && st[&1].state == ContextState::Finished
    })
    .await;
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_flush_is_dropped_after_the_grace_and_nothing_is_lost() {
    let (sink, source) = setup();
    sink.lock().unwrap().hang_flushes = true;
    put(&source, 0, &(0..10).collect::<Vec<_>>());
    let grace = Duration::from_millis(400);
    let cfg = RuntimeConfig {
        stop_grace: grace,
        ..config()
    };
    let rt = start(&source, &sink, cfg.clone(), vec![]);
    wait_until("a flush in progress", || {
        sink.lock().unwrap().flush_calls > 0
    })
    .await;

    // Stop waits for the grace, not for the flush (which never ends).
    let began = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), rt.stop())
        .await
        .expect("stop waited for the stuck flush");
    let took = began.elapsed();
    assert!(
        took >= grace - Duration::from_millis(50) && took < grace + Duration::from_millis(600),
        "stop took {took:?} with a grace of {grace:?}"
    );
    // The dropped batch did not move the checkpoint.
    assert_eq!(rt.checkpoints()[&0].next_seq, 0);
    assert!(source.saved().is_empty());
    assert!(flushed_values(&sink).is_empty());

    // Restarted from that checkpoint against a target that works, every record arrives.
    sink.lock().unwrap().hang_flushes = false;
    let rt = start(
        &source,
        &sink,
        cfg,
        rt.checkpoints().into_values().collect(),
    );
    wait_until("all 10 records", || flushed_values(&sink).len() == 10).await;
    assert_eq!(flushed_values(&sink), (0..10).collect::<Vec<_>>());
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_does_not_wait_for_a_stuck_flush_beyond_the_grace() {
    let (sink, source) = setup();
    sink.lock().unwrap().hang_flushes = true;
    put(&source, 0, &[1, 2, 3]);
    let cfg = RuntimeConfig {
        stop_grace: Duration::from_millis(200),
        ..config()
    };
    let rt = start(&source, &sink, cfg, vec![]);
    wait_until("a flush in progress", || {
        sink.lock().unwrap().flush_calls == 1
    })
    .await;
    rt.reload(Some(0));
    // The reloaded task starts again from its checkpoint and flushes anew.
    wait_until("a second flush after the reload", || {
        sink.lock().unwrap().flush_calls >= 2
    })
    .await;
    sink.lock().unwrap().hang_flushes = false;
    rt.reload(Some(0));
    wait_until("delivery", || flushed_values(&sink) == vec![1, 2, 3]).await;
    assert_eq!(rt.checkpoints()[&0].next_seq, 3);
    rt.stop().await;
}

/// Log output, captured (the panic test checks its error line).
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_hangs_with_its_message_and_restarts_with_backoff() {
    // The only test in this binary that installs a subscriber.
    let logs = LogBuf::default();
    tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .try_init()
        .expect("no other subscriber");
    let (sink, source) = setup();
    sink.lock().unwrap().panics = 3;
    put(&source, 0, &[5, 6, 7]);
    let cfg = RuntimeConfig {
        retry_base: Duration::from_millis(200),
        retry_max: Duration::from_secs(2),
        ..config()
    };
    let rt = start(&source, &sink, cfg, vec![]);
    wait_until("CONTEXT_HANG with the panic message", || {
        rt.task_status().get(&0).is_some_and(|s| {
            s.state == ContextState::Hang && s.last_error.contains("sink invariant broken")
        })
    })
    .await;
    let status = rt.task_status()[&0].clone();
    assert!(
        status.last_error.contains("task panicked"),
        "{}",
        status.last_error
    );
    wait_until("delivery after the panics", || {
        flushed_values(&sink) == vec![5, 6, 7]
    })
    .await;
    wait_until("EXECUTING", || {
        rt.task_status()[&0].state == ContextState::Executing
    })
    .await;
    // The checkpoint is saved after the flush (a restarted task is EXECUTING from its start).
    wait_until("the checkpoint after the delivery", || {
        rt.checkpoints().get(&0).is_some_and(|cp| cp.next_seq == 3)
    })
    .await;
    // Restarts were spaced by a growing backoff (first delay in 100..200 ms, the next in
    // 200..400 ms), not immediate (the supervisor looks every 20 ms).
    let at = sink.lock().unwrap().panicked_at.clone();
    assert_eq!(at.len(), 3);
    let (first, second) = (at[1] - at[0], at[2] - at[1]);
    assert!(
        first >= Duration::from_millis(95),
        "first restart after {first:?}"
    );
    assert!(
        second >= Duration::from_millis(195),
        "second restart after {second:?}"
    );
    rt.stop().await;
    // Each panic was logged at error level with its message.
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("task panicked"))
        .collect();
    assert_eq!(lines.len(), 3, "{logs}");
    assert!(lines[0].contains("sink invariant broken"), "{}", lines[0]);
}

// issue 13: metrics
/// What a `TaskObserver` heard.
#[derive(Default)]
struct Heard {
    /// (shard, records, ok) per sink write.
    writes: Mutex<Vec<(u32, usize, bool)>>,
    errors: Mutex<Vec<(u32, &'static str)>>,
}

impl sluice_connect::runtime::TaskObserver for Heard {
    fn sink_write(&self, shard: u32, records: usize, _elapsed: Duration, ok: bool) {
        self.writes.lock().unwrap().push((shard, records, ok));
    }
    fn error(&self, shard: u32, kind: &'static str) {
        self.errors.lock().unwrap().push((shard, kind));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_hears_every_sink_write_and_error_by_kind() {
    let (sink, source) = setup();
    {
        let mut st = sink.lock().unwrap();
        st.transient_failures = 1;
        st.bad = [2u64].into_iter().collect();
    }
    put(&source, 0, &[0, 1, 2, 3]);
    let state = sink.clone();
    let open: SinkOpener = Arc::new(move |_cols| {
        let state = state.clone();
        Box::pin(async move {
            Ok(Box::new(FakeSink {
                state,
                pending: Vec::new(),
            }) as Box<dyn Sink>)
        })
    });
    let spec = ConnectorSpec {
        name: "observed".into(),
        columns: Arc::new(Columns {
            names: vec!["v".into()],
            types: vec![FieldType::Bigint],
        }),
        open_sink: open,
        start_time: -1,
        config: config(),
    };
    let heard = Arc::new(Heard::default());
    let rt = ConnectorRuntime::start_observed(spec, source.clone(), vec![], Some(heard.clone()));
    wait_until("checkpoint at 4", || {
        rt.checkpoints().get(&0).is_some_and(|c| c.next_seq == 4)
    })
    .await;
    rt.stop().await;
    let errors = heard.errors.lock().unwrap().clone();
    assert!(errors.contains(&(0, "sink_bad_record")), "{errors:?}");
    let writes = heard.writes.lock().unwrap().clone();
    // Every record but the bad one was written by a write that worked, once.
    let delivered: usize = writes.iter().filter(|w| w.2).map(|w| w.1).sum();
    assert_eq!(delivered, 3, "{writes:?}");
    assert!(writes.iter().any(|w| !w.2), "{writes:?}");
    assert_eq!(
        errors.len(),
        writes.iter().filter(|w| !w.2).count(),
        "one error per failed write: {errors:?} {writes:?}"
    );
}

/// The flushed values of `shard`, in order.
fn flushed_on(sink: &Arc<Mutex<SinkState>>, shard: u32) -> Vec<i64> {
    flushed_where(sink, |r| r.shard_id == shard)
}

/// The last checkpoint of `shard` the source has stored.
fn stored(source: &MemSource, shard: u32) -> Option<Checkpoint> {
    source
        .saved()
        .into_iter()
        .rev()
        .find(|c| c.shard_id == shard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtimes_limited_to_shard_sets_share_a_topic_and_hand_a_shard_over() {
    let (sink, source) = setup();
    for s in 1..4 {
        source.add_shard(s, vec![]);
    }
    for s in 0..4u32 {
        let base = i64::from(s) * 1000;
        put(&source, s, &(base..base + 20).collect::<Vec<_>>());
    }
    let a = start_on(
        &source,
        &sink,
        config(),
        vec![],
        Some(BTreeSet::from([0, 1])),
    );
    let b = start_on(
        &source,
        &sink,
        config(),
        vec![],
        Some(BTreeSet::from([2, 3])),
    );
    wait_until("every record once", || flushed_values(&sink).len() == 80).await;
    assert_eq!(
        a.task_status().keys().copied().collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(
        b.task_status().keys().copied().collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(
        b.checkpoints().keys().copied().collect::<Vec<_>>(),
        vec![2, 3]
    );

    // Shard 1 moves from a to b: a stops it (and forgets it) before b starts it from the stored
    // checkpoint, so nothing is delivered twice and nothing is skipped.
    wait_until("shard 1 checkpointed", || {
        stored(&source, 1).is_some_and(|c| c.next_seq == 20)
    })
    .await;
    assert_eq!(a.stop_shard(1).await, Some(1));
    assert_eq!(a.allowed(), Some(BTreeSet::from([0])));
    assert!(!a.task_status().contains_key(&1) && !a.checkpoints().contains_key(&1));
    put(&source, 1, &[1020, 1021, 1022]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(flushed_on(&sink, 1).len(), 20, "a no longer runs shard 1");
    b.allow(1, stored(&source, 1));
    wait_until("b delivers shard 1's new records", || {
        flushed_on(&sink, 1).len() == 23
    })
    .await;
    assert_eq!(flushed_on(&sink, 1), (1000..1023).collect::<Vec<_>>());
    assert_eq!(b.task_status()[&1].state, ContextState::Executing);
    // A runtime over every shard ignores shard sets.
    let all = start(&source, &sink, config(), vec![]);
    all.allow(9, None);
    assert_eq!(all.allowed(), None);
    assert_eq!(all.stop_shard(0).await, None);
    all.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_waits_for_its_parent_to_finish_on_another_runtime() {
    let (sink, source) = setup();
    put(&source, 0, &(0..30).collect::<Vec<_>>());
    source.split(0, [1, 2]);
    put(&source, 1, &[100, 101]);
    put(&source, 2, &[200]);
    let children = start_on(
        &source,
        &sink,
        config(),
        vec![],
        Some(BTreeSet::from([1, 2])),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        flushed_values(&sink).is_empty(),
        "children wait for the parent"
    );
    assert_eq!(children.task_status()[&1].state, ContextState::Planned);
    let parent = start_on(
        &source,
        &sink,
        RuntimeConfig {
            max_batch_records: 7,
            ..config()
        },
        vec![],
        Some(BTreeSet::from([0])),
    );
    wait_until("all records", || flushed_values(&sink).len() == 33).await;
    let order = flushed_values(&sink);
    let last_parent = order.iter().rposition(|v| *v < 100).unwrap();
    let first_child = order.iter().position(|v| *v >= 100).unwrap();
    assert!(last_parent < first_child, "{order:?}");
    assert!(stored(&source, 0).is_some_and(|c| c.finished));
    parent.stop().await;
    children.stop().await;
}
