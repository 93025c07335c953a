//! Management calls as the API answers them (JSON values), for tools that show or pass on the
//! whole answer (the `sluice` command line): projects, topics, shards, connectors,
//! subscriptions and their offsets, and cursors with their sequence.

use reqwest::Method;
use serde_json::{json, Value as Json};

use crate::client::{Client, ClientError};
use crate::records::CursorType;

/// A cursor and the sequence and system time of the record it points at.
#[derive(Debug, Clone)]
pub struct CursorInfo {
    pub cursor: String,
    pub sequence: i64,
    pub record_time: i64,
}

fn topic_path(project: &str, topic: &str) -> String {
    format!("/projects/{project}/topics/{topic}")
}

fn connector_path(project: &str, topic: &str, connector: &str) -> String {
    format!("/projects/{project}/topics/{topic}/connectors/{connector}")
}

fn sub_path(project: &str, topic: &str, sub: &str) -> String {
    format!("/projects/{project}/topics/{topic}/subscriptions/{sub}")
}

impl Client {
    async fn get_json(&self, path: &str, query: Option<&str>) -> Result<Json, ClientError> {
        self.json(Method::GET, path, query, None).await
    }

    async fn post_json(&self, path: &str, body: Json) -> Result<Json, ClientError> {
        self.json(Method::POST, path, None, Some(body)).await
    }

    pub async fn list_projects(&self) -> Result<Json, ClientError> {
        self.get_json("/projects", None).await
    }

    pub async fn get_project(&self, project: &str) -> Result<Json, ClientError> {
        self.get_json(&format!("/projects/{project}"), None).await
    }

    pub async fn update_project(&self, project: &str, comment: &str) -> Result<(), ClientError> {
        self.json(
            Method::PUT,
            &format!("/projects/{project}"),
            None,
            Some(json!({ "Comment": comment })),
        )
        .await?;
        Ok(())
    }

    pub async fn delete_project(&self, project: &str) -> Result<(), ClientError> {
        self.json(Method::DELETE, &format!("/projects/{project}"), None, None)
            .await?;
        Ok(())
    }

    pub async fn list_topics(&self, project: &str) -> Result<Json, ClientError> {
        self.get_json(&format!("/projects/{project}/topics"), None)
            .await
    }

    /// The topic as the API describes it (`RecordSchema` is the schema's JSON text).
    pub async fn describe_topic(&self, project: &str, topic: &str) -> Result<Json, ClientError> {
        self.get_json(&topic_path(project, topic), None).await
    }

    /// Creates a topic from the API's own fields (`RecordType`, `RecordSchema` text, ...).
    pub async fn create_topic_raw(
        &self,
        project: &str,
        topic: &str,
        body: Json,
    ) -> Result<(), ClientError> {
        self.post_json(&topic_path(project, topic), body).await?;
        Ok(())
    }

    pub async fn update_topic(
        &self,
        project: &str,
        topic: &str,
        lifecycle_days: Option<i64>,
        comment: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut body = json!({});
        if let Some(l) = lifecycle_days {
            body["Lifecycle"] = json!(l);
        }
        if let Some(c) = comment {
            body["Comment"] = json!(c);
        }
        self.json(Method::PUT, &topic_path(project, topic), None, Some(body))
            .await?;
        Ok(())
    }

    pub async fn delete_topic(&self, project: &str, topic: &str) -> Result<(), ClientError> {
        self.json(Method::DELETE, &topic_path(project, topic), None, None)
            .await?;
        Ok(())
    }

    pub async fn append_field(
        &self,
        project: &str,
        topic: &str,
        field: &str,
        field_type: &str,
    ) -> Result<(), ClientError> {
        self.post_json(
            &topic_path(project, topic),
            json!({"Action": "AppendField", "FieldName": field, "FieldType": field_type}),
        )
        .await?;
        Ok(())
    }

    /// The shard list with ranges, states and parents.
    pub async fn describe_shards(&self, project: &str, topic: &str) -> Result<Json, ClientError> {
        self.get_json(&format!("{}/shards", topic_path(project, topic)), None)
            .await
    }

    pub async fn split_shard(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        split_key: Option<&str>,
    ) -> Result<Json, ClientError> {
        let mut body = json!({"Action": "split", "ShardId": shard});
        if let Some(k) = split_key {
            body["SplitKey"] = json!(k);
        }
        self.post_json(&format!("{}/shards", topic_path(project, topic)), body)
            .await
    }

    pub async fn merge_shards(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        adjacent: &str,
    ) -> Result<Json, ClientError> {
        self.post_json(
            &format!("{}/shards", topic_path(project, topic)),
            json!({"Action": "merge", "ShardId": shard, "AdjacentShardId": adjacent}),
        )
        .await
    }

    pub async fn extend_shards(
        &self,
        project: &str,
        topic: &str,
        shard_number: i64,
    ) -> Result<(), ClientError> {
        self.post_json(
            &format!("{}/shards", topic_path(project, topic)),
            json!({"Action": "extend", "ShardNumber": shard_number}),
        )
        .await?;
        Ok(())
    }

