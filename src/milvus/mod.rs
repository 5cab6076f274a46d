//! Milvus as the flows see it: a small trait over the proxy API, its gRPC
//! implementation, and the version switches.

pub mod binlog;
mod calls;
mod client;
pub mod identity;
pub mod proto;
pub mod rows;
pub mod version;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

pub use client::{MilvusClient, check_status, ended_by};
pub use version::MilvusVersion;

/// A collection as DescribeCollection reports it.
#[derive(Debug, Clone)]
pub struct CollectionInfo {
    pub id: i64,
    pub db: String,
    pub name: String,
    /// The encoded `schema.CollectionSchema`, kept byte for byte.
    pub schema: Bytes,
    pub shards_num: i32,
    pub consistency_level: i32,
    pub properties: Vec<(String, String)>,
    pub num_partitions: i64,
    pub created_timestamp: u64,
    pub aliases: Vec<String>,
}

/// A partition of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub id: i64,
    pub name: String,
}

/// An index as DescribeIndex reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    pub name: String,
    pub id: i64,
    pub field_name: String,
    /// `index_type`, `metric_type`, `params` and the rest, as Milvus gives them.
    pub params: Vec<(String, String)>,
}

/// A persisted segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub id: i64,
    pub collection_id: i64,
    pub partition_id: i64,
    pub num_rows: i64,
    /// `common.SegmentState`.
    pub state: i32,
    /// `common.SegmentLevel` (2.4+; 0 before).
    pub level: i32,
}

/// `common.SegmentState::Flushed`.
pub const SEGMENT_STATE_FLUSHED: i32 = 4;

/// `common.SegmentState::Flushing`: written by the data node, not marked
/// flushed yet (GetFlushState counts it flushed already; a compaction's
/// result passes through it too, its inputs dropped).
pub const SEGMENT_STATE_FLUSHING: i32 = 5;

/// How a collection is loaded: its number of replicas and the resource
/// groups they are in. The default asks Milvus's own (one replica, the
/// default group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadShape {
    /// 0: Milvus's default.
    pub replicas: i32,
    /// The one group of every replica, or one group per replica when they
    /// differ (as LoadCollection takes them); empty: Milvus's default.
    pub resource_groups: Vec<String>,
}

impl LoadShape {
    /// The shape of a collection whose replicas are in `groups` (one entry
    /// per replica; none: not loaded).
    pub fn of_replicas(groups: Vec<String>) -> Self {
        let replicas = groups.len() as i32;
        let resource_groups = match groups.first() {
            Some(first) if groups.iter().all(|g| g == first) && first.is_empty() => Vec::new(),
            Some(first) if groups.iter().all(|g| g == first) => vec![first.clone()],
            _ => groups,
        };
        Self {
            replicas,
            resource_groups,
        }
    }
}

/// What Flush answered for one collection.
#[derive(Debug, Clone, Default)]
pub struct FlushResult {
    /// Segments sealed by this flush, to wait for.
    pub segment_ids: Vec<i64>,
    /// Hybrid timestamp of the flush: every row before it is persisted once flushed.
    pub flush_ts: u64,
}

/// Where an import task stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ImportPhase {
    #[default]
    Running,
    Completed,
    Failed(String),
}

/// What GetImportState (or ListImportTasks, per task) answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStatus {
    pub phase: ImportPhase,
    pub row_count: i64,
    /// The task's id.
    pub task: i64,
    pub collection_id: i64,
    /// The partition it imports into.
    pub partition: String,
    /// The import paths it was given.
    pub files: Vec<String>,
    /// When Milvus created it, in seconds since the epoch.
    pub created_at_s: i64,
}

/// What it takes to create a collection.
#[derive(Debug, Clone)]
pub struct NewCollection {
    pub db: String,
    pub name: String,
    /// An encoded `schema.CollectionSchema` whose name is `name`.
    pub schema: Bytes,
    pub shards_num: i32,
    pub consistency_level: i32,
    pub properties: Vec<(String, String)>,
    /// Only for collections with a partition key.
    pub num_partitions: Option<i64>,
}

/// One bulk import of binlog prefixes into a partition.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub db: String,
    pub collection: String,
    pub partition: String,
    /// Keys inside Milvus's bucket: `[insert_prefix/, delta_prefix/ or ""]`.
    pub files: Vec<String>,
    pub options: Vec<(String, String)>,
}

