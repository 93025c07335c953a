//! Cluster mode (issue 14): a connector's shard tasks run on the nodes holding their task
//! leases (`service/connector_leases.rs`), so a whole-connector `Status` or `Reload` served by
//! the connector's controlling node also asks each other node running some of its shards.
//!
//! * The same signed request (method, path, headers, original body) goes to each such node
//!   with [`LOCAL_TASKS`] (and the forwarding loop guard): that node answers for the shards it
//!   runs only, and never forwards it (`http/forward.rs`).
//! * A status answer's entries replace the controlling node's own entries for the shards that
//!   node runs (live state, last error, its address). A node that does not answer within
//!   [`FANOUT_TIMEOUT`] (frozen, dying) is skipped: its shards keep the entry made from their
//!   stored checkpoints and lease holder.
//! * Nothing here runs in the embedded mode.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use serde_json::{Map, Value as Json};

use super::forward::{self, FORWARDED_BY};
use super::AppState;
use crate::service::connector_leases::TaskHolder;

/// Marks a request a controlling node sends to a node running some of the connector's tasks:
/// served where it lands, for the shards run there.
pub const LOCAL_TASKS: &str = "x-sluice-local-tasks";

/// How long one node may take to answer (a status poll must not wait for a frozen node).
const FANOUT_TIMEOUT: Duration = Duration::from_millis(1000);

/// The other nodes running some of the connector's shards: address → its shards.
pub fn other_nodes(holders: &BTreeMap<u32, TaskHolder>, me: &str) -> BTreeMap<String, Vec<u32>> {
    let mut nodes: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (shard, h) in holders {
        if h.node != me {
            nodes.entry(h.address.clone()).or_default().push(*shard);
        }
    }
    nodes
}

/// Sends the request to each node in `nodes` (addresses) at once and returns the JSON answers
/// that came back in time with HTTP 200, by address.
pub async fn ask(
    state: &AppState,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
    nodes: Vec<String>,
) -> BTreeMap<String, Json> {
    let Some(me) = state.catalog.cluster.as_ref().map(|c| c.node_id.clone()) else {
        return BTreeMap::new();
    };
    let client = match forward::client(state) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot ask the nodes running a connector's tasks");
            return BTreeMap::new();
        }
    };
    let scheme = forward::scheme(state);
    let mut headers = forward::copy_headers(headers);
    headers.remove(axum::http::header::ACCEPT_ENCODING);
    headers.insert(LOCAL_TASKS, HeaderValue::from_static("1"));
    match HeaderValue::from_str(&me) {
        Ok(v) => {
            headers.insert(FORWARDED_BY, v);
        }
        Err(_) => return BTreeMap::new(),
    }
    let mut asks = tokio::task::JoinSet::new();
    for address in nodes {
        let request = client
            .post(format!("{scheme}://{address}{path_and_query}"))
            .headers(headers.clone())
            .body(body.clone())
            .timeout(FANOUT_TIMEOUT);
        asks.spawn(async move {
            let answer = async {
                let r = request.send().await.map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("HTTP {}", r.status()));
                }
                let bytes = r.bytes().await.map_err(|e| e.to_string())?;
                serde_json::from_slice::<Json>(&bytes).map_err(|e| e.to_string())
            }
            .await;
            (address, answer)
        });
    }
    let mut answers = BTreeMap::new();
    while let Some(done) = asks.join_next().await {
        match done {
            Ok((address, Ok(json))) => {
                answers.insert(address, json);
            }
            Ok((address, Err(e))) => {
                tracing::info!(node = %address, error = %e, "a node running connector tasks did not answer");
            }
            Err(e) => tracing::warn!(error = %e, "asking a node failed"),
        }
    }
    answers
}

/// Replaces the entries of `infos` (shard id → status entry) for the shards each node runs
/// with that node's own entries.
pub fn merge_status(
    infos: &mut Map<String, Json>,
    nodes: &BTreeMap<String, Vec<u32>>,
    answers: &BTreeMap<String, Json>,
) {
    for (address, answer) in answers {
        let Some(shards) = nodes.get(address) else {
            continue;
        };
        let Some(theirs) = answer.get("ShardStatusInfos").and_then(Json::as_object) else {
            continue;
        };
        for shard in shards {
            let k = shard.to_string();
            if let Some(entry) = theirs.get(&k) {
                if infos.contains_key(&k) {
                    infos.insert(k, entry.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_node_answers_only_for_the_shards_it_runs() {
        let holder = |node: &str, address: &str| TaskHolder {
            node: node.into(),
            address: address.into(),
        };
        let holders = BTreeMap::from([
            (0, holder("a", "a:1")),
            (1, holder("b", "b:1")),
            (2, holder("c", "c:1")),
            (3, holder("b", "b:1")),
        ]);
        let nodes = other_nodes(&holders, "a");
        assert_eq!(
            nodes,
            BTreeMap::from([
                ("b:1".to_string(), vec![1, 3]),
                ("c:1".to_string(), vec![2])
            ])
        );
        let mut infos: Map<String, Json> = (0..4)
            .map(|s| (s.to_string(), json!({"State": "CONTEXT_PLANNED"})))
            .collect();
        let answers = BTreeMap::from([(
            "b:1".to_string(),
            // b claims shard 2 too (it ran it a moment ago): only its own shards count.
            json!({"ShardStatusInfos": {
                "1": {"State": "CONTEXT_HANG"},
                "2": {"State": "CONTEXT_EXECUTING"},
                "3": {"State": "CONTEXT_EXECUTING"}}}),
        )]);
        merge_status(&mut infos, &nodes, &answers);
        let state = |s: &str| infos[s]["State"].as_str().unwrap().to_string();
        assert_eq!(state("0"), "CONTEXT_PLANNED");
        assert_eq!(state("1"), "CONTEXT_HANG");
        assert_eq!(state("2"), "CONTEXT_PLANNED", "c did not answer");
        assert_eq!(state("3"), "CONTEXT_EXECUTING");
    }
}
