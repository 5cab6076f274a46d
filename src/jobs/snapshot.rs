//! What a job looks like at one moment.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::Error;

use crate::model::CollectionRef;

/// The life cycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum JobState {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    /// Succeeded, failed or cancelled: nothing will change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A snapshot of one kind of job: what the runner, the registry and the
/// records need to know of it.
pub trait JobSnapshot:
    Clone + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
    /// The kind of job, plural: the folder of its records, and its metrics label.
    const KIND: &'static str;
    /// What a caller calls one, in messages: "backup", "restore job".
    const NOUN: &'static str;
    /// Where the job stands.
    fn state(&self) -> JobState;
    /// The job's id (its record's name).
    fn id(&self) -> &str;
    /// What callers find and cancel the job by: a backup's name, a restore's id.
    /// Two running jobs never share one.
    fn key(&self) -> &str;
    /// Marks the job as ended with `result`.
    fn finish(&mut self, result: &Result<(), Error>);
    /// The caller's trace (W3C trace id), when it sent one.
    fn trace_id(&self) -> Option<&str>;
    /// The caller's idempotency key, when it gave one.
    fn request_id(&self) -> Option<&str>;
    /// Records the caller's idempotency key.
    fn set_request_id(&mut self, request_id: &str);
    /// When the job ended, once it has.
    fn end_time(&self) -> Option<SystemTime>;
    /// What a job that did not succeed ended with: the error of its recorded
    /// kind and message.
    fn failure(&self) -> Error;
    /// The recorded message of a job that did not succeed, as it was.
    fn failure_message(&self) -> String;
    /// The snapshot of a job that succeeded, or the error it ended with.
    fn succeeded(self) -> Result<Self, Error>
    where
        Self: Sized,
    {
        match self.state() {
            JobState::Succeeded => Ok(self),
            _ => Err(self.failure()),
        }
    }
}

/// Implements [`JobSnapshot`] for a snapshot with `id`, `state`, `error`,
/// `error_kind` and `end_time` fields; `$key` names the field callers find it by.
macro_rules! job_snapshot {
    ($t:ty, $kind:literal, $noun:literal, $key:ident) => {
        impl JobSnapshot for $t {
            const KIND: &'static str = $kind;
            const NOUN: &'static str = $noun;
            fn state(&self) -> JobState {
                self.state
            }
            fn id(&self) -> &str {
                &self.id
            }
            fn key(&self) -> &str {
                &self.$key
            }
            fn trace_id(&self) -> Option<&str> {
                self.trace_id.as_deref()
            }
            fn request_id(&self) -> Option<&str> {
                self.request_id.as_deref()
            }
            fn set_request_id(&mut self, request_id: &str) {
                self.request_id = (!request_id.is_empty()).then(|| request_id.to_string());
            }
            fn end_time(&self) -> Option<SystemTime> {
                self.end_time
            }
            fn finish(&mut self, result: &Result<(), Error>) {
                finish(&mut self.state, &mut self.error, &mut self.end_time, result);
                self.error_kind = result.as_ref().err().map(|e| e.kind().as_str().to_string());
            }
            fn failure(&self) -> Error {
                // Not ended: its server shut down and left it to be resumed.
                let kind = match self.state.is_terminal() {
                    true => self.error_kind.as_deref().unwrap_or_default(),
                    false => crate::error::ErrorKind::Unavailable.as_str(),
                };
                Error::recorded(kind, self.failure_message())
            }
            fn failure_message(&self) -> String {
                if !self.state.is_terminal() {
                    return format!(
                        "{} {} is still running: this server shut down before it ended, and \
                         another server on the backup storage (or this one, restarted) resumes \
                         it; follow it there by its id {}",
                        $noun, self.$key, self.id
                    );
                }
                self.error
                    .clone()
                    .unwrap_or_else(|| format!("{} {} ended {:?}", $noun, self.$key, self.state))
            }
        }
    };
}

job_snapshot!(BackupSnapshot, "backups", "backup", name);
job_snapshot!(RestoreSnapshot, "restores", "restore job", id);
job_snapshot!(DeleteSnapshot, "deletes", "delete job", id);
job_snapshot!(VerifySnapshot, "verifies", "verification", id);

