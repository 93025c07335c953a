//! Plain rows of the metadata tables, the same for every backend.

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

/// A connector as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorRow {
    pub topic_uid: i64,
    pub connector_id: String,
    /// The type string, e.g. `sink_datahub`.
    pub kind: String,
    /// `CONNECTOR_RUNNING` or `CONNECTOR_STOPPED`.
    pub state: String,
    pub column_fields: Vec<String>,
    /// The normalized configuration, a JSON object.
    pub config: String,
    pub creator: String,
    /// Milliseconds; -1 = from the oldest record.
    pub start_time: i64,
    /// Seconds since the epoch.
    pub create_time: i64,
    pub last_modify_time: i64,
}

/// Where one (connector, shard) task resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointRow {
    pub shard_id: u32,
    /// First sequence not yet delivered.
    pub next_seq: u64,
    /// System time (ms) of the last delivered record, -1 if none.
    pub last_time: i64,
    pub discard_count: u64,
    /// The shard is closed and was delivered to its end.
    pub finished: bool,
    /// Milliseconds.
    pub update_time: i64,
    /// Rows the sink wrote late (SINK_ODPS: into a partition that already had `_SUCCESS`).
    pub late_count: u64,
}

/// A subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    pub sub_id: String,
    pub topic_uid: i64,
    pub comment: String,
    /// 0 = inactive (offline), 1 = active.
    pub state: i32,
    /// Seconds since the epoch.
    pub create_time: i64,
    pub last_modify_time: i64,
    /// The connector that owns this subscription (`None`: an ordinary subscription).
    pub connector_id: Option<String>,
}

/// The offset of one subscription on one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRow {
    pub sub_id: String,
    pub shard_id: u32,
    pub sequence: i64,
    /// Milliseconds since the epoch, -1 when unknown.
    pub timestamp: i64,
    pub batch_index: i64,
    pub version: i64,
    /// -1 until the first open.
    pub session_id: i64,
    pub read_end: bool,
}

/// The stored state of one subscription's consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupRow {
    pub sub_id: String,
    /// Increases with every change of the group.
    pub generation: i64,
    /// The group as the server serialized it.
    pub state: String,
}

/// One subscription as stored: its row, its offsets and its consumer group (if one was saved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    pub row: SubscriptionRow,
    pub offsets: Vec<OffsetRow>,
    pub group: Option<ConsumerGroupRow>,
}

/// One shard's offset commit, checked against the stored offset (cluster mode: see
/// [`MetaStore::commit_offsets_checked`](crate::MetaStore::commit_offsets_checked)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCommit {
    pub shard_id: u32,
    pub sequence: i64,
    pub timestamp: i64,
    pub batch_index: i64,
    /// The offset version the committer read; `None` skips the check.
    pub version: Option<i64>,
    /// The committer's session; `None` skips the check (a session must still be open).
    pub session_id: Option<i64>,
}

/// Why a checked commit wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitConflict {
    /// No session was ever opened on the shard.
    NoSession { shard_id: u32 },
    /// The offset was reset since: `current` is its version now.
    VersionChanged { shard_id: u32, current: i64 },
    /// Another consumer opened the shard since: `current` is its session now.
    SessionChanged { shard_id: u32, current: i64 },
}

// issue 14: leases
/// A lease a write must still hold when it commits (the cluster mode's fencing: see
/// `sluice_cluster::lease`). A guarded write first checks, in its own transaction, that the
/// `lease` row `(kind, key)` still has this owner and epoch and has not expired, locking that
/// row (`FOR SHARE`) until the COMMIT, so a takeover waits for the write and a write after a
/// takeover is refused with [`crate::MetaError::Fenced`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseGuard {
    pub kind: String,
    pub key: String,
    pub owner: String,
    pub epoch: i64,
}

/// One stored access key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyRow {
    pub name: String,
    pub access_id: String,
    /// The current secret, sealed.
    pub secret: String,
    /// The previous secret during a rotation, sealed.
    pub old_secret: Option<String>,
    /// When the previous secret stops working (ms); None: when it is retired.
    pub old_secret_expire_time: Option<i64>,
    /// JSON list of "action:project/topic".
    pub grants: String,
    pub enabled: bool,
    pub create_time: i64,
    pub last_used_time: i64,
    /// When the key stops working (ms); None: never.
    pub expire_time: Option<i64>,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Assigned by the store on append (the value given to `append_audit` is ignored).
    pub seq: i64,
    pub time: i64,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub request_id: String,
    pub detail: String,
}
