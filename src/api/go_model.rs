//! The Go tool's JSON shapes of jobs, for the REST answers: its field names
//! and its state codes.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::engine::{BackupInfo, CollectionBackupInfo, IncrementalInfo};
use crate::jobs::{BackupSnapshot, JobState, RestoreCollectionStatus, RestoreSnapshot};

/// The Go tool's `BackupTaskStateCode` / `RestoreTaskStateCode`.
pub fn go_state(s: JobState) -> i32 {
    match s {
        JobState::Pending => 0,
        JobState::Running => 1,
        JobState::Succeeded => 2,
        JobState::Failed | JobState::Cancelled => 3,
    }
}

/// A restore's collection as the Go tool's task shows it: one its job
/// never reached stays INITIAL (PENDING) there.
fn go_task_state(c: &RestoreCollectionStatus) -> JobState {
    match c.not_started {
        true => JobState::Pending,
        false => c.state,
    }
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A job that is not (yet) a complete backup, in the Go tool's shape.
pub fn go_backup_of_job(s: &BackupSnapshot) -> BackupInfo {
    BackupInfo {
        id: s.id.clone(),
        state_code: go_state(s.state),
        error_message: s.error.clone().unwrap_or_default(),
        start_time: millis(s.start_time),
        end_time: s.end_time.map(millis).unwrap_or(0),
        progress: s.progress.percent(s.state) as i32,
        name: s.name.clone(),
        backup_timestamp: s.backup_timestamp_ms,
        collection_backups: s
            .collections
            .iter()
            .map(|c| CollectionBackupInfo {
                collection_id: c.id,
                db_name: c.db.clone(),
                collection_name: c.name.clone(),
                backup_timestamp: c.backup_timestamp,
                size: c.size_bytes as i64,
                ..Default::default()
            })
            .collect(),
        size: s.size_bytes as i64,
        milvus_version: s.milvus_version.clone(),
        incremental: s.reuse.as_ref().map(|r| IncrementalInfo {
            based_on: r.based_on.clone(),
            reused_files: r.files,
            reused_bytes: r.bytes,
        }),
    }
}

/// The fields every task of the Go tool starts with.
#[derive(Debug, Serialize)]
struct GoTask {
    id: String,
    state_code: i32,
    #[serde(rename = "errorMessage")]
    error_message: String,
    start_time: i64,
    end_time: i64,
}

impl GoTask {
    fn new(id: String, state: JobState, error: &Option<String>, start: i64, end: i64) -> Self {
        Self {
            id,
            state_code: go_state(state),
            error_message: error.clone().unwrap_or_default(),
            start_time: start,
            end_time: end,
        }
    }
}

/// The Go tool's `RestoreCollectionTask` (the fields its simple response keeps).
#[derive(Debug, Serialize)]
struct GoRestoreCollection {
    #[serde(flatten)]
    task: GoTask,
    progress: i32,
    target_collection_name: String,
    target_db_name: String,
    restored_size: i64,
    to_restore_size: i64,
    /// Ours: rows in the backup and rows Milvus imported.
    row_count: i64,
    imported_rows: i64,
}

/// The Go tool's `RestoreBackupTask`.
#[derive(Debug, Serialize)]
pub struct GoRestore {
    #[serde(flatten)]
    task: GoTask,
    collection_restore_tasks: Vec<GoRestoreCollection>,
    restored_size: i64,
    to_restore_size: i64,
    progress: i32,
    /// Ours: the phase running now, and how long each ended phase took.
    phase: String,
    phases: Vec<GoPhase>,
    /// Ours: the kind of failure (`data_loss`, `aborted`, ...).
    error_kind: String,
    /// Ours: the staging prefix a succeeded restore could not remove.
    #[serde(skip_serializing_if = "String::is_empty")]
    staging_left: String,
}

/// Ours: one ended phase of a job.
#[derive(Debug, Serialize)]
pub struct GoPhase {
    phase: String,
    seconds: f64,
}

pub fn go_restore(s: &RestoreSnapshot) -> GoRestore {
    let start = millis(s.start_time) / 1000;
    let end = s.end_time.map(millis).unwrap_or(0) / 1000;
    GoRestore {
        task: GoTask::new(s.id.clone(), s.state, &s.error, start, end),
        collection_restore_tasks: s
            .collections
            .iter()
            .map(|c| GoRestoreCollection {
                task: GoTask::new(
                    format!("{}-{}", s.id, c.target),
                    go_task_state(c),
                    &c.error,
                    start,
                    if go_task_state(c).is_terminal() {
                        end
                    } else {
                        0
                    },
                ),
                progress: if c.state == JobState::Succeeded {
                    100
                } else {
                    0
                },
                target_collection_name: c.target.name().to_string(),
                target_db_name: c.target.db().to_string(),
                restored_size: 0,
                to_restore_size: 0,
                row_count: c.row_count,
                imported_rows: c.imported_rows,
            })
            .collect(),
        restored_size: s.progress.bytes_done as i64,
        to_restore_size: s.progress.bytes_total as i64,
        progress: s.progress.percent(s.state) as i32,
        phase: s.phase.clone(),
        phases: s
            .phases
            .iter()
            .map(|p| GoPhase {
                phase: p.phase.clone(),
                seconds: p.seconds,
            })
            .collect(),
        error_kind: s.error_kind.clone().unwrap_or_default(),
        staging_left: s.staging_left.clone().unwrap_or_default(),
    }
}