/// The Milvus operations the backup and restore flows need.
#[async_trait]
pub trait MilvusApi: Send + Sync {
    /// Where Milvus is, for messages.
    fn address(&self) -> &str;
    async fn version(&self) -> Result<MilvusVersion>;
    /// Asks for the version once, without the retries of [`Self::version`]:
    /// whether Milvus answers now.
    async fn version_once(&self) -> Result<MilvusVersion> {
        self.version().await
    }
    /// Database names; `["default"]` on servers without databases.
    async fn list_databases(&self) -> Result<Vec<String>>;
    async fn create_database(&self, db: &str) -> Result<()>;
    /// Drops database `db`; Milvus refuses one that holds a collection.
    async fn drop_database(&self, db: &str) -> Result<()>;
    async fn list_collections(&self, db: &str) -> Result<Vec<String>>;
    async fn has_collection(&self, db: &str, name: &str) -> Result<bool>;
    async fn describe_collection(&self, db: &str, name: &str) -> Result<CollectionInfo>;
    async fn create_collection(&self, new: &NewCollection) -> Result<()>;
    async fn drop_collection(&self, db: &str, name: &str) -> Result<()>;
    /// Renames `db.from` to `db.to` (RenameCollection, Milvus 2.3+).
    async fn rename_collection(&self, db: &str, from: &str, to: &str) -> Result<()>;
    /// The id of collection `db.name`, or `None` when there is none: what
    /// cleanup compares before it drops anything.
    async fn collection_id(&self, db: &str, name: &str) -> Result<Option<i64>> {
        if !self.has_collection(db, name).await? {
            return Ok(None);
        }
        match self.describe_collection(db, name).await {
            Ok(info) => Ok(Some(info.id)),
            Err(e) if e.is_milvus_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn list_partitions(&self, db: &str, collection: &str) -> Result<Vec<PartitionInfo>>;
    async fn create_partition(&self, db: &str, collection: &str, partition: &str) -> Result<()>;
    async fn describe_indexes(&self, db: &str, collection: &str) -> Result<Vec<IndexInfo>>;
    /// Loading progress in percent; 0 for a released collection.
    async fn loading_progress(&self, db: &str, collection: &str) -> Result<i64>;
    async fn flush(&self, db: &str, collection: &str) -> Result<FlushResult>;
    /// Flushes several collections of database `db`, in order. One request
    /// where the client allows it: Milvus passes the flush points of all of
    /// them on the same time tick, so waiting for many costs what one does.
    async fn flush_many(&self, db: &str, collections: &[String]) -> Result<Vec<FlushResult>> {
        let mut out = Vec::with_capacity(collections.len());
        for c in collections {
            out.push(self.flush(db, c).await?);
        }
        Ok(out)
    }
    async fn is_flushed(&self, db: &str, collection: &str, flush: &FlushResult) -> Result<bool>;
    async fn persistent_segments(&self, db: &str, collection: &str) -> Result<Vec<SegmentInfo>>;
    /// Creates an index; `params` are the `extra_params` (`index_type`, `metric_type`, `params`).
    async fn create_index(&self, db: &str, collection: &str, index: &IndexInfo) -> Result<()>;
    /// How the collection is loaded now (the default when it is not).
    async fn load_shape(&self, db: &str, collection: &str) -> Result<LoadShape>;
    /// Asks Milvus to load the collection as `shape` says (returns before
    /// loading ends).
    async fn load_collection(&self, db: &str, collection: &str, shape: &LoadShape) -> Result<()>;
    /// Releases the collection from the query nodes (ends a load under way).
    async fn release_collection(&self, db: &str, collection: &str) -> Result<()>;
    /// Starts an import; returns its task ids.
    async fn import(&self, req: &ImportRequest) -> Result<Vec<i64>>;
    async fn import_state(&self, task: i64) -> Result<ImportStatus>;
    /// The states of the recent import tasks into a collection.
    async fn collection_imports(&self, db: &str, collection: &str) -> Result<Vec<ImportStatus>>;
    /// The states of the import tasks Milvus keeps, into any collection.
    async fn all_imports(&self) -> Result<Vec<ImportStatus>>;
}

#[cfg(test)]
mod tests {
    use super::LoadShape;

    #[test]
    fn a_load_shape_names_one_group_or_one_per_replica() {
        let of = |g: &[&str]| LoadShape::of_replicas(g.iter().map(|s| s.to_string()).collect());
        assert_eq!(of(&[]), LoadShape::default(), "not loaded");
        let one = of(&["rg_a", "rg_a", "rg_a"]);
        assert_eq!(
            (one.replicas, one.resource_groups),
            (3, vec!["rg_a".into()])
        );
        let spread = of(&["rg_a", "rg_b"]);
        assert_eq!(
            (spread.replicas, spread.resource_groups),
            (2, vec!["rg_a".into(), "rg_b".into()])
        );
        let unnamed = of(&["", ""]);
        assert_eq!((unnamed.replicas, unnamed.resource_groups), (2, vec![]));
    }
}
