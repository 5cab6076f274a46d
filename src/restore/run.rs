//! One restore job: for each collection, create it, import its partitions,
//! then build its indexes and load it when asked.

use std::time::Instant;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{
    JobHandle, JobState, PhaseTime, RestoreCollectionStatus, RestoreSnapshot, SwapStep,
};
use crate::meta::model::{BackupInfo, CollectionBackupInfo};
use crate::meta::schema;
use crate::milvus::{IndexInfo, LoadShape, NewCollection};
use crate::model::{CollectionRef, DEFAULT_DB};
use crate::restore::imports::{Filling, import_partitions};
use crate::restore::{Place, RestoreRequest, RestoreTarget, prove, status, swap};

/// Proves the objects, then restores every target in order, publishing
/// progress on `job`. Stops at the first failure; the targets restored
/// before it stay.
pub async fn run(
    ctx: &Context,
    req: &RestoreRequest,
    backup: &BackupInfo,
    targets: &[RestoreTarget],
    job: &JobHandle<RestoreSnapshot>,
) -> Result<()> {
    job.update(|s| {
        s.state = JobState::Running;
        s.progress.collections_total = targets.len() as u32;
        if !req.meta_only() {
            s.progress.bytes_total = targets.iter().map(|t| t.source.size.max(0) as u64).sum();
            s.progress.files_total = targets.iter().map(|t| file_count(&t.source)).sum();
        }
    });
    let version = ctx.milvus.version().await?;
    // Milvus imports one folder per partition: an incremental backup's
    // objects, spread over the folders of the backups it reuses, are staged
    // into one, as are the objects of a backup outside Milvus's bucket.
    let incremental = backup.incremental.is_some();
    let manifest = match !req.meta_only() && incremental {
        true => ctx.catalog.read_manifest(req.backup_name()).await?,
        false => None,
    };
    let reused = manifest.as_ref();
    let staging = (reused.is_some() || !ctx.backups_in_milvus_bucket())
        .then(|| staging_prefix(&job.snapshot().id));
    let mut proven = prove::Proven::new();
    if !req.meta_only() {
        let clock = PhaseClock::start(job, RestorePhase::Verify);
        let keep = staging.is_some();
        proven = prove::prove(ctx, req.backup_name(), targets, keep, job).await?;
        clock.end(job);
    }
    let clock = PhaseClock::start(job, RestorePhase::Import);

    let mut result = Ok(());
    for (i, t) in targets.iter().enumerate() {
        // Restored before the job's previous server died.
        if job.snapshot().collections[i].state == JobState::Succeeded {
            continue;
        }
        job.update(|s| s.collections[i].state = JobState::Running);
        let place = Place {
            backup_name: req.backup_name(),
            staging: staging.as_deref(),
            reused,
            proven: &proven,
            version,
            in_flight: job.in_flight(),
        };
        match restore_collection(ctx, req, &place, t, job).await {
            Ok(rows) => job.update(|s| {
                let c = &mut s.collections[i];
                c.state = JobState::Succeeded;
                c.imported_rows = rows;
                s.progress.collections_done += 1;
            }),
            Err(e) => {
                job.update(|s| {
                    let c = &mut s.collections[i];
                    c.state = JobState::Failed;
                    c.error = Some(e.to_string());
                });
                result = Err(e);
                break;
            }
        }
    }
    // After a failure the job's cleanup removes them, unless an import may
    // still read them.
    if let (Some(prefix), Ok(())) = (&staging, &result) {
        job.fence()?;
        // Every collection is restored: the job has succeeded, and a staging
        // the store will not let go of is reported, not made its failure.
        if let Err(e) = ctx.milvus_store.delete_under(prefix).await {
            tracing::warn!(prefix = %prefix, error = %e, "the restore succeeded; its staged binlogs could not be removed: remove them by hand");
            job.update(|s| s.staging_left = Some(prefix.clone()));
        }
    }
    if result.is_ok() {
        clock.end(job);
    }
    result
}

