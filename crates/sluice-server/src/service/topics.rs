//! Topics: create, get, list, update, delete, append field, and the schema registry.

use std::sync::Arc;

use parking_lot::RwLock;
use sluice_meta::{SchemaRow, ShardRow, TopicRow};
use sluice_proto::schema::{Field, FieldType};
use sluice_proto::{hashkey, RecordSchema};

use super::catalog::{
    key, now_secs, topic_dir, Catalog, RecordType, SchemaVersion, Topic, TopicMeta,
};
use super::error::{Error, Result};
use super::projects::{check_comment, check_name};

/// What a create-topic request asks for.
pub struct NewTopic {
    pub shard_count: i64,
    pub lifecycle_days: i64,
    pub record_type: String,
    pub schema: Option<String>,
    pub comment: String,
    pub expand_mode: Option<String>,
}

/// One page of the schema registry.
pub struct SchemaPage {
    pub page_number: i64,
    pub page_size: i64,
    pub page_count: i64,
    pub total: i64,
    pub versions: Vec<SchemaVersion>,
}

pub const CREATOR: &str = "root";

fn check_lifecycle(days: i64) -> Result<()> {
    if !(1..=36500).contains(&days) {
        return Err(Error::InvalidParameter(format!(
            "Lifecycle {days} is invalid: it must be between 1 and 36500 days"
        )));
    }
    Ok(())
}

fn parse_schema(text: &str) -> Result<RecordSchema> {
    RecordSchema::parse(text).map_err(|e| Error::InvalidSchema(e.to_string()))
}

pub fn schema_row(uid: i64, v: &SchemaVersion) -> SchemaRow {
    SchemaRow {
        topic_uid: uid,
        version_id: v.version_id,
        schema_json: v.schema.to_json(),
        create_time: v.create_time,
        creator: v.creator.clone(),
    }
}

impl Catalog {
    pub async fn create_topic(&self, project: &str, name: &str, req: NewTopic) -> Result<()> {
        check_name("topic", name, 1, 128)?;
        check_comment(&req.comment)?;
        check_lifecycle(req.lifecycle_days)?;
        let max = self.config.max_shards_per_topic as i64;
        if !(1..=max).contains(&req.shard_count) {
            return Err(Error::InvalidParameter(format!(
                "ShardCount {} is invalid: it must be between 1 and {max}",
                req.shard_count
            )));
        }
        let record_type = RecordType::parse(&req.record_type).ok_or_else(|| {
            Error::InvalidParameter(format!(
                "RecordType {:?} is invalid: it must be TUPLE or BLOB",
                req.record_type
            ))
        })?;
        let schema = match (record_type, &req.schema) {
            (RecordType::Tuple, Some(text)) => Some(parse_schema(text)?),
            (RecordType::Tuple, None) => {
                return Err(Error::InvalidSchema(
                    "a TUPLE topic needs a RecordSchema".to_string(),
                ))
            }
            (RecordType::Blob, _) => None,
        };
        let expand_mode = match req.expand_mode.as_deref().map(str::to_ascii_lowercase) {
            None => String::new(),
            Some(m) if m.is_empty() || m == "split" || m == "extend" => m,
            Some(m) => {
                return Err(Error::InvalidParameter(format!(
                    "ExpandMode {m:?} is invalid: it must be split or extend"
                )))
            }
        };

        let _guard = self.change_lock.lock().await;
        {
            let projects = self.projects.read();
            let p = projects
                .get(&key(project))
                .ok_or_else(|| Error::NoSuchProject(project.to_string()))?;
            if p.topics.contains_key(&key(name)) {
                return Err(Error::TopicExists(name.to_string()));
            }
        }
        let now = now_secs();
        let row = TopicRow {
            uid: 0,
            project: self.get_project(project)?.name,
            name: name.to_string(),
            record_type: record_type.name().to_string(),
            lifecycle_days: req.lifecycle_days,
            comment: req.comment.clone(),
            expand_mode: expand_mode.clone(),
            create_time: now,
            last_modify_time: now,
            schema_version: if schema.is_some() { 0 } else { -1 },
        };
        let shard_rows: Vec<ShardRow> = hashkey::initial_ranges(req.shard_count as u32)
            .into_iter()
            .enumerate()
            .map(|(i, (begin, end))| ShardRow {
                topic_uid: 0,
                shard_id: i as u32,
                state: "ACTIVE".to_string(),
                begin_key: hashkey::format_key(begin),
                end_key: hashkey::format_key(end),
                parents: vec![],
                create_time: now,
                closed_time: 0,
            })
            .collect();
        let first_version = schema.map(|s| SchemaVersion {
            version_id: 0,
            schema: Arc::new(s),
            create_time: now,
            creator: crate::accounts::key_name().unwrap_or_else(|| CREATOR.to_string()),
        });
        let schema_rows = first_version.as_ref().map(|v| schema_row(0, v));
        // The shard logs are made inside the metadata transaction, before its COMMIT: a topic
        // is either committed with its logs or not there at all (and its directory removed).
        let mut made_dir = None;
        let created = self
            .meta
            .insert_topic(&row, &shard_rows, schema_rows.as_ref(), |uid| {
                let dir = topic_dir(&self.data_dir, uid);
                if dir.exists() {
                    tracing::warn!(dir = %dir.display(), "removing a topic directory no topic owns");
                    sluice_log::remove_log(&dir)?;
                }
                made_dir = Some(dir.clone());
                let shards = shard_rows
                    .iter()
                    .map(|r| self.create_shard_log(uid, &dir, r))
                    .collect::<Result<Vec<_>>>()?;
                Ok::<_, Error>((dir, shards))
            })
            .await;
        let (uid, (dir, shards)) = match created {
            Ok(created) => created,
            Err(e) => {
                if let Some(dir) = made_dir {
                    if let Err(rm) = sluice_log::remove_log(&dir) {
                        tracing::warn!(dir = %dir.display(), error = %rm, "cannot remove the directory of a topic that was not created");
                    }
                }
                return Err(e);
            }
        };
        let topic = Topic {
            uid,
            project: row.project.clone(),
            name: name.to_string(),
            record_type,
            expand_mode,
            create_time: now,
            dir,
            meta: RwLock::new(TopicMeta {
                lifecycle_days: req.lifecycle_days,
                comment: req.comment,
                last_modify_time: now,
                current_version: if first_version.is_some() { 0 } else { -1 },
                schemas: first_version.into_iter().collect(),
            }),
            shards: RwLock::new(shards),
            topology: tokio::sync::RwLock::new(()),
        };
        if let Some(p) = self.projects.write().get_mut(&key(project)) {
            p.topics.insert(key(name), Arc::new(topic));
        }
        Ok(())
    }

