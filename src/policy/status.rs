//! What a policy's run records say: the status to alert on, and the backups
//! the policy holds (those retention decides about).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::store::{RunRecord, RunState, StoredPolicy};
use crate::model::PolicyInput;
use crate::model::retention::Candidate;

/// A policy with its status.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub policy: PolicyInput,
    pub last_run: Option<RunRecord>,
    pub last_success: Option<RunRecord>,
    /// The newest run that failed, or failed an attempt and is retrying.
    pub last_failure: Option<RunRecord>,
    /// The next due slot; `None` when the policy is disabled.
    pub next_run: Option<DateTime<Utc>>,
    /// The policy's backups that still exist, newest first.
    pub backups: Vec<String>,
}

/// The succeeded runs whose backups still exist, newest first: what the
/// policy holds.
pub fn holdings<'a>(runs: &'a [RunRecord], exists: &impl Fn(&str) -> bool) -> Vec<&'a RunRecord> {
    let mut held: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.state == RunState::Succeeded && !r.deleted && exists(&r.backup))
        .collect();
    held.sort_by(|a, b| {
        b.slot_ms
            .cmp(&a.slot_ms)
            .then_with(|| b.backup.cmp(&a.backup))
    });
    held
}

/// The held backups as retention candidates (their slot is their time).
pub fn candidates(held: &[&RunRecord]) -> Vec<Candidate> {
    held.iter()
        .map(|r| Candidate {
            name: r.backup.clone(),
            time: r.slot(),
        })
        .collect()
}

/// The status of `p` from its run records at `now`.
pub fn status(
    p: &StoredPolicy,
    runs: &[RunRecord],
    exists: &impl Fn(&str) -> bool,
    now: DateTime<Utc>,
) -> PolicyStatus {
    let newest = |keep: &dyn Fn(&RunRecord) -> bool| {
        runs.iter()
            .filter(|r| keep(r))
            .max_by_key(|r| (r.started_ms, r.slot_ms))
            .cloned()
    };
    PolicyStatus {
        policy: p.policy.input().clone(),
        last_run: newest(&|_| true),
        last_success: newest(&|r| r.state == RunState::Succeeded),
        last_failure: newest(&|r| {
            r.state == RunState::Failed || (r.state == RunState::Running && r.error.is_some())
        }),
        next_run: p
            .policy
            .enabled()
            .then(|| p.policy.schedule().next_after(now))
            .flatten(),
        backups: holdings(runs, exists)
            .into_iter()
            .map(|r| r.backup.clone())
            .collect(),
    }
}
