//! One backup job, from the flush to the meta.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;

use super::phases::Phases;
use crate::backup::collect::{CollectedCollection, collect, flush_all, unix_millis, unix_seconds};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{BackupSnapshot, JobHandle, JobState, Lease, Reuse};
use crate::meta::manifest::{Manifest, ManifestEntry};
use crate::meta::model::{BACKUP_SUCCESS, BackupInfo, IncrementalInfo};
use crate::meta::scan::Listed;
use crate::meta::summary::{snapshot_of, summary_of};
use crate::milvus::MilvusVersion;
use crate::model::{BackupRequest, CollectionRef};
use crate::storage::{CopyTask, ObjectInfo};

/// Backs up `collections`, publishing progress on `job`. Writes the meta last:
/// until it is written the backup is not listed as complete.
pub async fn run(
    ctx: &Context,
    req: &BackupRequest,
    collections: &[CollectionRef],
    job: &JobHandle<BackupSnapshot>,
) -> Result<()> {
    let started = std::time::Instant::now();
    // A resumed job follows the plan its dead server wrote after the flush;
    // a folder that holds anything else is not its to continue.
    let job_id = job.snapshot().id;
    let planned = match req.resumes() {
        true => match super::resume::load_plan(ctx, req.name()).await? {
            Some(p) if p.job == job_id => Some(p),
            Some(p) => {
                return Err(Error::FailedPrecondition(format!(
                    "backup {} holds the plan of job {}, not of job {job_id}; it is not resumed",
                    req.name(),
                    p.job
                )));
            }
            None if ctx.catalog.is_taken(req.name()).await? => {
                return Err(Error::FailedPrecondition(format!(
                    "backup {} holds objects that no plan of job {job_id} names; it is not resumed",
                    req.name()
                )));
            }
            None => None,
        },
        false => None,
    };
    let resumed = planned.is_some();
    let started_ms = planned.as_ref().map_or_else(unix_millis, |p| p.started_ms);
    // A partial plan: the dead server had claimed the folder, not described it.
    let planned = planned.and_then(|p| p.collected);
    job.update(|s| {
        s.state = JobState::Running;
        s.progress.collections_total = collections.len() as u32;
        s.backup_timestamp_ms = started_ms as u64;
    });
    let version = ctx.milvus.version().await?;
    job.update(|s| s.milvus_version = version.to_string());
    let incremental = req.incremental().unwrap_or(ctx.incremental_by_default);
    // A resumed job keeps what its dead server copied already.
    let present = match resumed {
        true => Some(super::resume::present(ctx, req.name()).await?),
        false => None,
    };
    let mut phase = Phases::new(job, req.name().as_str(), started);
    let streams = planned.is_none() && !req.meta_only() && !incremental;
    let (mut collected, copied) = if streams {
        let s = super::pipeline::describe_and_copy(
            ctx,
            req,
            collections,
            version,
            job,
            present.as_ref(),
            started_ms,
            &mut phase,
        )
        .await?;
        phase.end("copy");
        let copied = CopiedObjects {
            objects: s.objects,
            ..Default::default()
        };
        (s.collected, copied)
    } else {
        let publish = |c: &CollectedCollection| {
            let summary = summary_of(&c.info);
            job.update(|s| {
                s.progress.bytes_total += c.objects.iter().map(|(o, _)| o.size).sum::<u64>();
                s.progress.files_total += c.objects.len() as u64;
                s.collections.push(summary);
            });
        };
        let (collected, listed) = match planned {
            Some(plan) => {
                job.update(|s| s.progress.collections_total = plan.len() as u32);
                plan.iter().for_each(publish);
                phase.end("read the plan");
                (plan, None)
            }
            None => {
                // An incremental backup lists the other backups while Milvus
                // reaches its flush point.
                let listing = async {
                    match incremental {
                        true => ctx.catalog.listed().await.map(Some),
                        false => Ok(None),
                    }
                };
                let (collected, listed) = tokio::try_join!(
                    describe_all(ctx, req, collections, version, publish),
                    listing
                )?;
                let job_id = job.snapshot().id;
                super::resume::save_plan(ctx, req.name(), &job_id, started_ms, &collected).await?;
                phase.end("describe, flush and list");
                (collected, listed)
            }
        };
        let reuses = match incremental {
            true => Reuses::FromOthers(listed),
            false => Reuses::Nothing,
        };
        let copied = copy_planned(
            ctx,
            req,
            &collected,
            reuses,
            present.as_ref(),
            job,
            &mut phase,
        )
        .await?;
        (collected, copied)
    };
    let CopiedObjects {
        mut objects,
        reuse,
        holds,
    } = copied;
    let objects_listed: usize = collected.iter().map(|c| c.objects.len()).sum();
    for c in &mut collected {
        c.info.state_code = BACKUP_SUCCESS;
        c.info.progress = 100;
        c.info.end_time = unix_seconds();
    }

    let collection_backups: Vec<_> = collected.into_iter().map(|c| c.info).collect();
    let size = collection_backups.iter().map(|c| c.size).sum::<i64>();
    let info = BackupInfo {
        id: job.snapshot().id,
        state_code: BACKUP_SUCCESS,
        start_time: started_ms,
        end_time: unix_millis(),
        progress: 100,
        name: req.name().to_string(),
        backup_timestamp: started_ms as u64,
        collection_backups,
        size,
        milvus_version: version.to_string(),
        incremental: reuse.map(|r| IncrementalInfo {
            based_on: r.based_on,
            reused_files: r.files,
            reused_bytes: r.bytes,
        }),
        ..Default::default()
    };
    // The objects reused must still be there: a base whose hold was lost,
    // or may expire before the meta is written, may be being deleted.
    // A renewal answered late is waited for; an expired hold is not.
    let margin = ctx.leases().ttl() / 3;
    for (base, hold) in &holds {
        if hold.lost().is_cancelled() || hold.fence().hold_for(margin).await.is_err() {
            return Err(Error::Aborted(format!(
                "incremental backup {} lost its hold on base backup {base:?}; it is not completed",
                req.name()
            )));
        }
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    // Still the name's holder, with time to spare for the meta writes: a
    // process paused past its lease (another may be resuming the backup)
    // writes no meta.
    job.hold_for(margin).await?;
    let manifest = Manifest {
        version: 1,
        objects,
    };
    let holds = holds.into_values().collect();
    job.uninterrupted(commit(
        ctx.clone(),
        job.clone(),
        info,
        manifest,
        holds,
        margin,
    ))
    .await?;
    phase.end("meta");
    tracing::info!(
        backup = %req.name(),
        collections = collections.len(),
        objects = objects_listed,
        seconds = started.elapsed().as_secs_f64(),
        phases = %phase,
        "backed up"
    );
    Ok(())
}

/// Writes the meta, the commit point last, then lets go of the bases and
/// publishes the backup. Run to its end whatever a cancel says: once the
/// commit point is written the backup is complete, and the job says so.
async fn commit(
    ctx: Context,
    job: JobHandle<BackupSnapshot>,
    info: BackupInfo,
    manifest: Manifest,
    holds: Vec<Lease>,
    margin: std::time::Duration,
) -> Result<()> {
    // Every meta write, the commit point too, is made while the holds on
    // the bases still stand: a base whose hold expired may be being deleted.
    let fences: Vec<_> = job
        .fences()
        .iter()
        .cloned()
        .chain(holds.iter().map(Lease::fence))
        .collect();
    ctx.catalog.write(&info, &manifest, &fences, margin).await?;
    job.reached_commit_point();
    crate::failpoint::pause_at("backup.committed").await;
    // Complete: its meta names what it references, and a delete of a base keeps it.
    crate::jobs::lease::release_all(holds).await;
    // Listed fast from now on; a backup without its entry is still listed.
    let publish = async {
        // Past its lease, a delete may already have withdrawn the entry.
        if job.fence().is_err() {
            tracing::warn!(backup = %info.name, "the backup's lease expired: it is not added to the catalog index");
            return;
        }
        if let Err(e) = ctx.catalog.publish(&snapshot_of(&info)).await {
            tracing::warn!(backup = %info.name, error = %e, "cannot add the backup to the catalog index");
        }
    };
    tokio::join!(super::resume::drop_plan(&ctx, &info.name), publish);
    job.update(|s| s.size_bytes = info.size.max(0) as u64);
    Ok(())
}

/// What the copy phase leaves for the meta: every object the backup
/// holds, what it reuses, and its holds on the backups it reuses from.
#[derive(Default)]
struct CopiedObjects {
    objects: Vec<ManifestEntry>,
    reuse: Option<Reuse>,
    holds: BTreeMap<String, Lease>,
}

/// Flushes and describes every collection (a few at once) before anything is
/// copied: for an incremental backup, which chooses what to reuse from the
/// whole, and for a backup of the meta only.
async fn describe_all(
    ctx: &Context,
    req: &BackupRequest,
    collections: &[CollectionRef],
    version: MilvusVersion,
    publish: impl Fn(&CollectedCollection),
) -> Result<Vec<CollectedCollection>> {
    // Every collection is flushed first, in as few requests as Milvus takes:
    // their flush points pass together.
    let flushes = match req.meta_only() {
        true => vec![None; collections.len()],
        false => flush_all(ctx, collections)
            .await?
            .into_iter()
            .map(Some)
            .collect(),
    };
    // (A Vec of futures, not a closure in the stream: keeps the job's future `Send`.)
    let describe: Vec<_> = collections
        .iter()
        .zip(flushes)
        .map(|(coll, flush)| collect(ctx, coll, flush, version))
        .collect();
    let mut describing = futures::stream::iter(describe).buffered(ctx.collections_at_once);
    let mut out = Vec::with_capacity(collections.len());
    while let Some(c) = describing.next().await {
        let c = c?;
        publish(&c);
        out.push(c);
    }
    Ok(out)
}

/// Whether a backup reuses what other backups hold (incremental), with the
/// catalog as listed for it already (`None`: listed when reuse is planned).
enum Reuses {
    Nothing,
    FromOthers(Option<Listed>),
}

/// Copies the objects of `collected` that are neither reused nor kept from
/// `present` (a dead server's copies equal to their source), then removes
/// the objects of the folder the plan does not name.
async fn copy_planned(
    ctx: &Context,
    req: &BackupRequest,
    collected: &[CollectedCollection],
    reuses: Reuses,
    present: Option<&HashMap<String, ObjectInfo>>,
    job: &JobHandle<BackupSnapshot>,
    phase: &mut Phases<'_>,
) -> Result<CopiedObjects> {
    let resumed = present.is_some();
    let no_present = HashMap::new();
    let present = present.unwrap_or(&no_present);
    // Then one stream of copies over all collections, so the copy bound stays
    // busy however the objects are spread.
    let layout = ctx.catalog.layout();
    let backup_prefix = layout.backup_prefix(req.name());
    let incremental = matches!(reuses, Reuses::FromOthers(_));
    let (reusable, holds) = if let Reuses::FromOthers(listed) = reuses {
        let ids: HashSet<i64> = collected.iter().map(|c| c.info.collection_id).collect();
        let mut reusable = super::reuse::reusable(&ctx.catalog, listed, req.name(), &ids).await?;
        let mut picked: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (o, group) in collected.iter().flat_map(|c| &c.objects) {
            let Some(key) = layout.backup_key(req.name(), &ctx.milvus_layout, &o.key, *group)
            else {
                continue;
            };
            let rel = &key[backup_prefix.len()..];
            if let Some(e) = reusable.get(rel)
                && e.same_object(o.size, o.etag.as_deref())
            {
                picked
                    .entry(e.home.clone())
                    .or_default()
                    .push(rel.to_string());
            }
        }
        let id = job.snapshot().id;
        crate::failpoint::pause_at("backup.incremental.bases_chosen").await;
        let holds = super::reuse::hold_bases(ctx, &id, req.name(), picked, &mut reusable).await;
        crate::failpoint::pause_at("backup.incremental.bases_held").await;
        (reusable, holds)
    } else {
        Default::default()
    };
    let mut planned = HashSet::new();
    let mut kept = Vec::new();
    let mut tasks = Vec::new();
    let mut reused = Vec::new();
    let mut remaining = Vec::with_capacity(collected.len());
    for (i, c) in collected.iter().enumerate() {
        let mut to_copy = 0;
        for (dst_key, o) in c.destinations(ctx, req.name())? {
            let rel = &dst_key[backup_prefix.len()..];
            // Copied already by a dead server (resumed).
            let have = present
                .get(&dst_key)
                .and_then(|h| super::resume::kept(h, rel, o.size, o.etag.as_deref()));
            match reusable.get(rel) {
                Some(e)
                    if holds.contains_key(&e.home) && e.same_object(o.size, o.etag.as_deref()) =>
                {
                    reused.push(e.clone());
                }
                _ if have.is_some() => {
                    planned.insert(dst_key.clone());
                    kept.extend(have);
                }
                _ => {
                    planned.insert(dst_key.clone());
                    to_copy += 1;
                    tasks.push(CopyTask {
                        src_key: o.key.clone(),
                        dst_key,
                        size: o.size,
                        owner: i,
                    });
                }
            }
        }
        remaining.push(AtomicUsize::new(to_copy));
    }
    phase.end("plan reuse");
    let reuse = incremental.then(|| Reuse {
        based_on: holds.keys().cloned().collect(),
        files: reused.len() as u64,
        bytes: reused.iter().map(|e| e.size).sum(),
    });
    let kept_bytes: u64 = kept.iter().map(|e| e.size).sum();
    if resumed {
        tracing::info!(
            backup = %req.name(),
            kept = kept.len(),
            kept_bytes,
            to_copy = tasks.len(),
            "resuming: objects the dead server copied are kept"
        );
    }
    job.update(|s| {
        if let Some(r) = &reuse {
            s.progress.bytes_done += r.bytes;
            s.progress.files_done += r.files;
        }
        s.progress.bytes_done += kept_bytes;
        s.progress.files_done += kept.len() as u64;
        s.reuse = reuse.clone();
    });
    // Collections without objects are done already.
    let empty = remaining
        .iter()
        .filter(|r| r.load(Ordering::Relaxed) == 0)
        .count() as u32;
    job.update(|s| s.progress.collections_done += empty);
    let manifest = std::sync::Mutex::new(Vec::with_capacity(tasks.len()));
    ctx.copier
        .copy_all(
            &ctx.milvus_store,
            ctx.catalog.store(),
            tasks,
            job.in_flight(),
            |t, copied| {
                manifest.lock().expect("manifest").push(ManifestEntry {
                    key: t.dst_key[backup_prefix.len()..].to_string(),
                    size: t.size,
                    crc32c: copied.crc32c,
                    etag: copied.etag.clone().unwrap_or_default(),
                    home: String::new(),
                });
                let finished = remaining[t.owner].fetch_sub(1, Ordering::Relaxed) == 1;
                job.update(|s| {
                    s.progress.bytes_done += t.size;
                    s.progress.files_done += 1;
                    s.progress.collections_done += u32::from(finished);
                })
            },
        )
        .await
        .map_err(|e| removed_by_milvus(e, resumed))?;
    phase.end("copy");
    let extras = super::resume::remove_extras(ctx, present, &planned).await?;
    if extras > 0 {
        tracing::info!(backup = %req.name(), objects = extras, "removed objects the resumed plan does not name");
    }
    let mut objects = manifest.into_inner().expect("manifest");
    objects.extend(reused);
    objects.extend(kept);
    Ok(CopiedObjects {
        objects,
        reuse,
        holds,
    })
}

/// A copy's source that is gone: Milvus removed a binlog of the flush point
/// (compaction, then garbage collection). The backup cannot hold it, and the
/// caller must back up again: FAILED_PRECONDITION, not a missing backup.
pub(super) fn removed_by_milvus(e: Error, resumed: bool) -> Error {
    match e {
        Error::NotFound {
            kind: "object",
            name,
        } if resumed => Error::FailedPrecondition(format!(
            "the backup cannot be resumed: Milvus removed {name}, part of its flush point, \
             since it began (compaction and garbage collection)"
        )),
        Error::NotFound {
            kind: "object",
            name,
        } => Error::FailedPrecondition(format!(
            "Milvus removed {name}, part of the backup's flush point, while it was copied \
             (compaction and garbage collection): back up again"
        )),
        e => e,
    }
}
