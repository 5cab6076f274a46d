//! The imports of one collection: each partition's data, then the deletes of
//! its L0 segments. Each import is recorded in the job's record before Milvus
//! is asked for it and again with Milvus's task ids, so that a server that
//! resumes the job (its own server died) neither repeats an import nor skips
//! one. Only an import recorded as being asked for, without task ids, is
//! looked up in Milvus's task list: the dead server may or may not have
//! reached Milvus.

use std::time::{Duration, Instant, UNIX_EPOCH};

use tracing::info;

use super::prove;
use super::staging::{import_path, stage};
use super::{Place, status};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{ImportRecord, JobHandle, RestoreSnapshot};
use crate::meta::LogKind;
use crate::meta::model::{CollectionBackupInfo, PartitionBackupInfo, SegmentBackupInfo};
use crate::milvus::{ImportPhase, ImportRequest, ended_by};
use crate::model::CollectionRef;
use crate::restore::RestoreTarget;

/// How much older than the job Milvus's clock may date an import the job
/// started (clocks of different machines).
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The collection being filled.
pub(super) struct Filling<'a> {
    pub name: &'a CollectionRef,
    /// Its id in Milvus.
    pub id: i64,
    /// This job created it: every row in it came from this job.
    pub created: bool,
}

/// An import this job asked for.
enum Import {
    /// Completed before: its rows.
    Done(i64),
    /// Milvus's tasks, to wait for.
    Running(Vec<i64>),
}

/// Imports of one collection asked for and not yet seen to end, at most:
/// Milvus 2.3 runs one at a time, and each one queued sits in its root
/// coordinator's task list.
const IMPORTS_QUEUED: usize = 8;

/// One Import call: a whole partition, or one segment group of a partition
/// larger than `backup.maxSegmentGroupSize`.
struct Unit<'a> {
    part: &'a PartitionBackupInfo,
    /// What its record is kept under: the partition's name, or
    /// `{partition}/{group}` for a group (a partition name has no `/`).
    key: String,
    /// Its backup folders: insert logs, then delta logs when it has any.
    dirs: Vec<String>,
    bytes: u64,
    files: u64,
}

/// Imports every partition with data, then the L0 deletes; returns the rows
/// imported. Milvus 2.3 fails an import still queued or running 15 minutes
/// (`importTaskExpiration`) after it was asked for, so a large partition is
/// imported group by group, and imports are asked for ahead of the one
/// awaited only while those queued hold at most `maxSegmentGroupSize` bytes
/// (and are at most [`IMPORTS_QUEUED`]).
pub(super) async fn import_partitions(
    ctx: &Context,
    place: &Place<'_>,
    t: &RestoreTarget,
    into: &Filling<'_>,
    job: &JobHandle<RestoreSnapshot>,
) -> Result<i64> {
    let src = &t.source;
    let recorded = job.snapshot();
    let recorded: Vec<&str> = recorded
        .collections
        .iter()
        .filter(|c| c.target == t.target)
        .flat_map(|c| c.imports.iter().map(|r| r.key.as_str()))
        .collect();
    let units: Vec<Unit> = src
        .partition_backups
        .iter()
        .flat_map(|part| import_units(ctx, place, src, part, &recorded))
        .collect();
    let mut running: std::collections::VecDeque<(Unit, Import)> = Default::default();
    let mut rows = 0;
    for unit in units {
        let storage_version = unit
            .part
            .segment_backups
            .iter()
            .filter(|s| !s.is_l0)
            .map(|s| s.storage_version)
            .max()
            .unwrap_or(0);
        let dirs = &unit.dirs;
        let first = import_path(ctx, place, &dirs[0]);
        let request = || async {
            let mut files = stage(ctx, place, &dirs[..1]).await?;
            match dirs.get(1) {
                Some(delta) => files.extend(stage(ctx, place, std::slice::from_ref(delta)).await?),
                None => files.push(String::new()),
            }
            Ok(ImportRequest {
                db: into.name.db().to_string(),
                collection: into.name.name().to_string(),
                partition: unit.part.partition_name.clone(),
                files,
                options: place
                    .version
                    .import_options(src.backup_timestamp, storage_version),
            })
        };
        loop {
            let queued: u64 = running.iter().map(|(u, _)| u.bytes).sum();
            let full = running.len() >= IMPORTS_QUEUED
                || queued.saturating_add(unit.bytes) > ctx.segment_group_bytes;
            match running.pop_front() {
                Some((ahead, import)) if full => {
                    rows += finish_import(ctx, t, into, job, &ahead, import).await?
                }
                Some(ahead) => break running.push_front(ahead),
                None => break,
            }
        }
        // An import recorded as asked for without its tasks (the job's server
        // died around the ask) is looked for in Milvus, and otherwise judged
        // by the rows stored: the imports queued before it end first.
        if pending_ask(job, t, &unit.key) {
            while let Some((ahead, import)) = running.pop_front() {
                rows += finish_import(ctx, t, into, job, &ahead, import).await?;
            }
        }
        let partition = &unit.part.partition_name;
        let import = import_once(ctx, t, into, &unit.key, partition, &first, request, job).await?;
        running.push_back((unit, import));
    }
    crate::failpoint::pause_at("restore.importing").await;
    crate::failpoint::pause_at(&format!("restore.importing:{}", t.target)).await;
    while let Some((unit, import)) = running.pop_front() {
        rows += finish_import(ctx, t, into, job, &unit, import).await?;
    }
    import_l0_segments(ctx, place, t, into, job).await?;
    Ok(rows)
}