/// Where a restore stages the binlogs of a backup kept outside Milvus's
/// bucket, or of an incremental backup.
pub fn staging_prefix(job_id: &str) -> String {
    format!("restore-temp-{job_id}/")
}

/// Times one phase of a job and shows it in the snapshot.
struct PhaseClock {
    phase: RestorePhase,
    started: Instant,
}

impl PhaseClock {
    fn start(job: &JobHandle<RestoreSnapshot>, phase: RestorePhase) -> Self {
        job.update(|s| s.phase = phase.as_str().to_string());
        Self {
            phase,
            started: Instant::now(),
        }
    }

    fn end(self, job: &JobHandle<RestoreSnapshot>) {
        let seconds = self.started.elapsed().as_secs_f64();
        tracing::info!(
            restore = %job.snapshot().id,
            phase = self.phase.as_str(),
            seconds,
            "restore phase done"
        );
        job.update(|s| {
            s.phase.clear();
            s.phases.push(PhaseTime {
                phase: self.phase.as_str().to_string(),
                seconds,
            });
        });
    }
}

fn file_count(c: &CollectionBackupInfo) -> u64 {
    c.partition_backups
        .iter()
        .flat_map(|p| &p.segment_backups)
        .chain(&c.l0_segments)
        .flat_map(|s| s.binlogs.iter().chain(&s.deltalogs))
        .map(|f| f.binlogs.len() as u64)
        .sum()
}

