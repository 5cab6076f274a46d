//! The core facade the adapters call: start, find, watch and cancel backup and
//! restore jobs. Jobs run in spawned tasks (`jobs.rs`); callers only hold
//! `watch` receivers. Records of jobs survive restarts (`recovery.rs`).

mod jobs;
mod recovery;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::backup;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{BackupSnapshot, JobRegistry, JobState, JobStore, RestoreSnapshot};
use crate::meta::verify::VerifyProgress;
use crate::milvus::MilvusVersion;
use crate::names::{self, CollectionRef};

/// What Check found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub milvus_address: String,
    pub milvus_version: MilvusVersion,
    pub milvus_storage: String,
    pub backup_storage: String,
    pub backup_count: usize,
    /// Whether the backup storage honours conditional writes (leases need them).
    pub conditional_writes: bool,
}

/// Backups whose meta ListBackups reads at once.
const LIST_READ_PARALLELISM: usize = 16;

/// Jobs running at once unless configured otherwise.
pub const DEFAULT_MAX_JOBS: usize = 8;

/// The backup service's core.
#[derive(Debug)]
pub struct Engine {
    ctx: Context,
    jobs: JobRegistry,
    /// Where job records are kept, if anywhere.
    records: Option<JobStore>,
    /// One permit per running job.
    slots: Arc<Semaphore>,
    max_jobs: usize,
    /// Cancellation of running jobs, by `backup/{name}` or `restore/{id}`.
    cancels: Mutex<HashMap<String, CancellationToken>>,
    /// Every job task and record writer; closed when the server shuts down.
    tasks: TaskTracker,
    /// Cancels every job when a shutdown's grace period is over.
    shutdown: CancellationToken,
}

impl Engine {
    /// An engine over `ctx` that keeps no job records.
    pub fn new(ctx: Context) -> Arc<Self> {
        Self::build(ctx, None, DEFAULT_MAX_JOBS)
    }

    /// An engine over `ctx` that keeps job records in `records` and runs at
    /// most `max_jobs` jobs at once. Jobs a previous process left running are
    /// marked interrupted and cleaned up (see `recovery`).
    pub async fn with_records(ctx: Context, records: JobStore, max_jobs: usize) -> Arc<Self> {
        let engine = Self::build(ctx, Some(records), max_jobs);
        engine.recover().await;
        engine
    }

    fn build(ctx: Context, records: Option<JobStore>, max_jobs: usize) -> Arc<Self> {
        let max_jobs = max_jobs.max(1);
        Arc::new(Self {
            ctx,
            jobs: JobRegistry::default(),
            records,
            slots: Arc::new(Semaphore::new(max_jobs)),
            max_jobs,
            cancels: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        })
    }

    /// Stops taking jobs (new ones get [`Error::ShuttingDown`]), gives the
    /// running ones `grace` to finish, cancels those still running (they clean
    /// up and their records say "interrupted"), and returns once every job
    /// and its record are done.
    pub async fn shut_down(&self, grace: std::time::Duration) {
        self.tasks.close();
        let running = self.tasks.len();
        if running > 0 {
            info!(
                tasks = running,
                ?grace,
                "waiting for running jobs to finish"
            );
        }
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                ?grace,
                "jobs still running after the grace period; cancelling them"
            );
            self.shutdown.cancel();
            self.tasks.wait().await;
        }
    }

    /// The flows' context.
    pub fn context(&self) -> &Context {
        &self.ctx
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
        // Meta files are read a few at a time, in the order of the names.
        let names = self.ctx.catalog.names().await?;
        let reads = futures::stream::iter(names)
            .map(|name| async move { (self.ctx.catalog.read(&name).await, name) })
            .buffered(LIST_READ_PARALLELISM);
        let mut out: Vec<BackupSnapshot> = reads
            .filter_map(|(read, name)| async move {
                match read {
                    Ok(Some(info)) => Some(backup::snapshot_of(&info)),
                    // An incomplete backup (no meta yet) is not a backup.
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(backup = %name, error = %e, "unreadable backup skipped");
                        None
                    }
                }
            })
            .collect()
            .await;
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
        let id = uuid::Uuid::new_v4().to_string();
        let lease = self.hold_backup_name(name, &id, "delete").await?;
        let deleted = async {
            // Only a folder with backup meta is a backup: anything else under
            // the root is not ours to remove.
            if self.ctx.catalog.read(name).await?.is_none() {
                return Err(Error::FailedPrecondition(format!(
                    "{name:?} under the backup root has no complete backup meta; \
                     it is not a backup and was not deleted"
                )));
            }
            self.ctx.catalog.delete(name).await
        }
        .await;
        lease.release().await;
        let deleted = deleted?;
        self.jobs.forget_backup(name);
        info!(backup = %name, objects = deleted, "backup deleted");
        Ok(deleted)
    }

    /// Re-reads backup `name` and checks every object against its checksums.
    /// `on_progress` sees each step; the result lists every damaged object.
    /// It takes a slot of the job limit and holds the backup as a reader (a
    /// delete waits for it) until it ends or its future is dropped.
    pub async fn verify_backup(
        &self,
        name: &str,
        on_progress: impl Fn(&VerifyProgress),
    ) -> Result<VerifyProgress> {
        names::validate_backup_name(name)?;
        let _slot = self.take_slot()?;
        let id = uuid::Uuid::new_v4().to_string();
        let leases = self.ctx.leases();
        let lease = leases
            .acquire(&format!("reads/{name}/{id}"), &id, "verify")
            .await?;
        let result = async {
            leases.ensure_free(&format!("backup/{name}")).await?;
            crate::failpoint::pause_at("verify.started").await;
            crate::meta::verify::verify(&self.ctx.catalog, name, on_progress).await
        }
        .await;
        lease.release().await;
        result
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
        let (backup_count, conditional_writes) =
            match self.ctx.catalog.store().ensure_bucket(false).await {
                Ok(()) => (
                    self.ctx.catalog.names().await?.len(),
                    self.ctx.leases().probe_conditional_writes().await?,
                ),
                // The backup bucket is created by the first backup.
                Err(Error::NotFound { .. }) => (0, false),
                Err(e) => return Err(e),
            };
        if !conditional_writes {
            warn!(
                storage = %self.ctx.catalog.store().location(),
                "the backup storage does not honour conditional writes: jobs of different \
                 processes cannot exclude each other"
            );
        }
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
            conditional_writes,
        })
    }
}
