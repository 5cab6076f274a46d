//! What a policy's run records say: the status to alert on, and the backups
//! the policy holds (those retention decides about).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::store::{RunRecord, RunState, StoredPolicy};
use crate::model::PolicyInput;

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

/// The ended runs whose backups still exist, newest first: what the policy
/// holds. A failed run counts too: a backup job of its that it gave up on
/// (a takeover's, or one past its deadline) may have completed anyway.
/// Retention then takes only a complete backup whose id one of the run's
/// jobs had.
pub fn holdings<'a>(runs: &'a [RunRecord], exists: &impl Fn(&str) -> bool) -> Vec<&'a RunRecord> {
    let mut held: Vec<&RunRecord> = runs.iter().filter(|r| r.holds_backup(exists)).collect();
    held.sort_by(|a, b| {
        b.slot_ms
            .cmp(&a.slot_ms)
            .then_with(|| b.backup.cmp(&a.backup))
    });
    held
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(slot_ms: i64, backup: &str, state: RunState, jobs: &[&str]) -> RunRecord {
        RunRecord {
            slot_ms,
            backup: backup.into(),
            state,
            attempts: 1,
            error: None,
            error_kind: (state == RunState::Failed).then(|| "unavailable".into()),
            owner: "test".into(),
            started_ms: slot_ms,
            ended_ms: None,
            manual: false,
            deleted: false,
            selection: String::new(),
            retiring: false,
            jobs: jobs.iter().map(|j| j.to_string()).collect(),
            policy_created_ms: None,
        }
    }

    /// A failed run whose backup job started holds its backup (the job may
    /// have completed after the run gave up); one whose name was taken by
    /// another backup, or a run still running, holds nothing.
    #[test]
    fn a_failed_run_that_started_a_job_holds_its_backup() {
        let mut taken = run(3, "name_taken", RunState::Failed, &["j3"]);
        taken.error_kind = Some("already_exists".into());
        let runs = [
            run(1, "done", RunState::Succeeded, &["j1"]),
            run(2, "gave_up", RunState::Failed, &["j2"]),
            taken,
            run(4, "running", RunState::Running, &["j4"]),
        ];
        let held: Vec<&str> = holdings(&runs, &|_| true)
            .iter()
            .map(|r| r.backup.as_str())
            .collect();
        assert_eq!(held, ["gave_up", "done"]);
    }
}