/// Whether import `key` of target `t` is recorded as asked for, without its
/// tasks and not done.
fn pending_ask(job: &JobHandle<RestoreSnapshot>, t: &RestoreTarget, key: &str) -> bool {
    job.snapshot()
        .collections
        .iter()
        .filter(|c| c.target == t.target)
        .flat_map(|c| &c.imports)
        .any(|r| r.key == key && !r.done && r.tasks.is_empty())
}

/// The Import calls of one partition: one for all of it, or one per segment
/// group when it is larger than `maxSegmentGroupSize` and every segment has
/// a group folder. A partition this job (or its server that died) began to
/// import one way goes on that way, whatever the setting says now.
fn import_units<'a>(
    ctx: &Context,
    place: &Place<'_>,
    src: &CollectionBackupInfo,
    part: &'a PartitionBackupInfo,
    recorded: &[&str],
) -> Vec<Unit<'a>> {
    let data: Vec<&SegmentBackupInfo> = part.segment_backups.iter().filter(|s| !s.is_l0).collect();
    if data.is_empty() {
        return Vec::new();
    }
    let name = &part.partition_name;
    let group_key = |g: i64| format!("{name}/{g}");
    let mut groups: Vec<i64> = data.iter().map(|s| s.group_id).collect();
    groups.sort_unstable();
    groups.dedup();
    let bytes =
        |segs: &[&SegmentBackupInfo]| segs.iter().map(|s| s.size.max(0) as u64).sum::<u64>();
    let files = |segs: &[&SegmentBackupInfo]| -> u64 {
        segs.iter()
            .flat_map(|s| s.binlogs.iter().chain(&s.deltalogs))
            .map(|f| f.binlogs.len() as u64)
            .sum()
    };
    let size = bytes(&data).max(part.size.max(0) as u64);
    let split = groups.len() > 1
        && !groups.contains(&0)
        && !recorded.contains(&name.as_str())
        && (size > ctx.segment_group_bytes
            || groups
                .iter()
                .any(|g| recorded.contains(&group_key(*g).as_str())));
    let layout = ctx.catalog.layout();
    let (backup, coll, part_id) = (place.backup_name, src.collection_id, part.partition_id);
    let unit = |key: String, segs: Vec<&SegmentBackupInfo>, dir: &dyn Fn(LogKind) -> String| {
        let has_deltas = segs
            .iter()
            .any(|s| s.deltalogs.iter().any(|f| !f.binlogs.is_empty()));
        let mut dirs = vec![dir(LogKind::Insert)];
        if has_deltas {
            dirs.push(dir(LogKind::Delta));
        }
        Unit {
            part,
            key,
            dirs,
            bytes: bytes(&segs),
            files: files(&segs),
        }
    };
    let mut units: Vec<Unit> = if split {
        groups
            .into_iter()
            .map(|g| {
                let segs = data.iter().copied().filter(|s| s.group_id == g).collect();
                let dir = |kind| layout.group_dir(backup, kind, coll, part_id, g);
                unit(group_key(g), segs, &dir)
            })
            .collect()
    } else {
        let dir = |kind| layout.partition_dir(backup, kind, coll, part_id);
        vec![unit(name.clone(), data, &dir)]
    };
    for u in units.iter().filter(|u| u.bytes > ctx.segment_group_bytes) {
        tracing::warn!(
            import = %u.key,
            bytes = u.bytes,
            limit = ctx.segment_group_bytes,
            "one import larger than backup.maxSegmentGroupSize (a partition without \
             segment groups, or one group): Milvus fails an import not done within its \
             importTaskExpiration (15 minutes by default)"
        );
    }
    // The partition's L0 segments count in the progress of its last import.
    let l0: Vec<&SegmentBackupInfo> = part.segment_backups.iter().filter(|s| s.is_l0).collect();
    if let Some(last) = units.last_mut() {
        last.bytes += bytes(&l0);
        last.files += files(&l0);
    }
    units
}

