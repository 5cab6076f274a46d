//! The backup a policy run makes: what is under the run's name already is
//! settled first (a complete backup of the run's own jobs is its result, a
//! half-written one of them is removed, anything else is left alone).

use tracing::info;

use super::Engine;
use crate::error::{Error, Result};
use crate::jobs::{JobSnapshot, JobState, Lease, until_terminal};
use crate::model::{BackupName, Caller};
use crate::policy::{RunRecord, StoredPolicy};

impl Engine {
    /// Makes the run's backup (when `make`), after settling what is under
    /// its name already: a complete backup of one of the run's jobs is the
    /// run's result; a half-written one of the run's jobs is removed under
    /// the name's writer hold; anything else is ALREADY_EXISTS, untouched.
    pub(super) async fn policy_backup(
        &self,
        p: &StoredPolicy,
        record: &mut RunRecord,
        lease: &Lease,
        make: bool,
    ) -> Result<()> {
        let name = BackupName::parse(&record.backup)?;
        let catalog = &self.ctx.catalog;
        let job = uuid::Uuid::new_v4().to_string();
        // Recorded before it holds or starts anything.
        record.jobs.push(job.clone());
        self.save_run(p.policy.name(), record, lease).await?;
        if catalog.is_taken(name.as_str()).await? {
            // Fails (ABORTED, retried) while a live job writes or reads it.
            let hold = self
                .ctx
                .leases()
                .hold_for_writing(name.as_str(), &job, "settle a policy run")
                .await?;
            // The name's last writer, read by the write that took the hold (a
            // read before it could miss a job that held the name in between).
            let last = hold.previous_holder().map(|h| h.job.clone());
            let settled = self.settle_name(&name, record, last, &hold.fence()).await;
            // Handed back, the name's last writer stays `last`: released, this
            // run's job would be it, and a later attempt would take another
            // job's half-written backup for the run's own.
            hold.hand_back().await;
            if settled? {
                return Ok(());
            }
        }
        if !make {
            return Err(Error::FailedPrecondition(format!(
                "the run for {} was superseded by a newer slot while its server was down",
                record.slot()
            )));
        }
        // A new backup holds the policy's selection as it is now (a takeover's
        // may have changed since the run began): the record says so, since
        // retention decides among the backups of one selection.
        let selection = p.policy.selection().key();
        if record.selection != selection {
            record.selection = selection;
            self.save_run(p.policy.name(), record, lease).await?;
        }
        let req = p.policy.backup_request(&name, Caller::new(job, ""))?;
        // A run that would back up no collection fails: its empty backup
        // would count among those retention keeps, and push out the last
        // that hold data (a database emptied, every collection dropped).
        let selected = crate::backup::resolve_collections(
            self.ctx.milvus.as_ref(),
            req.collections(),
            req.databases(),
        )
        .await?;
        if selected.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "policy {:?} selects no collection now ({}): no backup was made, and \
                 retention did not run",
                p.policy.name(),
                match req.databases() {
                    [] => "Milvus has none".to_string(),
                    dbs => format!("databases {dbs:?} have none"),
                }
            )));
        }
        let last = until_terminal(self.create_backup(req).await?).await;
        match last.state {
            JobState::Succeeded => Ok(()),
            _ => Err(last.failure()),
        }
    }

    /// Under the name's hold: `true` when a complete backup of the run is
    /// there; a half-written one of the run's is removed (`false`).
    async fn settle_name(
        &self,
        name: &BackupName,
        record: &RunRecord,
        last_holder: Option<String>,
        hold: &crate::jobs::Fence,
    ) -> Result<bool> {
        let catalog = &self.ctx.catalog;
        let ours = |id: &str| record.jobs.iter().any(|j| j == id);
        if let Some(info) = catalog.read(name.as_str()).await? {
            if ours(&info.id) {
                info!(backup = %name, "the run's backup was completed by an earlier attempt");
                return Ok(true);
            }
            return Err(Error::AlreadyExists {
                kind: "backup",
                name: format!("{name} (not made by this policy run; left alone)"),
            });
        }
        // A backup job's own plan means it is resumable: the takeover of
        // backup jobs continues it (this run adopts it once complete).
        if catalog.plan_owner(name.as_str()).await?.is_some() {
            return Err(Error::Aborted(format!(
                "backup {name} is half-written by a job that will be resumed; retried"
            )));
        }
        if !last_holder.as_deref().is_some_and(ours) {
            return Err(Error::AlreadyExists {
                kind: "backup",
                name: format!("{name} (half-written by another job; left alone)"),
            });
        }
        let removed = catalog
            .delete(name.as_str(), std::slice::from_ref(hold))
            .await?;
        info!(backup = %name, objects = removed, "removed the run's half-written backup");
        Ok(false)
    }
}
