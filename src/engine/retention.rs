//! Retention after each policy run: the backups the rules no longer keep
//! are deleted through the safe delete, by id, and a delete that stopped
//! after its backup was retired is finished by a later run.

use std::collections::HashSet;

use tracing::{info, warn};

use super::Engine;
use crate::delete::DeleteRequest;
use crate::error::{Error, ErrorKind, Result};
use crate::jobs::{JobSnapshot, Lease, until_terminal};
use crate::model::BackupName;
use crate::model::retention::Decision;
use crate::policy::{RunRecord, StoredPolicy};

impl Engine {
    /// Deletes the backup retention decided against in `d`, only while it is
    /// the complete backup one of the policy's `runs` made: its id is read
    /// from the backup's own meta (the index may be stale), and the delete
    /// refuses once another backup is under the name. The runs are marked
    /// `retiring` before it starts. One gone already (deleted by hand)
    /// counts as deleted; a delete that fails does not.
    async fn retire(
        &self,
        d: &Decision,
        runs: &mut [RunRecord],
        policy: &str,
        lease: &Lease,
    ) -> Result<()> {
        let name = BackupName::parse(&d.name)?;
        let Some(info) = self.ctx.catalog.read(&name).await? else {
            if self.ctx.catalog.is_taken(&name).await? {
                return Err(Error::FailedPrecondition(format!(
                    "backup {:?} is not complete now (being deleted, or made again); left",
                    d.name
                )));
            }
            return Ok(());
        };
        if !runs
            .iter()
            .any(|r| r.backup == d.name && r.jobs.contains(&info.id))
        {
            return Err(Error::FailedPrecondition(format!(
                "backup {:?} is now another backup (id {}) than the one the policy made; \
                 left alone",
                d.name, info.id
            )));
        }
        self.mark_runs(runs, &d.name, policy, lease, |r| r.retiring = true)
            .await?;
        self.delete_through(DeleteRequest::of_id(name, info.id))
            .await
    }

    /// Marks with `change` the runs of `policy` that made `backup`: in
    /// `runs` (read when retention began) and in each run's record as it
    /// is now ([`crate::policy::PolicyStore::change_run`]), never by
    /// writing back what was read then. Before, a run that ended while
    /// retention went on was written back as running, and taken over.
    async fn mark_runs(
        &self,
        runs: &mut [RunRecord],
        backup: &str,
        policy: &str,
        lease: &Lease,
        change: impl Fn(&mut RunRecord) + Copy,
    ) -> Result<()> {
        for r in runs.iter_mut().filter(|r| r.backup == backup) {
            change(r);
            self.may_write_run(policy, r, lease).await?;
            self.policies.change_run(policy, r.slot_ms, change).await?;
        }
        Ok(())
    }

    /// Runs `req` to its end; a backup gone already counts as deleted.
    async fn delete_through(&self, req: DeleteRequest) -> Result<()> {
        match self.start_delete(req).await {
            Ok(rx) => until_terminal(rx).await.succeeded().map(|_| ()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Finishes the deletes retention started that stopped after the backup
    /// was retired (a storage fault, a reader of what it reused): such a
    /// backup is no longer complete, so no decision names it again. Only a
    /// folder left that way is deleted: none while a complete backup is
    /// under the name (the decisions handle one of this policy's; checked
    /// again under the delete's hold, [`DeleteRequest::of_incomplete`]),
    /// nor while a backup job's plan is in it (made again, to be resumed).
    async fn finish_retiring(&self, runs: &mut [RunRecord], policy: &str, lease: &Lease) {
        let catalog = &self.ctx.catalog;
        let mut names: Vec<String> = runs
            .iter()
            .filter(|r| r.retiring && !r.deleted)
            .map(|r| r.backup.clone())
            .collect();
        names.dedup();
        for backup in names {
            let Ok(name) = BackupName::parse(&backup) else {
                continue;
            };
            let left = async {
                if !catalog.is_taken(&name).await? {
                    return Ok(true);
                }
                if catalog.read(&name).await?.is_some()
                    || catalog.plan_owner(&name).await?.is_some()
                {
                    return Ok(false);
                }
                // Complete again by now (made again, just committed): refused.
                self.delete_through(DeleteRequest::of_incomplete(name.clone()))
                    .await?;
                Ok::<_, Error>(true)
            };
            match left.await {
                Ok(true) => {
                    info!(policy, %backup, "retention finished deleting a backup");
                    let marked = self.mark_runs(runs, &backup, policy, lease, |r| r.deleted = true);
                    if let Err(e) = marked.await {
                        warn!(policy, error = %e, "cannot record the deletion");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(policy, %backup, error = %e, "retention could not finish deleting the backup now; tried again after the next run")
                }
            }
        }
    }

    /// Deletes what the retention rules no longer keep, through the safe
    /// delete; a backup that cannot be deleted now is tried after the next run.
    pub(super) async fn apply_retention(&self, p: &StoredPolicy, lease: &Lease) {
        let name = p.policy.name();
        let mut runs = match self.policies.runs(name).await {
            Ok(r) => r,
            Err(e) => {
                return warn!(policy = %name, error = %e, "retention skipped: cannot read the policy's runs");
            }
        };
        // A delete of an earlier rule that stopped half-way is finished even
        // when no rule is left: it is no backup any more.
        self.finish_retiring(&mut runs, name, lease).await;
        if p.policy.retention().is_empty() {
            return;
        }
        // Decided again before each delete (a delete can take minutes): a
        // backup the rules kept may be gone meanwhile (deleted by hand), and
        // an older one is then kept in its place, never deleted for it.
        let mut tried = HashSet::new();
        loop {
            let decisions: Vec<Decision> = match self.retention_decisions(p).await {
                Ok(d) => d,
                Err(e) => {
                    return warn!(policy = %name, error = %e, "retention stopped: cannot read the policy's backups");
                }
            };
            let Some(d) = decisions
                .into_iter()
                .find(|d| !d.keep && !tried.contains(&d.name))
            else {
                return;
            };
            tried.insert(d.name.clone());
            let d = &d;
            match self.retire(d, &mut runs, name, lease).await {
                Ok(()) => {
                    info!(policy = %name, backup = %d.name, reason = %d.reason, "retention deleted a backup");
                    let marked =
                        self.mark_runs(&mut runs, &d.name, name, lease, |r| r.deleted = true);
                    if let Err(e) = marked.await {
                        warn!(policy = %name, error = %e, "cannot record the deletion");
                    }
                }
                Err(e) => {
                    warn!(policy = %name, backup = %d.name, error = %e, "retention could not delete the backup now; tried again after the next run")
                }
            }
        }
    }
}
