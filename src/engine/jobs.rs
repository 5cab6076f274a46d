//! Starting, supervising and cancelling jobs. A job runs in its own task with
//! a slot of the job limit; it ends succeeded, failed or cancelled, and a
//! failed or cancelled job leaves nothing half-made behind: a backup's partial
//! objects are deleted, a restore's created collections are dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use super::Engine;
use crate::backup::{self, BackupRequest};
use crate::error::{Error, Result};
use crate::jobs::snapshot::finish;
use crate::jobs::{
    BackupSnapshot, JobSnapshot, JobState, Lease, RestoreCollectionStatus, RestoreSnapshot,
    Started, SwapStep,
};
use crate::names::{self, CollectionRef};
use crate::restore::{self, RestoreRequest};

/// How often a running backup's record is rewritten (its progress changes per object).
const BACKUP_RECORD_INTERVAL: Duration = Duration::from_secs(1);

impl Engine {
    pub(super) fn take_slot(&self) -> Result<OwnedSemaphorePermit> {
        if self.tasks.is_closed() {
            return Err(Error::ShuttingDown);
        }
        self.slots.clone().try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "{} jobs are running, the most this server runs at once; retry later",
                self.max_jobs
            ))
        })
    }

    fn register_cancel(&self, key: &str) -> CancellationToken {
        let token = CancellationToken::new();
        self.cancels
            .lock()
            .expect("cancels")
            .insert(key.to_string(), token.clone());
        token
    }

    fn forget_cancel(&self, key: &str) {
        self.cancels.lock().expect("cancels").remove(key);
    }

    fn cancel(&self, key: &str, what: &'static str, name: &str) -> Result<()> {
        match self.cancels.lock().expect("cancels").get(key) {
            Some(token) => {
                token.cancel();
                Ok(())
            }
            None => Err(Error::FailedPrecondition(format!(
                "{what} {name:?} is not running on this server"
            ))),
        }
    }

    /// Asks the running backup `name` to stop; it ends CANCELLED within seconds.
    pub fn cancel_backup(&self, name: &str) -> Result<()> {
        names::validate_backup_name(name)?;
        if self.jobs.backup(name).is_none() {
            return Err(Error::not_found("backup job", name));
        }
        self.cancel(&format!("backup/{name}"), "backup", name)
    }

    /// Asks the running restore `id` to stop; it ends CANCELLED within seconds,
    /// and the collections it created are dropped.
    pub fn cancel_restore(&self, id: &str) -> Result<()> {
        if self.jobs.restore(id).is_none() {
            return Err(Error::not_found("restore job", id));
        }
        self.cancel(&format!("restore/{id}"), "restore job", id)
    }

    /// Checks the request, then starts a backup job and returns its snapshots.
    /// Bad requests fail here; failures during the work end the job as FAILED.
    pub async fn create_backup(
        self: &Arc<Self>,
        req: BackupRequest,
    ) -> Result<watch::Receiver<BackupSnapshot>> {
        names::validate_backup_name(&req.name)?;
        if let Some(existing) = self.jobs.backup_by_request(&req.request_id) {
            return Ok(existing);
        }
        let slot = self.take_slot()?;
        let collections = backup::plan(&self.ctx, &req).await?;
        let id = if req.request_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.request_id.clone()
        };
        // The first backup creates the backup bucket; the lease lives in it.
        self.ctx.catalog.store().ensure_bucket(true).await?;
        let lease = self.hold_backup_name(&req.name, &id, "create").await?;
        // Checked again under the lease: another process may have taken the
        // name between the plan and the lease.
        match self.ctx.catalog.is_taken(&req.name).await {
            Ok(false) => {}
            Ok(true) => {
                lease.release().await;
                return Err(Error::already_exists("backup", &req.name));
            }
            Err(e) => {
                lease.release().await;
                return Err(e);
            }
        }
        let snapshot = BackupSnapshot::pending(id, req.name.clone(), req.meta_only);
        // The registry refuses a second job of the same name, atomically.
        let handle = match self.jobs.start_backup(snapshot, &req.request_id) {
            Ok(Started::New(handle)) => handle,
            Ok(Started::Existing(rx)) => {
                lease.release().await;
                return Ok(rx);
            }
            Err(e) => {
                lease.release().await;
                return Err(e);
            }
        };
        let rx = handle.subscribe();
        if let Some(records) = self.records.clone() {
            let latest = handle.subscribe();
            keep_record(
                &self.tasks,
                handle.subscribe(),
                BACKUP_RECORD_INTERVAL,
                move |_| records.save_latest(|| latest.borrow().clone()),
            );
        }
        let key = format!("backup/{}", req.name);
        let token = self.register_cancel(&key);
        let engine = self.clone();
        info!(backup = %req.name, collections = collections.len(), "backup started");
        self.tasks.spawn(async move {
            let work = backup::run(&engine.ctx, &req, &collections, &handle);
            let lost = lease.lost();
            let result = supervise("backup", &token, &engine.shutdown, &lost, work).await;
            match &result {
                Ok(()) => info!(backup = %req.name, "backup succeeded"),
                Err(Error::Aborted(e)) => {
                    // Its lease went to another process, which may own the
                    // name's objects now: leave them.
                    error!(backup = %req.name, error = %e, "backup stopped; its objects are left to the lease's new holder");
                }
                Err(e) => {
                    error!(backup = %req.name, error = %e, "backup did not succeed");
                    // Nothing of it stays behind: the name was free when it started.
                    if let Err(cleanup) = engine.ctx.catalog.delete(&req.name).await {
                        error!(backup = %req.name, error = %cleanup, "cannot remove the partial backup");
                    }
                }
            }
            engine.forget_cancel(&key);
            // Everything is let go before watchers see the end.
            lease.release().await;
            drop(slot);
            // The record says how it ended before any watcher sees the end.
            let mut last = handle.snapshot();
            finish(&mut last.state, &mut last.error, &mut last.end_time, &result);
            match &engine.records {
                Some(records) => records.save_last_then(&last.clone(), || handle.update(|s| *s = last)),
                None => handle.update(|s| *s = last),
            }
        });
        Ok(rx)
    }

    /// Holds backup `name` for one job that writes it (a create or a delete):
    /// fails with ABORTED when another job creates, deletes or reads it.
    pub(super) async fn hold_backup_name(
        &self,
        name: &str,
        job: &str,
        purpose: &str,
    ) -> Result<Lease> {
        let leases = self.ctx.leases();
        let lease = leases
            .acquire(&format!("backup/{name}"), job, purpose)
            .await?;
        let readers = leases.holders_under(&format!("reads/{name}")).await;
        match readers {
            Ok(r) if r.is_empty() => Ok(lease),
            Ok(r) => {
                lease.release().await;
                Err(Error::Aborted(format!(
                    "backup {name:?} is being read by job {} ({}); retry when it ends",
                    r[0].1.job, r[0].1.purpose
                )))
            }
            Err(e) => {
                lease.release().await;
                Err(e)
            }
        }
    }

    /// Holds what a restore needs: a reader's hold on its backup (refused
    /// while the backup is created or deleted) and each target collection.
    async fn hold_restore(
        &self,
        job: &str,
        backup: &str,
        targets: &[CollectionRef],
    ) -> Result<Vec<Lease>> {
        let leases = self.ctx.leases();
        let mut held = vec![
            leases
                .acquire(&format!("reads/{backup}/{job}"), job, "restore from")
                .await?,
        ];
        let rest = async {
            leases.ensure_free(&format!("backup/{backup}")).await?;
            for t in targets {
                held.push(
                    leases
                        .acquire(&format!("target/{}.{}", t.db, t.name), job, "restore into")
                        .await?,
                );
            }
            Ok::<_, Error>(())
        }
        .await;
        match rest {
            Ok(()) => Ok(held),
            Err(e) => {
                crate::jobs::lease::release_all(held).await;
                Err(e)
            }
        }
    }

    /// Checks the request, then starts a restore job and returns its snapshots.
    pub async fn restore(
        self: &Arc<Self>,
        req: RestoreRequest,
    ) -> Result<watch::Receiver<RestoreSnapshot>> {
        if let Some(existing) = self.jobs.restore_by_request(&req.request_id) {
            return Ok(existing);
        }
        let slot = self.take_slot()?;
        let (backup, mut targets) = restore::plan(&self.ctx, &req).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let target_refs: Vec<CollectionRef> = targets.iter().map(|t| t.target.clone()).collect();
        let leases = self
            .hold_restore(&id, &req.backup_name, &target_refs)
            .await?;
        if let Err(e) = restore::check_targets(&self.ctx, &req, &mut targets).await {
            crate::jobs::lease::release_all(leases).await;
            return Err(e);
        }
        let snapshot = RestoreSnapshot {
            id: id.clone(),
            backup_name: req.backup_name.clone(),
            state: JobState::Pending,
            error: None,
            progress: Default::default(),
            collections: targets
                .iter()
                .map(|t| RestoreCollectionStatus {
                    source: CollectionRef::normalized(&t.source.db_name, &t.source.collection_name),
                    target: t.target.clone(),
                    state: JobState::Pending,
                    row_count: backup::summary_of(&t.source).row_count,
                    imported_rows: 0,
                    error: None,
                    created_id: None,
                    temp: None,
                    original_id: t.original_id,
                    swap: SwapStep::None,
                })
                .collect(),
            start_time: SystemTime::now(),
            end_time: None,
            error_kind: None,
            phase: String::new(),
            phases: Vec::new(),
            verified_files: 0,
            verified_bytes: 0,
        };
        let mut handle = match self.jobs.start_restore(snapshot, &req.request_id) {
            Started::Existing(rx) => {
                crate::jobs::lease::release_all(leases).await;
                return Ok(rx);
            }
            Started::New(handle) => handle,
        };
        if let Some(records) = self.records.clone() {
            // Written before each step that recovery must know of (the ids of
            // created collections, each step of a swap).
            handle = handle.with_checkpoint(Arc::new(move |s| records.checkpoint_restore(s)));
        }
        let rx = handle.subscribe();
        if let Some(records) = self.records.clone() {
            // Every change, always the newest state (a checkpoint may have
            // written a newer one since this writer woke up).
            let latest = handle.subscribe();
            keep_record(&self.tasks, handle.subscribe(), Duration::ZERO, move |_| {
                records.save_latest(|| latest.borrow().clone())
            });
        }
        let key = format!("restore/{id}");
        let token = self.register_cancel(&key);
        let engine = self.clone();
        info!(restore = %id, backup = %req.backup_name, "restore started");
        self.tasks.spawn(async move {
            let work = restore::run(&engine.ctx, &req, &backup, &targets, &handle);
            let lost = any_lost(&leases);
            let result = supervise("restore", &token, &engine.shutdown, &lost, work).await;
            // Ends the watchers of the leases.
            lost.cancel();
            match &result {
                Ok(()) => info!(restore = %id, "restore succeeded"),
                Err(e) => {
                    error!(restore = %id, error = %e, "restore did not succeed");
                    let done = restore::clean_up(&engine.ctx, &handle.snapshot()).await;
                    handle.update(|s| apply_cleanup(s, &done));
                }
            }
            engine.forget_cancel(&key);
            crate::jobs::lease::release_all(leases).await;
            drop(slot);
            // The record says how it ended before any watcher sees the end.
            let mut last = handle.snapshot();
            finish(
                &mut last.state,
                &mut last.error,
                &mut last.end_time,
                &result,
            );
            last.error_kind = result.as_ref().err().map(|e| e.kind().to_string());
            match &engine.records {
                Some(records) => {
                    records.save_last_then(&last.clone(), || handle.update(|s| *s = last))
                }
                None => handle.update(|s| *s = last),
            }
        });
        Ok(rx)
    }
}

