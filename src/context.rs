//! What the flows work with: Milvus, its bucket, the backup catalog and the copier.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::jobs::{Lease, Leases, SharedRecords, holds};
use crate::meta::{BackupLayout, Catalog, MilvusLayout};
use crate::milvus::identity::MilvusIdentity;
use crate::milvus::{MilvusApi, MilvusClient};
use crate::storage::{self, Copier, LocalDir, ObjectStore};

/// How long a reader of a complete backup waits for its create job to end.
const CREATE_ENDING: Duration = Duration::from_secs(10);

/// Timing knobs of the flows.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How often flush and import states are polled.
    pub poll_interval: Duration,
    /// How long a flush may take.
    pub flush_timeout: Duration,
    /// How long one import may go without finishing.
    pub import_timeout: Duration,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            flush_timeout: Duration::from_secs(600),
            import_timeout: Duration::from_secs(3600),
            lease_ttl: Duration::from_secs(30),
        }
    }
}

/// Everything a backup or restore job needs, shared by all jobs.
#[derive(Debug, Clone)]
pub struct Context {
    pub milvus: Arc<dyn MilvusApi>,
    /// Milvus's own bucket: binlogs are read from it and imported from it.
    pub milvus_store: Arc<dyn ObjectStore>,
    pub milvus_layout: MilvusLayout,
    /// Which Milvus this is, as job records name it.
    pub milvus_id: Arc<MilvusIdentity>,
    /// Where backups live.
    pub catalog: Catalog,
    pub copier: Copier,
    pub timing: Timing,
    /// Collections a backup describes, flushes and lists at once.
    pub collections_at_once: usize,
    /// Whether a backup whose request does not say is incremental.
    pub incremental_by_default: bool,
    /// A partition larger than this many bytes is imported one segment
    /// group at a time, and a restore queues imports of at most about this
    /// many bytes ahead of the one it waits for (`backup.maxSegmentGroupSize`).
    pub segment_group_bytes: u64,
}

impl std::fmt::Debug for dyn MilvusApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Milvus({})", self.address())
    }
}

impl Context {
    /// Builds the context from the configuration. Connects lazily.
    pub fn from_config(cfg: &Config) -> Result<Self> {
        cfg.minio.check_backup_root()?;
        let milvus_bucket = cfg.minio.milvus_bucket()?;
        let backup_bucket = cfg.minio.backup_bucket()?;
        let milvus_store = storage::open(&milvus_bucket)?;
        // `backupStorageType: local` keeps backups in the directory `backupRootPath`.
        let (backup_store, backup_root): (Arc<dyn ObjectStore>, String) = if cfg
            .minio
            .backups_are_local()
        {
            let dir = cfg.minio.backup_root_path.clone();
            if dir.is_empty() {
                return Err(Error::invalid(
                    "minio.backupRootPath must name a directory when backupStorageType is local",
                ));
            }
            (Arc::new(LocalDir::new(dir)), String::new())
        } else {
            (storage::open(&backup_bucket)?, backup_bucket.root_path)
        };
        let copier = Copier::new(cfg.backup.parallelism.copydata)
            .with_rate_limit(cfg.backup.rate_limit_mi_bps);
        Ok(Self {
            milvus: Arc::new(MilvusClient::new(&cfg.milvus)?),
            milvus_id: Arc::new(MilvusIdentity::new(
                milvus_store.clone(),
                &milvus_bucket.root_path,
            )),
            milvus_store,
            milvus_layout: MilvusLayout::new(milvus_bucket.root_path),
            catalog: Catalog::new(backup_store, BackupLayout::new(backup_root))
                .with_read_limit(copier.rate_limit()),
            copier,
            timing: Timing {
                lease_ttl: Duration::from_secs(cfg.backup.lease_ttl_seconds.max(1)),
                ..Timing::default()
            },
            collections_at_once: cfg.backup.parallelism.backup_collection.max(1),
            incremental_by_default: cfg.backup.incremental,
            segment_group_bytes: cfg.backup.segment_group_bytes()?,
        })
    }

    /// The leases of the backup storage (see [`Leases`]).
    pub fn leases(&self) -> Leases {
        Leases::new(
            self.catalog.store().clone(),
            self.catalog.layout().root_prefix().trim_end_matches('/'),
            self.timing.lease_ttl,
        )
    }

    /// Holds backup `name` for job `job` that reads it (see
    /// [`Leases::hold_for_reading`]). A refusal is final only while a delete
    /// holds the name, or a create of a backup not yet complete. Any other
    /// writer (a create letting go after its commit point, a takeover
    /// marking a job, a cleanup, a delete refused and handing back) is waited
    /// for, up to [`CREATE_ENDING`]; the holders are looked at after the
    /// refusal, so one that let go in between is followed by another try.
    pub async fn hold_backup_for_reading(
        &self,
        name: &str,
        job: &str,
        purpose: &str,
    ) -> Result<Lease> {
        let leases = self.leases();
        let deadline = std::time::Instant::now() + CREATE_ENDING;
        loop {
            let why = match leases.hold_for_reading(name, job, purpose).await {
                Err(Error::Aborted(why)) => why,
                held => return held,
            };
            let waits = match leases.writer_purpose(name).await?.as_deref() {
                Some(holds::DELETE) => false,
                Some(holds::CREATE) => self.catalog.is_complete(name).await?,
                _ => true,
            };
            if !waits || std::time::Instant::now() >= deadline {
                return Err(Error::Aborted(why));
            }
            tracing::debug!(
                backup = name,
                why,
                "waiting for the job that holds it to end"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// This Milvus's id for the record of a new job, which only servers of
    /// the same Milvus then take over; `None` (any server may, as before
    /// records carried one) when its storage cannot keep one, as the log says.
    pub async fn milvus_id_for_record(&self) -> Option<String> {
        match self.milvus_id.get().await {
            Ok(id) => Some(id.to_string()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read or write Milvus's id in its storage: the job's record names no Milvus, and a server of any Milvus on this backup storage may take it over");
                None
            }
        }
    }

    /// The job records every server on the backup storage shares.
    pub fn shared_records(&self) -> SharedRecords {
        SharedRecords::new(
            self.catalog.store().clone(),
            &self.catalog.layout().root_prefix(),
        )
    }

    /// Whether Milvus can import straight from the backup's keys: they are
    /// in its own bucket (same service, endpoint and bucket, whatever
    /// credentials each side signs with).
    pub fn backups_in_milvus_bucket(&self) -> bool {
        let (a, b) = (self.milvus_store.place(), self.catalog.store().place());
        a.service == b.service && a.endpoint == b.endpoint && a.bucket == b.bucket
    }
}
