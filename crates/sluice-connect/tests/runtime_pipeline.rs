//! The runtime's pipelined source path: the next batch is read while the sink writes the
//! current one, records still arrive in order, a restart resumes exactly at the checkpoint
//! (nothing read ahead is lost or skipped), and batches hold `max_batch_records` records even
//! when the stored entries are large.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_connect::runtime::{
    BoxFuture, Checkpoint, ConnectorRuntime, ConnectorSpec, RuntimeConfig, ShardInfo, ShardSource,
    SinkOpener, SourceBatch, SourceError,
};
use sluice_connect::sink::{Columns, Sink, SinkData, SinkError, SinkRecord};
use sluice_connect::testkit::{self, MemSource};
use sluice_proto::{FieldType, Record, RecordData, Value};
use tokio::sync::watch;

/// A [`MemSource`] that remembers where every read started.
struct RecordingSource {
    inner: Arc<MemSource>,
    reads: Mutex<Vec<u64>>,
}

impl RecordingSource {
    fn read_from(&self, seq: u64) -> bool {
        self.reads.lock().unwrap().contains(&seq)
    }
}

impl ShardSource for RecordingSource {
    fn shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        self.inner.shards()
    }
    fn read(
        &self,
        shard: u32,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<SourceBatch, SourceError>> {
        self.reads.lock().unwrap().push(from_seq);
        self.inner.read(shard, from_seq, max_entries, max_bytes)
    }
    fn watch(&self, shard: u32) -> Option<watch::Receiver<u64>> {
        self.inner.watch(shard)
    }
    fn seq_at_or_after_time(&self, shard: u32, t_ms: i64) -> Option<u64> {
        self.inner.seq_at_or_after_time(shard, t_ms)
    }
    fn save_checkpoint(&self, cp: Checkpoint) -> BoxFuture<'_, Result<(), String>> {
        self.inner.save_checkpoint(cp)
    }
}

#[derive(Default)]
struct SinkState {
    /// Flushed records' (sequence, value), in order.
    flushed: Vec<(u64, i64)>,
    /// Sizes of the flushes.
    batches: Vec<usize>,
    /// For each flush: whether the source had been asked for the records right after the
    /// batch while the flush was still running.
    read_ahead_seen: Vec<bool>,
    /// A flush of a batch starting at this sequence never finishes.
    hang_at: Option<u64>,
}

struct PipelineSink {
    state: Arc<Mutex<SinkState>>,
    source: Arc<RecordingSource>,
    pending: Vec<(u64, i64)>,
}

#[async_trait::async_trait]
impl Sink for PipelineSink {
    async fn write(&mut self, records: &[SinkRecord]) -> Result<(), SinkError> {
        for r in records {
            let SinkData::Tuple(v) = &r.data else {
                panic!("not a tuple")
            };
            let Value::Int(x) = v[0] else {
                panic!("not a bigint")
            };
            self.pending.push((r.sequence, x));
        }
        Ok(())
    }
    async fn flush(&mut self) -> Result<(), SinkError> {
        let (Some(first), Some(last)) = (self.pending.first(), self.pending.last()) else {
            return Ok(());
        };
        let (first, next) = (first.0, last.0 + 1);
        if self.state.lock().unwrap().hang_at == Some(first) {
            std::future::pending::<()>().await;
        }
        // Give a read of what follows the batch up to 2 s to show up while this flush runs.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.source.read_from(next) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let seen = self.source.read_from(next);
        let mut st = self.state.lock().unwrap();
        st.read_ahead_seen.push(seen);
        st.batches.push(self.pending.len());
        st.flushed.append(&mut self.pending);
        Ok(())
    }
}

fn config(max_batch_records: usize) -> RuntimeConfig {
    RuntimeConfig {
        max_batch_records,
        max_batch_bytes: 1 << 20,
        max_batch_age: Duration::from_secs(1),
        linger: Duration::from_millis(5),
        retry_base: Duration::from_millis(10),
        retry_max: Duration::from_millis(50),
        topology_interval: Duration::from_millis(20),
        worker_address: "test".into(),
        stop_grace: Duration::from_millis(100),
    }
}

fn setup() -> (Arc<MemSource>, Arc<RecordingSource>, Arc<Mutex<SinkState>>) {
    let mem = MemSource::new(Some(testkit::schema(&[("v", FieldType::Bigint)])));
    mem.add_shard(0, vec![]);
    let source = Arc::new(RecordingSource {
        inner: mem.clone(),
        reads: Mutex::new(Vec::new()),
    });
    (mem, source, Arc::new(Mutex::new(SinkState::default())))
}

