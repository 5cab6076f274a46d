//! The core facade the adapters call: start, find and watch backup and restore jobs.
//! Jobs run in spawned tasks; callers only hold `watch` receivers.

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::FutureExt;
use tokio::sync::watch;
use tracing::{error, info};

use crate::backup::verify::VerifyProgress;
use crate::backup::{self, BackupRequest};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{
    BackupSnapshot, JobRegistry, JobState, RestoreCollectionStatus, RestoreSnapshot, Started,
};
use crate::milvus::MilvusVersion;
use crate::names::{self, CollectionRef};
use crate::restore::{self, RestoreRequest};

/// What Check found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub milvus_address: String,
    pub milvus_version: MilvusVersion,
    pub milvus_storage: String,
    pub backup_storage: String,
    pub backup_count: usize,
}

/// The backup service's core.
#[derive(Debug)]
pub struct Engine {
    ctx: Context,
    jobs: JobRegistry,
}

impl Engine {
    /// An engine over `ctx`.
    pub fn new(ctx: Context) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            jobs: JobRegistry::default(),
        })
    }

    /// The flows' context.
    pub fn context(&self) -> &Context {
        &self.ctx
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
        let collections = backup::plan(&self.ctx, &req).await?;
        let id = if req.request_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.request_id.clone()
        };
        let snapshot = BackupSnapshot::pending(id, req.name.clone(), req.meta_only);
        let handle = match self.jobs.start_backup(snapshot, &req.request_id)? {
            Started::Existing(rx) => return Ok(rx),
            Started::New(handle) => handle,
        };
        let rx = handle.subscribe();
        let engine = self.clone();
        info!(backup = %req.name, collections = collections.len(), "backup started");
        crate::metrics::global().job_started("backup");
        let started = std::time::Instant::now();
        tokio::spawn(async move {
            let work = backup::run(&engine.ctx, &req, &collections, &handle);
            let result = flatten(std::panic::AssertUnwindSafe(work).catch_unwind().await);
            record_end("backup", &result, started);
            if let Err(e) = &result {
                error!(backup = %req.name, error = %e, "backup failed");
                // Nothing of a failed backup stays behind: the name was free when it started.
                if let Err(cleanup) = engine.ctx.catalog.delete(&req.name).await {
                    error!(backup = %req.name, error = %cleanup, "cannot remove partial backup");
                }
            } else {
                info!(backup = %req.name, "backup succeeded");
            }
            handle.update(|s| {
                crate::jobs::snapshot::finish(
                    &mut s.state,
                    &mut s.error,
                    &mut s.end_time,
                    result.map_err(|e| e.to_string()),
                )
            });
        });
        Ok(rx)
    }

    /// The snapshots of backup `name`: a job of this server, or a complete
    /// backup in storage (one terminal snapshot).
    pub async fn watch_backup(&self, name: &str) -> Result<watch::Receiver<BackupSnapshot>> {
        names::validate_backup_name(name)?;
        if let Some(rx) = self.jobs.backup(name) {
            return Ok(rx);
        }
        let info = self
            .ctx
            .catalog
            .read(name)
            .await?
            .ok_or_else(|| Error::not_found("backup", name))?;
        Ok(watch::channel(backup::snapshot_of(&info)).1)
    }

    /// One backup by name, or by id among this server's jobs and the stored backups.
    pub async fn get_backup(&self, name: &str, id: &str) -> Result<BackupSnapshot> {
        if !name.is_empty() {
            return Ok(self.watch_backup(name).await?.borrow().clone());
        }
        if id.is_empty() {
            return Err(Error::invalid("give a backup name or a backup id"));
        }
        if let Some(s) = self.jobs.backups().into_iter().find(|s| s.id == id) {
            return Ok(s);
        }
        for name in self.ctx.catalog.names().await? {
            if let Ok(Some(info)) = self.ctx.catalog.read(&name).await
                && info.id == id
            {
                return Ok(backup::snapshot_of(&info));
            }
        }
        Err(Error::not_found("backup id", id))
    }

    /// Every backup: complete ones in storage, then this server's jobs that are
    /// not (yet) complete, optionally only those holding `collection`.
    pub async fn list_backups(
        &self,
        collection: Option<&CollectionRef>,
    ) -> Result<Vec<BackupSnapshot>> {
        let mut out = Vec::new();
        for name in self.ctx.catalog.names().await? {
            match self.ctx.catalog.read(&name).await {
                Ok(Some(info)) => out.push(backup::snapshot_of(&info)),
                // An incomplete backup (no meta yet) is not a backup.
                Ok(None) => {}
                Err(e) => tracing::warn!(backup = %name, error = %e, "unreadable backup skipped"),
            }
        }
        for job in self.jobs.backups() {
            if job.state != JobState::Succeeded && !out.iter().any(|b| b.name == job.name) {
                out.push(job);
            }
        }
        if let Some(c) = collection {
            out.retain(|b| {
                b.collections
                    .iter()
                    .any(|s| s.db == c.db && s.name == c.name)
            });
        }
        Ok(out)
    }

    /// Deletes backup `name`; returns how many objects went.
    pub async fn delete_backup(&self, name: &str) -> Result<u64> {
        names::validate_backup_name(name)?;
        if let Some(rx) = self.jobs.backup(name)
            && !rx.borrow().state.is_terminal()
        {
            return Err(Error::FailedPrecondition(format!(
                "backup {name:?} is still running"
            )));
        }
        if !self.ctx.catalog.is_taken(name).await? {
            return Err(Error::not_found("backup", name));
        }
        let deleted = self.ctx.catalog.delete(name).await?;
        self.jobs.forget_backup(name);
        info!(backup = %name, objects = deleted, "backup deleted");
        Ok(deleted)
    }

    /// Re-reads backup `name` and checks every object against its checksums.
    /// `on_progress` sees each step; the result lists every damaged object.
    pub async fn verify_backup(
        &self,
        name: &str,
        on_progress: impl Fn(&VerifyProgress),
    ) -> Result<VerifyProgress> {
        names::validate_backup_name(name)?;
        backup::verify::verify(&self.ctx, name, on_progress).await
    }

    /// Checks the request, then starts a restore job and returns its snapshots.
    pub async fn restore(
        self: &Arc<Self>,
        req: RestoreRequest,
    ) -> Result<watch::Receiver<RestoreSnapshot>> {
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
        let engine = self.clone();
        info!(restore = %id, backup = %req.backup_name, "restore started");
        crate::metrics::global().job_started("restore");
        let started = std::time::Instant::now();
        tokio::spawn(async move {
            let work = restore::run(&engine.ctx, &req, &backup, &targets, &handle);
            let result = flatten(std::panic::AssertUnwindSafe(work).catch_unwind().await);
            record_end("restore", &result, started);
            match &result {
                Ok(()) => info!(restore = %id, "restore succeeded"),
                Err(e) => error!(restore = %id, error = %e, "restore failed"),
            }
            handle.update(|s| {
                crate::jobs::snapshot::finish(
                    &mut s.state,
                    &mut s.error,
                    &mut s.end_time,
                    result.map_err(|e| e.to_string()),
                )
            });
        });
        Ok(rx)
    }

    /// The snapshots of restore job `id`, also after it ended.
    pub fn watch_restore(&self, id: &str) -> Result<watch::Receiver<RestoreSnapshot>> {
        self.jobs
            .restore(id)
            .ok_or_else(|| Error::not_found("restore job", id))
    }

    /// Checks that Milvus and both stores answer.
    pub async fn check(&self) -> Result<CheckReport> {
        let milvus_version = self.ctx.milvus.version().await?;
        self.ctx.milvus_store.ensure_bucket(false).await?;
        let backup_count = match self.ctx.catalog.store().ensure_bucket(false).await {
            Ok(()) => self.ctx.catalog.names().await?.len(),
            // The backup bucket is created by the first backup.
            Err(Error::NotFound { .. }) => 0,
            Err(e) => return Err(e),
        };
        Ok(CheckReport {
            milvus_address: self.ctx.milvus.address().to_string(),
            milvus_version,
            milvus_storage: format!(
                "{}/{}",
                self.ctx.milvus_store.location(),
                self.ctx.milvus_layout.root_prefix()
            ),
            backup_storage: format!(
                "{}/{}",
                self.ctx.catalog.store().location(),
                self.ctx.catalog.layout().root_prefix()
            ),
            backup_count,
        })
    }
}

/// Counts a job's end, and its error if Milvus or storage caused it.
fn record_end(kind: &'static str, result: &Result<()>, started: std::time::Instant) {
    let m = crate::metrics::global();
    let state = match result {
        Ok(()) => "succeeded",
        Err(e) => {
            m.error(e);
            "failed"
        }
    };
    m.job_ended(kind, state, started.elapsed());
}

/// A job's result, with a panic turned into an internal error.
fn flatten(r: std::thread::Result<Result<()>>) -> Result<()> {
    r.unwrap_or_else(|_| Err(Error::Internal("the job panicked".into())))
}