/// A delete of one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteSnapshot {
    pub id: String,
    pub backup_name: String,
    pub state: JobState,
    pub error: Option<String>,
    /// The kind of failure ([`Error::kind`]) of a failed job.
    pub error_kind: Option<String>,
    pub objects_deleted: u64,
    pub objects_total: u64,
    /// Objects kept because other backups reference them.
    pub objects_kept: u64,
    /// The id of the backup being deleted (a resumed delete refuses a backup
    /// made again under the name).
    #[serde(default)]
    pub backup_id: Option<String>,
    pub start_time: SystemTime,
    pub end_time: Option<SystemTime>,
    /// The caller's trace id (W3C `traceparent`).
    #[serde(default)]
    pub trace_id: Option<String>,
    /// The caller's idempotency key, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl DeleteSnapshot {
    /// A delete of `backup_name` that has not started.
    pub fn pending(id: String, backup_name: String) -> Self {
        Self {
            id,
            backup_name,
            state: JobState::Pending,
            error: None,
            error_kind: None,
            objects_deleted: 0,
            objects_total: 0,
            objects_kept: 0,
            backup_id: None,
            start_time: SystemTime::now(),
            end_time: None,
            trace_id: None,
            request_id: None,
        }
    }
}

/// Counters of a job's work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
    pub collections_done: u32,
    pub collections_total: u32,
    /// The job is still finding what to do: the totals may grow.
    #[serde(default)]
    pub totals_growing: bool,
}

impl Progress {
    /// Percent done: 100 only once the job succeeded, so a caller never sees
    /// 100 while the last step (writing the meta, importing) is still to come.
    pub fn percent(&self, state: JobState) -> u32 {
        if state == JobState::Succeeded {
            return 100;
        }
        let fraction = if self.bytes_total > 0 {
            self.bytes_done as f64 / self.bytes_total as f64
        } else if self.files_total > 0 {
            self.files_done as f64 / self.files_total as f64
        } else if self.collections_total > 0 {
            self.collections_done as f64 / self.collections_total as f64
        } else {
            0.0
        };
        ((fraction * 100.0).floor() as u32).min(99)
    }
}

/// One collection of a backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionSummary {
    pub db: String,
    pub name: String,
    pub id: i64,
    pub row_count: i64,
    pub size_bytes: u64,
    pub partition_count: u32,
    pub segment_count: u32,
    /// Hybrid timestamp up to which the data is in the backup.
    pub backup_timestamp: u64,
}

/// A backup job, or a complete backup read back from storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupSnapshot {
    pub id: String,
    pub name: String,
    pub state: JobState,
    pub error: Option<String>,
    pub progress: Progress,
    pub size_bytes: u64,
    pub milvus_version: String,
    pub collections: Vec<CollectionSummary>,
    /// Physical time of the backup, milliseconds since the epoch.
    pub backup_timestamp_ms: u64,
    pub start_time: SystemTime,
    pub end_time: Option<SystemTime>,
    pub meta_only: bool,
    /// What an incremental backup reuses of earlier ones.
    #[serde(default)]
    pub reuse: Option<Reuse>,
    /// The kind of failure ([`Error::kind`]) of a failed job.
    #[serde(default)]
    pub error_kind: Option<String>,
    /// The caller's trace id (W3C `traceparent`).
    #[serde(default)]
    pub trace_id: Option<String>,
    /// The caller's idempotency key, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Where the time went: each phase and its milliseconds, filled as it ends.
    #[serde(default)]
    pub phases: Vec<(String, u64)>,
    /// What the job was asked to back up, so that another server can resume
    /// it when this one dies (not set on backups read back from storage).
    #[serde(default)]
    pub order: Option<BackupOrder>,
    /// The Milvus it backs up (`milvus::identity`): only its servers take it over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milvus_id: Option<String>,
}

/// A backup job's request, as its record keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupOrder {
    pub collections: Vec<String>,
    pub databases: Vec<String>,
    pub meta_only: bool,
    pub incremental: Option<bool>,
}

/// What an incremental backup reuses: objects held by earlier backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reuse {
    /// The backups whose folders hold the reused objects.
    pub based_on: Vec<String>,
    pub files: u64,
    pub bytes: u64,
}