/// Waits for the import of `unit` to end and records it done; its rows.
async fn finish_import(
    ctx: &Context,
    t: &RestoreTarget,
    into: &Filling<'_>,
    job: &JobHandle<RestoreSnapshot>,
    unit: &Unit<'_>,
    import: Import,
) -> Result<i64> {
    let tasks = match import {
        Import::Done(n) => return Ok(n),
        Import::Running(tasks) => tasks,
    };
    let mut imported = 0;
    for task in tasks {
        imported += wait_import(ctx, into, &unit.part.partition_name, task).await?;
    }
    job.checkpoint(|s| {
        let r = record(s, t, &unit.key);
        r.done = true;
        r.rows = imported;
        s.progress.bytes_done += unit.bytes;
        s.progress.files_done += unit.files;
    })
    .await?;
    Ok(imported)
}

/// Asks Milvus for one import unless this job (here, or on its server that
/// died) already did: the recorded tasks, or, for an import recorded as
/// being asked for without its tasks, the matching tasks in Milvus's list.
#[allow(clippy::too_many_arguments)]
async fn import_once<F, Fut>(
    ctx: &Context,
    t: &RestoreTarget,
    into: &Filling<'_>,
    key: &str,
    partition: &str,
    first_path: &str,
    request: F,
    job: &JobHandle<RestoreSnapshot>,
) -> Result<Import>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<ImportRequest>>,
{
    let snapshot = job.snapshot();
    let recorded = snapshot
        .collections
        .iter()
        .find(|c| c.target == t.target)
        .and_then(|c| c.imports.iter().find(|r| r.key == key))
        .cloned();
    match recorded {
        Some(r) if r.done => return Ok(Import::Done(r.rows)),
        Some(r) if !r.tasks.is_empty() => {
            // Asking Milvus 2.3.5 about an import whose collection was
            // dropped crashes its proxy: tasks asked into a collection that
            // is no longer under the name are never asked about.
            if let Some(asked) = r.into_id
                && asked != into.id
            {
                return Err(Error::FailedPrecondition(format!(
                    "the imports of {} this restore asked for went into the collection of id \
                     {asked}, which is no longer under the name (now id {}); the restore cannot go on",
                    into.name, into.id
                )));
            }
            return Ok(Import::Running(r.tasks));
        }
        Some(_) => {
            let since = snapshot
                .start_time
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_sub(CLOCK_SKEW)
                .as_secs() as i64;
            let found: Vec<i64> = ctx
                .milvus
                .collection_imports(into.name.db(), into.name.name())
                .await?
                .into_iter()
                .filter(|task| {
                    task.collection_id == into.id
                        && task.partition == partition
                        && task.created_at_s >= since
                        && task.files.first().map(String::as_str) == Some(first_path)
                })
                .map(|task| task.task)
                .collect();
            if !found.is_empty() {
                info!(
                    restore = %snapshot.id,
                    collection = %into.name,
                    partition,
                    tasks = ?found,
                    "Milvus had the import the job's previous server asked for: its tasks are followed"
                );
                job.checkpoint(|s| record(s, t, key).tasks = found.clone())
                    .await?;
                return Ok(Import::Running(found));
            }
            // Milvus keeps ended tasks for a while only: rows in a partition
            // this job created, beyond its imports recorded done, mean the
            // import happened (or one asked before it, not yet recorded
            // done: the restore then fails rather than risk rows twice).
            if into.created && !key.starts_with("l0:") {
                let group_of = format!("{partition}/");
                let counted: i64 = snapshot
                    .collections
                    .iter()
                    .filter(|c| c.target == t.target)
                    .flat_map(|c| &c.imports)
                    .filter(|r| r.done && (r.key == partition || r.key.starts_with(&group_of)))
                    .map(|r| r.rows)
                    .sum();
                let stored = partition_rows(ctx, into, partition).await?;
                if stored > counted {
                    return Err(Error::FailedPrecondition(format!(
                        "partition {partition} of {} holds {stored} rows ({counted} from imports \
                         recorded done), but Milvus no longer lists the import the job's previous \
                         server asked for; it is not imported again",
                        into.name
                    )));
                }
            }
        }
        None => {
            job.checkpoint(|s| {
                status(s, t).imports.push(ImportRecord {
                    key: key.to_string(),
                    tasks: Vec::new(),
                    done: false,
                    rows: 0,
                    into_id: Some(into.id),
                })
            })
            .await?;
        }
    }
    let request = request().await?;
    // Bounded to end while the job holds its leases: a takeover finding no
    // task recorded asks for the import itself, and a late ask of ours
    // would import the rows twice.
    let by = job.calls_end_by(ctx.leases().ttl() / 3).await?;
    // Milvus imports by name: the collection under it must still be the one
    // this job created or checked (a resumed job's record names it; the user
    // may have made another one under the name meanwhile). Read last, right
    // before the import is asked.
    let (db, name) = (into.name.db(), into.name.name());
    let now = ended_by(by, ctx.milvus.collection_id(db, name)).await?;
    if now != Some(into.id) {
        return Err(Error::FailedPrecondition(format!(
            "{} is no longer the collection this restore {} (id {now:?}, was {}); \
             nothing was imported into it",
            into.name,
            if into.created { "created" } else { "checked" },
            into.id
        )));
    }
    // Asked for and recorded as one step that a cancel does not cut:
    // cleanup, and a server resuming the job, follow the recorded tasks.
    let (ctx, t, key, handle) = (ctx.clone(), t.clone(), key.to_string(), job.clone());
    let tasks = job
        .uninterrupted(async move {
            let tasks = ended_by(by, ctx.milvus.import(&request)).await?;
            crate::failpoint::pause_at("restore.import_asked").await;
            handle
                .keep(|s| record(s, &t, &key).tasks = tasks.clone())
                .await?;
            Ok(tasks)
        })
        .await?;
    Ok(Import::Running(tasks))
}

