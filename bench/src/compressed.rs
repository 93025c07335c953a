//! Read-back with response compression in the core benchmark (issue 12): after each protocol's
//! plain read phase, the same records are read again with an `Accept-Encoding` (pydatahub asks
//! for `lz4` by default, or `zlib`; Java's client `lz4` or `deflate`, and `deflate` gets plain
//! answers; Go `lz4`, `zlib`, `zstd` or `deflate`: docs/sdk-wire.md). The client decompresses and
//! decodes every answer as the plain read phase does (batch: the batch headers; protobuf: every
//! value parsed; JSON: every value parsed, `decode::json_read`). Batch and protobuf reads go through
//! [`wire::read_pass`].

use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::json;
use sluice_client::{Client, CursorType};
use sluice_proto::compress::{self, Compression};
use sluice_proto::RecordSchema;

use crate::decode;
use crate::load::{Proto, Raw, BATCH, PROJECT};
use crate::wire::{self, WireRead};

/// Reads every shard of `topic` from OLDEST until `expected[shard]` records came back, one
/// reader per shard (all at once), in `proto`, asking for `accept`.
#[allow(clippy::too_many_arguments)]
pub async fn read_all(
    client: &Client,
    raw: &Raw,
    proto: Proto,
    topic: &str,
    shards: &[String],
    expected: &[u64],
    schema: &RecordSchema,
    accept: &str,
) -> anyhow::Result<WireRead> {
    match proto {
        Proto::Batch | Proto::Protobuf => {
            let batch = matches!(proto, Proto::Batch);
            wire::read_pass(client, raw, batch, topic, shards, expected, Some(schema), accept).await
        }
        Proto::Json => read_json(client, raw, topic, shards, expected, schema, accept).await,
    }
}

async fn read_json(
    client: &Client,
    raw: &Raw,
    topic: &str,
    shards: &[String],
    expected: &[u64],
    schema: &RecordSchema,
    accept: &str,
) -> anyhow::Result<WireRead> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (shard, &want) in shards.iter().zip(expected) {
        let (client, raw, topic, shard) = (
            client.clone(),
            raw.clone(),
            topic.to_string(),
            shard.clone(),
        );
        let schema = schema.clone();
        let accept = (accept != "none").then(|| accept.to_string());
        tasks.push(tokio::spawn(async move {
            let mut cursor = client
                .get_cursor(PROJECT, &topic, &shard, CursorType::Oldest)
                .await?;
            let path = format!("/projects/{PROJECT}/topics/{topic}/shards/{shard}");
            let mut out = WireRead::default();
            while out.records < want {
                let body = json!({"Action": "sub", "Cursor": cursor, "Limit": BATCH});
                let ans = raw
                    .post_accept(
                        &path,
                        "application/json",
                        None,
                        Bytes::from(body.to_string()),
                        accept.as_deref(),
                    )
                    .await?;
                out.wire += ans.body.len() as u64;
                let plain = match ans.encoding.as_deref() {
                    None => ans.body.to_vec(),
                    Some(name) => {
                        out.served = name.to_string();
                        let kind = Compression::parse(name)?.context("empty Content-Encoding")?;
                        compress::decompress(kind, &ans.body, ans.raw_size, 256 << 20)?
                    }
                };
                out.raw += plain.len() as u64;
                let (next, n) = decode::json_read(&plain, &schema)?;
                cursor = next;
                if n == 0 {
                    bail!(
                        "shard {shard}: read stalled after {} of {want} records",
                        out.records
                    );
                }
                out.records += n;
            }
            anyhow::Ok(out)
        }));
    }
    let mut total = WireRead::default();
    for t in tasks {
        let r = t.await??;
        total.records += r.records;
        total.wire += r.wire;
        total.raw += r.raw;
        if !r.served.is_empty() {
            total.served = r.served;
        }
    }
    total.elapsed = start.elapsed();
    Ok(total)
}
