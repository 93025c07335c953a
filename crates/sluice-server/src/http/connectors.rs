//! `/projects/{p}/topics/{t}/connectors` and `.../connectors/{id}` (protocol doc §4.9): list,
//! create (the path segment is the type string), get (`?donetime` for the done time),
//! delete, and the POST actions `updateconfig`, `Status`, `Reload`, `appendfield`,
//! `UpdateState` and `UpdateShardContext`. `{id}` may also be a type string naming the
//! topic's single connector of that type.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value as Json};
use sluice_connect::sinks::partition_config_text;
use sluice_proto::sign;

use super::body::{self, JsonFields};
use super::task_fanout;
use super::AppState;
use crate::service::connectors::NewConnector;
use crate::service::{Error, Result};

type ConnectorPath = Path<(String, String, String)>;

pub async fn list(
    State(s): State<AppState>,
    Path((project, topic)): Path<(String, String)>,
) -> Result<Response> {
    body::json(&json!({ "Connectors": s.catalog.list_connectors(&project, &topic).await? }))
}

pub async fn get(
    State(s): State<AppState>,
    Path((project, topic, id)): ConnectorPath,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let c = &s.catalog;
    let wants_done_time = query.unwrap_or_default().split('&').any(|kv| {
        kv.split('=')
            .next()
            .unwrap_or("")
            .eq_ignore_ascii_case("donetime")
    });
    if wants_done_time {
        let d = c.connector_done_time(&project, &topic, &id).await?;
        return body::json(&json!({
            "DoneTime": d.done_time,
            "TimeZone": d.time_zone,
            "TimeWindow": d.time_window,
        }));
    }
    let v = c.get_connector(&project, &topic, &id).await?;
    // The connector's own subscription, as the service names it (pydatahub
    // GetConnectorResult.sub_id, Go ExtraConfig, Java GetConnectorResult.subId).
    let extra_info = match c.connector_subscription_id(&project, &topic, &v.row.connector_id)? {
        Some(sub_id) => json!({ "SubscriptionId": sub_id, "OffsetStoreType": "coordinator" }),
        None => json!({}),
    };
    let contexts: Vec<Json> = v
        .shard_contexts
        .iter()
        .map(|(shard, start, end, current)| {
            json!({
                "ShardId": shard.to_string(),
                "StartSequence": start,
                "EndSequence": end,
                "CurrentSequence": current,
            })
        })
        .collect();
    body::json(&json!({
        "ConnectorId": v.row.connector_id,
        "ClusterAddress": v.worker,
        "Type": v.row.kind,
        "State": v.row.state,
        "Creator": v.row.creator,
        "Owner": v.row.creator,
        "CreateTime": v.row.create_time,
        "LastModifyTime": v.row.last_modify_time,
        "ColumnFields": v.row.column_fields,
        "ExtraInfo": extra_info,
        "ShardContexts": contexts,
        "Config": v.config,
    }))
}

pub async fn delete(
    State(s): State<AppState>,
    Path((project, topic, id)): ConnectorPath,
) -> Result<Response> {
    s.catalog.delete_connector(&project, &topic, &id).await?;
    body::ok()
}

