//! Strict conversions between the wire types and the core's types.
//! Requests are validated here; nothing invalid reaches the core.

use std::time::SystemTime;

use tonic::Request;
use tonic::metadata::MetadataMap;

use super::proto as pb;
use crate::engine::{CheckReport, VerifyProgress};
use crate::error::{Error, Result};
use crate::jobs::{BackupSnapshot, DeleteSnapshot, JobState, Progress, RestoreSnapshot};
use crate::model::{BackupInput, BackupRequest, Caller, RestoreInput, RestoreRequest};

/// The caller of a request that carries no idempotency key: its trace.
pub(super) fn caller_of<T>(request: &tonic::Request<T>) -> crate::Result<Caller> {
    Caller::parse("", traceparent(request.metadata()))
}

/// The caller's W3C `traceparent` metadata (empty when none).
fn traceparent(metadata: &MetadataMap) -> &str {
    metadata
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// A CreateBackup call: its message, traced as its metadata says.
impl TryFrom<Request<pb::CreateBackupRequest>> for BackupRequest {
    type Error = Error;

    fn try_from(request: Request<pb::CreateBackupRequest>) -> Result<Self> {
        let (metadata, _, r) = request.into_parts();
        BackupRequest::parse(BackupInput {
            name: r.backup_name,
            collections: r.collection_names,
            databases: r.database_names,
            meta_only: r.meta_only,
            incremental: r.incremental,
            caller: Caller::parse(r.request_id, traceparent(&metadata))?,
            generated_name: false,
        })
    }
}

/// A Restore call: its message, traced as its metadata says.
impl TryFrom<Request<pb::RestoreRequest>> for RestoreRequest {
    type Error = Error;

    fn try_from(request: Request<pb::RestoreRequest>) -> Result<Self> {
        let (metadata, _, r) = request.into_parts();
        RestoreRequest::parse(RestoreInput {
            backup_name: r.backup_name,
            collections: r.collection_names,
            databases: r.database_names,
            suffix: r.collection_suffix,
            renames: r.collection_renames.into_iter().collect(),
            drop_existing: r.drop_existing_collections,
            skip_create: r.skip_create_collection,
            restore_index: r.restore_index,
            load: r.load,
            meta_only: r.meta_only,
            caller: Caller::parse(r.request_id, traceparent(&metadata))?,
        })
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

fn state(s: JobState) -> pb::JobState {
    match s {
        JobState::Pending => pb::JobState::Pending,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

fn progress(p: &Progress, s: JobState) -> pb::Progress {
    pb::Progress {
        percent: p.percent(s),
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
        files_done: p.files_done,
        files_total: p.files_total,
        collections_done: p.collections_done,
        collections_total: p.collections_total,
        totals_growing: p.totals_growing,
    }
}

impl From<&BackupSnapshot> for pb::Backup {
    fn from(b: &BackupSnapshot) -> Self {
        pb::Backup {
            id: b.id.clone(),
            name: b.name.clone(),
            state: state(b.state) as i32,
            error_message: b.error.clone().unwrap_or_default(),
            error_kind: b.error_kind.clone().unwrap_or_default(),
            progress: Some(progress(&b.progress, b.state)),
            size_bytes: b.size_bytes,
            milvus_version: b.milvus_version.clone(),
            collections: b
                .collections
                .iter()
                .map(|c| pb::BackupCollection {
                    db_name: c.db.clone(),
                    collection_name: c.name.clone(),
                    collection_id: c.id,
                    row_count: c.row_count,
                    size_bytes: c.size_bytes,
                    partition_count: c.partition_count,
                    segment_count: c.segment_count,
                    backup_timestamp: c.backup_timestamp,
                })
                .collect(),
            backup_timestamp: b.backup_timestamp_ms,
            start_time: Some(timestamp(b.start_time)),
            end_time: b.end_time.map(timestamp),
            meta_only: b.meta_only,
            incremental: b.reuse.is_some(),
            based_on: b.reuse.iter().flat_map(|r| r.based_on.clone()).collect(),
            files_reused: b.reuse.as_ref().map_or(0, |r| r.files),
            bytes_reused: b.reuse.as_ref().map_or(0, |r| r.bytes),
            phases: b
                .phases
                .iter()
                .map(|(name, ms)| pb::Phase {
                    name: name.clone(),
                    seconds: *ms as f64 / 1000.0,
                })
                .collect(),
        }
    }
}

impl From<&RestoreSnapshot> for pb::RestoreJob {
    fn from(r: &RestoreSnapshot) -> Self {
        pb::RestoreJob {
            id: r.id.clone(),
            backup_name: r.backup_name.clone(),
            state: state(r.state) as i32,
            error_message: r.error.clone().unwrap_or_default(),
            progress: Some(progress(&r.progress, r.state)),
            collections: r
                .collections
                .iter()
                .map(|c| pb::RestoreCollection {
                    source_db_name: c.source.db().to_string(),
                    source_collection_name: c.source.name().to_string(),
                    target_db_name: c.target.db().to_string(),
                    target_collection_name: c.target.name().to_string(),
                    state: state(c.state) as i32,
                    row_count: c.row_count,
                    imported_rows: c.imported_rows,
                    error_message: c.error.clone().unwrap_or_default(),
                    temp_collection_name: c.temp.clone().unwrap_or_default(),
                })
                .collect(),
            start_time: Some(timestamp(r.start_time)),
            end_time: r.end_time.map(timestamp),
            phase: r.phase.clone(),
            phases: r
                .phases
                .iter()
                .map(|p| pb::PhaseTime {
                    phase: p.phase.clone(),
                    seconds: p.seconds,
                })
                .collect(),
            verified_files: r.verified_files,
            verified_bytes: r.verified_bytes,
            error_kind: r.error_kind.clone().unwrap_or_default(),
            staging_left: r.staging_left.clone().unwrap_or_default(),
        }
    }
}

impl From<&DeleteSnapshot> for pb::DeleteJob {
    fn from(d: &DeleteSnapshot) -> Self {
        pb::DeleteJob {
            id: d.id.clone(),
            backup_name: d.backup_name.clone(),
            state: state(d.state) as i32,
            error_message: d.error.clone().unwrap_or_default(),
            objects_deleted: d.objects_deleted,
            objects_total: d.objects_total,
            objects_kept: d.objects_kept,
            start_time: Some(timestamp(d.start_time)),
            end_time: d.end_time.map(timestamp),
        }
    }
}

impl From<&VerifyProgress> for pb::VerifyBackupResponse {
    fn from(p: &VerifyProgress) -> Self {
        pb::VerifyBackupResponse {
            objects_done: p.objects_done,
            objects_total: p.objects_total,
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            damaged: p
                .problems
                .iter()
                .map(|d| pb::DamagedObject {
                    key: d.key.clone(),
                    problem: d.problem.clone(),
                })
                .collect(),
        }
    }
}

impl From<CheckReport> for pb::CheckResponse {
    fn from(c: CheckReport) -> Self {
        pb::CheckResponse {
            milvus_address: c.milvus_address,
            milvus_version: c.milvus_version.to_string(),
            milvus_storage: c.milvus_storage,
            backup_storage: c.backup_storage,
            backup_count: c.backup_count as u32,
            conditional_writes: c.conditional_writes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CollectionRef;

    #[test]
    fn renames_arrive_in_the_model() {
        let r = RestoreRequest::try_from(Request::new(pb::RestoreRequest {
            backup_name: "b".into(),
            collection_renames: [("db1.c1".to_string(), "db1.c2".to_string())].into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(
            r.renames()[&CollectionRef::normalized("db1", "c1")],
            CollectionRef::normalized("db1", "c2")
        );
    }

    #[test]
    fn the_caller_comes_from_the_message_and_the_metadata() {
        let mut call = Request::new(pb::CreateBackupRequest {
            backup_name: "b".into(),
            request_id: "r1".into(),
            ..Default::default()
        });
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        call.metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
        let req = BackupRequest::try_from(call).unwrap();
        assert_eq!(req.caller().request_id(), "r1");
        let trace = req.caller().trace().map(|t| t.as_str());
        assert_eq!(trace, Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn a_request_id_too_long_or_with_control_characters_is_refused_naming_it() {
        let too_long = "r".repeat(crate::model::MAX_REQUEST_ID_LEN + 1);
        for (id, says) in [(too_long.as_str(), "of 257 bytes"), ("a\nb", "control")] {
            let r = RestoreRequest::try_from(Request::new(pb::RestoreRequest {
                backup_name: "b".into(),
                request_id: id.into(),
                ..Default::default()
            }));
            match r {
                Err(Error::InvalidArgument(m)) => {
                    assert!(m.contains("request_id") && m.contains(says), "{m}")
                }
                other => panic!("{id:?}: {other:?}"),
            }
        }
        let longest = "r".repeat(crate::model::MAX_REQUEST_ID_LEN);
        let ok = BackupRequest::try_from(Request::new(pb::CreateBackupRequest {
            backup_name: "b".into(),
            request_id: longest.clone(),
            ..Default::default()
        }));
        assert_eq!(ok.unwrap().caller().request_id(), longest);
    }

    #[test]
    fn bad_requests_are_refused_at_the_door() {
        let r = RestoreRequest::try_from(Request::new(pb::RestoreRequest {
            backup_name: "../x".into(),
            ..Default::default()
        }));
        assert!(matches!(r, Err(Error::InvalidArgument(_))));
        let b = BackupRequest::try_from(Request::new(pb::CreateBackupRequest {
            backup_name: "b".into(),
            database_names: vec!["a-b".into()],
            ..Default::default()
        }));
        assert!(matches!(b, Err(Error::InvalidArgument(_))));
    }
}
