//! A backup as a job: planned under the lease of its name, run, and removed
//! again when it does not succeed (its name was free when it started).

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::runner::{INTERRUPTED, JobKind, Recovered};
use crate::jobs::{BackupOrder, BackupSnapshot, JobHandle, JobState, Lease, holds};
use crate::meta::leftover::Planless;
use crate::meta::summary::snapshot_of;
use crate::model::{BackupRequest, CollectionRef};

/// One backup job.
pub struct BackupJob {
    ctx: Context,
    req: BackupRequest,
    collections: Vec<CollectionRef>,
    lease: Lease,
    id: String,
}

impl JobKind for BackupJob {
    type Snapshot = BackupSnapshot;
    type Request = BackupRequest;
    type Env = Context;
    const NAME: &'static str = "backup";
    /// Its progress changes per object.
    const RECORD_INTERVAL: Duration = Duration::from_secs(1);

    fn request_id(req: &BackupRequest) -> &str {
        // A resumed job is not a caller's retry (its id is the request id).
        match req.resumes() {
            true => "",
            false => req.caller().request_id(),
        }
    }

    fn same_request(req: &BackupRequest, s: &BackupSnapshot) -> bool {
        // Records of older servers keep no order: the name decides.
        (req.generated_name() || s.name == req.name().as_str())
            && s.order.as_ref().is_none_or(|o| *o == order_of(req))
    }

    /// The request id is what finds the first job on another replica: a
    /// name the server made differs at each retry, and a name the caller
    /// gave is taken there by the first job (a retry would be refused).
    fn claims_request_id(req: &BackupRequest) -> bool {
        !req.caller().request_id().is_empty() && !req.resumes()
    }

    async fn plan(ctx: &Context, req: BackupRequest) -> Result<(Self, BackupSnapshot)> {
        let collections = super::plan(ctx, &req).await?;
        let id = match req.caller().request_id() {
            "" => uuid::Uuid::new_v4().to_string(),
            given => given.to_string(),
        };
        // The first backup creates the backup bucket; the lease lives in it.
        ctx.catalog.store().ensure_bucket(true).await?;
        let name = req.name().as_str();
        // Checked again under the lease: another process may have taken the
        // name between the plan and the lease.
        // A resumed job continues in the folder its dead server left, which
        // must not be complete, and only while its record still says it
        // runs (a delete of the folder ends it first, under this hold).
        let refused = async {
            let taken = || Error::already_exists("backup", name);
            if !req.resumes() {
                return Ok(ctx.catalog.is_taken(name).await?.then(taken));
            }
            let ended = match ctx.shared_records().load::<BackupSnapshot>(name).await? {
                Some(r) => r.id != id || r.state.is_terminal(),
                None => false,
            };
            if ended {
                return Ok(Some(Error::Aborted(format!(
                    "backup job {id} of {name} ended while its server was down: not resumed"
                ))));
            }
            Ok(ctx.catalog.is_complete(name).await?.then(taken))
        };
        let (lease, refused) = ctx
            .leases()
            .hold_for_writing_then(name, &id, holds::CREATE, refused)
            .await?;
        // Refused under the hold, it wrote nothing: handed back, it does not
        // become the name's last writer (see `delete::left_by_ended_backup`).
        if let Some(why) = refused {
            lease.hand_back().await;
            return Err(why);
        }
        crate::failpoint::pause_at("backup.held").await;
        let mut snapshot = BackupSnapshot::pending(id, name.to_string(), req.meta_only());
        snapshot.trace_id = req.caller().trace().map(|t| t.as_str().to_string());
        snapshot.order = Some(order_of(&req));
        snapshot.milvus_id = ctx.milvus_id_for_record().await;
        let job = Self {
            ctx: ctx.clone(),
            req,
            collections,
            lease,
            id: snapshot.id.clone(),
        };
        Ok((job, snapshot))
    }

    async fn run(&self, job: &JobHandle<BackupSnapshot>) -> Result<()> {
        super::run(&self.ctx, &self.req, &self.collections, job).await
    }

    async fn clean_up(&self, error: &Error, job: &JobHandle<BackupSnapshot>) {
        let name = self.req.name();
        if self.lease.fence().check().is_err() {
            // Its lease expired: another process may own the name's objects
            // now. (Another error, such as a lost hold on a base backup,
            // leaves the name this job's: its partial backup is removed.)
            error!(backup = %name, %error, "the backup's objects are left to the lease's new holder");
            return;
        }
        // A backup completed by another job (this one's lease expired while
        // another resumed it) is never removed.
        if !matches!(self.ctx.catalog.is_complete(name).await, Ok(false)) {
            error!(backup = %name, "the backup is complete (or cannot be checked): its objects are left");
            return;
        }
        // Only a folder this job made is removed (a resumed job that found
        // another's leaves it to that job's own takeover).
        let id = job.snapshot().id;
        let planless = match self.req.resumes() {
            true => Planless::NotJobs,
            false => Planless::NewJobs,
        };
        match self.ctx.catalog.folder_is_jobs(name, &id, planless).await {
            Ok(true) => {}
            Ok(false) => {
                return error!(backup = %name, "the folder is not this job's: its objects are left");
            }
            Err(e) => {
                return error!(backup = %name, error = %e, "cannot read whose the folder is: its objects are left");
            }
        }
        if let Err(e) = self.ctx.catalog.delete(name, &[self.lease.fence()]).await {
            error!(backup = %name, error = %e, "cannot remove the partial backup");
        }
    }

    fn lost(&self) -> CancellationToken {
        self.lease.lost()
    }

