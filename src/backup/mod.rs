//! The backup flow: resolve what to back up, flush, copy the binlogs, write the meta last.

mod collect;
mod run;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::milvus::MilvusApi;
use crate::names::{self, CollectionRef};

pub use run::run;

/// A validated request for a backup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupRequest {
    pub name: String,
    /// Collections to back up.
    pub collections: Vec<CollectionRef>,
    /// Whole databases to back up.
    pub databases: Vec<String>,
    /// Schemas, partitions and indexes only.
    pub meta_only: bool,
    /// Idempotency key.
    pub request_id: String,
}

/// Most names one request may carry.
pub const MAX_NAMES_PER_REQUEST: usize = 10_000;

impl BackupRequest {
    /// A request from user input: the backup name, `coll` or `db.coll`
    /// collection names and database names, all checked.
    pub fn parse(
        name: &str,
        collections: &[String],
        databases: &[String],
        meta_only: bool,
        request_id: &str,
    ) -> Result<Self> {
        names::validate_backup_name(name)?;
        for (what, n) in [
            ("collection names", collections.len()),
            ("database names", databases.len()),
        ] {
            if n > MAX_NAMES_PER_REQUEST {
                return Err(Error::invalid(format!(
                    "{n} {what} given; at most {MAX_NAMES_PER_REQUEST} are accepted"
                )));
            }
        }
        for db in databases {
            names::validate_name("database name", db)?;
        }
        Ok(Self {
            name: name.to_string(),
            collections: collections
                .iter()
                .map(|c| CollectionRef::parse(c))
                .collect::<Result<_>>()?,
            databases: databases.to_vec(),
            meta_only,
            request_id: request_id.to_string(),
        })
    }
}

/// Checks the request against Milvus and the catalog before any job starts:
/// the name is free and every named collection and database exists.
/// Returns the collections to back up.
pub async fn plan(ctx: &Context, req: &BackupRequest) -> Result<Vec<CollectionRef>> {
    names::validate_backup_name(&req.name)?;
    if ctx.catalog.is_taken(&req.name).await? {
        return Err(Error::already_exists("backup", &req.name));
    }
    resolve_collections(ctx.milvus.as_ref(), &req.collections, &req.databases).await
}

/// Turns named collections and databases into a sorted list of collections.
/// Nothing named means every collection of every database.
pub async fn resolve_collections(
    milvus: &dyn MilvusApi,
    collections: &[CollectionRef],
    databases: &[String],
) -> Result<Vec<CollectionRef>> {
    let mut out = Vec::new();
    let known_dbs = if databases.is_empty() && !collections.is_empty() {
        Vec::new()
    } else {
        milvus.list_databases().await?
    };
    let whole_dbs: Vec<String> = if collections.is_empty() && databases.is_empty() {
        known_dbs.clone()
    } else {
        databases.to_vec()
    };
    for db in &whole_dbs {
        if !known_dbs.contains(db) {
            return Err(Error::not_found("database", db));
        }
        for name in milvus.list_collections(db).await? {
            out.push(CollectionRef::new(db.clone(), name));
        }
    }
    for c in collections {
        if !milvus.has_collection(&c.db, &c.name).await? {
            return Err(Error::not_found("collection", c.to_string()));
        }
        out.push(c.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

use std::time::{Duration, UNIX_EPOCH};

use crate::jobs::{BackupSnapshot, CollectionSummary, JobState, Progress};
use crate::meta::model::{BACKUP_SUCCESS, BackupInfo, CollectionBackupInfo};

/// The summary of one backed-up collection.
pub fn summary_of(c: &CollectionBackupInfo) -> CollectionSummary {
    let segments = c
        .partition_backups
        .iter()
        .map(|p| p.segment_backups.len())
        .sum::<usize>();
    CollectionSummary {
        db: CollectionRef::normalized(&c.db_name, &c.collection_name).db,
        name: c.collection_name.clone(),
        id: c.collection_id,
        row_count: c
            .partition_backups
            .iter()
            .flat_map(|p| &p.segment_backups)
            .map(|s| s.num_of_rows)
            .sum(),
        size_bytes: c.size.max(0) as u64,
        partition_count: c.partition_backups.len() as u32,
        segment_count: segments as u32,
        backup_timestamp: c.backup_timestamp,
    }
}

/// The snapshot of a complete backup read from storage.
pub fn snapshot_of(info: &BackupInfo) -> BackupSnapshot {
    let files: u64 = info
        .collection_backups
        .iter()
        .flat_map(|c| &c.partition_backups)
        .flat_map(|p| &p.segment_backups)
        .flat_map(|s| s.binlogs.iter().chain(&s.deltalogs))
        .map(|f| f.binlogs.len() as u64)
        .sum();
    let size = info.size.max(0) as u64;
    let millis = |ms: i64| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    let state = if info.state_code == BACKUP_SUCCESS || info.state_code == 0 {
        JobState::Succeeded
    } else {
        JobState::Failed
    };
    BackupSnapshot {
        id: info.id.clone(),
        name: info.name.clone(),
        state,
        error: (!info.error_message.is_empty()).then(|| info.error_message.clone()),
        progress: Progress {
            bytes_done: size,
            bytes_total: size,
            files_done: files,
            files_total: files,
            collections_done: info.collection_backups.len() as u32,
            collections_total: info.collection_backups.len() as u32,
        },
        size_bytes: size,
        milvus_version: info.milvus_version.clone(),
        collections: info.collection_backups.iter().map(summary_of).collect(),
        backup_timestamp_ms: info.backup_timestamp,
        start_time: millis(info.start_time),
        end_time: Some(millis(info.end_time)),
        meta_only: info
            .collection_backups
            .iter()
            .all(|c| c.backup_timestamp == 0)
            && !info.collection_backups.is_empty(),
    }
}
