//! The delete flow, as a job: under the writer's hold on the backup, remove
//! what no other complete backup references (see `docs/incremental.md`).
//! A delete cut short leaves a backup that is no longer complete and can be
//! deleted again; there is nothing to clean up after a failure.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::runner::{INTERRUPTED, JobKind, Recovered};
use crate::jobs::{DeleteSnapshot, JobHandle, JobState, Lease};
use crate::model::BackupName;

/// One delete job.
pub struct DeleteJob {
    ctx: Context,
    name: BackupName,
    lease: Lease,
}

impl JobKind for DeleteJob {
    type Snapshot = DeleteSnapshot;
    type Request = BackupName;
    type Env = Context;
    const NAME: &'static str = "delete";
    const RECORD_INTERVAL: Duration = Duration::from_secs(1);

    fn request_id(_: &BackupName) -> &str {
        ""
    }

    async fn plan(ctx: &Context, name: BackupName) -> Result<(Self, DeleteSnapshot)> {
        let catalog = &ctx.catalog;
        if !catalog.is_taken(&name).await? {
            return Err(Error::not_found("backup", name.as_str()));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let lease = ctx.leases().hold_for_writing(&name, &id, "delete").await?;
        // Only a folder with backup meta is a backup: anything else under the
        // root is not ours to remove. A folder with our checksums but no
        // commit point is one of ours left half-way (a delete or a create
        // that was killed); under the hold none is running, so it may go.
        let ours = async {
            Ok::<_, Error>(
                catalog.read(&name).await?.is_some()
                    || catalog.read_manifest(&name).await?.is_some(),
            )
        }
        .await;
        if !matches!(ours, Ok(true)) {
            lease.release().await;
            ours?;
            return Err(Error::FailedPrecondition(format!(
                "{:?} under the backup root has no complete backup meta; \
                 it is not a backup and was not deleted",
                name.as_str()
            )));
        }
        let snapshot = DeleteSnapshot::pending(id, name.to_string());
        let job = Self {
            ctx: ctx.clone(),
            name,
            lease,
        };
        Ok((job, snapshot))
    }

    async fn run(&self, job: &JobHandle<DeleteSnapshot>) -> Result<()> {
        job.update(|s| s.state = JobState::Running);
        let catalog = &self.ctx.catalog;
        // Read under the hold: no incremental backup can start reusing this
        // one's objects now, and those that did are complete.
        let plan = catalog.delete_plan(&self.name).await?;
        job.update(|s| s.objects_kept = plan.keep.len() as u64);
        crate::failpoint::pause_at("delete.planned").await;
        let deleted = catalog
            .delete_as_planned(&self.name, &plan, |done, total| {
                job.update(|s| (s.objects_deleted, s.objects_total) = (done, total))
            })
            .await?;
        info!(backup = %self.name, objects = deleted, kept = plan.keep.len(), "backup deleted");
        Ok(())
    }

    async fn clean_up(&self, error: &Error, _job: &JobHandle<DeleteSnapshot>) {
        warn!(backup = %self.name, %error, "the delete did not finish; run it again to finish it");
    }

    fn lost(&self) -> CancellationToken {
        self.lease.lost()
    }

    async fn release(self) {
        self.lease.release().await;
    }

    fn describe(&self) -> String {
        format!("delete of backup {}", self.name)
    }

    async fn recover(_: &Context, mut d: DeleteSnapshot) -> Recovered<DeleteSnapshot> {
        if !d.state.is_terminal() {
            warn!(backup = %d.backup_name, "delete was interrupted by a restart");
            d.state = JobState::Failed;
            d.error = Some(format!(
                "{INTERRUPTED}; the backup is no longer complete: delete it again to finish"
            ));
            d.end_time = Some(SystemTime::now());
        }
        Recovered::at_once(d)
    }
}
