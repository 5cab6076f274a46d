//! The delete flow, as a job: under the writer's hold on the backup, remove
//! what no other complete backup references (see `docs/incremental.md`).
//! A delete cut short leaves a backup that is no longer complete; a delete
//! whose server died is resumed by another (see `engine/takeover.rs`), and
//! one that failed can be run again: there is nothing to clean up.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::lease::release_all;
use crate::jobs::runner::{INTERRUPTED, JobKind, Recovered};
use crate::jobs::{DeleteSnapshot, JobHandle, JobState, Lease, holds};
use crate::meta::DeletePlan;
use crate::model::{BackupName, Caller};

mod found;
use found::{
    end_completed_job, end_interrupted_job, imports_reading, kept_by_ended_delete,
    left_by_ended_backup,
};

/// How often a delete asks again for a deleted home another job holds.
const HOME_RETRY: Duration = Duration::from_millis(500);

/// A delete of one backup: a new one, or the job of a server that died,
/// continued under its id.
#[derive(Debug, Clone)]
pub struct DeleteRequest {
    name: BackupName,
    resumes: Option<String>,
    /// Which backup under the name it may remove.
    only: Only,
    /// The caller's trace (W3C trace id), carried into the job's log lines
    /// and record.
    trace_id: Option<String>,
}

impl DeleteRequest {
    /// A new delete of backup `name`.
    pub fn new(name: BackupName) -> Self {
        Self {
            name,
            resumes: None,
            only: Only::Any,
            trace_id: None,
        }
    }

    /// This delete, for `caller` (its trace).
    pub fn for_caller(self, caller: &Caller) -> Self {
        Self {
            trace_id: caller.trace().map(|t| t.as_str().to_string()),
            ..self
        }
    }

    /// A new delete of backup `name`, refused with FAILED_PRECONDITION
    /// unless the complete backup under the name has id `id` (not one made
    /// again under the name since `id` was seen).
    pub fn of_id(name: BackupName, id: String) -> Self {
        Self {
            only: Only::Id(id),
            ..Self::new(name)
        }
    }

    /// A new delete of what is left of backup `name`, no longer complete
    /// (a delete that stopped after removing its commit point), refused
    /// with FAILED_PRECONDITION while a complete backup is under the name
    /// (one made again since), however briefly ago it was seen incomplete.
    pub fn of_incomplete(name: BackupName) -> Self {
        Self {
            only: Only::Incomplete,
            ..Self::new(name)
        }
    }

    /// The backup to delete.
    pub fn name(&self) -> &BackupName {
        &self.name
    }

    /// Delete job `id` of backup `name`, whose server died (asked with
    /// trace `trace_id`).
    pub fn resume(name: BackupName, id: String, trace_id: Option<String>) -> Self {
        Self {
            name,
            resumes: Some(id),
            only: Only::Any,
            trace_id,
        }
    }
}

/// Which backup under its name a delete may remove.
#[derive(Debug, Clone)]
enum Only {
    /// Whatever is there (a user's delete, a resumed one).
    Any,
    /// The complete backup with this id (retention's).
    Id(String),
    /// Only what is left of one no longer complete (retention finishing a
    /// delete of its that stopped).
    Incomplete,
}

/// One delete job.
pub struct DeleteJob {
    ctx: Context,
    name: BackupName,
    lease: Lease,
}