/// Marks the collections whose replace cleanup completed as restored.
pub(super) fn apply_cleanup(s: &mut RestoreSnapshot, done: &[(usize, restore::Outcome)]) {
    for (i, outcome) in done {
        if *outcome == restore::Outcome::SwapCompleted {
            let c = &mut s.collections[*i];
            c.state = JobState::Succeeded;
            c.swap = SwapStep::Done;
        }
    }
}

/// A token that fires when any of `leases` is lost.
fn any_lost(leases: &[Lease]) -> CancellationToken {
    let any = CancellationToken::new();
    for lease in leases {
        let (lost, any) = (lease.lost(), any.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = lost.cancelled() => any.cancel(),
                _ = any.cancelled() => {}
            }
        });
    }
    any
}

impl Engine {}

/// Runs a job's work: a panic becomes an internal error, a cancellation (on
/// request, or at the end of a shutdown's grace period) stops it at its next
/// await, and the end is counted in the metrics.
async fn supervise(
    kind: &'static str,
    token: &CancellationToken,
    shutdown: &CancellationToken,
    lease_lost: &CancellationToken,
    work: impl Future<Output = Result<()>>,
) -> Result<()> {
    let started = Instant::now();
    crate::metrics::global().job_started(kind);
    let result = tokio::select! {
        r = std::panic::AssertUnwindSafe(work).catch_unwind() => {
            r.unwrap_or_else(|_| Err(Error::Internal(format!("the {kind} job panicked"))))
        }
        _ = token.cancelled() => Err(Error::Cancelled(format!("{kind} cancelled on request"))),
        _ = shutdown.cancelled() => Err(Error::Cancelled(format!(
            "{kind} interrupted: the server shut down before it finished"
        ))),
        _ = lease_lost.cancelled() => Err(Error::Aborted(format!(
            "{kind} stopped: it lost its hold on its backup or target to another process"
        ))),
    };
    let m = crate::metrics::global();
    let state = match &result {
        Ok(()) => "succeeded",
        Err(Error::Cancelled(_)) => "cancelled",
        Err(e) => {
            m.error(e);
            "failed"
        }
    };
    m.job_ended(kind, state, started.elapsed());
    result
}

/// Rewrites a running job's record as it changes (at most once per `interval`).
fn keep_record<T, F>(tasks: &TaskTracker, mut rx: watch::Receiver<T>, interval: Duration, save: F)
where
    T: Clone + Send + Sync + 'static + JobSnapshot,
    F: Fn(&T) + Send + 'static,
{
    tasks.spawn(async move {
        loop {
            let snap = rx.borrow_and_update().clone();
            // The last state is recorded by the job itself as it ends
            // (`save_last_then`), before anyone sees it: nothing to add here.
            if snap.state().is_terminal() {
                return;
            }
            save(&snap);
            if !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
}
