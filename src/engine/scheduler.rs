//! The policy scheduler, one per server. Every second it reads the stored
//! policies and, for each enabled one, the newest due slot: slots missed
//! while every server was down get one catch-up run (the newest), not one
//! each. A slot runs at most once across all servers:
//! - its lease (`_leases/policy/{name}/{slot}`) lets one server run it;
//! - its run record, created under the lease, says it was taken; a server
//!   that gets the lease later finds the record and leaves a finished run alone;
//! - a record still RUNNING whose lease is free (its server died) is taken
//!   over: the run continues under the same backup name, after the dead
//!   server's half-written backup is removed.
//!
//! A failed attempt is retried with backoff until the next slot is due.
//! After a success, retention deletes through the safe delete.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tracing::{info, warn};

use super::Engine;
use crate::error::{Error, Result};
use crate::jobs::{JobState, Lease, host_pid, until_terminal};
use crate::model::{BackupName, Caller};
use crate::policy::{RunRecord, RunState, StoredPolicy};

/// How often the scheduler looks for due slots.
const TICK: Duration = Duration::from_secs(1);
/// Every this many ticks it also looks for runs left by dead servers and
/// refreshes the policy gauges.
const SWEEP_TICKS: u32 = 3;
/// Ended runs kept per policy beyond those whose backups still exist.
const RUNS_KEPT: usize = 50;
/// Longest wait between two attempts of one slot.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a manual run is retried.
const MANUAL_RETRY_WINDOW: Duration = Duration::from_secs(600);

/// What this server knows of its slots.
#[derive(Debug, Default)]
pub(super) struct SlotBook {
    /// policy → the newest slot known to be taken care of.
    handled: HashMap<String, i64>,
    /// (policy, slot) runs this server is running now.
    running: HashSet<(String, i64)>,
}

/// The record a run starts with.
pub(super) fn first_record(slot_ms: i64, backup: &str, manual: bool) -> RunRecord {
    RunRecord {
        slot_ms,
        backup: backup.to_string(),
        state: RunState::Running,
        attempts: 0,
        error: None,
        owner: host_pid(),
        started_ms: Utc::now().timestamp_millis(),
        ended_ms: None,
        manual,
        deleted: false,
    }
}

fn slot_lease(policy: &str, slot_ms: i64) -> String {
    format!("policy/{policy}/{slot_ms}")
}