impl DeleteJob {
    /// Holds, as their writer, the names of the deleted backups whose objects
    /// `plan` removes (what this backup reused from them), then drops from
    /// `plan` what the complete backups reference now: a backup that was
    /// still reusing from a home when the plan was read may have completed
    /// since. A name complete again, or held by the job creating a backup
    /// under it, keeps its objects (that backup's now).
    async fn hold_homes(&self, plan: &mut DeletePlan, job: &str) -> Result<Vec<Lease>> {
        let mut held = Vec::new();
        let homes: Vec<String> = plan.orphans.keys().cloned().collect();
        for home in homes {
            match self.hold_home(&home, job).await {
                Ok(Some(lease)) => held.push(lease),
                Ok(None) => {
                    plan.orphans.remove(&home);
                }
                Err(e) => {
                    release_all(held).await;
                    return Err(e);
                }
            }
        }
        if plan.orphans.is_empty() {
            return Ok(held);
        }
        let wanted: HashSet<String> = plan.orphans.values().flatten().cloned().collect();
        let referenced = match self
            .ctx
            .catalog
            .references(&self.name, |k| wanted.contains(k))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                release_all(held).await;
                return Err(e);
            }
        };
        if !referenced.is_empty() {
            info!(backup = %self.name, objects = referenced.len(), "objects reused from deleted backups are kept: backups completed since reference them");
        }
        for keys in plan.orphans.values_mut() {
            keys.retain(|k| !referenced.contains_key(k));
        }
        Ok(held)
    }

    /// Fails, as [`Leases::ensure_unread`], while a job reads the retired
    /// backup after up to a lease TTL. A reader that wrote its lease after
    /// this delete's hold is refused by that hold and lets go in a moment:
    /// it is waited for, not taken for one that reads. One whose lease
    /// lapsed and came back (a reader paused past its TTL) keeps it.
    async fn unread_once_refused_readers_let_go(&self) -> Result<()> {
        let leases = self.ctx.leases();
        let deadline = Instant::now() + leases.ttl();
        loop {
            match leases.ensure_unread(&self.name).await {
                Err(Error::Aborted(why)) if Instant::now() < deadline => {
                    debug!(backup = %self.name, %why, "waiting for a reader refused by this delete to let go");
                    tokio::time::sleep(HOME_RETRY).await;
                }
                unread => return unread,
            }
        }
    }

    /// Holds deleted backup `home` as its writer, with no reader, checked
    /// incomplete; `None` when its objects are left to the job creating a
    /// backup under that name again (they are that backup's now). A delete
    /// of `home` is waited for however long it runs: it may have read the
    /// references before this backup was retired, and then leaves what this
    /// one reused. Any other holder (a reader) is waited for, up to twice
    /// the lease TTL; then the
    /// delete stops ABORTED, with nothing else removed, to be run again: the
    /// objects are never left behind unowned, keeping the name taken. So it
    /// does (FAILED_PRECONDITION) while Milvus imports read `home`'s folder.
    async fn hold_home(&self, home: &str, job: &str) -> Result<Option<Lease>> {
        let (catalog, leases) = (&self.ctx.catalog, self.ctx.leases());
        let deadline = Instant::now() + 2 * leases.ttl();
        let mut said = false;
        loop {
            let hold = leases
                .hold_for_writing_then(home, job, "delete what a deleted backup left", async {
                    catalog.is_complete(home).await
                })
                .await;
            let left = match hold {
                Ok((lease, false)) => {
                    // Nor while Milvus imports read its folder in place (a
                    // restore by another tool, one its own delete stopped for).
                    let reading = imports_reading(&self.ctx, home).await;
                    let Ok(None) = reading else {
                        lease.release().await;
                        let why = reading?.unwrap_or_default();
                        return Err(Error::FailedPrecondition(format!(
                            "{why}; backup {} reused objects from deleted backup {home:?}: {} is \
                             no longer listed or restorable, and nothing else was removed: \
                             delete it again once they ended",
                            self.name, self.name
                        )));
                    };
                    return Ok(Some(lease));
                }
                Ok((lease, true)) => {
                    lease.release().await;
                    "a backup of that name is complete again".to_string()
                }
                Err(Error::Aborted(why)) => {
                    crate::failpoint::pause_at("delete.home_refused").await;
                    // The holders are looked at after the refusal: one may
                    // have let go since, and then the hold is tried again.
                    let writer = leases.writer_purpose(home).await?;
                    if writer.as_deref() == Some(holds::CREATE) {
                        why
                    } else if Instant::now() < deadline {
                        tokio::time::sleep(HOME_RETRY).await;
                        continue;
                    } else if writer.as_deref() == Some(holds::DELETE) {
                        if !std::mem::replace(&mut said, true) {
                            info!(backup = %self.name, %home, holder = %why, "waiting for the delete of the backup whose objects this one reused");
                        }
                        tokio::time::sleep(HOME_RETRY).await;
                        continue;
                    } else if writer.is_none() && !leases.is_read(home).await? {
                        continue;
                    } else {
                        return Err(Error::Aborted(format!(
                            "{why}; backup {} reused objects from deleted backup {home:?} that \
                             may only be removed under a hold on that name: {} is no longer \
                             listed or restorable, and nothing else was removed: delete it \
                             again once that job ends",
                            self.name, self.name
                        )));
                    }
                }
                Err(e) => return Err(e),
            };
            warn!(backup = %self.name, %home, why = %left, "objects reused from a deleted backup are left to the job that holds its name");
            return Ok(None);
        }
    }
}