    async fn release(self) {
        // An incremental backup's holds on its bases are let go as it
        // commits; on an error path they are still held. Not by a job whose
        // name went to another process: that one resumes it under the same
        // id and holds the bases now.
        let incremental = self
            .req
            .incremental()
            .unwrap_or(self.ctx.incremental_by_default);
        if incremental && self.lease.fence().check().is_ok() {
            self.ctx.leases().release_reads_of(&self.id).await;
        }
        self.lease.release().await;
    }

    /// Planned but never run, it wrote nothing and held no base.
    async fn release_unrun(self) {
        self.lease.hand_back().await;
    }

    fn resumable(&self) -> bool {
        true
    }

    fn fences(&self) -> Vec<crate::jobs::Fence> {
        vec![self.lease.fence()]
    }

    fn describe(&self) -> String {
        format!(
            "backup {} of {} collections",
            self.req.name(),
            self.collections.len()
        )
    }

    async fn recover(ctx: &Context, mut b: BackupSnapshot) -> Recovered<BackupSnapshot> {
        if b.state.is_terminal() {
            return Recovered::at_once(b);
        }
        match ctx.catalog.read(&b.name).await {
            // Another backup under the name now (this one's folder was
            // deleted and the name used again): nothing of it is this job's.
            Ok(Some(info)) if info.id != b.id => {
                warn!(backup = %b.name, other = %info.id, "backup was interrupted by a restart; the name holds another backup now");
                b.state = JobState::Failed;
                b.error = Some(INTERRUPTED.into());
                b.end_time = Some(SystemTime::now());
            }
            // The meta is the commit point: written last, so the backup is complete.
            Ok(Some(info)) => {
                info!(backup = %b.name, "backup completed its meta before the restart");
                b = snapshot_of(&info);
            }
            // A job that says what it was asked is resumed (by this server or
            // another) once the stopped process's lease on its name expires,
            // when its shared record says it runs.
            Ok(None) if resumable(ctx, &b).await => {
                info!(backup = %b.name, "backup was interrupted by a restart; it will be resumed");
                return Recovered::resume(b);
            }
            Ok(None) => {
                warn!(backup = %b.name, "backup was interrupted by a restart");
                b.state = JobState::Failed;
                b.error = Some(INTERRUPTED.into());
                b.end_time = Some(SystemTime::now());
                // (A record written before jobs kept their request.) Without
                // its meta it is not a backup: remove what was copied, under the
                // name's lease once the stopped process's has expired (a live
                // holder means the name is in use: its objects are left).
                let leases = ctx.leases();
                match leases
                    .acquire(&crate::jobs::holds::writer(&b.name), &b.id, "recover")
                    .await
                {
                    Ok(lease) => {
                        // Only the folder this job planned: the name may
                        // have been deleted and used again meanwhile.
                        match ctx
                            .catalog
                            .folder_is_jobs(&b.name, &b.id, Planless::NotJobs)
                            .await
                        {
                            Ok(true) => {
                                if let Err(e) = ctx.catalog.delete(&b.name, &[lease.fence()]).await
                                {
                                    warn!(backup = %b.name, error = %e, "cannot remove the interrupted backup's objects");
                                }
                            }
                            _ => {
                                warn!(backup = %b.name, "the folder under the name is not this job's (or cannot be read): left alone")
                            }
                        }
                        lease.release().await;
                    }
                    Err(e) => {
                        warn!(backup = %b.name, error = %e, "the name is in use elsewhere; its objects are left alone")
                    }
                }
            }
            // Unreadable now: one that can be resumed is left to the
            // takeover, which reads it again (ending it here could write
            // FAILED over the run of a replica resuming it).
            Err(e) if store_unreachable(&e) && resumable(ctx, &b).await => {
                warn!(backup = %b.name, error = %e, "cannot read the interrupted backup; left to the takeover");
                return Recovered::resume(b);
            }
            Err(e) => {
                warn!(backup = %b.name, error = %e, "cannot read the interrupted backup");
                b.state = JobState::Failed;
                b.error = Some(format!(
                    "{INTERRUPTED}; its objects could not be checked: {e}"
                ));
                b.end_time = Some(SystemTime::now());
            }
        }
        Recovered::at_once(b)
    }
}

/// Whether interrupted backup `b` is left to be resumed: it says what it
/// was asked, and its shared record says it runs or cannot be read. An
/// unreadable record never counts as ended: that would remove the copies of
/// a backup another replica may be resuming (the takeover reads the record
/// again under the name's lease).
async fn resumable(ctx: &Context, b: &BackupSnapshot) -> bool {
    if b.order.is_none() {
        return false;
    }
    match ctx.shared_records().load::<BackupSnapshot>(&b.name).await {
        Ok(Some(shared)) => !shared.state.is_terminal(),
        Ok(None) => false,
        Err(e) if store_unreachable(&e) => {
            warn!(backup = %b.name, error = %e, "cannot read the shared record; left to the takeover");
            true
        }
        // A record that does not parse never will: as if there were none.
        Err(e) => {
            warn!(backup = %b.name, error = %e, "the shared record does not parse; the backup ends");
            false
        }
    }
}

/// Whether `e` says the backup storage could not be read now (a later read
/// may succeed), rather than that what it holds is wrong.
fn store_unreachable(e: &Error) -> bool {
    matches!(
        e,
        Error::Storage { .. } | Error::Unavailable { .. } | Error::PermissionDenied(_)
    )
}

/// The request of a backup, as its record keeps it.
fn order_of(req: &BackupRequest) -> BackupOrder {
    BackupOrder {
        collections: req
            .collections()
            .iter()
            .map(|c| format!("{}.{}", c.db(), c.name()))
            .collect(),
        databases: req.databases().to_vec(),
        meta_only: req.meta_only(),
        incremental: req.incremental(),
    }
}