    pub fn list_topics(&self, project: &str) -> Result<Vec<String>> {
        let projects = self.projects.read();
        let p = projects
            .get(&key(project))
            .ok_or_else(|| Error::NoSuchProject(project.to_string()))?;
        Ok(p.topics.values().map(|t| t.name.clone()).collect())
    }

    pub async fn update_topic(
        &self,
        project: &str,
        name: &str,
        lifecycle_days: Option<i64>,
        comment: Option<String>,
    ) -> Result<()> {
        if let Some(d) = lifecycle_days {
            check_lifecycle(d)?;
        }
        if let Some(c) = &comment {
            check_comment(c)?;
        }
        let _guard = self.change_lock.lock().await;
        let topic = self.topic(project, name)?;
        let mut row = Catalog::topic_row(&topic);
        if let Some(d) = lifecycle_days {
            row.lifecycle_days = d;
        }
        if let Some(c) = comment {
            row.comment = c;
        }
        row.last_modify_time = now_secs();
        self.meta.update_topic(&row).await?;
        let mut meta = topic.meta.write();
        meta.lifecycle_days = row.lifecycle_days;
        meta.comment = row.comment;
        meta.last_modify_time = row.last_modify_time;
        Ok(())
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, project: &str, name: &str) -> Result<()> {
        let _guard = self.change_lock.lock().await;
        let topic = self.topic(project, name)?;
        self.drop_topic_connectors(topic.uid).await?;
        self.meta.delete_topic(topic.uid).await?;
        self.delete_topic_subscriptions(topic.uid).await?;
        if let Some(p) = self.projects.write().get_mut(&key(project)) {
            p.topics.remove(&key(name));
        }
        for shard in topic.shards.read().iter() {
            shard.set_meta(|m| m.state = super::catalog::ShardState::Closed);
        }
        if let Some(cluster) = &self.cluster {
            // The shared log's heads and rows go: a put on any node now finds no shard.
            let ids: Vec<u32> = topic.shards.read().iter().map(|s| s.id).collect();
            for id in ids {
                let key = crate::cluster::runtime::ClusterRuntime::shard_key(topic.uid, id);
                if let Err(e) = cluster.log.delete_shard(&key).await {
                    tracing::warn!(shard_key = %key, error = %e, "cannot delete a deleted topic's shard log");
                }
            }
            return Ok(());
        }
        let dir = topic.dir.clone();
        tokio::task::spawn_blocking(move || sluice_log::remove_log(&dir))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(())
    }