    /// A cursor with the sequence it points at (LATEST on an empty shard: its next sequence).
    pub async fn cursor_info(
        &self,
        project: &str,
        topic: &str,
        shard: &str,
        kind: CursorType,
    ) -> Result<CursorInfo, ClientError> {
        let body = match kind {
            CursorType::Oldest => json!({"Action": "cursor", "Type": "OLDEST"}),
            CursorType::Latest => json!({"Action": "cursor", "Type": "LATEST"}),
            CursorType::Sequence(s) => {
                json!({"Action": "cursor", "Type": "SEQUENCE", "Sequence": s})
            }
            CursorType::SystemTime(t) => {
                json!({"Action": "cursor", "Type": "SYSTEM_TIME", "SystemTime": t})
            }
        };
        let v = self
            .post_json(
                &format!("{}/shards/{shard}", topic_path(project, topic)),
                body,
            )
            .await?;
        Ok(CursorInfo {
            cursor: v["Cursor"]
                .as_str()
                .ok_or_else(|| ClientError::Decode("no Cursor in the response".into()))?
                .to_string(),
            sequence: v["Sequence"].as_i64().unwrap_or(-1),
            record_time: v["RecordTime"].as_i64().unwrap_or(-1),
        })
    }

    pub async fn list_connectors(&self, project: &str, topic: &str) -> Result<Json, ClientError> {
        self.get_json(
            &format!("{}/connectors", topic_path(project, topic)),
            Some("mode=id"),
        )
        .await
    }

    pub async fn get_connector(
        &self,
        project: &str,
        topic: &str,
        connector: &str,
    ) -> Result<Json, ClientError> {
        self.get_json(&connector_path(project, topic, connector), None)
            .await
    }

    pub async fn connector_done_time(
        &self,
        project: &str,
        topic: &str,
        connector: &str,
    ) -> Result<Json, ClientError> {
        self.get_json(&connector_path(project, topic, connector), Some("donetime"))
            .await
    }

    /// Creates a connector of `kind` (`sink_mysql`, ...); returns its id.
    pub async fn create_connector(
        &self,
        project: &str,
        topic: &str,
        kind: &str,
        column_fields: &[String],
        config: Json,
        start_time: i64,
    ) -> Result<String, ClientError> {
        let v = self
            .post_json(
                &connector_path(project, topic, kind),
                json!({
                    "Action": "Create",
                    "ColumnFields": column_fields,
                    "Config": config,
                    "SinkStartTime": start_time,
                }),
            )
            .await?;
        Ok(v["ConnectorId"].as_str().unwrap_or(kind).to_string())
    }

    pub async fn delete_connector(
        &self,
        project: &str,
        topic: &str,
        connector: &str,
    ) -> Result<(), ClientError> {
        self.json(
            Method::DELETE,
            &connector_path(project, topic, connector),
            None,
            None,
        )
        .await?;
        Ok(())
    }

    /// A POST action on a connector (`UpdateState`, `Reload`, `Status`, `updateconfig`,
    /// `appendfield`, `UpdateShardContext`); `fields` are merged into the request.
    pub async fn connector_action(
        &self,
        project: &str,
        topic: &str,
        connector: &str,
        action: &str,
        fields: Json,
    ) -> Result<Json, ClientError> {
        let mut body = json!({ "Action": action });
        if let Json::Object(m) = fields {
            for (k, v) in m {
                body[k] = v;
            }
        }
        self.post_json(&connector_path(project, topic, connector), body)
            .await
    }

    pub async fn create_subscription(
        &self,
        project: &str,
        topic: &str,
        comment: &str,
    ) -> Result<String, ClientError> {
        let v = self
            .post_json(
                &format!("{}/subscriptions", topic_path(project, topic)),
                json!({"Action": "create", "Comment": comment}),
            )
            .await?;
        v["SubId"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Decode("no SubId in the response".into()))
    }

    pub async fn list_subscriptions(
        &self,
        project: &str,
        topic: &str,
        page_index: i64,
        page_size: i64,
    ) -> Result<Json, ClientError> {
        self.post_json(
            &format!("{}/subscriptions", topic_path(project, topic)),
            json!({"Action": "list", "PageIndex": page_index, "PageSize": page_size}),
        )
        .await
    }

    pub async fn get_subscription(
        &self,
        project: &str,
        topic: &str,
        sub: &str,
    ) -> Result<Json, ClientError> {
        self.get_json(&sub_path(project, topic, sub), None).await
    }

    /// Updates the comment and/or the state (1 on, 0 off).
    pub async fn update_subscription(
        &self,
        project: &str,
        topic: &str,
        sub: &str,
        comment: Option<&str>,
        state: Option<i64>,
    ) -> Result<(), ClientError> {
        let mut body = json!({});
        if let Some(c) = comment {
            body["Comment"] = json!(c);
        }
        if let Some(s) = state {
            body["State"] = json!(s);
        }
        self.json(
            Method::PUT,
            &sub_path(project, topic, sub),
            None,
            Some(body),
        )
        .await?;
        Ok(())
    }

    pub async fn delete_subscription(
        &self,
        project: &str,
        topic: &str,
        sub: &str,
    ) -> Result<(), ClientError> {
        self.json(Method::DELETE, &sub_path(project, topic, sub), None, None)
            .await?;
        Ok(())
    }

    /// The offsets of `shards` (all shards when empty): `{"Offsets": {"0": {...}}}`.
    pub async fn get_offsets(
        &self,
        project: &str,
        topic: &str,
        sub: &str,
        shards: &[String],
    ) -> Result<Json, ClientError> {
        self.post_json(
            &format!("{}/offsets", sub_path(project, topic, sub)),
            json!({"Action": "get", "ShardIds": shards}),
        )
        .await
    }

    /// Resets offsets: `offsets` is `{"<shard>": {"Sequence": n, "Timestamp": ms}, ...}`.
    pub async fn reset_offsets(
        &self,
        project: &str,
        topic: &str,
        sub: &str,
        offsets: Json,
    ) -> Result<(), ClientError> {
        self.json(
            Method::PUT,
            &format!("{}/offsets", sub_path(project, topic, sub)),
            None,
            Some(json!({"Action": "reset", "Offsets": offsets})),
        )
        .await?;
        Ok(())
    }
}
