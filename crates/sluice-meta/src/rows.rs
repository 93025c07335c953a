//! Plain rows of the metadata tables.

/// A project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRow {
    pub name: String,
    pub comment: String,
    /// Seconds since the epoch.
    pub create_time: i64,
    pub last_modify_time: i64,
}

/// A topic. `uid` is unique for the life of the store and names the topic's data directory,
/// so a topic re-created under an old name never sees the old data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRow {
    pub uid: i64,
    pub project: String,
    pub name: String,
    /// `TUPLE` or `BLOB`.
    pub record_type: String,
    pub lifecycle_days: i64,
    pub comment: String,
    /// `split` or `extend`.
    pub expand_mode: String,
    /// The schema version JSON/protobuf writes use and `get_topic` shows; -1 for BLOB topics.
    pub schema_version: i32,
    pub create_time: i64,
    pub last_modify_time: i64,
}

/// One version of a tuple topic's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRow {
    pub topic_uid: i64,
    pub version_id: i32,
    pub schema_json: String,
    pub create_time: i64,
    pub creator: String,
}

/// A shard and its hash range (32-hex keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRow {
    pub topic_uid: i64,
    pub shard_id: u32,
    /// `ACTIVE` or `CLOSED`.
    pub state: String,
    pub begin_key: String,
    pub end_key: String,
    pub parents: Vec<u32>,
    pub create_time: i64,
    /// Milliseconds since the epoch; 0 while open.
    pub closed_time: i64,
}

/// Everything in the store, as loaded at start-up.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub projects: Vec<ProjectRow>,
    pub topics: Vec<TopicRow>,
    pub schemas: Vec<SchemaRow>,
    pub shards: Vec<ShardRow>,
}
