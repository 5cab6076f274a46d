//! The policy scheduler, one per server. Every second it looks at the
//! policies (listed again once a lease TTL, or at once after a change made
//! here; a due slot's policy is read again before it starts) and, for each
//! enabled one, the newest due slot: slots missed
//! while every server was down get one catch-up run (the newest), not one
//! each. A slot runs at most once across all servers:
//! - its lease (`_leases/policy/{name}/{slot}`) lets one server run it;
//! - its run record, created under the lease, says it was taken; a server
//!   that gets the lease later finds the record and leaves a finished run alone;
//! - a record still RUNNING whose lease is free (its server died) is taken
//!   over: the run continues under the same backup name, after the dead
//!   server's half-written backup is removed; a newer slot recorded since
//!   supersedes it (no new backup is made for it).
//!
//! A backup of the run's name counts as the run's only when its id (or the
//! last holder of its name's lease, for a half-written one) is one of the
//! jobs the run recorded before starting them: anything else under that
//! name is never adopted, deleted or retained. A failed attempt is retried
//! with backoff (2 s doubling to 5 minutes, the last wait cut short) until
//! the next slot is due. After a success, retention
//! (with the policy as stored then) deletes through the safe delete.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::Engine;
use crate::error::{Error, Result};
use crate::jobs::{Lease, holds, host_pid};
use crate::policy::{RunRecord, RunState, StoredPolicy};

/// How often the scheduler looks for due slots.
const TICK: Duration = Duration::from_secs(1);
/// The longest a server keeps its listing of the policies.
const MAX_LISTING_AGE: Duration = Duration::from_secs(30);
/// Ended runs kept per policy beyond those whose backups still exist.
const RUNS_KEPT: usize = 50;
/// Longest wait between two attempts of one slot: each attempt may flush
/// every collection the policy backs up.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A slot's last attempt starts at least this long before its deadline.
const LAST_ATTEMPT_MARGIN: Duration = Duration::from_secs(1);
/// How long a manual run is retried.
const MANUAL_RETRY_WINDOW: Duration = Duration::from_secs(600);

/// How far past this server's clock a recorded slot may be and still count
/// as a newer slot.
const FUTURE_SLOT_TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// What this server knows of its slots.
#[derive(Debug, Default)]
pub(super) struct SlotBook {
    /// policy → the newest slot known to be taken care of.
    handled: HashMap<String, i64>,
    /// (policy, slot) runs this server is running now.
    running: HashSet<(String, i64)>,
    /// policy → the slot last said to wait for an earlier run.
    waiting: HashMap<String, i64>,
    /// policy → the slot last said to be left to replicas that reach Milvus.
    left: HashMap<String, i64>,
    /// Policies of another Milvus, said once (`Engine::schedules_here`).
    pub(super) foreign: HashSet<String>,
}

/// The record a run starts with.
pub(super) fn first_record(
    slot_ms: i64,
    backup: &str,
    manual: bool,
    p: &StoredPolicy,
) -> RunRecord {
    RunRecord {
        slot_ms,
        backup: backup.to_string(),
        state: RunState::Running,
        attempts: 0,
        error: None,
        error_kind: None,
        owner: host_pid(),
        started_ms: Utc::now().timestamp_millis(),
        ended_ms: None,
        manual,
        deleted: false,
        selection: p.policy.selection().key(),
        retiring: false,
        jobs: Vec::new(),
        policy_created_ms: Some(p.created_ms),
    }
}

/// When policy `p` runs next (seconds since the epoch); none while it is off.
fn next_run(p: &StoredPolicy) -> Option<i64> {
    p.policy
        .enabled()
        .then(|| p.policy.schedule().next_after(Utc::now()))
        .flatten()
        .map(|t| t.timestamp())
}

/// Removes a running slot from the book when its task ends, also by a panic.
struct RunningSlot {
    engine: Arc<Engine>,
    key: (String, i64),
}

