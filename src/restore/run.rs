//! One restore job: for each collection, create it, import its partitions,
//! then build its indexes and load it when asked.

use std::time::Instant;

use crate::backup::schema;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{JobHandle, JobState, RestoreSnapshot};
use crate::meta::LogKind;
use crate::meta::model::{
    BackupInfo, CollectionBackupInfo, PartitionBackupInfo, SegmentBackupInfo,
};
use crate::milvus::{ImportPhase, ImportRequest, IndexInfo, MilvusVersion, NewCollection};
use crate::names::{CollectionRef, DEFAULT_DB};
use crate::restore::{RestoreRequest, RestoreTarget};
use crate::storage::{CopyTask, join_key};

use base64::Engine as _;

/// Restores every target in order, publishing progress on `job`. Stops at the first failure.
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
        if !req.meta_only {
            s.progress.bytes_total = targets.iter().map(|t| t.source.size.max(0) as u64).sum();
            s.progress.files_total = targets.iter().map(|t| file_count(&t.source)).sum();
        }
    });
    let version = ctx.milvus.version().await?;
    // Milvus imports only from its own bucket: stage the binlogs there when needed.
    let staging =
        (!ctx.backups_in_milvus_bucket()).then(|| format!("restore-temp-{}/", job.snapshot().id));

    let mut result = Ok(());
    for (i, t) in targets.iter().enumerate() {
        job.update(|s| s.collections[i].state = JobState::Running);
        let place = Place {
            backup_name: &backup.name,
            staging: staging.as_deref(),
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
        let keys: Vec<String> = ctx
            .milvus_store
            .list(prefix)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        ctx.milvus_store.delete(&keys).await?;
    }
    result
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
    /// The staging prefix in Milvus's bucket, when the backup lives elsewhere.
    staging: Option<&'a str>,
    version: MilvusVersion,
}

/// Restores one collection; returns the rows Milvus imported.
async fn restore_collection(
    ctx: &Context,
    req: &RestoreRequest,
    place: &Place<'_>,
    t: &RestoreTarget,
    job: &JobHandle<RestoreSnapshot>,
) -> Result<i64> {
    let milvus = ctx.milvus.as_ref();
    let (db, name) = (t.target.db.as_str(), t.target.name.as_str());
    let src = &t.source;
    if t.exists && req.drop_existing {
        milvus.drop_collection(db, name).await?;
    }
    if !req.skip_create {
        if db != DEFAULT_DB && !milvus.list_databases().await?.iter().any(|d| d == db) {
            milvus.create_database(db).await?;
        }
        // Marked (and recorded) before it exists: a failure, even a crash, of
        // the job from here on drops this collection again.
        job.update(|s| {
            if let Some(c) = s.collections.iter_mut().find(|c| c.target == t.target) {
                c.created = true;
            }
        });
        milvus.create_collection(&new_collection(t)?).await?;
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
    if !req.meta_only {
        rows = import_partitions(ctx, place, t, job).await?;
    }
    if req.restore_index {
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
    if req.load || (req.restore_index && src.load_state == "Loaded") {
        milvus.load_collection(db, name).await?;
        wait_loaded(ctx, &t.target).await?;
    }
    Ok(rows)
}

/// The CreateCollection request: the backed-up schema under the target name.
fn new_collection(t: &RestoreTarget) -> Result<NewCollection> {
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
        db: t.target.db.clone(),
        name: t.target.name.clone(),
        schema: schema::rename(&encoded, &t.target.name),
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
            db: t.target.db.clone(),
            collection: t.target.name.clone(),
            partition: part.partition_name.clone(),
            files: import_files(ctx, place, src, part).await?,
            options: place
                .version
                .import_options(src.backup_timestamp, storage_version),
        };
        let tasks = ctx.milvus.import(&request).await?;
        running.push((part, tasks));
    }

    let mut rows = 0;
    for (part, tasks) in running {
        for task in tasks {
            rows += wait_import(ctx, t, &part.partition_name, task).await?;
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
    import_l0_segments(ctx, place, t).await?;
    Ok(rows)
}

/// Imports the deletes of L0 segments (2.4+) after the data they apply to:
/// partition-level ones into their partition, collection-level ones into all.
async fn import_l0_segments(ctx: &Context, place: &Place<'_>, t: &RestoreTarget) -> Result<()> {
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
        let layout = ctx.catalog.layout();
        let dir = format!(
            "{}{}/",
            layout.partition_dir(
                place.backup_name,
                LogKind::Delta,
                src.collection_id,
                seg.partition_id
            ),
            seg.segment_id
        );
        let request = ImportRequest {
            db: t.target.db.clone(),
            collection: t.target.name.clone(),
            partition: partition.to_string(),
            files: stage(ctx, place, &[dir]).await?,
            options: place.version.l0_import_options(src.backup_timestamp),
        };
        for task in ctx.milvus.import(&request).await? {
            wait_import(ctx, t, partition, task).await?;
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
        for o in ctx.catalog.store().list(dir).await? {
            tasks.push(CopyTask {
                dst_key: staged(&o.key),
                src_key: o.key,
                size: o.size,
                owner: 0,
            });
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
        .loading_progress(&target.db, &target.name)
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
async fn wait_import(ctx: &Context, t: &RestoreTarget, partition: &str, task: i64) -> Result<i64> {
    let started = Instant::now();
    let operation = || format!("Import into {}/{partition}", t.target);
    loop {
        // Milvus 2.3.5's proxy crashes (nil pointer in GetImportState) when
        // asked about an import whose collection was dropped: never ask then.
        if !ctx
            .milvus
            .has_collection(&t.target.db, &t.target.name)
            .await?
        {
            return Err(Error::FailedPrecondition(format!(
                "{} was dropped while import task {task} ran; the restore cannot finish",
                t.target
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