/// Restores one collection; returns the rows Milvus imported. A target that
/// exists and is to be replaced is restored into a temporary collection
/// first, checked, and only then swapped in (see [`swap::swap_in`]). A resumed job
/// skips what its record shows done.
async fn restore_collection(
    ctx: &Context,
    req: &RestoreRequest,
    place: &Place<'_>,
    t: &RestoreTarget,
    job: &JobHandle<RestoreSnapshot>,
) -> Result<i64> {
    let milvus = ctx.milvus.as_ref();
    let db = t.target.db();
    let src = &t.source;
    let replacing = t.exists && req.drop_existing();
    let fill = if replacing {
        let temp = swap::temp_name(t.target.name(), &job.snapshot().id);
        job.checkpoint(|s| status(s, t).temp = Some(temp.clone()))
            .await?;
        CollectionRef::normalized(db, &temp)
    } else {
        t.target.clone()
    };
    let name = fill.name();
    let recorded = status(&mut job.snapshot(), t).clone();
    let recorded_rows: i64 = recorded.imports.iter().map(|r| r.rows).sum();
    // Loaded when asked, or when it was loaded at backup time and its
    // indexes are back. A replace loads its copy beside the loaded original
    // only when asked to (`load`): both hold query nodes' memory until the
    // swap. Loaded because the source was, it is loaded after the swap, once
    // the original is dropped. A collection the restore did not make
    // (`skip_create_collection`) is the user's: loaded only when asked.
    let implied = !req.skip_create() && req.restore_index() && src.load_state == "Loaded";
    let load = req.load() || implied;
    let load_after_swap = load && replacing && !req.load();
    let shape = match load && replacing {
        true => original_shape(ctx, t, &recorded, job).await?,
        false => LoadShape::default(),
    };
    let fill_id = match (req.skip_create(), recorded.created_id) {
        // Filled and checked before the job's server died: only the swap is left.
        (false, Some(id)) if replacing && recorded.swap != SwapStep::None => {
            swap::swap_in(ctx, t, &fill, id, job).await?;
            if load_after_swap {
                load_filled(ctx, t, &t.target, id, &shape, job).await?;
            }
            return Ok(recorded_rows);
        }
        (false, created) => create_once(ctx, t, &fill, created, job).await?,
        (true, _) => t.original_id.ok_or_else(|| {
            Error::Internal(format!("{} exists but has no id on record", t.target))
        })?,
    };
    let has_partition_key = src.schema.fields.iter().any(|f| f.is_partition_key);
    // Before each change, the name still holds the collection this job
    // fills: one dropped and made again meanwhile (hours of proof, or a
    // takeover later) is never given partitions, indexes or a load.
    still_filling(ctx, &fill, fill_id).await?;
    if !has_partition_key {
        let existing = milvus.list_partitions(db, name).await?;
        for p in &src.partition_backups {
            if !existing.iter().any(|e| e.name == p.partition_name) {
                if req.skip_create() {
                    let part = &p.partition_name;
                    job.checkpoint(|s| add_once(&mut status(s, t).partitions_added, part))
                        .await?;
                }
                milvus.create_partition(db, name, &p.partition_name).await?;
            }
        }
    }

    let mut rows = 0;
    if !req.meta_only() {
        let into = Filling {
            name: &fill,
            id: fill_id,
            created: !req.skip_create(),
        };
        rows = import_partitions(ctx, place, t, &into, job).await?;
    }
    if req.restore_index() {
        still_filling(ctx, &fill, fill_id).await?;
        // A resumed job skips the indexes its previous server built, and an
        // import into an existing collection those it has (checked equal).
        let built = match req.resumes() || req.skip_create() {
            true => milvus.describe_indexes(db, name).await?,
            false => Vec::new(),
        };
        // The user's collection is checked again: one made since the check
        // (while the rows imported) may clash. Those of the backup's made
        // already are skipped.
        if req.skip_create() {
            super::indexes_fit(&fill, &built, &src.index_infos)?;
        }
        for idx in &src.index_infos {
            if built.iter().any(|b| b.name == idx.index_name) {
                continue;
            }
            if req.skip_create() {
                let index = &idx.index_name;
                job.checkpoint(|s| add_once(&mut status(s, t).indexes_added, index))
                    .await?;
            }
            let index = IndexInfo {
                name: idx.index_name.clone(),
                id: 0,
                field_name: idx.field_name.clone(),
                params: idx
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            };
            milvus.create_index(db, name, &index).await?;
        }
    }
    if load && !load_after_swap {
        load_filled(ctx, t, &fill, fill_id, &shape, job).await?;
    }
    if replacing {
        swap::check_copy(ctx, t, &fill, rows, req.meta_only()).await?;
        swap::swap_in(ctx, t, &fill, fill_id, job).await?;
        if load_after_swap {
            load_filled(ctx, t, &t.target, fill_id, &shape, job).await?;
        }
    }
    Ok(rows)
}

/// Adds `name` to `names` unless it is there (a resumed job asks again).
fn add_once(names: &mut Vec<String>, name: &str) {
    if !names.iter().any(|n| n == name) {
        names.push(name.to_string());
    }
}

/// How the target a restore replaces is loaded (its replicas and their
/// resource groups), for its copy to be loaded alike: read before the swap,
/// and kept in the record for a resumed job.
async fn original_shape(
    ctx: &Context,
    t: &RestoreTarget,
    recorded: &RestoreCollectionStatus,
    job: &JobHandle<RestoreSnapshot>,
) -> Result<LoadShape> {
    if let Some(replicas) = recorded.original_replicas {
        return Ok(LoadShape {
            replicas,
            resource_groups: recorded.original_resource_groups.clone(),
        });
    }
    if recorded.swap != SwapStep::None {
        // Swapped by a version that kept no shape: Milvus's default.
        return Ok(LoadShape::default());
    }
    let (db, name) = (t.target.db(), t.target.name());
    if ctx.milvus.collection_id(db, name).await? != t.original_id {
        // Not the original any more: the swap says so.
        return Ok(LoadShape::default());
    }
    // Released, GetReplicas answers "replica not found" (2.3+).
    let shape = match ctx.milvus.loading_progress(db, name).await? {
        0 => LoadShape::default(),
        _ => match ctx.milvus.load_shape(db, name).await {
            Ok(shape) => shape,
            Err(e @ Error::Milvus { .. }) => {
                tracing::warn!(collection = %t.target, error = %e,
                    "cannot read the replicas of the collection replaced: its copy is loaded with Milvus's default");
                LoadShape::default()
            }
            Err(e) => return Err(e),
        },
    };
    job.checkpoint(|s| {
        let c = status(s, t);
        c.original_replicas = Some(shape.replicas);
        c.original_resource_groups = shape.resource_groups.clone();
    })
    .await?;
    Ok(shape)
}

