//! Transport: signing, sending, and turning error bodies into [`ClientError::Api`].

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::Method;
use serde_json::{json, Value as Json};
use sluice_proto::{sign, RecordSchema};

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the endpoint: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("{code}: {message} (HTTP {status}, request {request_id})")]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("cannot decode the response: {0}")]
    Decode(String),
}

impl ClientError {
    /// The DataHub error code, if the endpoint answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A topic's type and schema.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub record_type: String,
    pub schema: Option<RecordSchema>,
    pub lifecycle: i64,
}

/// A shard's id and state.
#[derive(Debug, Clone)]
pub struct ShardInfo {
    pub shard_id: String,
    pub state: String,
}

/// A signed client for one endpoint and key pair.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    access_id: String,
    access_key: String,
}

impl Client {
    /// A client over rustls that trusts the system roots.
    pub fn new(endpoint: &str, access_id: &str, access_key: &str) -> Result<Client, ClientError> {
        Client::with_http(endpoint, access_id, access_key, reqwest::Client::builder())
    }

    /// A client whose HTTP layer starts from `http` (e.g. with extra trusted CAs); the
    /// timeouts and pool size are set here.
    pub fn with_http(
        endpoint: &str,
        access_id: &str,
        access_key: &str,
        http: reqwest::ClientBuilder,
    ) -> Result<Client, ClientError> {
        let http = http
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Client {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            access_id: access_id.trim().to_string(),
            access_key: access_key.trim().to_string(),
        })
    }

    /// Sends a signed request; returns the body of a success response.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        content_type: &str,
        extra: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Bytes, ClientError> {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let mut headers: Vec<(&str, String)> = vec![("x-datahub-client-version", "1.1".into())];
        headers.extend(extra.iter().cloned());
        let signed: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let canonical =
            sign::canonical_string(method.as_str(), content_type, &date, &signed, path, query);
        let signature = sign::signature(&self.access_key, &canonical);
        let url = match query {
            Some(q) => format!("{}{}?{}", self.endpoint, path, q),
            None => format!("{}{}", self.endpoint, path),
        };
        let mut req = self
            .http
            .request(method, url)
            .header("Content-Type", content_type)
            .header("Date", date)
            .header(
                "Authorization",
                format!("DATAHUB {}:{}", self.access_id, signature),
            );
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let resp = req.body(body).send().await?;
        let status = resp.status().as_u16();
        let request_id = resp
            .headers()
            .get("x-datahub-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.bytes().await?;
        if status >= 400 {
            let body: Json = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
            return Err(ClientError::Api {
                status,
                code: body["ErrorCode"].as_str().unwrap_or("Unknown").to_string(),
                message: body["ErrorMessage"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
                request_id,
            });
        }
        Ok(bytes)
    }

    /// A JSON call; returns the parsed response (an empty object for an empty body).
    pub(crate) async fn json(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<Json>,
    ) -> Result<Json, ClientError> {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let bytes = self
            .send(method, path, query, "application/json", &[], body)
            .await?;
        if bytes.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn create_project(&self, project: &str, comment: &str) -> Result<(), ClientError> {
        self.json(
            Method::POST,
            &format!("/projects/{project}"),
            None,
            Some(json!({ "Comment": comment })),
        )
        .await?;
        Ok(())
    }

    /// Creates a TUPLE topic (with `schema`) or a BLOB topic (without).
    pub async fn create_topic(
        &self,
        project: &str,
        topic: &str,
        shard_count: u32,
        lifecycle_days: u32,
        schema: Option<&RecordSchema>,
        comment: &str,
    ) -> Result<(), ClientError> {
        let mut body = json!({
            "ShardCount": shard_count,
            "Lifecycle": lifecycle_days,
            "RecordType": if schema.is_some() { "TUPLE" } else { "BLOB" },
            "Comment": comment,
        });
        if let Some(s) = schema {
            body["RecordSchema"] = json!(s.to_json());
        }
        self.json(
            Method::POST,
            &format!("/projects/{project}/topics/{topic}"),
            None,
            Some(body),
        )
        .await?;
        Ok(())
    }

    pub async fn get_topic(&self, project: &str, topic: &str) -> Result<TopicInfo, ClientError> {
        let v = self
            .json(
                Method::GET,
                &format!("/projects/{project}/topics/{topic}"),
                None,
                None,
            )
            .await?;
        let schema = match v["RecordSchema"].as_str() {
            Some(text) if !text.is_empty() => {
                Some(RecordSchema::parse(text).map_err(|e| ClientError::Decode(e.to_string()))?)
            }
            _ => None,
        };
        Ok(TopicInfo {
            record_type: v["RecordType"].as_str().unwrap_or("").to_string(),
            schema,
            lifecycle: v["Lifecycle"].as_i64().unwrap_or(0),
        })
    }

    pub async fn list_shards(
        &self,
        project: &str,
        topic: &str,
    ) -> Result<Vec<ShardInfo>, ClientError> {
        let v = self
            .json(
                Method::GET,
                &format!("/projects/{project}/topics/{topic}/shards"),
                None,
                None,
            )
            .await?;
        Ok(v["Shards"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|s| ShardInfo {
                        shard_id: s["ShardId"].as_str().unwrap_or("").to_string(),
                        state: s["State"].as_str().unwrap_or("").to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}