impl Drop for RunningSlot {
    fn drop(&mut self) {
        self.engine
            .slots
            .lock()
            .expect("slots")
            .running
            .remove(&self.key);
    }
}

impl Engine {
    /// Runs the policy scheduler in the background until the engine shuts down.
    pub fn start_scheduler(self: &Arc<Self>) {
        let (engine, stop) = (self.clone(), self.stop.clone());
        tokio::spawn(async move {
            let mut swept: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(TICK) => {}
                }
                let sweep = swept.is_none_or(|t| t.elapsed() >= engine.listing_period());
                let started = Instant::now();
                match engine.tick(sweep).await {
                    // A sweep that could not list the policies is tried again.
                    Ok(()) if sweep => swept = Some(started),
                    Ok(()) => {}
                    Err(e) => warn!(error = %e, "policy scheduler: cannot read the policies"),
                }
            }
        });
    }

    /// How long a listing of the policies, and of their runs (the sweep),
    /// serves: one lease TTL (about as long as a dead server's run waits
    /// for its lease to expire anyway), at most [`MAX_LISTING_AGE`]: a
    /// policy made or turned on elsewhere (another server, the CLI) is seen
    /// within it. Each look costs LISTs and GETs, paid by every server every
    /// time, also while nothing is due.
    fn listing_period(&self) -> Duration {
        self.ctx.leases().ttl().clamp(TICK, MAX_LISTING_AGE)
    }

    async fn tick(self: &Arc<Self>, sweep: bool) -> Result<()> {
        let now = Utc::now();
        let policies = self.policies.list_recent(self.listing_period()).await?;
        let names: Vec<&str> = policies.iter().map(|p| p.policy.name()).collect();
        crate::metrics::global().policy_retain(&names);
        for p in &policies {
            let name = p.policy.name().to_string();
            if sweep {
                self.sweep(p).await;
            } else {
                crate::metrics::global().policy_next_run(&name, next_run(p));
            }
            if !p.policy.enabled() || !self.schedules_here(p).await {
                continue;
            }
            let Some(slot) = p.policy.schedule().latest_due(p.since, now) else {
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
            if handled.is_some_and(|h| h >= slot) {
                continue;
            }
            // A run of the policy here: the slot waits (see `run_slot`).
            let running_here = (self.slots.lock().expect("slots").running)
                .iter()
                .find(|(q, s)| *q == name && *s != slot)
                .map(|(_, s)| *s);
            if let Some(running) = running_here {
                self.note_waiting(&name, slot, running);
                continue;
            }
            let key = (name.clone(), slot);
            if self.slots.lock().expect("slots").running.contains(&key) {
                continue;
            }
            if let Some(p) = self.still_due(&name, slot, now).await {
                self.spawn_slot(p, slot, false);
            }
        }
        Ok(())
    }

    /// Policy `name` read again before its slot `slot_ms` starts: the
    /// listing may be older than a change made through another server.
    /// `None` when it is gone, turned off, or no longer due at that slot
    /// (then the next tick lists the policies anew).
    async fn still_due(
        &self,
        name: &str,
        slot_ms: i64,
        now: DateTime<Utc>,
    ) -> Option<StoredPolicy> {
        match self.policies.get(name).await {
            Ok(Some(p))
                if p.policy.enabled()
                    && p.policy
                        .schedule()
                        .latest_due(p.since, now)
                        .map(|t| t.timestamp_millis())
                        == Some(slot_ms) =>
            {
                Some(p)
            }
            Ok(_) => {
                info!(policy = %name, "the policy changed since it was listed; listed again");
                self.policies.forget_listing();
                None
            }
            Err(e) => {
                warn!(policy = %name, error = %e, "cannot read the policy before its slot; tried again");
                None
            }
        }
    }

    /// Takes over the runs of dead servers (only a server of the policy's
    /// Milvus: another would back up its own Milvus as the policy's run),
    /// prunes old run records and refreshes the gauges.
    async fn sweep(self: &Arc<Self>, p: &StoredPolicy) {
        let name = p.policy.name();
        let runs = match self.policies.runs(name).await {
            Ok(r) => r,
            Err(e) => return warn!(policy = %name, error = %e, "cannot read the policy's runs"),
        };
        let running: Vec<_> = runs
            .iter()
            .filter(|r| r.state == RunState::Running)
            .collect();
        if !running.is_empty() {
            // With the policy as stored now, not as listed up to a TTL ago;
            // the lease decides whether the run's server is still alive.
            match self.policies.get(name).await {
                Ok(Some(now)) if !self.schedules_here(&now).await => {}
                Ok(Some(now)) => {
                    for r in running {
                        self.spawn_slot(now.clone(), r.slot_ms, r.manual);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(policy = %name, error = %e, "cannot read the policy to take its runs over")
                }
            }
        }
        if runs.len() > RUNS_KEPT {
            match self.existing_backups().await {
                Ok(names) => {
                    let pruned = self
                        .policies
                        .prune_runs(name, &runs, RUNS_KEPT, |b| names.contains(b))
                        .await;
                    if let Err(e) = pruned {
                        warn!(policy = %name, error = %e, "cannot prune the policy's run records");
                    }
                }
                Err(e) => {
                    warn!(policy = %name, error = %e, "cannot prune the policy's run records")
                }
            }
        }
        let last_success = runs
            .iter()
            .filter(|r| r.state == RunState::Succeeded)
            .filter_map(|r| r.ended_ms)
            .max()
            .map(|ms| ms / 1000);
        crate::metrics::global().policy_times(name, Some((last_success, next_run(p))));
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
        let guard = RunningSlot {
            engine: self.clone(),
            key,
        };
        tokio::spawn(async move {
            guard.engine.run_slot(p, slot_ms, manual).await;
            drop(guard);
        });
    }

    /// Runs slot `slot_ms` of `p` if this server gets its lease and the run
    /// is not over; the lease object of an ended run is removed.
    pub(super) async fn run_slot(&self, p: StoredPolicy, slot_ms: i64, manual: bool) {
        let name = p.policy.name().to_string();
        let job = uuid::Uuid::new_v4().to_string();
        let leases = self.ctx.leases();
        let lease_name = holds::policy_slot(&name, slot_ms);
        // A scheduled slot does not start while a run of the policy holds
        // its slot's lease (here or on another server): backups of one
        // policy never pile up on Milvus. The newest slot due when that run
        // ends runs then. A dead server's run, whose lease has expired,
        // holds nothing back. Read before the lease is taken, so a slot
        // that waits leaves no lease object behind.
        if !manual {
            match leases.holders_under(&holds::policy_slots(&name)).await {
                Ok(held) => {
                    let running = held
                        .iter()
                        .filter(|(lease, _)| *lease != lease_name)
                        .filter_map(|(lease, _)| holds::slot_of(lease))
                        .max();
                    if let Some(running) = running {
                        return self.note_waiting(&name, slot_ms, running);
                    }
                    // A slot another server holds needs no probe: the lease
                    // is refused below.
                    let taken = held.iter().any(|(lease, _)| *lease == lease_name);
                    if !taken && !self.may_take_slot(&p, slot_ms).await {
                        return;
                    }
                }
                Err(e) => {
                    return warn!(policy = %name, slot = slot_ms, error = %e, "cannot see whether a run of the policy runs; tried again");
                }
            }
        }
        let lease = match leases.acquire(&lease_name, &job, "policy run").await {
            Ok(lease) => lease,
            // Another server runs it; a dead one's is found by the sweep,
            // once it has a record. Until then the slot is asked for again:
            // a server that died between the lease and the record would
            // otherwise lose the slot.
            Err(Error::Aborted(_)) => {
                if !manual && matches!(self.policies.run(&name, slot_ms).await, Ok(Some(_))) {
                    self.mark_handled(&name, slot_ms);
                }
                return;
            }
            Err(e) => {
                return warn!(policy = %name, slot = slot_ms, error = %e, "cannot take the slot's lease");
            }
        };
        let ended = match self.run_held_slot(&p, slot_ms, manual, &lease).await {
            Ok(ended) => ended,
            Err(e) => {
                warn!(policy = %name, slot = slot_ms, error = %e, "policy run stopped");
                false
            }
        };
        lease.release().await;
        if ended && let Err(e) = leases.remove(&lease_name).await {
            warn!(policy = %name, error = %e, "cannot remove an ended run's lease");
        }
    }

    /// Logs once per slot that it waits for the run of slot `running`.
    fn note_waiting(&self, policy: &str, slot_ms: i64, running: i64) {
        let mut book = self.slots.lock().expect("slots");
        if book.waiting.insert(policy.to_string(), slot_ms) != Some(slot_ms) {
            let at = |ms| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
            info!(policy = %policy, slot = %at(slot_ms), running = %at(running), "the slot waits for the policy's run still running");
        }
    }

    fn mark_handled(&self, policy: &str, slot_ms: i64) {
        let mut book = self.slots.lock().expect("slots");
        let h = book.handled.entry(policy.to_string()).or_insert(slot_ms);
        *h = (*h).max(slot_ms);
    }

    /// Whether this server takes scheduled slot `slot_ms` of `p` now: at once
    /// while Milvus answers it, or when the slot has a run record (a dead
    /// server's run is taken over as before: the record shows it, and a run
    /// superseded by a newer slot needs no Milvus). While Milvus does not
    /// answer, a slot without a record is left to a replica that reaches
    /// Milvus (here the run would only fail, and hold the slot's lease while
    /// it is retried) until [`Engine::slot_grace`] past the slot. Then it is
    /// taken here all the same: a slot no replica can run is recorded as
    /// failed and retried until Milvus answers, never left unseen.
    async fn may_take_slot(&self, p: &StoredPolicy, slot_ms: i64) -> bool {
        let policy = p.policy.name();
        let Some(why) = self.milvus_unreachable().await else {
            return true;
        };
        if !matches!(self.policies.run(policy, slot_ms).await, Ok(None)) {
            return true;
        }
        let at = DateTime::from_timestamp_millis(slot_ms).unwrap_or_default();
        let grace = self.slot_grace(p, at);
        if Utc::now() < at + grace {
            let mut book = self.slots.lock().expect("slots");
            if book.left.insert(policy.to_string(), slot_ms) != Some(slot_ms) {
                warn!(policy = %policy, slot = %at, error = %why, ?grace, "cannot reach Milvus: the slot is left to a replica that can");
            }
            return false;
        }
        self.slots.lock().expect("slots").left.remove(policy);
        warn!(policy = %policy, slot = %at, error = %why, "no replica that reaches Milvus took the slot: it runs here, retried until Milvus answers");
        true
    }

    /// How long a slot is left to replicas that reach Milvus: a listing
    /// period, two ticks and a probe (every server knows the policy, and has
    /// asked Milvus, by then), at most half the time to the policy's next
    /// slot, so that a slot is taken before a newer one replaces it.
    fn slot_grace(&self, p: &StoredPolicy, slot: DateTime<Utc>) -> chrono::TimeDelta {
        let grace = self.listing_period() + 2 * TICK + super::milvus_probe::PROBE_TIMEOUT;
        let grace = chrono::TimeDelta::from_std(grace).unwrap_or_default();
        match p.policy.schedule().next_after(slot) {
            Some(next) => grace.min((next - slot) / 2),
            None => grace,
        }
    }

    /// Writes the run's record while this server holds its lease and its
    /// policy exists: a deleted policy's runs leave no records behind, also
    /// when a policy of the same name was created since (it would take the
    /// run's backup for its own, and its retention could delete it).
    pub(super) async fn save_run(
        &self,
        name: &str,
        record: &RunRecord,
        lease: &Lease,
    ) -> Result<()> {
        self.may_write_run(name, record, lease).await?;
        self.policies.save_run(name, record).await
    }

    /// Whether this server may write `record` of policy `name` now (see
    /// [`Engine::save_run`]).
    pub(super) async fn may_write_run(
        &self,
        name: &str,
        record: &RunRecord,
        lease: &Lease,
    ) -> Result<()> {
        if lease.lost().is_cancelled() {
            return Err(Error::Aborted(format!(
                "policy {name:?}: this server lost the lease of the run for {}",
                record.slot()
            )));
        }
        let ran_for = record.policy_created_ms;
        match self.policies.created_ms(name).await? {
            None => return Err(Error::not_found("policy", name)),
            Some(now) if ran_for.is_some_and(|ran_for| ran_for != now) => {
                warn!(policy = %name, backup = %record.backup, "the policy was deleted and created again during this run: its record is not written into the new policy's");
                return Err(Error::not_found("policy", name));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Runs the slot under its lease; `true` when the run has ended.
    async fn run_held_slot(
        &self,
        p: &StoredPolicy,
        slot_ms: i64,
        manual: bool,
        lease: &Lease,
    ) -> Result<bool> {
        let name = p.policy.name();
        let store = &self.policies;
        // A run recorded for a slot still in the future (a server whose clock
        // ran ahead) is no newer slot: it would hold every real one back.
        let future = Utc::now().timestamp_millis() + FUTURE_SLOT_TOLERANCE_MS;
        let newer_slot = |runs: &[RunRecord]| {
            runs.iter()
                .any(|r| !r.manual && r.slot_ms > slot_ms && r.slot_ms <= future)
        };
        let (mut record, resumed) = match store.run(name, slot_ms).await? {
            Some(r) if r.state != RunState::Running => {
                if !r.manual {
                    self.mark_handled(name, slot_ms);
                }
                return Ok(true);
            }
            Some(r) => {
                info!(policy = %name, slot = %r.slot(), backup = %r.backup, dead_owner = %r.owner, "taking over a policy run");
                (r, true)
            }
            None => {
                // A scheduled slot older than one already taken is stale.
                if !manual && newer_slot(&store.runs(name).await?) {
                    self.mark_handled(name, slot_ms);
                    return Ok(true);
                }
                let slot = chrono::DateTime::from_timestamp_millis(slot_ms).unwrap_or_default();
                let backup = p.policy.backup_name(slot)?;
                let r = first_record(slot_ms, backup.as_str(), manual, p);
                let created = store.created_ms(name).await?;
                if created != Some(p.created_ms) || !store.start_run(name, &r).await? {
                    // Deleted (or created again), or its record appeared
                    // since: read again next tick.
                    return Ok(false);
                }
                (r, false)
            }
        };
        if !manual {
            self.mark_handled(name, slot_ms);
        }
        // A run taken over after a newer slot was recorded, or came due (of
        // a policy still on: that slot runs next, as the catch-up), makes
        // no new backup.
        let newer_due = p.policy.enabled()
            && (p.policy.schedule().latest_due(p.since, Utc::now()))
                .is_some_and(|t| t.timestamp_millis() > slot_ms);
        let superseded = resumed && !manual && (newer_due || newer_slot(&store.runs(name).await?));
        let next_slot = p.policy.schedule().next_after(record.slot());
        let deadline = match (manual, next_slot) {
            (false, Some(next)) => next,
            _ => Utc::now() + MANUAL_RETRY_WINDOW,
        };
        // A takeover gets time for the dead server's leases to expire.
        let deadline = match resumed {
            true => deadline.max(Utc::now() + self.ctx.leases().ttl() * 3),
            false => deadline,
        };
        loop {
            record.attempts += 1;
            record.owner = host_pid();
            let attempt = self.policy_backup(p, &mut record, lease, !superseded).await;
            let err = match attempt {
                Ok(()) => break,
                Err(e) => e,
            };
            warn!(policy = %name, backup = %record.backup, attempt = record.attempts, error = %err, "policy run failed");
            record.error = Some(err.to_string());
            record.error_kind = Some(err.kind().as_str().to_string());
            if self.interrupted.is_cancelled() {
                return self.end_interrupted(name, &mut record, lease).await;
            }
            if self.stop.is_cancelled() || lease.lost().is_cancelled() {
                // Left RUNNING: another server (or this one, restarted) takes it over.
                let _ = self.save_run(name, &record, lease).await;
                return Ok(false);
            }
            let backoff = Duration::from_secs(1 << record.attempts.min(9)).min(MAX_BACKOFF);
            // The wait is cut short to leave one more attempt before the
            // deadline: a longer wait never means fewer attempts.
            let left = (deadline - Utc::now()).to_std().unwrap_or_default();
            let next_attempt =
                tokio::time::Instant::now() + backoff.min(left.saturating_sub(LAST_ATTEMPT_MARGIN));
            // A name taken by something else does not free itself: no retry.
            let hopeless = superseded
                || matches!(
                    err,
                    Error::AlreadyExists { .. }
                        | Error::InvalidArgument(_)
                        | Error::NotFound { kind: "policy", .. }
                );
            if hopeless || left <= LAST_ATTEMPT_MARGIN * 2 {
                record.state = RunState::Failed;
                record.ended_ms = Some(Utc::now().timestamp_millis());
                self.save_run(name, &record, lease).await?;
                crate::metrics::global().policy_run_ended(name, "failed");
                return Ok(true);
            }
            self.save_run(name, &record, lease).await?;
            let lost = lease.lost();
            // An interrupt also stops the engine: it must win that race.
            tokio::select! {
                biased;
                _ = self.interrupted.cancelled() => {
                    return self.end_interrupted(name, &mut record, lease).await;
                }
                _ = self.stop.cancelled() => return Ok(false),
                _ = lost.cancelled() => return Ok(false),
                _ = tokio::time::sleep_until(next_attempt) => {}
            }
        }
        record.state = RunState::Succeeded;
        record.ended_ms = Some(Utc::now().timestamp_millis());
        self.save_run(name, &record, lease).await?;
        crate::metrics::global().policy_run_ended(name, "succeeded");
        if let Some(ms) = record.ended_ms {
            crate::metrics::global().policy_succeeded_at(name, ms / 1000);
        }
        info!(policy = %name, backup = %record.backup, slot = %record.slot(), "policy run succeeded");
        // Retention follows the policy as it is stored now.
        match store.get(name).await {
            Ok(Some(now)) => self.apply_retention(&now, lease).await,
            Ok(None) => {
                info!(policy = %name, "the policy was deleted during its run: no retention")
            }
            Err(e) => {
                warn!(policy = %name, error = %e, "retention skipped: cannot read the policy")
            }
        }
        Ok(true)
    }

    /// Ends a run its CLI command's interrupt cancelled: FAILED (`cancelled`),
    /// so that no server takes it over and makes the backup the user stopped.
    async fn end_interrupted(
        &self,
        name: &str,
        record: &mut RunRecord,
        lease: &Lease,
    ) -> Result<bool> {
        record.state = RunState::Failed;
        record.error = Some("interrupted by a signal; the run was cancelled".into());
        record.error_kind = Some(crate::error::ErrorKind::Cancelled.as_str().to_string());
        record.ended_ms = Some(Utc::now().timestamp_millis());
        self.save_run(name, record, lease).await?;
        crate::metrics::global().policy_run_ended(name, "failed");
        Ok(true)
    }
}
