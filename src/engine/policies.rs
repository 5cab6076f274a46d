//! Backup policies as callers see them: stored, read with their status,
//! run now, and their retention previewed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Engine;
use crate::error::{Error, Result};
use crate::milvus::identity::Whose;
use crate::model::retention::{Candidate, Decision, decide};
use crate::model::{BackupName, Policy, PolicyName, PolicyUpdate};
use crate::policy::{PolicyStatus, RunRecord, StoredPolicy, holdings, status};

impl Engine {
    /// Stores a new policy; its first slot is the first one after now.
    pub async fn create_policy(&self, policy: Policy) -> Result<PolicyStatus> {
        let milvus = self.ctx.milvus_id_for_record().await;
        let stored = self.policies.create(&policy, milvus).await?;
        tracing::info!(policy = %policy.name(), schedule = %policy.schedule().expression(), "policy created");
        self.policy_status(&stored).await
    }

    /// Replaces a policy's settings; its runs and backups stay. One that
    /// leaves `enabled` unset keeps what the stored policy has, and is
    /// checked with it.
    pub async fn update_policy(&self, update: PolicyUpdate) -> Result<PolicyStatus> {
        let milvus = self.ctx.milvus_id_for_record().await;
        let stored = self.policies.update(&update, milvus).await?;
        tracing::info!(policy = %update.name(), "policy updated");
        self.policy_status(&stored).await
    }

    /// Removes a policy and its run records; the backups it made stay.
    pub async fn delete_policy(&self, name: &PolicyName) -> Result<()> {
        self.policies.delete(name.as_str()).await?;
        // The lease objects of its ended runs (a running one loses its lease
        // and stops writing).
        let leases = crate::jobs::holds::policy_slots(name.as_str());
        if let Err(e) = self.ctx.leases().remove_under(&leases).await {
            tracing::warn!(policy = %name.as_str(), error = %e, "cannot remove the policy's lease objects");
        }
        crate::metrics::global().policy_times(name.as_str(), None);
        tracing::info!(policy = %name.as_str(), "policy deleted");
        Ok(())
    }

    /// One policy with its status.
    pub async fn get_policy(&self, name: &PolicyName) -> Result<PolicyStatus> {
        self.policy_status(&self.stored_policy(name).await?).await
    }

    /// Every policy with its status, by name.
    pub async fn list_policies(&self) -> Result<Vec<PolicyStatus>> {
        let names = self.existing_backups().await?;
        let mut out = Vec::new();
        for p in self.policies.list().await? {
            let runs = self.policies.runs(p.policy.name()).await?;
            out.push(status(&p, &runs, &|n| names.contains(n), Utc::now()));
        }
        Ok(out)
    }

    /// Starts an extra run of policy `name` now; retention follows it. The
    /// run's backup must not exist yet.
    pub async fn run_policy_now(self: &Arc<Self>, name: &PolicyName) -> Result<RunRecord> {
        let p = self.runnable_policy(name).await?;
        let slot = Utc::now();
        let backup = self.manual_backup_name(&p, slot).await?;
        let record =
            super::scheduler::first_record(slot.timestamp_millis(), backup.as_str(), true, &p);
        let engine = self.clone();
        tokio::spawn(async move { engine.run_slot(p, record.slot_ms, true).await });
        Ok(record)
    }

    /// Runs policy `name` now and waits for the end of the run (its
    /// retention included): the run's last record. `started` learns the
    /// name of the run's backup before it begins (to follow it).
    pub async fn run_policy_and_wait(
        &self,
        name: &PolicyName,
        started: impl FnOnce(BackupName),
    ) -> Result<RunRecord> {
        let p = self.runnable_policy(name).await?;
        let slot = Utc::now();
        started(self.manual_backup_name(&p, slot).await?);
        let slot_ms = slot.timestamp_millis();
        self.run_slot(p, slot_ms, true).await;
        self.policies
            .run(name.as_str(), slot_ms)
            .await?
            .ok_or_else(|| {
                Error::Internal(format!(
                    "the run of policy {:?} left no record",
                    name.as_str()
                ))
            })
    }

    /// What the retention rules of policy `name` would delete now, newest first.
    pub async fn preview_retention(&self, name: &PolicyName) -> Result<Vec<Decision>> {
        let p = self.stored_policy(name).await?;
        self.retention_decisions(&p).await
    }