/// Loads `at` (of target `t`) as `shape` says, while it is the collection
/// `id` this job filled, and waits until it is loaded. One that was released is recorded
/// first, so that a cleanup releases it again if the job does not succeed.
/// One loaded (or loading) already is only waited for: Milvus loads what
/// the imports added by itself, and a LoadCollection of ours, with the
/// default replica number, would be refused for one loaded with more.
async fn load_filled(
    ctx: &Context,
    t: &RestoreTarget,
    at: &CollectionRef,
    id: i64,
    shape: &LoadShape,
    job: &JobHandle<RestoreSnapshot>,
) -> Result<()> {
    still_filling(ctx, at, id).await?;
    if ctx.milvus.loading_progress(at.db(), at.name()).await? == 0 {
        job.checkpoint(|s| status(s, t).loaded_by_job = Some(id))
            .await?;
        match ctx.milvus.load_collection(at.db(), at.name(), shape).await {
            // Refused as the original was loaded (its groups changed since,
            // or mix the default group with others): as before, Milvus's
            // default, rather than no load at all.
            Err(e @ Error::Milvus { .. }) if *shape != LoadShape::default() => {
                tracing::warn!(collection = %at, error = %e, replicas = shape.replicas, groups = ?shape.resource_groups,
                    "the load as the replaced collection was loaded is refused; loaded with Milvus's default");
                ctx.milvus
                    .load_collection(at.db(), at.name(), &LoadShape::default())
                    .await?;
            }
            loaded => loaded?,
        }
    }
    crate::failpoint::pause_at("restore.loading").await;
    wait_loaded(ctx, at).await
}

/// [`Error::FailedPrecondition`] unless collection `fill` still has id `id`.
async fn still_filling(ctx: &Context, fill: &CollectionRef, id: i64) -> Result<()> {
    match ctx.milvus.collection_id(fill.db(), fill.name()).await? {
        Some(now) if now == id => Ok(()),
        now => Err(Error::FailedPrecondition(format!(
            "{fill} is no longer the collection this restore fills (id {id}): it was {}; \
             nothing more is done to it",
            match now {
                Some(other) => format!("made again (id {other})"),
                None => "dropped".to_string(),
            }
        ))),
    }
}

