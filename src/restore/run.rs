//! One restore job: for each collection, create it, import its partitions,
//! then build its indexes and load it when asked.

use std::time::Instant;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{JobHandle, JobState, PhaseTime, RestorePhase, RestoreSnapshot, SwapStep};
use crate::meta::manifest::Manifest;
use crate::meta::model::{
    BackupInfo, CollectionBackupInfo, PartitionBackupInfo, SegmentBackupInfo,
};
use crate::meta::{LogKind, schema};
use crate::milvus::{ImportPhase, ImportRequest, IndexInfo, MilvusVersion, NewCollection};
use crate::model::{CollectionRef, DEFAULT_DB};
use crate::restore::{RestoreRequest, RestoreTarget, check_compatible, prove};
use crate::storage::{CopyTask, join_key};

use base64::Engine as _;

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
    if !req.meta_only() {
        let clock = PhaseClock::start(job, RestorePhase::Verify);
        prove::prove(ctx, req.backup_name(), targets, job).await?;
        clock.end(job);
    }
    let clock = PhaseClock::start(job, RestorePhase::Import);
    // Milvus imports one folder per partition: an incremental backup's
    // objects, spread over the folders of the backups it reuses, are staged
    // into one, as are the objects of a backup outside Milvus's bucket.
    let reused = match backup.incremental {
        Some(_) if !req.meta_only() => ctx.catalog.read_manifest(req.backup_name()).await?,
        _ => None,
    };
    let staging = (reused.is_some() || !ctx.backups_in_milvus_bucket())
        .then(|| staging_prefix(&job.snapshot().id));

    let mut result = Ok(());
    for (i, t) in targets.iter().enumerate() {
        job.update(|s| s.collections[i].state = JobState::Running);
        let place = Place {
            backup_name: req.backup_name(),
            staging: staging.as_deref(),
            reused: reused.as_ref(),
            version,
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
    if let Some(prefix) = &staging {
        ctx.milvus_store.delete_under(prefix).await?;
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

/// Where the binlogs come from and what the target Milvus is.
struct Place<'a> {
    backup_name: &'a str,
    /// The staging prefix in Milvus's bucket, when the backup lives elsewhere
    /// or is incremental.
    staging: Option<&'a str>,
    /// An incremental backup's manifest: where each of its objects is stored.
    reused: Option<&'a Manifest>,
    version: MilvusVersion,
}

/// Restores one collection; returns the rows Milvus imported. A target that
/// exists and is to be replaced is restored into a temporary collection
/// first, checked, and only then swapped in (see [`swap_in`]).
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
        let temp = temp_name(t.target.name(), &job.snapshot().id);
        job.checkpoint(|s| status(s, t).temp = Some(temp.clone()))?;
        CollectionRef::normalized(db, &temp)
    } else {
        t.target.clone()
    };
    let name = fill.name();
    if !req.skip_create() {
        if db != DEFAULT_DB && !milvus.list_databases().await?.iter().any(|d| d == db) {
            milvus.create_database(db).await?;
        }
        milvus.create_collection(&new_collection(t, &fill)?).await?;
        // Recorded once Milvus made it, with its id: cleanup drops only that one.
        let id = milvus.collection_id(db, name).await?.ok_or_else(|| {
            Error::milvus(
                format!("CreateCollection {fill}"),
                "the collection is not there after it was created",
            )
        })?;
        job.checkpoint(|s| status(s, t).created_id = Some(id))?;
    }
    let has_partition_key = src.schema.fields.iter().any(|f| f.is_partition_key);
    if !has_partition_key {
        let existing = milvus.list_partitions(db, name).await?;
        for p in &src.partition_backups {
            if !existing.iter().any(|e| e.name == p.partition_name) {
                milvus.create_partition(db, name, &p.partition_name).await?;
            }
        }
    }

    let mut rows = 0;
    if !req.meta_only() {
        rows = import_partitions(ctx, place, t, &fill, job).await?;
    }
    if req.restore_index() {
        for idx in &src.index_infos {
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
    // Load when asked, or when it was loaded at backup time and its indexes are back.
    if req.load() || (req.restore_index() && src.load_state == "Loaded") {
        milvus.load_collection(db, name).await?;
        wait_loaded(ctx, &fill).await?;
    }
    if replacing {
        check_copy(ctx, t, &fill, rows, req.meta_only()).await?;
        swap_in(ctx, t, &fill, job).await?;
    }
    Ok(rows)
}

/// The temporary collection that a replaced target is restored into.
fn temp_name(target: &str, job_id: &str) -> String {
    let tag: String = job_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    format!("{target}_restoring_{tag}")
}

/// This target's entry in the job's snapshot.
fn status<'a>(
    s: &'a mut RestoreSnapshot,
    t: &RestoreTarget,
) -> &'a mut crate::jobs::RestoreCollectionStatus {
    s.collections
        .iter_mut()
        .find(|c| c.target == t.target)
        .expect("every target has a status")
}

