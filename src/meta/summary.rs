//! What callers see of a stored backup: its snapshot and its collections' summaries.

use std::time::{Duration, UNIX_EPOCH};

use super::model::{BACKUP_SUCCESS, BackupInfo, CollectionBackupInfo};
use crate::jobs::{BackupSnapshot, CollectionSummary, JobState, Progress, Reuse};
use crate::model::CollectionRef;

/// The summary of one backed-up collection.
pub fn summary_of(c: &CollectionBackupInfo) -> CollectionSummary {
    let segments = c
        .partition_backups
        .iter()
        .map(|p| p.segment_backups.len())
        .sum::<usize>();
    CollectionSummary {
        db: CollectionRef::normalized(&c.db_name, &c.collection_name)
            .db()
            .to_string(),
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
            totals_growing: false,
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
        error_kind: None,
        trace_id: None,
        request_id: None,
        phases: Vec::new(),
        order: None,
        milvus_id: None,
        reuse: info.incremental.as_ref().map(|i| Reuse {
            based_on: i.based_on.clone(),
            files: i.reused_files,
            bytes: i.reused_bytes,
        }),
    }
}