/// Creates the collection `fill` unless this job already did (`created`,
/// from its record); returns its id. A collection under the name that the
/// record does not name as this job's is never used.
async fn create_once(
    ctx: &Context,
    t: &RestoreTarget,
    fill: &CollectionRef,
    created: Option<i64>,
    job: &JobHandle<RestoreSnapshot>,
) -> Result<i64> {
    let milvus = ctx.milvus.as_ref();
    let (db, name) = (fill.db(), fill.name());
    if db != DEFAULT_DB && !milvus.list_databases().await?.iter().any(|d| d == db) {
        // Made and recorded as one step, as the collection below: cleanup
        // drops only a database the record names, and only when empty.
        let (ctx, made, db) = (ctx.clone(), job.clone(), db.to_string());
        job.uninterrupted(async move {
            ctx.milvus.create_database(&db).await?;
            made.keep(|s| s.databases_created.push(db)).await
        })
        .await?;
    }
    let current = milvus.collection_id(db, name).await?;
    match (created, current) {
        (Some(id), Some(now)) if id == now => return Ok(id),
        (Some(id), _) => {
            return Err(Error::FailedPrecondition(format!(
                "{fill} is no longer the collection this restore created (id {id}; now {current:?}): \
                 it was dropped or replaced while the restore was stopped, so the restore cannot go on"
            )));
        }
        (None, Some(now)) => {
            return Err(Error::FailedPrecondition(format!(
                "{fill} exists (id {now}) but this restore has no record of creating it: \
                 someone else made it, or the restore's server died right after creating it; \
                 it is left as it is"
            )));
        }
        (None, None) => {}
    }
    job.fence()?;
    // Made and recorded as one step that a cancel does not cut: cleanup
    // drops only the collection the record names.
    let request = new_collection(t, fill)?;
    let (ctx, t, fill, handle) = (ctx.clone(), t.clone(), fill.clone(), job.clone());
    job.uninterrupted(async move {
        let (db, name) = (fill.db(), fill.name());
        if let Err(e) = ctx.milvus.create_collection(&request).await {
            // An answer lost (a cut connection, a timeout) may hide a
            // collection Milvus made: not provably this job's, it is left,
            // and the error names it.
            let Error::Unavailable {
                service,
                address,
                detail,
            } = e
            else {
                return Err(e);
            };
            let made = match ctx.milvus.collection_id(db, name).await {
                Ok(Some(id)) => format!(
                    "; {fill} exists now (id {id}), made by this request or by someone else: \
                     it was left as it is"
                ),
                _ => String::new(),
            };
            return Err(Error::Unavailable {
                service,
                address,
                detail: format!("{detail}{made}"),
            });
        }
        let id = ctx.milvus.collection_id(db, name).await?.ok_or_else(|| {
            Error::milvus(
                format!("CreateCollection {fill}"),
                "the collection is not there after it was created",
            )
        })?;
        crate::failpoint::pause_at("restore.created").await;
        handle.keep(|s| status(s, &t).created_id = Some(id)).await?;
        Ok(id)
    })
    .await
}

/// The CreateCollection request: the backed-up schema under the name `to`.
fn new_collection(t: &RestoreTarget, to: &CollectionRef) -> Result<NewCollection> {
    let src = &t.source;
    let encoded = super::schema_sent(src)?;
    let has_partition_key = src.schema.fields.iter().any(|f| f.is_partition_key);
    Ok(NewCollection {
        db: to.db().to_string(),
        name: to.name().to_string(),
        schema: schema::rename(&encoded, to.name()),
        shards_num: src.shards_num,
        consistency_level: src.consistency_level,
        properties: src
            .properties
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect(),
        // Milvus refuses num_partitions without a partition key.
        num_partitions: has_partition_key.then_some(src.partition_backups.len() as i64),
    })
}

/// Waits until Milvus reports the collection fully loaded.
async fn wait_loaded(ctx: &Context, target: &CollectionRef) -> Result<()> {
    let started = Instant::now();
    while ctx
        .milvus
        .loading_progress(target.db(), target.name())
        .await?
        < 100
    {
        if started.elapsed() > ctx.timing.import_timeout {
            return Err(Error::milvus(
                format!("LoadCollection {target}"),
                format!("not loaded after {}s", ctx.timing.import_timeout.as_secs()),
            ));
        }
        tokio::time::sleep(ctx.timing.poll_interval).await;
    }
    Ok(())
}

/// The phases of a restore, in order (a replaced collection is swapped in
/// within the import, as soon as its copy is ready).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePhase {
    /// Every object that Milvus will read is checked against its checksum
    /// (or decoded) before anything in Milvus changes.
    Verify,
    /// Collections are created and imported.
    Import,
}

impl RestorePhase {
    /// The phase's name in snapshots and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RestorePhase::Verify => "verify",
            RestorePhase::Import => "import",
        }
    }
}
