//! Hand-made policy run records.

use milvus_backup::policy::{RunRecord, RunState};

/// A run of slot `slot_ms` that succeeded and made `backup` with job
/// `job-{backup}`, ended a second after its slot.
pub fn succeeded(slot_ms: i64, backup: &str) -> RunRecord {
    RunRecord {
        slot_ms,
        backup: backup.into(),
        state: RunState::Succeeded,
        attempts: 1,
        error: None,
        error_kind: None,
        owner: "test".into(),
        started_ms: slot_ms,
        ended_ms: Some(slot_ms + 1000),
        manual: false,
        deleted: false,
        selection: String::new(),
        retiring: false,
        jobs: vec![format!("job-{backup}")],
        policy_created_ms: None,
    }
}