    /// The rules' decisions over the backups the policy holds now.
    pub(super) async fn retention_decisions(&self, p: &StoredPolicy) -> Result<Vec<Decision>> {
        let names = self.existing_backups().await?;
        let runs = self.policies.runs(p.policy.name()).await?;
        let held = holdings(&runs, &|n| names.contains(n));
        let held = self.made_by_their_runs(p, held).await?;
        // As restic groups snapshots by paths: the rules apply among the
        // backups of one selection, so narrowing a policy never deletes the
        // last backups of what it no longer backs up. Records without a
        // selection (earlier versions) are a group of their own: what they
        // backed up is not known, so they never count against another.
        let mut groups: BTreeMap<&str, Vec<Candidate>> = BTreeMap::new();
        for (r, time) in held {
            let key = match r.selection.as_str() {
                "" => "unrecorded (runs of an earlier version)",
                key => key,
            };
            groups.entry(key).or_default().push(Candidate {
                name: r.backup.clone(),
                time,
            });
        }
        let several = groups.len() > 1;
        let mut out = Vec::new();
        for (key, runs) in groups {
            let mut decided = decide(
                p.policy.retention(),
                &runs,
                Utc::now(),
                p.policy.schedule().time_zone(),
            );
            if several {
                for d in &mut decided {
                    d.reason = format!("{} (among the backups of selection {key})", d.reason);
                }
            }
            out.extend(decided);
        }
        out.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
        Ok(out)
    }