/// Before a replace: the restored copy has the backup's schema and holds the
/// rows Milvus reported as imported.
async fn check_copy(
    ctx: &Context,
    t: &RestoreTarget,
    copy: &CollectionRef,
    imported: i64,
    meta_only: bool,
) -> Result<()> {
    let current = ctx
        .milvus
        .describe_collection(copy.db(), copy.name())
        .await?;
    check_compatible(&t.source.schema, &schema::to_meta(&current.schema)?, copy)?;
    if meta_only {
        return Ok(());
    }
    let stored: i64 = ctx
        .milvus
        .persistent_segments(copy.db(), copy.name())
        .await?
        .iter()
        .map(|s| s.num_rows)
        .sum();
    if stored != imported {
        return Err(Error::FailedPrecondition(format!(
            "the restored copy {copy} holds {stored} rows but the import reported {imported}; \
             {} was left as it was",
            t.target
        )));
    }
    Ok(())
}

/// Replaces the original target with the checked copy: drop the original
/// (only while it has the id seen at planning), then rename the copy. Each
/// step is recorded first, so that recovery after a crash completes or undoes it.
async fn swap_in(
    ctx: &Context,
    t: &RestoreTarget,
    copy: &CollectionRef,
    job: &JobHandle<RestoreSnapshot>,
) -> Result<()> {
    let milvus = ctx.milvus.as_ref();
    let (db, name) = (t.target.db(), t.target.name());
    job.checkpoint(|s| status(s, t).swap = SwapStep::DroppingOriginal)?;
    crate::failpoint::pause_at("restore.swap.before_drop").await;
    let current = milvus.collection_id(db, name).await?;
    if current != t.original_id {
        job.checkpoint(|s| status(s, t).swap = SwapStep::None)?;
        return Err(Error::FailedPrecondition(format!(
            "{} was changed by someone else during the restore (id {current:?}, was {:?}); \
             it was left as it is and the restored copy was dropped",
            t.target, t.original_id
        )));
    }
    milvus.drop_collection(db, name).await?;
    crate::failpoint::pause_at("restore.swap.dropped").await;
    job.checkpoint(|s| status(s, t).swap = SwapStep::Renaming)?;
    crate::failpoint::pause_at("restore.swap.after_drop").await;
    milvus.rename_collection(db, copy.name(), name).await?;
    crate::failpoint::pause_at("restore.swap.renamed").await;
    job.checkpoint(|s| status(s, t).swap = SwapStep::Done)?;
    crate::failpoint::pause_at("restore.swap.after_rename").await;
    Ok(())
}

