//! One restore job: for each collection, create it, import its partitions,
//! then build its indexes and load it when asked.

use std::time::Instant;

use crate::backup::schema;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{JobHandle, JobState, RestoreSnapshot};
use crate::meta::LogKind;
use crate::meta::model::{BackupInfo, CollectionBackupInfo, PartitionBackupInfo};
use crate::milvus::{ImportPhase, ImportRequest, IndexInfo, NewCollection};
use crate::names::DEFAULT_DB;
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
    // Milvus imports only from its own bucket: stage the binlogs there when needed.
    let staging =
        (!ctx.backups_in_milvus_bucket()).then(|| format!("restore-temp-{}/", job.snapshot().id));

    let mut result = Ok(());
    for (i, t) in targets.iter().enumerate() {
        job.update(|s| s.collections[i].state = JobState::Running);
        match restore_collection(ctx, req, &backup.name, t, staging.as_deref(), job).await {
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
        .flat_map(|s| s.binlogs.iter().chain(&s.deltalogs))
        .map(|f| f.binlogs.len() as u64)
        .sum()
}

/// Restores one collection; returns the rows Milvus imported.
async fn restore_collection(
    ctx: &Context,
    req: &RestoreRequest,
    backup_name: &str,
    t: &RestoreTarget,
    staging: Option<&str>,
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
        rows = import_partitions(ctx, backup_name, t, staging, job).await?;
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
    if req.load {
        milvus.load_collection(db, name).await?;
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

/// Imports every partition with data, all started before any is awaited.
async fn import_partitions(
    ctx: &Context,
    backup_name: &str,
    t: &RestoreTarget,
    staging: Option<&str>,
    job: &JobHandle<RestoreSnapshot>,
) -> Result<i64> {
    let src = &t.source;
    let mut running = Vec::new();
    for part in src
        .partition_backups
        .iter()
        .filter(|p| !p.segment_backups.is_empty())
    {
        let files = import_files(ctx, backup_name, src, part, staging).await?;
        let request = ImportRequest {
            db: t.target.db.clone(),
            collection: t.target.name.clone(),
            partition: part.partition_name.clone(),
            files,
            options: import_options(src),
        };
        let tasks = ctx.milvus.import(&request).await?;
        running.push((part, tasks));
    }

    let mut rows = 0;
    for (part, tasks) in running {
        for task in tasks {
            rows += wait_import(ctx, t, part, task).await?;
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
    Ok(rows)
}

/// `backup=true`, and `end_ts` so that nothing after the flush leaks in. Milvus
/// 2.3 reads `end_ts` as physical milliseconds: round up, or rows written in
/// the flush's own millisecond are dropped.
fn import_options(src: &CollectionBackupInfo) -> Vec<(String, String)> {
    let mut options = vec![("backup".to_string(), "true".to_string())];
    if src.backup_timestamp > 0 {
        options.push((
            "end_ts".into(),
            ((src.backup_timestamp >> 18) + 1).to_string(),
        ));
    }
    options
}

/// `[insert_prefix/, delta_prefix/ or ""]` inside Milvus's bucket, staging the
/// partition's binlogs there first when the backup lives elsewhere.
async fn import_files(
    ctx: &Context,
    backup_name: &str,
    src: &CollectionBackupInfo,
    part: &PartitionBackupInfo,
    staging: Option<&str>,
) -> Result<Vec<String>> {
    let layout = ctx.catalog.layout();
    let insert = layout.partition_dir(
        backup_name,
        LogKind::Insert,
        src.collection_id,
        part.partition_id,
    );
    let has_deltas = part
        .segment_backups
        .iter()
        .any(|s| s.deltalogs.iter().any(|f| !f.binlogs.is_empty()));
    let delta = if has_deltas {
        layout.partition_dir(
            backup_name,
            LogKind::Delta,
            src.collection_id,
            part.partition_id,
        )
    } else {
        String::new()
    };
    let Some(staging) = staging else {
        return Ok(vec![insert, delta]);
    };
    let backup_prefix = layout.backup_prefix(backup_name);
    let staged = |key: &str| join_key([staging, &key[backup_prefix.len()..]]);
    let mut tasks = Vec::new();
    for dir in [&insert, &delta].into_iter().filter(|d| !d.is_empty()) {
        for o in ctx.catalog.store().list(dir).await? {
            tasks.push(CopyTask {
                dst_key: staged(&o.key),
                src_key: o.key,
                size: o.size,
            });
        }
    }
    ctx.copier
        .copy_all(
            ctx.catalog.store().as_ref(),
            ctx.milvus_store.as_ref(),
            tasks,
            |_| {},
        )
        .await?;
    let staged_dir = |d: &str| {
        if d.is_empty() {
            String::new()
        } else {
            format!("{}/", staged(d))
        }
    };
    Ok(vec![staged_dir(&insert), staged_dir(&delta)])
}

/// Polls one import task until it ends; returns the rows it imported.
async fn wait_import(
    ctx: &Context,
    t: &RestoreTarget,
    part: &PartitionBackupInfo,
    task: i64,
) -> Result<i64> {
    let started = Instant::now();
    loop {
        let status = ctx.milvus.import_state(task).await?;
        match status.phase {
            ImportPhase::Completed => return Ok(status.row_count),
            ImportPhase::Failed(reason) => {
                return Err(Error::milvus(
                    format!("Import into {}/{}", t.target, part.partition_name),
                    reason,
                ));
            }
            ImportPhase::Running if started.elapsed() > ctx.timing.import_timeout => {
                return Err(Error::milvus(
                    format!("Import into {}/{}", t.target, part.partition_name),
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