    /// `held` without the runs whose backup under the name is not the one
    /// their jobs made: incomplete, or deleted by hand and made again (by
    /// another run of the policy, or by anyone). Retention deletes only a
    /// complete backup whose id one of the run's jobs had. Each comes with
    /// its backup's time, when it was taken: not its run's slot, as a slot
    /// retried late (or caught up) holds newer data than a run asked for
    /// after its slot. A backup that cannot be read is left out, and so
    /// never deleted, with a warning: the others are still decided about.
    async fn made_by_their_runs<'a>(
        &self,
        p: &StoredPolicy,
        held: Vec<&'a RunRecord>,
    ) -> Result<Vec<(&'a RunRecord, DateTime<Utc>)>> {
        let catalog = &self.ctx.catalog;
        let index = catalog.index().await?;
        catalog.load_packs_for(&index).await;
        let mut ours = Vec::new();
        for r in held {
            // A backup without an index entry (its publish failed) is read.
            let found = match index.get(&r.backup) {
                Some(e) => catalog
                    .summary(e)
                    .await
                    .map(|s| Some((s.id, s.backup_timestamp_ms))),
                None => catalog
                    .read(&r.backup)
                    .await
                    .map(|info| info.map(|i| (i.id, i.backup_timestamp))),
            };
            match found {
                Ok(Some((id, taken_ms))) if r.jobs.contains(&id) => {
                    let time = match taken_ms {
                        // Meta without the time (written by hand).
                        0 => r.slot(),
                        ms => DateTime::from_timestamp_millis(ms as i64).unwrap_or(r.slot()),
                    };
                    ours.push((r, time))
                }
                Ok(found) => tracing::warn!(
                    policy = %p.policy.name(),
                    backup = %r.backup,
                    id = ?found.map(|(id, _)| id),
                    "retention leaves this backup alone: it is not the complete backup this \
                     policy's run made (made again under its name, or incomplete)"
                ),
                Err(e) => tracing::warn!(
                    policy = %p.policy.name(),
                    backup = %r.backup,
                    error = %e,
                    "retention leaves this backup alone: it cannot be read"
                ),
            }
        }
        Ok(ours)
    }

    pub(super) async fn stored_policy(&self, name: &PolicyName) -> Result<StoredPolicy> {
        self.policies
            .get(name.as_str())
            .await?
            .ok_or_else(|| Error::not_found("policy", name.as_str()))
    }

    /// Policy `name`, to be run here: FAILED_PRECONDITION when it backs up
    /// another Milvus than this server's.
    async fn runnable_policy(&self, name: &PolicyName) -> Result<StoredPolicy> {
        let p = self.stored_policy(name).await?;
        if !self.policy_of_this_milvus(&p).await {
            return Err(Error::FailedPrecondition(format!(
                "policy {:?} backs up another Milvus (id {}) than this server's: run it on a \
                 server of that Milvus",
                name.as_str(),
                p.milvus_id.as_deref().unwrap_or_default()
            )));
        }
        Ok(p)
    }

    /// The backup name of a run of `p` asked for at `slot`: refused while a
    /// backup has it, or when a scheduled slot still to run will take it
    /// too (a template coarser than the gap between them): the policy's
    /// next slot, or the one due already that has not started (it waits for
    /// a run, a replica that reaches Milvus, or the next tick). That slot's
    /// run would then fail ALREADY_EXISTS.
    async fn manual_backup_name(
        &self,
        p: &StoredPolicy,
        slot: DateTime<Utc>,
    ) -> Result<BackupName> {
        let backup = p.policy.backup_name(slot)?;
        if self.ctx.catalog.is_taken(backup.as_str()).await? {
            return Err(Error::already_exists("backup", backup.as_str()));
        }
        if !p.policy.enabled() {
            return Ok(backup);
        }
        let schedule = p.policy.schedule();
        let next = schedule.next_after(slot).map(|t| (t, "its next slot"));
        let due = match schedule.latest_due(p.since, slot) {
            Some(t)
                if self
                    .policies
                    .run(p.policy.name(), t.timestamp_millis())
                    .await?
                    .is_none() =>
            {
                Some((t, "its slot due and not started yet"))
            }
            _ => None,
        };
        for (at, which) in [due, next].into_iter().flatten() {
            if p.policy.backup_name(at)? == backup {
                return Err(Error::FailedPrecondition(format!(
                    "a run of policy {:?} now would name its backup {:?}, as {which} ({at}) \
                     will, whose run would then fail; run it after that slot, give the policy a \
                     name_template that tells them apart, or turn it off while no server runs \
                     its slots",
                    p.policy.name(),
                    backup.as_str()
                )));
            }
        }
        Ok(backup)
    }

    /// Whether policy `p` backs up this server's Milvus (one recorded
    /// without an id: any server's). When this Milvus's id cannot be read,
    /// only policies without one are.
    pub(super) async fn policy_of_this_milvus(&self, p: &StoredPolicy) -> bool {
        self.ctx.milvus_id.is_ours(p.milvus_id.as_deref()).await
    }

    /// Whether the scheduler runs policy `p` here: one of another Milvus is
    /// left to that Milvus's servers, as the log says once.
    pub(super) async fn schedules_here(&self, p: &StoredPolicy) -> bool {
        let name = p.policy.name();
        let whose = self.ctx.milvus_id.whose(p.milvus_id.as_deref()).await;
        let milvus = p.milvus_id.as_deref().unwrap_or_default();
        let mut slots = self.slots.lock().expect("slots");
        // Said once per state: `name` of another Milvus, `?name` not known.
        let unknown = format!("?{name}");
        match whose {
            Whose::Ours => {
                slots.foreign.remove(name);
                slots.foreign.remove(&unknown);
                return true;
            }
            Whose::Another => {
                slots.foreign.remove(&unknown);
                if slots.foreign.insert(name.to_string()) {
                    tracing::info!(
                        policy = name,
                        milvus,
                        "the policy backs up another Milvus: its slots are left to that Milvus's servers"
                    );
                }
            }
            Whose::Unknown(why) => {
                if slots.foreign.insert(unknown) {
                    tracing::warn!(policy = name, milvus, error = %why,
                        "cannot tell whether the policy backs up this server's Milvus (its id does not read): its slots are left to servers that can tell, until it reads");
                }
            }
        }
        false
    }

    async fn policy_status(&self, p: &StoredPolicy) -> Result<PolicyStatus> {
        let names = self.existing_backups().await?;
        let runs = self.policies.runs(p.policy.name()).await?;
        Ok(status(p, &runs, &|n| names.contains(n), Utc::now()))
    }

    /// The folders under the backup root (a policy's backup is gone when its folder is).
    pub(super) async fn existing_backups(&self) -> Result<HashSet<String>> {
        Ok(self.ctx.catalog.names().await?.into_iter().collect())
    }
}
