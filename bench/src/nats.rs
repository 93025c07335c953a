//! The baseline: NATS JetStream with file storage, one stream per shard, fed the same ~100-byte
//! records one message each by an async-nats publisher that publishes a window of 1000 messages
//! and then awaits their 1000 acks (batched async acks), and read back by a pull consumer per
//! stream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;

use crate::load::{new_hist, nats_payload, PutStats, ReadStats, BATCH};

pub async fn setup(port: u16, shards: usize) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::connect(format!("127.0.0.1:{port}")).await?;
    let js = jetstream::new(client);
    for i in 0..shards {
        js.create_stream(stream::Config {
            name: format!("SHARD{i}"),
            subjects: vec![format!("bench.{i}")],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    }
    Ok(js)
}

/// `writers` tasks publish `total_windows` windows of 1000 messages round-robin over the
/// streams; each window is published, then its acks awaited. Latency = a window's first publish
/// to its last ack (the counterpart of one 1000-record put).
pub async fn publish(
    js: &jetstream::Context,
    shards: usize,
    total_windows: u64,
    writers: usize,
) -> anyhow::Result<PutStats> {
    // The same records as the Sluice runs, a pool of distinct windows per shard.
    let pool: Arc<Vec<Vec<Bytes>>> = Arc::new(
        (0..shards * 4)
            .map(|k| (0..BATCH).map(|i| nats_payload((k * BATCH + i) as i64)).collect())
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (js, pool, next) = (js.clone(), pool.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let mut bytes = 0u64;
            let mut per_shard = vec![0u64; shards];
            let mut acks = Vec::with_capacity(BATCH);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total_windows {
                    break;
                }
                let shard = (i % shards as u64) as usize;
                let subject = format!("bench.{shard}");
                let window = &pool[(i as usize) % pool.len()];
                let t = Instant::now();
                for payload in window {
                    bytes += payload.len() as u64;
                    acks.push(js.publish(subject.clone(), payload.clone()).await?);
                }
                for ack in acks.drain(..) {
                    ack.await?;
                }
                hist.record(t.elapsed().as_micros().max(1) as u64)?;
                per_shard[shard] += BATCH as u64;
            }
            anyhow::Ok((hist, bytes, per_shard))
        }));
    }
    let mut lat = new_hist();
    let mut bytes = 0;
    let mut per_shard = vec![0u64; shards];
    for t in tasks {
        let (h, b, ps) = t.await??;
        lat.add(h)?;
        bytes += b;
        for (a, x) in per_shard.iter_mut().zip(ps) {
            *a += x;
        }
    }
    Ok(PutStats {
        records: per_shard.iter().sum(),
        bytes,
        elapsed: start.elapsed(),
        lat,
        per_shard,
    })
}

/// A pull consumer per stream (no acks), all streams at once, until each has delivered its
/// expected count.
pub async fn read(js: &jetstream::Context, expected: &[u64]) -> anyhow::Result<ReadStats> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, &want) in expected.iter().enumerate() {
        let js = js.clone();
        tasks.push(tokio::spawn(async move {
            let stream = js.get_stream(format!("SHARD{i}")).await?;
            let consumer: consumer::PullConsumer = stream
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(format!("reader{i}")),
                    ack_policy: consumer::AckPolicy::None,
                    ..Default::default()
                })
                .await?;
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(BATCH)
                .messages()
                .await?;
            let (mut got, mut bytes) = (0u64, 0u64);
            while got < want {
                match tokio::time::timeout(Duration::from_secs(30), messages.next()).await {
                    Ok(Some(m)) => {
                        let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
                        bytes += m.payload.len() as u64;
                        got += 1;
                    }
                    Ok(None) => break,
                    Err(_) => anyhow::bail!("stream SHARD{i}: read stalled at {got} of {want}"),
                }
            }
            anyhow::Ok((got, bytes))
        }));
    }
    let (mut records, mut bytes) = (0, 0);
    for t in tasks {
        let (g, b) = t.await??;
        records += g;
        bytes += b;
    }
    Ok(ReadStats {
        records,
        bytes,
        elapsed: start.elapsed(),
    })
}
