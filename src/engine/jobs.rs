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
use tracing::{error, info, warn};

use super::Engine;
use crate::backup::{self, BackupRequest};
use crate::error::{Error, Result};
use crate::jobs::snapshot::finish;
use crate::jobs::{
    BackupSnapshot, JobSnapshot, JobState, RestoreCollectionStatus, RestoreSnapshot, Started,
};
use crate::milvus::ImportPhase;
use crate::names::{self, CollectionRef};
use crate::restore::{self, RestoreRequest};

/// How often a running backup's record is rewritten (its progress changes per object).
const BACKUP_RECORD_INTERVAL: Duration = Duration::from_secs(1);

impl Engine {
    fn take_slot(&self) -> Result<OwnedSemaphorePermit> {
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
        let snapshot = BackupSnapshot::pending(id, req.name.clone(), req.meta_only);
        // The registry refuses a second job of the same name, atomically.
        let handle = match self.jobs.start_backup(snapshot, &req.request_id)? {
            Started::Existing(rx) => return Ok(rx),
            Started::New(handle) => handle,
        };
        let rx = handle.subscribe();
        if let Some(records) = self.records.clone() {
            keep_record(
                &self.tasks,
                handle.subscribe(),
                BACKUP_RECORD_INTERVAL,
                move |s| records.save_backup(s),
            );
        }
        let key = format!("backup/{}", req.name);
        let token = self.register_cancel(&key);
        let engine = self.clone();
        info!(backup = %req.name, collections = collections.len(), "backup started");
        self.tasks.spawn(async move {
            let _slot = slot;
            let work = backup::run(&engine.ctx, &req, &collections, &handle);
            let result = supervise("backup", &token, &engine.shutdown, work).await;
            match &result {
                Ok(()) => info!(backup = %req.name, "backup succeeded"),
                Err(e) => {
                    error!(backup = %req.name, error = %e, "backup did not succeed");
                    // Nothing of it stays behind: the name was free when it started.
                    if let Err(cleanup) = engine.ctx.catalog.delete(&req.name).await {
                        error!(backup = %req.name, error = %cleanup, "cannot remove the partial backup");
                    }
                }
            }
            engine.forget_cancel(&key);
            handle.update(|s| finish(&mut s.state, &mut s.error, &mut s.end_time, &result));
        });
        Ok(rx)
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
        let (backup, targets) = restore::plan(&self.ctx, &req).await?;
        let id = uuid::Uuid::new_v4().to_string();
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
                    created: false,
                })
                .collect(),
            start_time: SystemTime::now(),
            end_time: None,
        };
        let handle = match self.jobs.start_restore(snapshot, &req.request_id) {
            Started::Existing(rx) => return Ok(rx),
            Started::New(handle) => handle,
        };
        let rx = handle.subscribe();
        if let Some(records) = self.records.clone() {
            // Every change: a restore records which collections it creates.
            keep_record(&self.tasks, handle.subscribe(), Duration::ZERO, move |s| {
                records.save_restore(s)
            });
        }
        let key = format!("restore/{id}");
        let token = self.register_cancel(&key);
        let engine = self.clone();
        info!(restore = %id, backup = %req.backup_name, "restore started");
        self.tasks.spawn(async move {
            let _slot = slot;
            let work = restore::run(&engine.ctx, &req, &backup, &targets, &handle);
            let result = supervise("restore", &token, &engine.shutdown, work).await;
            match &result {
                Ok(()) => info!(restore = %id, "restore succeeded"),
                Err(e) => {
                    error!(restore = %id, error = %e, "restore did not succeed");
                    engine.drop_created(&handle.snapshot()).await;
                }
            }
            engine.forget_cancel(&key);
            handle.update(|s| finish(&mut s.state, &mut s.error, &mut s.end_time, &result));
        });
        Ok(rx)
    }

    /// Drops the collections a failed restore created.
    pub(super) async fn drop_created(&self, snap: &RestoreSnapshot) {
        for c in snap.collections.iter().filter(|c| c.created) {
            // Marked before CreateCollection: it may not exist.
            if let Ok(false) = self
                .ctx
                .milvus
                .has_collection(&c.target.db, &c.target.name)
                .await
            {
                continue;
            }
            // Milvus 2.3 runs imports one at a time, and an import whose
            // collection is dropped under it blocks the queue until it expires:
            // let the collection's imports end first.
            self.wait_imports_done(&c.target).await;
            match self
                .ctx
                .milvus
                .drop_collection(&c.target.db, &c.target.name)
                .await
            {
                Ok(()) => {
                    info!(restore = %snap.id, collection = %c.target, "dropped a collection of the failed restore")
                }
                Err(e) => {
                    warn!(restore = %snap.id, collection = %c.target, error = %e, "cannot drop a collection of the failed restore")
                }
            }
        }
    }
}

impl Engine {
    /// Waits (up to [`IMPORT_DRAIN_TIMEOUT`]) until no import into `target` runs.
    async fn wait_imports_done(&self, target: &CollectionRef) {
        let started = Instant::now();
        loop {
            match self
                .ctx
                .milvus
                .collection_imports(&target.db, &target.name)
                .await
            {
                Ok(tasks) if tasks.iter().all(|t| t.phase != ImportPhase::Running) => return,
                Ok(_) if started.elapsed() < IMPORT_DRAIN_TIMEOUT => {
                    tokio::time::sleep(self.ctx.timing.poll_interval).await
                }
                Ok(_) => {
                    warn!(collection = %target, "imports still running; dropping the collection anyway");
                    return;
                }
                Err(e) => {
                    warn!(collection = %target, error = %e, "cannot list imports; dropping the collection");
                    return;
                }
            }
        }
    }
}

/// How long cleanup waits for a collection's imports to end before dropping it.
const IMPORT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs a job's work: a panic becomes an internal error, a cancellation (on
/// request, or at the end of a shutdown's grace period) stops it at its next
/// await, and the end is counted in the metrics.
async fn supervise(
    kind: &'static str,
    token: &CancellationToken,
    shutdown: &CancellationToken,
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

/// Rewrites a job's record as it changes (at most once per `interval`) and at its end.
fn keep_record<T, F>(tasks: &TaskTracker, mut rx: watch::Receiver<T>, interval: Duration, save: F)
where
    T: Clone + Send + Sync + 'static + JobSnapshot,
    F: Fn(&T) + Send + 'static,
{
    tasks.spawn(async move {
        loop {
            let snap = rx.borrow_and_update().clone();
            save(&snap);
            if snap.state().is_terminal() {
                return;
            }
            if !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            if rx.changed().await.is_err() {
                save(&rx.borrow().clone());
                return;
            }
        }
    });
}