impl BackupSnapshot {
    /// A job that has not started yet.
    pub fn pending(id: String, name: String, meta_only: bool) -> Self {
        Self {
            id,
            name,
            state: JobState::Pending,
            error: None,
            progress: Progress::default(),
            size_bytes: 0,
            milvus_version: String::new(),
            collections: Vec::new(),
            backup_timestamp_ms: 0,
            start_time: SystemTime::now(),
            end_time: None,
            meta_only,
            reuse: None,
            error_kind: None,
            trace_id: None,
            request_id: None,
            phases: Vec::new(),
            order: None,
            milvus_id: None,
        }
    }
}

/// One collection of a restore job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreCollectionStatus {
    pub source: CollectionRef,
    pub target: CollectionRef,
    pub state: JobState,
    /// Rows in the backup.
    pub row_count: i64,
    /// Rows Milvus reported as imported.
    pub imported_rows: i64,
    pub error: Option<String>,
    /// The id Milvus gave the collection this job created (under `temp` while
    /// it fills, under `target` after): cleanup drops only a collection that
    /// still has this id. Recorded only after CreateCollection succeeded.
    #[serde(default)]
    pub created_id: Option<i64>,
    /// Replacing an existing target: the temporary collection (same database)
    /// that is filled and checked before the swap.
    #[serde(default)]
    pub temp: Option<String>,
    /// The id of the target that existed when the job was planned.
    #[serde(default)]
    pub original_id: Option<i64>,
    /// How far the swap of a replaced target has come.
    #[serde(default)]
    pub swap: SwapStep,
    /// The id of the collection this job asked Milvus to load while it was
    /// released: a cleanup releases it again (Milvus would go on trying a
    /// load that could not finish, holding query nodes' memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_by_job: Option<i64>,
    /// A replaced target's replicas (0: not loaded) and their resource
    /// groups, read before the swap: its copy is loaded alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub original_resource_groups: Vec<String>,
    /// The imports started into it, each recorded before Milvus is asked.
    #[serde(default)]
    pub imports: Vec<ImportRecord>,
    /// The partitions and indexes it asked Milvus to add to a collection it
    /// did not create (`skip_create_collection`), each recorded before it
    /// asks: never taken away by the job, said in its error when it fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions_added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes_added: Vec<String>,
    /// Never started: the job ended before it (CANCELLED, Milvus not asked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_started: bool,
}

/// One import of a restore (a partition's data, or an L0 segment's deletes),
/// recorded before Milvus is asked for it, so that a server resuming the job
/// neither repeats nor skips it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// The partition's name, or `l0:{segment id}`.
    pub key: String,
    /// Milvus's tasks; empty while the import is being asked for (whether
    /// Milvus got it is then found in its task list).
    pub tasks: Vec<i64>,
    /// Every task completed.
    pub done: bool,
    /// The rows the tasks imported, once done.
    pub rows: i64,
    /// The id of the collection they import into (records of older servers
    /// have none): Milvus is asked about them only while it is still there.
    #[serde(default)]
    pub into_id: Option<i64>,
}

/// A restore job's request, as its record keeps it (collections as `db.coll`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOrder {
    /// The id of the backup it restores from (a backup made again under the
    /// same name is not resumed from).
    #[serde(default)]
    pub backup_id: String,
    pub collections: Vec<String>,
    /// Whole databases (records of older servers have none).
    #[serde(default)]
    pub databases: Vec<String>,
    pub suffix: String,
    pub renames: Vec<(String, String)>,
    pub drop_existing: bool,
    pub skip_create: bool,
    pub restore_index: bool,
    pub load: bool,
    pub meta_only: bool,
}

/// The steps of replacing an existing collection with its restored copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwapStep {
    /// No swap (a new target), or the copy is still being filled.
    #[default]
    None,
    /// The copy is filled and checked; the original is being dropped.
    DroppingOriginal,
    /// The original is gone; the copy is being renamed to the target.
    Renaming,
    /// The copy carries the target's name.
    Done,
}

/// How long one phase of a job took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    pub phase: String,
    pub seconds: f64,
}