impl Engine {
    /// Runs the policy scheduler in the background until the engine shuts down.
    pub fn start_scheduler(self: &Arc<Self>) {
        let (engine, stop) = (self.clone(), self.stop.clone());
        tokio::spawn(async move {
            let mut ticks = 0u32;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(TICK) => {}
                }
                let sweep = ticks.is_multiple_of(SWEEP_TICKS);
                ticks = ticks.wrapping_add(1);
                if let Err(e) = engine.tick(sweep).await {
                    warn!(error = %e, "policy scheduler: cannot read the policies");
                }
            }
        });
    }

    async fn tick(self: &Arc<Self>, sweep: bool) -> Result<()> {
        let now = Utc::now();
        for p in self.policies.list().await? {
            let name = p.policy.name().to_string();
            if sweep {
                self.sweep(&p).await;
            }
            if !p.policy.enabled() {
                continue;
            }
            let Some(slot) = p.policy.schedule().latest_due(p.created, now) else {
                continue;
            };
            let slot = slot.timestamp_millis();
            let handled = self
                .slots
                .lock()
                .expect("slots")
                .handled
                .get(&name)
                .copied();
            if handled.is_none_or(|h| h < slot) {
                self.spawn_slot(p, slot, false);
            }
        }
        Ok(())
    }

    /// Takes over the runs of dead servers and refreshes the gauges.
    async fn sweep(self: &Arc<Self>, p: &StoredPolicy) {
        let name = p.policy.name();
        let runs = match self.policies.runs(name).await {
            Ok(r) => r,
            Err(e) => return warn!(policy = %name, error = %e, "cannot read the policy's runs"),
        };
        for r in runs.iter().filter(|r| r.state == RunState::Running) {
            // The lease decides whether its server is still alive.
            self.spawn_slot(p.clone(), r.slot_ms, r.manual);
        }
        let last_success = runs
            .iter()
            .filter(|r| r.state == RunState::Succeeded)
            .filter_map(|r| r.ended_ms)
            .max()
            .map(|ms| ms / 1000);
        let next = p
            .policy
            .enabled()
            .then(|| p.policy.schedule().next_after(Utc::now()))
            .flatten()
            .map(|t| t.timestamp());
        crate::metrics::global().policy_times(name, Some((last_success, next)));
    }

    fn spawn_slot(self: &Arc<Self>, p: StoredPolicy, slot_ms: i64, manual: bool) {
        let key = (p.policy.name().to_string(), slot_ms);
        if !self
            .slots
            .lock()
            .expect("slots")
            .running
            .insert(key.clone())
        {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            engine.run_slot(p, slot_ms, manual).await;
            engine.slots.lock().expect("slots").running.remove(&key);
        });
    }

    /// Runs slot `slot_ms` of `p` if this server gets its lease and the run
    /// is not over.
    pub(super) async fn run_slot(&self, p: StoredPolicy, slot_ms: i64, manual: bool) {
        let name = p.policy.name().to_string();
        let job = uuid::Uuid::new_v4().to_string();
        let lease = match self
            .ctx
            .leases()
            .acquire(&slot_lease(&name, slot_ms), &job, "policy run")
            .await
        {
            Ok(lease) => lease,
            // Another server runs it.
            Err(Error::Aborted(_)) => return,
            Err(e) => {
                return warn!(policy = %name, slot = slot_ms, error = %e, "cannot take the slot's lease");
            }
        };
        if let Err(e) = self.run_held_slot(&p, slot_ms, manual, &lease).await {
            warn!(policy = %name, slot = slot_ms, error = %e, "policy run stopped");
        }
        lease.release().await;
    }

    fn mark_handled(&self, policy: &str, slot_ms: i64) {
        let mut book = self.slots.lock().expect("slots");
        let h = book.handled.entry(policy.to_string()).or_insert(slot_ms);
        *h = (*h).max(slot_ms);
    }

    async fn run_held_slot(
        &self,
        p: &StoredPolicy,
        slot_ms: i64,
        manual: bool,
        lease: &Lease,
    ) -> Result<()> {
        let name = p.policy.name();
        let store = &self.policies;
        let (mut record, resumed) = match store.run(name, slot_ms).await? {
            Some(r) if r.state != RunState::Running => {
                if !r.manual {
                    self.mark_handled(name, slot_ms);
                }
                return Ok(());
            }
            Some(r) => {
                info!(policy = %name, slot = %r.slot(), backup = %r.backup, dead_owner = %r.owner, "taking over a policy run");
                (r, true)
            }
            None => {
                if !manual {
                    // A scheduled slot older than one already taken is stale.
                    let runs = store.runs(name).await?;
                    if runs.iter().any(|r| !r.manual && r.slot_ms > slot_ms) {
                        self.mark_handled(name, slot_ms);
                        return Ok(());
                    }
                }
                let slot = chrono::DateTime::from_timestamp_millis(slot_ms).unwrap_or_default();
                let backup = p.policy.backup_name(slot)?;
                let r = first_record(slot_ms, backup.as_str(), manual);
                if !store.start_run(name, &r).await? {
                    // Its record appeared since: read it again next tick.
                    return Ok(());
                }
                (r, false)
            }
        };
        if !manual {
            self.mark_handled(name, slot_ms);
        }
        let deadline = match manual {
            true => Utc::now() + MANUAL_RETRY_WINDOW,
            false => p
                .policy
                .schedule()
                .next_after(record.slot())
                .unwrap_or_else(|| Utc::now() + MANUAL_RETRY_WINDOW),
        };
        loop {
            record.attempts += 1;
            record.owner = host_pid();
            store.save_run(name, &record).await?;
            let attempt = self
                .policy_backup(p, &record, resumed || record.attempts > 1)
                .await;
            let err = match attempt {
                Ok(()) => break,
                Err(e) => e,
            };
            warn!(policy = %name, backup = %record.backup, attempt = record.attempts, error = %err, "policy run failed");
            record.error = Some(err.to_string());
            let backoff = Duration::from_secs(1 << record.attempts.min(6)).min(MAX_BACKOFF);
            let stopping = self.stop.is_cancelled() || lease.lost().is_cancelled();
            if stopping {
                // Left RUNNING: another server (or this one, restarted) takes it over.
                store.save_run(name, &record).await?;
                return Ok(());
            }
            // A taken name does not free itself: no retry.
            let hopeless = matches!(err, Error::AlreadyExists { .. } | Error::InvalidArgument(_));
            if hopeless || Utc::now() + backoff >= deadline {
                record.state = RunState::Failed;
                record.ended_ms = Some(Utc::now().timestamp_millis());
                store.save_run(name, &record).await?;
                crate::metrics::global().policy_run_ended(name, "failed");
                return Ok(());
            }
            store.save_run(name, &record).await?;
            let lost = lease.lost();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.cancelled() => return Ok(()),
                _ = lost.cancelled() => return Ok(()),
            }
        }
        record.state = RunState::Succeeded;
        record.ended_ms = Some(Utc::now().timestamp_millis());
        store.save_run(name, &record).await?;
        crate::metrics::global().policy_run_ended(name, "succeeded");
        info!(policy = %name, backup = %record.backup, slot = %record.slot(), "policy run succeeded");
        self.apply_retention(p).await;
        Ok(())
    }

    /// Makes the run's backup. `resumed`: the run was taken over from a
    /// server that died, which may have finished the backup or left half of it.
    async fn policy_backup(
        &self,
        p: &StoredPolicy,
        record: &RunRecord,
        resumed: bool,
    ) -> Result<()> {
        let name = BackupName::parse(&record.backup)?;
        let catalog = &self.ctx.catalog;
        if catalog.is_taken(name.as_str()).await? {
            let complete = catalog.read(name.as_str()).await?.is_some();
            if resumed && complete {
                info!(backup = %name, "the run's backup was completed by the server that died");
                return Ok(());
            }
            // On a first attempt the name belongs to something this policy did
            // not make (as does a complete backup of a run not taken over):
            // it is never touched.
            if complete || (!resumed && record.attempts <= 1) {
                return Err(Error::already_exists("backup", name.as_str()));
            }
            // Half written by an attempt of this run that died or could not
            // clean up: removed under the name's hold, which waits for the dead
            // attempt's lease to expire.
            let job = uuid::Uuid::new_v4().to_string();
            let hold = self
                .ctx
                .leases()
                .hold_for_writing(name.as_str(), &job, "clean up a policy run")
                .await?;
            let removed = catalog.delete(name.as_str()).await;
            hold.release().await;
            info!(backup = %name, objects = removed.as_ref().copied().unwrap_or_default(), "removed a half-written policy backup");
            removed?;
        }
        let caller = Caller::new("", "");
        let req = p.policy.backup_request(&name, caller)?;
        let last = until_terminal(self.create_backup(req).await?).await;
        match last.state {
            JobState::Succeeded => Ok(()),
            _ => Err(Error::of_kind(
                last.error_kind.as_deref().unwrap_or_default(),
                last.error
                    .unwrap_or_else(|| format!("backup {name} ended {:?}", last.state)),
            )),
        }
    }

    /// Deletes what the retention rules no longer keep, through the safe
    /// delete; a backup that cannot be deleted now is tried after the next run.
    async fn apply_retention(&self, p: &StoredPolicy) {
        let name = p.policy.name();
        if p.policy.retention().is_empty() {
            return;
        }
        let decisions = match self.retention_decisions(p).await {
            Ok(d) => d,
            Err(e) => {
                return warn!(policy = %name, error = %e, "retention skipped: cannot read the policy's backups");
            }
        };
        let mut runs = match self.policies.runs(name).await {
            Ok(r) => r,
            Err(e) => {
                return warn!(policy = %name, error = %e, "retention skipped: cannot read the policy's runs");
            }
        };
        for d in decisions.iter().filter(|d| !d.keep) {
            let result = match BackupName::parse(&d.name) {
                Ok(b) => self.delete_backup_and_wait(&b).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) | Err(Error::NotFound { .. }) => {
                    info!(policy = %name, backup = %d.name, reason = %d.reason, "retention deleted a backup");
                    for r in runs.iter_mut().filter(|r| r.backup == d.name) {
                        r.deleted = true;
                        if let Err(e) = self.policies.save_run(name, r).await {
                            warn!(policy = %name, error = %e, "cannot record the deletion");
                        }
                    }
                }
                Err(e) => {
                    warn!(policy = %name, backup = %d.name, error = %e, "retention could not delete the backup now; tried again after the next run")
                }
            }
        }
        match self.existing_backups().await {
            Ok(names) => {
                if let Err(e) = self
                    .policies
                    .prune_runs(name, &runs, RUNS_KEPT, |b| names.contains(b))
                    .await
                {
                    warn!(policy = %name, error = %e, "cannot prune the policy's run records");
                }
            }
            Err(e) => warn!(policy = %name, error = %e, "cannot prune the policy's run records"),
        }
    }
}