fn start(
    source: &Arc<RecordingSource>,
    state: &Arc<Mutex<SinkState>>,
    cfg: RuntimeConfig,
    cps: Vec<Checkpoint>,
) -> ConnectorRuntime {
    let (st, src) = (state.clone(), source.clone());
    let open: SinkOpener = Arc::new(move |_cols| {
        let (state, source) = (st.clone(), src.clone());
        Box::pin(async move {
            Ok(Box::new(PipelineSink {
                state,
                source,
                pending: Vec::new(),
            }) as Box<dyn Sink>)
        })
    });
    let spec = ConnectorSpec {
        name: "pipeline".into(),
        columns: Arc::new(Columns {
            names: vec!["v".into()],
            types: vec![FieldType::Bigint],
        }),
        open_sink: open,
        start_time: -1,
        config: cfg,
    };
    ConnectorRuntime::start(spec, source.clone(), cps)
}

fn rows(values: std::ops::Range<i64>) -> Vec<Record> {
    values
        .map(|v| Record {
            data: RecordData::Tuple(vec![Value::Int(v)]),
            attributes: Vec::new(),
        })
        .collect()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_is_read_while_the_sink_writes_and_order_is_kept() {
    let (mem, source, state) = setup();
    mem.put(0, rows(0..30));
    let rt = start(&source, &state, config(10), vec![]);
    wait_until("30 records", || state.lock().unwrap().flushed.len() == 30).await;
    wait_until("checkpoint at 30", || rt.checkpoints()[&0].next_seq == 30).await;
    rt.stop().await;
    let st = state.lock().unwrap();
    let expected: Vec<(u64, i64)> = (0..30).map(|i| (i as u64, i)).collect();
    assert_eq!(st.flushed, expected, "records out of order or repeated");
    assert_eq!(st.batches, vec![10, 10, 10]);
    assert_eq!(
        &st.read_ahead_seen[..2],
        &[true, true],
        "the batch after each full batch was not read while that batch was flushed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_exactly_at_the_checkpoint_after_a_read_ahead() {
    let (mem, source, state) = setup();
    mem.put(0, rows(0..100));
    // The flush of the batch at 30 hangs: the batch at 40 has been read ahead meanwhile.
    state.lock().unwrap().hang_at = Some(30);
    let rt = start(&source, &state, config(10), vec![]);
    wait_until("the read ahead of 40", || source.read_from(40)).await;
    assert_eq!(rt.checkpoints()[&0].next_seq, 30);
    rt.stop().await; // the hung flush is dropped after the grace
    let cps: Vec<Checkpoint> = rt.checkpoints().into_values().collect();
    assert_eq!(
        cps[0].next_seq, 30,
        "the checkpoint moved past an unflushed batch"
    );
    assert_eq!(state.lock().unwrap().flushed.len(), 30);

    state.lock().unwrap().hang_at = None;
    let rt = start(&source, &state, config(10), cps);
    wait_until("100 records", || state.lock().unwrap().flushed.len() == 100).await;
    wait_until("checkpoint at 100", || rt.checkpoints()[&0].next_seq == 100).await;
    rt.stop().await;
    let st = state.lock().unwrap();
    let expected: Vec<(u64, i64)> = (0..100).map(|i| (i as u64, i)).collect();
    assert_eq!(
        st.flushed, expected,
        "the restart skipped or repeated records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_hold_max_batch_records_when_entries_hold_many_records() {
    let (mem, source, state) = setup();
    // 40 entries of 5 records, 500 stored bytes each (like 5-record batch puts).
    for e in 0..40 {
        mem.put_entry(0, rows(e * 5..e * 5 + 5), 500);
    }
    let rt = start(&source, &state, config(10), vec![]);
    wait_until("200 records", || state.lock().unwrap().flushed.len() == 200).await;
    rt.stop().await;
    let st = state.lock().unwrap();
    let values: Vec<i64> = st.flushed.iter().map(|(_, v)| *v).collect();
    assert_eq!(values, (0..200).collect::<Vec<_>>());
    // Each read brings about the 10 records a batch still needs, not max_batch_bytes of
    // entries (the first read takes one entry to learn their size).
    assert!(
        st.batches.iter().all(|&n| n == 10),
        "batches: {:?}",
        st.batches
    );
}