/// A restore job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreSnapshot {
    pub id: String,
    pub backup_name: String,
    pub state: JobState,
    pub error: Option<String>,
    pub progress: Progress,
    pub collections: Vec<RestoreCollectionStatus>,
    pub start_time: SystemTime,
    pub end_time: Option<SystemTime>,
    /// The kind of failure ([`Error::kind`]) of a failed job.
    #[serde(default)]
    pub error_kind: Option<String>,
    /// The phase running now (empty before the first and after the last).
    #[serde(default)]
    pub phase: String,
    /// The phases that ended, with their durations.
    #[serde(default)]
    pub phases: Vec<PhaseTime>,
    /// Objects and bytes proven intact by the verify phase.
    #[serde(default)]
    pub verified_files: u64,
    #[serde(default)]
    pub verified_bytes: u64,
    /// The caller's trace id (W3C `traceparent`).
    #[serde(default)]
    pub trace_id: Option<String>,
    /// The caller's idempotency key, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What the job was asked, so that another server can resume it when
    /// this one dies.
    #[serde(default)]
    pub order: Option<RestoreOrder>,
    /// The staging prefix a succeeded restore could not remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_left: Option<String>,
    /// Databases this job created: cleanup drops each it leaves empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases_created: Vec<String>,
    /// The job's cleanup ran to its end: a restart never runs it again (a
    /// swap it left unfinished is the user's to settle, as its error says).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cleaned_up: bool,
    /// Its end left cleanup to do (Milvus unreachable, a lease lost, a
    /// target held): any server of its Milvus runs it again. Records made
    /// before 2026-12-06 lack it; only their owner's restart does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cleanup_due: bool,
    /// Databases the job's cleanup could not drop (Milvus unreachable): a
    /// restart tries those again, and only those.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases_left: Vec<String>,
    /// The Milvus it restores into (`milvus::identity`): only its servers
    /// take it over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milvus_id: Option<String>,
}

/// One damaged object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectProblem {
    /// The object's key relative to the backup's folder.
    pub key: String,
    /// What is wrong: missing, truncated or altered.
    pub problem: String,
}

/// How far a verification has come, and what it found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyProgress {
    pub objects_done: u64,
    pub objects_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub problems: Vec<ObjectProblem>,
}

/// A verification of one backup: a job that answers its caller and keeps
/// no record (see [`crate::jobs::JobKind::KEEPS_RECORDS`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifySnapshot {
    pub id: String,
    pub backup_name: String,
    pub state: JobState,
    pub error: Option<String>,
    /// The kind of failure ([`Error::kind`]) of a failed job: `data_loss`
    /// when an object does not match its checksum record.
    pub error_kind: Option<String>,
    pub end_time: Option<SystemTime>,
    pub trace_id: Option<String>,
    pub request_id: Option<String>,
    pub progress: VerifyProgress,
}

impl VerifySnapshot {
    /// A verification of backup `name` about to start.
    pub fn pending(id: String, name: String) -> Self {
        Self {
            id,
            backup_name: name,
            state: JobState::Pending,
            error: None,
            error_kind: None,
            end_time: None,
            trace_id: None,
            request_id: None,
            progress: VerifyProgress::default(),
        }
    }
}

impl VerifyProgress {
    /// The problems as one message naming every object, for `DataLoss`.
    pub fn damage_report(&self, name: &str) -> Option<String> {
        if self.problems.is_empty() {
            return None;
        }
        let list: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("{} ({})", p.key, p.problem))
            .collect();
        Some(format!(
            "backup {name:?} is damaged: {} of {} objects: {}",
            self.problems.len(),
            self.objects_total,
            list.join("; ")
        ))
    }
}

/// Marks a snapshot as ended with `result`: succeeded, cancelled or failed.
fn finish(
    state: &mut JobState,
    error: &mut Option<String>,
    end_time: &mut Option<SystemTime>,
    result: &Result<(), Error>,
) {
    match result {
        Ok(()) => *state = JobState::Succeeded,
        Err(e) => {
            *state = if matches!(e, Error::Cancelled(_)) {
                JobState::Cancelled
            } else {
                JobState::Failed
            };
            *error = Some(e.to_string());
        }
    }
    *end_time = Some(SystemTime::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_100_only_on_success() {
        let p = Progress {
            bytes_done: 10,
            bytes_total: 10,
            ..Default::default()
        };
        assert_eq!(p.percent(JobState::Running), 99);
        assert_eq!(p.percent(JobState::Succeeded), 100);
        assert_eq!(Progress::default().percent(JobState::Running), 0);
    }
}