    /// Adds a nullable field at the end of a tuple topic's schema, as a new schema version.
    pub async fn append_field(
        &self,
        project: &str,
        name: &str,
        field: &str,
        ty: &str,
    ) -> Result<()> {
        let field_type = FieldType::parse(ty).ok_or_else(|| {
            Error::InvalidParameter(format!("FieldType {ty:?} is not a DataHub field type"))
        })?;
        let _guard = self.change_lock.lock().await;
        let topic = self.topic(project, name)?;
        if topic.record_type != RecordType::Tuple {
            return Err(Error::InvalidOperation(format!(
                "topic {name:?} is a BLOB topic and has no fields"
            )));
        }
        let current = topic
            .meta
            .read()
            .current_schema()
            .ok_or_else(|| Error::Internal(format!("topic {name:?} has no current schema")))?;
        let mut schema = (*current).clone();
        schema.fields.push(Field {
            name: field.to_string(),
            field_type,
            comment: String::new(),
            not_null: false,
        });
        let schema = parse_schema(&schema.to_json())
            .map_err(|e| Error::InvalidParameter(format!("cannot append field {field:?}: {e}")))?;
        let version = self.add_schema_version(&topic, schema).await?;
        let mut row = Catalog::topic_row(&topic);
        row.schema_version = version;
        row.last_modify_time = now_secs();
        self.meta.update_topic(&row).await?;
        let mut meta = topic.meta.write();
        meta.current_version = version;
        meta.last_modify_time = row.last_modify_time;
        Ok(())
    }

    /// Stores a new schema version (or finds an identical one) and returns its id.
    async fn add_schema_version(&self, topic: &Topic, schema: RecordSchema) -> Result<i32> {
        if let Some(v) = topic
            .meta
            .read()
            .schemas
            .iter()
            .find(|v| *v.schema == schema)
        {
            return Ok(v.version_id);
        }
        let next = topic
            .meta
            .read()
            .schemas
            .iter()
            .map(|v| v.version_id + 1)
            .max()
            .unwrap_or(0);
        let version = SchemaVersion {
            version_id: next,
            schema: Arc::new(schema),
            create_time: now_secs(),
            creator: crate::accounts::key_name().unwrap_or_else(|| CREATOR.to_string()),
        };
        self.meta
            .insert_schema(&schema_row(topic.uid, &version))
            .await?;
        topic.meta.write().schemas.push(version);
        Ok(next)
    }

    fn tuple_topic(&self, project: &str, name: &str) -> Result<Arc<Topic>> {
        let topic = self.topic(project, name)?;
        if topic.record_type != RecordType::Tuple {
            return Err(Error::InvalidOperation(format!(
                "topic {name:?} is a BLOB topic and has no schema registry"
            )));
        }
        Ok(topic)
    }

    pub async fn register_schema(&self, project: &str, name: &str, text: &str) -> Result<i32> {
        let schema = parse_schema(text)?;
        let _guard = self.change_lock.lock().await;
        let topic = self.tuple_topic(project, name)?;
        self.add_schema_version(&topic, schema).await
    }

    pub fn list_schemas(
        &self,
        project: &str,
        name: &str,
        page_number: i64,
        page_size: i64,
    ) -> Result<SchemaPage> {
        let topic = self.tuple_topic(project, name)?;
        let all = topic.meta.read().schemas.clone();
        let total = all.len() as i64;
        let (number, size) = if page_number <= 0 || page_size <= 0 {
            (1, total.max(1))
        } else {
            (page_number, page_size)
        };
        let page_count = (total + size - 1) / size;
        let versions = all
            .into_iter()
            .skip(((number - 1) * size) as usize)
            .take(size as usize)
            .collect();
        Ok(SchemaPage {
            page_number: number,
            page_size: size,
            page_count,
            total,
            versions,
        })
    }

    pub fn get_schema(
        &self,
        project: &str,
        name: &str,
        version_id: i64,
        text: Option<&str>,
    ) -> Result<SchemaVersion> {
        let topic = self.tuple_topic(project, name)?;
        let meta = topic.meta.read();
        if version_id >= 0 {
            return meta
                .schema_version(version_id as i32)
                .cloned()
                .ok_or_else(|| {
                    Error::InvalidParameter(format!("schema version {version_id} does not exist"))
                });
        }
        let text = text.filter(|t| !t.is_empty()).ok_or_else(|| {
            Error::InvalidParameter("GetSchema needs a VersionId or a RecordSchema".to_string())
        })?;
        let schema = parse_schema(text)?;
        // An identical version first; else one with the same columns, whatever their notnull and
        // comments say (the Go SDK sends notnull inverted: RecordSchema::same_columns).
        meta.schemas
            .iter()
            .find(|v| *v.schema == schema)
            .or_else(|| meta.schemas.iter().find(|v| v.schema.same_columns(&schema)))
            .cloned()
            .ok_or_else(|| Error::InvalidParameter("that schema is not registered".to_string()))
    }

    pub async fn delete_schema(&self, project: &str, name: &str, version_id: i64) -> Result<()> {
        let _guard = self.change_lock.lock().await;
        let topic = self.tuple_topic(project, name)?;
        let version = version_id as i32;
        {
            let meta = topic.meta.read();
            if meta.schema_version(version).is_none() {
                return Err(Error::InvalidParameter(format!(
                    "schema version {version_id} does not exist"
                )));
            }
            if meta.current_version == version {
                return Err(Error::InvalidOperation(format!(
                    "schema version {version_id} is the topic's current schema and cannot be deleted"
                )));
            }
        }
        self.meta.delete_schema(topic.uid, version).await?;
        topic
            .meta
            .write()
            .schemas
            .retain(|v| v.version_id != version);
        Ok(())
    }
}