/// The CreateCollection request: the backed-up schema under the name `to`.
fn new_collection(t: &RestoreTarget, to: &CollectionRef) -> Result<NewCollection> {
    let src = &t.source;
    let encoded = if src.schema_proto_base64.is_empty() {
        schema::from_meta(&src.schema)?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(&src.schema_proto_base64)
            .map_err(|e| {
                Error::DataLoss(format!(
                    "collection {}: bad schema bytes: {e}",
                    src.collection_name
                ))
            })?
            .into()
    };
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

/// Imports every partition with data, all started before any is awaited, then
/// the L0 deletes.
async fn import_partitions(
    ctx: &Context,
    place: &Place<'_>,
    t: &RestoreTarget,
    into: &CollectionRef,
    job: &JobHandle<RestoreSnapshot>,
) -> Result<i64> {
    let src = &t.source;
    let mut running = Vec::new();
    for part in &src.partition_backups {
        let data: Vec<&SegmentBackupInfo> =
            part.segment_backups.iter().filter(|s| !s.is_l0).collect();
        if data.is_empty() {
            continue;
        }
        let storage_version = data.iter().map(|s| s.storage_version).max().unwrap_or(0);
        let request = ImportRequest {
            db: into.db().to_string(),
            collection: into.name().to_string(),
            partition: part.partition_name.clone(),
            files: import_files(ctx, place, src, part).await?,
            options: place
                .version
                .import_options(src.backup_timestamp, storage_version),
        };
        let tasks = ctx.milvus.import(&request).await?;
        running.push((part, tasks));
    }
    crate::failpoint::pause_at("restore.importing").await;
    crate::failpoint::pause_at(&format!("restore.importing:{}", t.target)).await;

    let mut rows = 0;
    for (part, tasks) in running {
        for task in tasks {
            rows += wait_import(ctx, into, &part.partition_name, task).await?;
        }
        let files: u64 = part
            .segment_backups
            .iter()
            .flat_map(|s| s.binlogs.iter().chain(&s.deltalogs))
            .map(|f| f.binlogs.len() as u64)
            .sum();
        job.update(|s| {
            s.progress.bytes_done += part.size.max(0) as u64;
            s.progress.files_done += files;
        });
    }
    import_l0_segments(ctx, place, t, into).await?;
    Ok(rows)
}

/// Imports the deletes of L0 segments (2.4+) after the data they apply to:
/// partition-level ones into their partition, collection-level ones into all.
async fn import_l0_segments(
    ctx: &Context,
    place: &Place<'_>,
    t: &RestoreTarget,
    into: &CollectionRef,
) -> Result<()> {
    let src = &t.source;
    let mut l0: Vec<(&str, &SegmentBackupInfo)> = Vec::new();
    for p in &src.partition_backups {
        for s in p.segment_backups.iter().filter(|s| s.is_l0) {
            l0.push((&p.partition_name, s));
        }
    }
    l0.extend(src.l0_segments.iter().map(|s| ("", s)));
    for (partition, seg) in l0 {
        if !place.version.has_l0_segments() {
            return Err(Error::FailedPrecondition(format!(
                "collection {} has L0 delete segments; Milvus {} cannot import them",
                src.collection_name, place.version
            )));
        }
        let dir = prove::l0_dir(
            ctx,
            place.backup_name,
            src.collection_id,
            seg.partition_id,
            seg.segment_id,
        );
        let request = ImportRequest {
            db: into.db().to_string(),
            collection: into.name().to_string(),
            partition: partition.to_string(),
            files: stage(ctx, place, &[dir]).await?,
            options: place.version.l0_import_options(src.backup_timestamp),
        };
        for task in ctx.milvus.import(&request).await? {
            wait_import(ctx, into, partition, task).await?;
        }
    }
    Ok(())
}

/// `[insert_prefix/, delta_prefix/ or ""]` of one partition inside Milvus's bucket.
async fn import_files(
    ctx: &Context,
    place: &Place<'_>,
    src: &CollectionBackupInfo,
    part: &PartitionBackupInfo,
) -> Result<Vec<String>> {
    let layout = ctx.catalog.layout();
    let dir = |kind| {
        layout.partition_dir(
            place.backup_name,
            kind,
            src.collection_id,
            part.partition_id,
        )
    };
    let has_deltas = part
        .segment_backups
        .iter()
        .any(|s| !s.is_l0 && s.deltalogs.iter().any(|f| !f.binlogs.is_empty()));
    let mut files = stage(ctx, place, &[dir(LogKind::Insert)]).await?;
    if has_deltas {
        files.extend(stage(ctx, place, &[dir(LogKind::Delta)]).await?);
    } else {
        files.push(String::new());
    }
    Ok(files)
}

/// The import paths of backup folders `dirs`: the folders themselves when the
/// backup is in Milvus's bucket, or copies under the staging prefix otherwise.
async fn stage(ctx: &Context, place: &Place<'_>, dirs: &[String]) -> Result<Vec<String>> {
    let Some(staging) = place.staging else {
        return Ok(dirs.to_vec());
    };
    let backup_prefix = ctx.catalog.layout().backup_prefix(place.backup_name);
    let staged = |key: &str| join_key([staging, &key[backup_prefix.len()..]]);
    let mut tasks = Vec::new();
    for dir in dirs {
        match place.reused {
            // Proven before import: the manifest names every object.
            Some(m) => {
                let rel = &dir[backup_prefix.len()..];
                for e in m.objects.iter().filter(|e| e.key.starts_with(rel)) {
                    tasks.push(CopyTask {
                        dst_key: join_key([staging, &e.key]),
                        src_key: ctx.catalog.object_key(place.backup_name, e),
                        size: e.size,
                        owner: 0,
                    });
                }
            }
            None => {
                for o in ctx.catalog.store().list(dir).await? {
                    tasks.push(CopyTask {
                        dst_key: staged(&o.key),
                        src_key: o.key,
                        size: o.size,
                        owner: 0,
                    });
                }
            }
        }
    }
    ctx.copier
        .copy_all(
            ctx.catalog.store().as_ref(),
            ctx.milvus_store.as_ref(),
            tasks,
            |_, _| {},
        )
        .await?;
    Ok(dirs.iter().map(|d| format!("{}/", staged(d))).collect())
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

/// Polls one import task until it ends; returns the rows it imported.
async fn wait_import(
    ctx: &Context,
    into: &CollectionRef,
    partition: &str,
    task: i64,
) -> Result<i64> {
    let started = Instant::now();
    let operation = || format!("Import into {into}/{partition}");
    loop {
        // Milvus 2.3.5's proxy crashes (nil pointer in GetImportState) when
        // asked about an import whose collection was dropped: never ask then.
        if !ctx.milvus.has_collection(into.db(), into.name()).await? {
            return Err(Error::FailedPrecondition(format!(
                "{into} was dropped while import task {task} ran; the restore cannot finish"
            )));
        }
        let status = ctx.milvus.import_state(task).await?;
        match status.phase {
            ImportPhase::Completed => return Ok(status.row_count),
            ImportPhase::Failed(reason) => return Err(Error::milvus(operation(), reason)),
            ImportPhase::Running if started.elapsed() > ctx.timing.import_timeout => {
                return Err(Error::milvus(
                    operation(),
                    format!(
                        "task {task} not done after {}s",
                        ctx.timing.import_timeout.as_secs()
                    ),
                ));
            }
            ImportPhase::Running => tokio::time::sleep(ctx.timing.poll_interval).await,
        }
    }
}