/// The rows stored in `partition` of the collection being filled.
async fn partition_rows(ctx: &Context, into: &Filling<'_>, partition: &str) -> Result<i64> {
    let (db, name) = (into.name.db(), into.name.name());
    let Some(id) = ctx
        .milvus
        .list_partitions(db, name)
        .await?
        .into_iter()
        .find(|p| p.name == partition)
        .map(|p| p.id)
    else {
        return Ok(0);
    };
    Ok(ctx
        .milvus
        .persistent_segments(db, name)
        .await?
        .iter()
        .filter(|s| s.partition_id == id)
        .map(|s| s.num_rows)
        .sum())
}

/// The record of import `key` into target `t`.
fn record<'a>(s: &'a mut RestoreSnapshot, t: &RestoreTarget, key: &str) -> &'a mut ImportRecord {
    status(s, t)
        .imports
        .iter_mut()
        .find(|r| r.key == key)
        .expect("an import is recorded before it is asked for")
}

/// Imports the deletes of L0 segments (2.4+) after the data they apply to:
/// partition-level ones into their partition, collection-level ones into all.
async fn import_l0_segments(
    ctx: &Context,
    place: &Place<'_>,
    t: &RestoreTarget,
    into: &Filling<'_>,
    job: &JobHandle<RestoreSnapshot>,
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
        let first = import_path(ctx, place, &dir);
        let request = || async {
            Ok(ImportRequest {
                db: into.name.db().to_string(),
                collection: into.name.name().to_string(),
                partition: partition.to_string(),
                files: stage(ctx, place, std::slice::from_ref(&dir)).await?,
                options: place.version.l0_import_options(src.backup_timestamp),
            })
        };
        let key = format!("l0:{}", seg.segment_id);
        if let Import::Running(tasks) =
            import_once(ctx, t, into, &key, partition, &first, request, job).await?
        {
            for task in tasks {
                wait_import(ctx, into, partition, task).await?;
            }
            job.checkpoint(|s| record(s, t, &key).done = true).await?;
        }
    }
    Ok(())
}

/// Polls one import task until it ends; returns the rows it imported.
async fn wait_import(ctx: &Context, into: &Filling<'_>, partition: &str, task: i64) -> Result<i64> {
    let started = Instant::now();
    let (id, into) = (into.id, into.name);
    let operation = || format!("Import into {into}/{partition}");
    loop {
        // Milvus 2.3.5's proxy crashes (nil pointer in GetImportState) when
        // asked about an import whose collection was dropped: never ask then.
        // The task belongs to the collection by id: one made again under the
        // name (or an alias now named so) does not make asking safe.
        let now = ctx.milvus.collection_id(into.db(), into.name()).await?;
        if now != Some(id) {
            return Err(Error::FailedPrecondition(format!(
                "{into} (id {id}) was dropped{} while import task {task} ran; \
                 the restore cannot finish",
                match now {
                    Some(other) => format!(" and made again (id {other})"),
                    None => String::new(),
                }
            )));
        }
        // A failed ask is asked again next time round, after the collection
        // is checked again (the client does not repeat this call itself).
        let status = match ctx.milvus.import_state(task).await {
            Ok(status) => status,
            Err(e)
                if crate::retry::milvus_transient(&e)
                    && started.elapsed() < ctx.timing.import_timeout =>
            {
                tracing::warn!(task, error = %e, "cannot read the import's state; asked again");
                tokio::time::sleep(ctx.timing.poll_interval.max(Duration::from_secs(1))).await;
                continue;
            }
            Err(e) => return Err(e),
        };
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
