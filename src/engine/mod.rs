//! The core's one door: the adapters (gRPC, REST, the CLI) call these
//! methods with validated requests ([`crate::model`]) and get snapshots back;
//! they never reach the flows, the catalog or the context. Jobs run under
//! one runner per kind ([`crate::jobs::Runner`]) that share the job limit.

mod backups;
mod milvus_probe;
mod policies;
mod policy_backup;
mod retention;
mod scheduler;
mod takeover;
mod verification;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::backup::BackupJob;
use crate::context::Context;
use crate::delete::DeleteJob;
use crate::error::{Error, Result};
use crate::jobs::{BackupSnapshot, JobStore, Pool, RestoreSnapshot, Runner};
use crate::milvus::MilvusVersion;
use crate::model::{BackupName, BackupRequest, RestoreRequest};
use crate::policy::PolicyStore;
use crate::restore::RestoreJob;
use crate::verify::VerifyJob;

pub use crate::jobs::{VerifyProgress, VerifySnapshot};
pub use crate::meta::model::{BackupInfo, CollectionBackupInfo, IncrementalInfo};
pub use verification::Verification;

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

/// How long an interrupted CLI waits for its cancelled jobs to clean up
/// (a restore's cleanup waits for Milvus's imports to end).
const INTERRUPT_WAIT: Duration = Duration::from_secs(330);

/// Jobs running at once unless configured otherwise.
pub const DEFAULT_MAX_JOBS: usize = 8;

/// The backup service's core.
#[derive(Debug)]
pub struct Engine {
    ctx: Context,
    pool: Arc<Pool>,
    backups: Arc<Runner<BackupJob>>,
    restores: Arc<Runner<RestoreJob>>,
    deletes: Arc<Runner<DeleteJob>>,
    verifies: Arc<Runner<VerifyJob>>,
    /// The shared backup records ListBackups has seen finished (key@ETag).
    finished_records: Mutex<HashSet<String>>,
    /// The Go-tool meta (without partitions) of complete backups REST listed,
    /// by name.
    metas: Mutex<HashMap<String, Arc<BackupInfo>>>,
    /// The backup policies in the backup storage.
    policies: PolicyStore,
    /// What the scheduler knows of the slots.
    slots: Mutex<scheduler::SlotBook>,
    /// Fires at shutdown: the scheduler stops, its runs stop retrying.
    stop: CancellationToken,
    /// Fires when a CLI command is interrupted: what it runs is cancelled
    /// and recorded so, never left for a server to take over.
    interrupted: CancellationToken,
}

impl Engine {
    /// An engine over `ctx` that keeps no job records.
    pub fn new(ctx: Context) -> Arc<Self> {
        Self::build(ctx, None, DEFAULT_MAX_JOBS)
    }

    /// An engine over `ctx` that keeps job records in `records` and runs at
    /// most `max_jobs` jobs at once. Jobs a previous process left unfinished
    /// are marked interrupted and cleaned up by their kind.
    pub async fn with_records(ctx: Context, records: JobStore, max_jobs: usize) -> Arc<Self> {
        records.prune();
        let engine = Self::build(ctx, Some(records), max_jobs);
        // The shared records in the backup storage keep as many finished jobs
        // of each kind as the local ones; pruned in the background.
        let shared = engine.pool.shared().cloned();
        tokio::spawn(async move {
            let Some(shared) = shared else { return };
            let kept = crate::jobs::MAX_RECORDS;
            let pruned = [
                shared.prune::<crate::jobs::BackupSnapshot>(kept).await,
                shared.prune::<crate::jobs::RestoreSnapshot>(kept).await,
                shared.prune::<crate::jobs::DeleteSnapshot>(kept).await,
            ];
            for r in pruned {
                match r {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(records = n, "pruned old shared job records"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune the shared job records"),
                }
            }
        });
        // A store that ignores conditional writes is said at start-up, not
        // only when `check` runs: replicas on it cannot exclude each other.
        let ctx = engine.ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = ctx.catalog.store().ensure_bucket(false).await {
                tracing::info!(
                    error = %e,
                    "the backup storage's conditional writes are not probed at start-up (its \
                     bucket cannot be reached yet); `check` probes them"
                );
                return;
            }
            match ctx.leases().probe_conditional_writes().await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    storage = %ctx.catalog.store().location(),
                    "the backup storage does not honour conditional writes: jobs of different \
                     processes cannot exclude each other, so run a single server on it"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot probe the backup storage's conditional writes")
                }
            }
        });
        engine.backups.recover(&engine.ctx).await;
        engine.restores.recover(&engine.ctx).await;
        engine.deletes.recover(&engine.ctx).await;
        engine
    }

    fn build(ctx: Context, records: Option<JobStore>, max_jobs: usize) -> Arc<Self> {
        let shared = ctx.shared_records();
        let pool = Pool::new(max_jobs, records, Some(shared));
        let policies = PolicyStore::new(
            ctx.catalog.store().clone(),
            &ctx.catalog.layout().root_prefix(),
        );
        Arc::new(Self {
            ctx,
            backups: Runner::new(pool.clone()),
            restores: Runner::new(pool.clone()),
            deletes: Runner::new(pool.clone()),
            verifies: Runner::new(pool.clone()),
            pool,
            metas: Mutex::default(),
            finished_records: Mutex::default(),
            policies,
            slots: Mutex::default(),
            stop: CancellationToken::new(),
            interrupted: CancellationToken::new(),
        })
    }

    /// Stops taking jobs (new ones get [`Error::ShuttingDown`]), gives the
    /// running ones `grace` to finish, cancels those still running (they clean
    /// up and their records say "interrupted"), and returns once every job
    /// and its record are done.
    pub async fn shut_down(&self, grace: Duration) {
        self.stop.cancel();
        self.pool.shut_down(grace).await;
    }

    /// Cancels every running job (a CLI command interrupted by a signal) and
    /// waits until each has cleaned up and recorded its end (at most
    /// `INTERRUPT_WAIT`).
    pub async fn interrupt(&self) {
        self.interrupted.cancel();
        self.backups.cancel_all();
        self.restores.cancel_all();
        self.deletes.cancel_all();
        self.verifies.cancel_all();
        self.shut_down(INTERRUPT_WAIT).await;
    }

    /// Checks the request, then starts a backup job and returns its snapshots.
    /// Bad requests fail here; failures during the work end the job as FAILED.
    pub async fn create_backup(
        &self,
        req: BackupRequest,
    ) -> Result<watch::Receiver<BackupSnapshot>> {
        let req = req.with_incremental_default(self.ctx.incremental_by_default);
        self.backups.start(&self.ctx, req).await
    }

    /// Asks the running backup `name` to stop; it ends CANCELLED within seconds.
    pub async fn cancel_backup(&self, name: &BackupName) -> Result<()> {
        self.backups.cancel_anywhere(name).await
    }

    /// Checks the request, then starts a restore job and returns its snapshots.
    pub async fn restore(&self, req: RestoreRequest) -> Result<watch::Receiver<RestoreSnapshot>> {
        self.restores.start(&self.ctx, req).await
    }

    /// The snapshots of restore job `id` (of any server on the backup
    /// storage), also after it ended.
    pub async fn watch_restore(&self, id: &str) -> Result<watch::Receiver<RestoreSnapshot>> {
        self.restores
            .find(id)
            .await?
            .ok_or_else(|| Error::not_found("restore job", id))
    }

    /// Asks the running restore `id` to stop; it ends CANCELLED within seconds,
    /// and the collections it created are dropped.
    pub async fn cancel_restore(&self, id: &str) -> Result<()> {
        self.restores.cancel_anywhere(id).await
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