impl JobKind for DeleteJob {
    type Snapshot = DeleteSnapshot;
    type Request = DeleteRequest;
    type Env = Context;
    const NAME: &'static str = "delete";
    const RECORD_INTERVAL: Duration = Duration::from_secs(1);

    fn request_id(_: &DeleteRequest) -> &str {
        ""
    }

    async fn plan(ctx: &Context, req: DeleteRequest) -> Result<(Self, DeleteSnapshot)> {
        let DeleteRequest {
            name,
            resumes,
            only,
            trace_id,
        } = req;
        let catalog = &ctx.catalog;
        if !catalog.is_taken(&name).await? {
            return Err(Error::not_found("backup", name.as_str()));
        }
        let resumed = resumes.is_some();
        let id = resumes.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let lease = ctx
            .leases()
            .hold_for_writing(&name, &id, holds::DELETE)
            .await?;
        let read = match imports_reading(ctx, name.as_str()).await {
            Ok(None) => None,
            Ok(Some(tasks)) => Some(Error::FailedPrecondition(format!(
                "{tasks}: it was not deleted"
            ))),
            Err(e) => Some(e),
        };
        if let Some(e) = read {
            lease.hand_back().await;
            return Err(e);
        }
        // Only a folder with backup meta is a backup: anything else under the
        // root is not ours to remove. A folder with our checksums, a backup's
        // plan or a delete's marker but no commit point is one of ours left
        // half-way (a create that failed or was killed, a delete cut short);
        // under the hold none is running, so it may go (a backup job still to
        // be resumed into it is ended first).
        // A resumed delete continues in the folder it was deleting, unless a
        // complete backup of another id is there now (made again meanwhile).
        let ours = async {
            let complete = match catalog.read(&name).await {
                Ok(complete) => complete,
                // A complete backup whose meta does not read (not JSON, or
                // level files naming what no other holds) is damaged, not
                // someone else's: deleted when asked by name (not by
                // retention's id). Its checksums must read, since they say
                // which objects it reuses; its job's record is ended, so
                // that no takeover resumes it into the folder removed.
                Err(Error::DataLoss(why))
                    if matches!(only, Only::Any) && catalog.is_complete(&name).await? =>
                {
                    catalog.read_manifest(&name).await?;
                    warn!(backup = %name, %why, "the backup's meta does not read; it is deleted as a damaged backup");
                    end_interrupted_job(ctx, &name, &id).await?;
                    return Ok(Some(None));
                }
                Err(e) => return Err(e),
            };
            let now = complete.as_ref().map(|info| &info.id);
            match (&only, now) {
                (Only::Id(only), now) if now != Some(only) => {
                    return Err(Error::FailedPrecondition(format!(
                        "backup {:?} is no longer the backup with id {only} (now {now:?}); \
                         it was not deleted",
                        name.as_str()
                    )));
                }
                (Only::Incomplete, Some(now)) => {
                    return Err(Error::FailedPrecondition(format!(
                        "backup {:?} is complete (id {now}), made again since what was left \
                         of an earlier one was seen; it was not deleted",
                        name.as_str()
                    )));
                }
                _ => {}
            }
            if resumed {
                let started_on = ctx
                    .shared_records()
                    .load::<DeleteSnapshot>(&id)
                    .await?
                    .and_then(|d| d.backup_id);
                return Ok::<_, Error>(match (&complete, started_on) {
                    (Some(info), Some(was)) if info.id != was => None,
                    // Begun on an incomplete folder: a complete one there now
                    // was made again meanwhile.
                    (Some(_), None) => None,
                    _ => Some(complete.map(|i| i.id)),
                });
            }
            Ok(match complete {
                Some(info) => {
                    end_completed_job(ctx, &info).await?;
                    Some(Some(info.id))
                }
                None if catalog.is_marked_ours(&name).await? => {
                    end_interrupted_job(ctx, &name, &id).await?;
                    Some(None)
                }
                None if left_by_ended_backup(ctx, &name, &lease).await? => {
                    info!(backup = %name, "the folder holds what a backup job that did not succeed left after its cleanup");
                    Some(None)
                }
                None => {
                    if let Some(gone) = kept_by_ended_delete(ctx, &lease).await? {
                        return Err(Error::not_found("backup", format!("{name} ({gone})")));
                    }
                    None
                }
            })
        }
        .await;
        let backup_id = match ours {
            Ok(Some(backup_id)) => backup_id,
            Ok(None) => {
                lease.hand_back().await;
                return Err(Error::FailedPrecondition(format!(
                    "{:?} under the backup root has no complete backup meta (or holds a backup \
                     made again since this delete began); it was not deleted",
                    name.as_str()
                )));
            }
            Err(e) => {
                lease.hand_back().await;
                return Err(e);
            }
        };
        let mut snapshot = DeleteSnapshot::pending(id, name.to_string());
        snapshot.backup_id = backup_id;
        snapshot.trace_id = trace_id;
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
        // Under the hold, the commit point first: an incremental backup that
        // looks for bases from now on does not find this one. One that found
        // it before holds it for reading (its lease written before it looked):
        // if any does, nothing more is removed and the delete is run again
        // once it ends (the folder stays marked as ours). Only then the
        // references are read: every backup reusing this one's objects is
        // complete by now, and a backup deleted at the same time is seen
        // without its commit point by whichever delete reads last.
        // Nothing is changed before every checksums file the plan reads does
        // read: its own (what it reuses) and every other complete backup's
        // (what they reference). Retired first, the backup would stay
        // unlisted and half-deleted for as long as another one is damaged.
        catalog.read_manifest(&self.name).await?;
        catalog
            .references(&self.name, |_| false)
            .await
            .map_err(|e| match e {
                Error::DataLoss(why) => Error::DataLoss(format!(
                    "{why}: it says which objects that backup references, so nothing was \
                 deleted (repair those checksums first)"
                )),
                e => e,
            })?;
        job.fence()?;
        catalog.retire(&self.name).await?;
        self.unread_once_refused_readers_let_go()
            .await
            .map_err(|e| {
                Error::Aborted(format!(
                    "{e}; the backup is no longer listed or restorable, and nothing else was \
                 removed: delete it again once that job ends"
                ))
            })?;
        // Nor may a Milvus import still read its folder: one that began
        // before the backup was retired.
        if let Some(tasks) = imports_reading(&self.ctx, self.name.as_str()).await? {
            return Err(Error::FailedPrecondition(format!(
                "{tasks}; the backup is no longer listed or restorable, and nothing else was \
                 removed: delete it again once they ended"
            )));
        }
        let mut plan = catalog.delete_plan(&self.name).await?;
        job.fence()?;
        job.update(|s| s.objects_kept = plan.keep.len() as u64);
        crate::failpoint::pause_at("delete.planned").await;
        let homes = self.hold_homes(&mut plan, &job.snapshot().id).await?;
        let fences: Vec<_> = std::iter::once(self.lease.fence())
            .chain(homes.iter().map(Lease::fence))
            .collect();
        let deleted = catalog
            .delete_as_planned(&self.name, &plan, &fences, |done, total| {
                job.update(|s| (s.objects_deleted, s.objects_total) = (done, total))
            })
            .await;
        release_all(homes).await;
        let deleted = deleted?;
        job.update(|s| s.objects_kept = deleted.kept);
        info!(backup = %self.name, objects = deleted.removed, kept = deleted.kept, "backup deleted");
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

    /// A delete that never ran removed nothing: the name's last writer stays
    /// the one before it (see `left_by_ended_backup`).
    async fn release_unrun(self) {
        self.lease.hand_back().await;
    }

    fn describe(&self) -> String {
        format!("delete of backup {}", self.name)
    }

    fn resumable(&self) -> bool {
        true
    }

    fn fences(&self) -> Vec<crate::jobs::Fence> {
        vec![self.lease.fence()]
    }

    async fn recover(ctx: &Context, mut d: DeleteSnapshot) -> Recovered<DeleteSnapshot> {
        // Resumed (by this server or another) once the stopped process's
        // lease on the name expires, when its shared record says it runs.
        if !d.state.is_terminal() {
            match ctx.shared_records().load::<DeleteSnapshot>(&d.id).await {
                // Ended by the server that took it over.
                Ok(Some(shared)) if shared.state.is_terminal() => {
                    return Recovered::at_once(shared);
                }
                Ok(Some(_)) | Err(_) => {
                    info!(backup = %d.backup_name, "delete was interrupted by a restart; it will be resumed");
                    return Recovered::resume(d);
                }
                Ok(None) => {}
            }
        }
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