pub async fn post(
    State(s): State<AppState>,
    Path((project, topic, id)): ConnectorPath,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    // Kept as sent: a status or reload may be passed on to other nodes (`task_fanout.rs`).
    let original = axum::body::to_bytes(body, s.catalog.config.max_request_bytes)
        .await
        .map_err(|e| Error::InvalidParameter(format!("the request body: {e}")))?;
    let raw = body::read_body(&s, &headers, Body::from(original.clone())).await?;
    let req = body::parse_json(&raw)?;
    let c = &s.catalog;
    let action = req.action();
    crate::accounts::audit_unless_routine(&action, &["status"]);
    match action.as_str() {
        "create" => {
            let new = NewConnector {
                kind: id,
                column_fields: column_fields(&req)?,
                config: config_of(&req, &raw)?,
                start_time: req.opt_i64("SinkStartTime")?.unwrap_or(-1),
                creator: creator(&headers),
            };
            let connector_id = c.create_connector(&project, &topic, new).await?;
            body::json(&json!({ "ConnectorId": connector_id }))
        }
        "updateconfig" => {
            let config = config_of(&req, &raw)?;
            c.update_connector_config(&project, &topic, &id, &config)
                .await?;
            body::ok()
        }
        "status" => {
            let shard = req.opt_str("ShardId")?;
            let local = headers.contains_key(task_fanout::LOCAL_TASKS);
            let reports = c
                .connector_shard_status_in(&project, &topic, &id, shard.as_deref(), local)
                .await?;
            let mut infos: Map<String, Json> = reports
                .iter()
                .map(|r| (r.shard_id.to_string(), r.to_json()))
                .collect();
            if !local {
                let mut nodes = task_nodes(&s, &project, &topic, &id).await?;
                // Only the nodes running a shard this answer shows.
                nodes.retain(|_, shards| {
                    shards.retain(|s| infos.contains_key(&s.to_string()));
                    !shards.is_empty()
                });
                if !nodes.is_empty() {
                    let target = uri.path_and_query().map_or("/", |p| p.as_str());
                    let asked = nodes.keys().cloned().collect();
                    let answers = task_fanout::ask(&s, target, &headers, original, asked).await;
                    task_fanout::merge_status(&mut infos, &nodes, &answers);
                }
            }
            // One shard: the Go and Java SDKs read the entry's fields at the top level, pydatahub
            // reads `ShardStatusInfos` (or a top-level entry with `ShardId`); serve all of them.
            match (shard, reports.as_slice()) {
                (Some(_), [one]) => {
                    let key = one.shard_id.to_string();
                    let mut entry = match infos.get(&key) {
                        Some(Json::Object(m)) => m.clone(),
                        _ => Map::new(),
                    };
                    entry.insert("ShardId".into(), json!(key));
                    entry.insert("ShardStatusInfos".into(), Json::Object(infos));
                    body::json(&Json::Object(entry))
                }
                _ => body::json(&json!({ "ShardStatusInfos": infos })),
            }
        }
        "reload" => {
            let shard = req.opt_str("ShardId")?;
            c.reload_connector(&project, &topic, &id, shard.as_deref())
                .await?;
            if !headers.contains_key(task_fanout::LOCAL_TASKS) {
                let nodes = task_nodes(&s, &project, &topic, &id).await?;
                if !nodes.is_empty() {
                    let target = uri.path_and_query().map_or("/", |p| p.as_str());
                    let asked = nodes.keys().cloned().collect();
                    task_fanout::ask(&s, target, &headers, original, asked).await;
                }
            }
            body::ok()
        }
        "appendfield" => {
            let field = req.req_str("FieldName")?;
            c.append_connector_field(&project, &topic, &id, &field)
                .await?;
            body::ok()
        }
        "updatestate" => {
            let state = req.req_str("State")?;
            c.update_connector_state(&project, &topic, &id, &state)
                .await?;
            body::ok()
        }
        "updateshardcontext" => {
            let shard = req.opt_str("ShardId")?;
            c.update_connector_offset(
                &project,
                &topic,
                &id,
                shard.as_deref(),
                req.opt_i64("CurrentSequence")?,
                req.opt_i64("CurrentTime")?,
            )
            .await?;
            body::ok()
        }
        other => Err(Error::InvalidParameter(format!(
            "unknown connector Action {other:?}"
        ))),
    }
}

/// Cluster mode: the other nodes running some of the connector's shards, address → shards
/// (empty in the embedded mode).
async fn task_nodes(
    s: &AppState,
    project: &str,
    topic: &str,
    id: &str,
) -> Result<std::collections::BTreeMap<String, Vec<u32>>> {
    let Some(cluster) = &s.catalog.cluster else {
        return Ok(Default::default());
    };
    let (uid, cid) = s.catalog.connector_key(project, topic, id)?;
    let holders = s.catalog.task_holders(uid, &cid).await?;
    Ok(task_fanout::other_nodes(&holders, &cluster.node_id))
}

fn column_fields(req: &Json) -> Result<Vec<String>> {
    let bad = || Error::InvalidParameter("ColumnFields must be a list of field names".into());
    match req.get("ColumnFields") {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// The request's `Config` object, with an ODPS `PartitionConfig` object turned into its
/// ordered string form (serde_json objects do not keep key order, the request's does).
fn config_of(req: &Json, raw: &[u8]) -> Result<Json> {
    let mut config = match req.get("Config") {
        Some(Json::Object(m)) => Json::Object(m.clone()),
        Some(_) => {
            return Err(Error::InvalidParameter(
                "Config must be a JSON object".into(),
            ))
        }
        None => return Err(Error::InvalidParameter("Config is missing".into())),
    };
    if config.get("PartitionConfig").is_some_and(Json::is_object) {
        let ordered: OrderedBody = serde_json::from_slice(raw)
            .map_err(|e| Error::InvalidParameter(format!("Config.PartitionConfig: {e}")))?;
        if let Some(pairs) = ordered
            .config
            .and_then(|c| c.partition_config)
            .and_then(|p| p.0)
        {
            config["PartitionConfig"] = Json::String(partition_config_text(&pairs));
        }
    }
    Ok(config)
}

/// The name of the key that signed the request (the root: its AccessId).
fn creator(headers: &HeaderMap) -> String {
    if let Some(name) = crate::accounts::caller_name() {
        return name;
    }
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(sign::parse_authorization)
        .map(|(id, _)| id.trim().to_string())
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct OrderedBody {
    #[serde(rename = "Config", default)]
    config: Option<OrderedConfig>,
}

#[derive(Deserialize)]
struct OrderedConfig {
    #[serde(rename = "PartitionConfig", default)]
    partition_config: Option<OrderedPairs>,
}

/// A JSON object's string entries in document order (None for anything else).
struct OrderedPairs(Option<Vec<(String, String)>>);

impl<'de> Deserialize<'de> for OrderedPairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedPairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of partition formats")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<OrderedPairs, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    match v {
                        Json::String(s) => out.push((k, s)),
                        _ => return Ok(OrderedPairs(None)),
                    }
                }
                Ok(OrderedPairs(Some(out)))
            }
        }
        d.deserialize_map(V)
    }
}
