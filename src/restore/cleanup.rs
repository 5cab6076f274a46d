//! Cleanup of a restore that failed, was cancelled or was interrupted by a
//! crash. It owns collections by identity: it drops a collection only while
//! its current id is the one the job recorded when it created it, so a
//! collection that anyone else made under that name survives. Collections
//! whose restore succeeded stay. A replace that got past the point of no
//! return (the original dropped) is completed: the restored copy is renamed
//! to the target, so the target ends as the original or as the full copy.

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::context::Context;
use crate::error::{ErrorKind, Result};
use crate::jobs::{Fence, JobState, RestoreCollectionStatus, RestoreSnapshot, SwapStep};
use crate::milvus::{ImportPhase, ended_by};
use crate::model::CollectionRef;

/// How long cleanup waits for a collection's imports to end before dropping it.
const IMPORT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a cleanup keeps trying, in all, while Milvus cannot be reached
/// (a restart of Milvus fails the job, and the cleanup right after would
/// fail too). A shutdown waits for it.
const UNREACHABLE_RETRY: Duration = Duration::from_secs(90);

/// The longest wait between those tries.
const UNREACHABLE_MAX_WAIT: Duration = Duration::from_secs(15);

/// What cleanup did with one collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing of this job's was there (or the collection had succeeded).
    Nothing,
    /// The job's collection (or temporary copy) was dropped.
    Dropped(CollectionRef),
    /// The original was already gone: the restored copy took the target's name.
    SwapCompleted,
    /// A collection under the name is not the job's (another id): left alone.
    LeftAlone(String),
}

/// What cleanup did.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// What was done with each collection that did not succeed, by index.
    pub outcomes: Vec<(usize, Outcome)>,
    /// The staging prefix kept because an import may still read it.
    pub staging_left: Option<String>,
    /// Why imports may still read the backup's own folder (imported in
    /// place, from Milvus's bucket) after the job lets go of the backup.
    pub imports_in_place: Option<String>,
    /// The databases it could not drop, with why.
    pub databases_left: Vec<(String, String)>,
    /// Every step was taken or found not needed: no error, and its leases
    /// held to the end. Only then is the job's cleanup done for good.
    pub complete: bool,
}

/// Cleans up every collection of `snap` that did not succeed, then its
/// staged binlogs unless an import may still read them. Imports that read
/// the backup's folder in place are waited for too: the job holds the
/// backup as a reader until its cleanup ends, so no delete removes the
/// folder under them (insert logs without their delete logs would bring
/// deleted rows back). Each drop, rename and removal is taken only while
/// `fences` (the leases cleanup runs under) hold: once one expired, another
/// server may have resumed the job. `databases` are those dropped when left
/// empty.
pub async fn clean_up(
    ctx: &Context,
    snap: &RestoreSnapshot,
    databases: &[String],
    fences: &[Fence],
) -> Cleaned {
    let mut out = Vec::new();
    let mut complete = true;
    let reachable_by = Instant::now() + UNREACHABLE_RETRY;
    for (i, c) in snap.collections.iter().enumerate() {
        if c.state == JobState::Succeeded {
            continue;
        }
        let what = c.target.to_string();
        let cleaned = when_reachable(&snap.id, &what, fences, reachable_by, || {
            clean_one(ctx, c, fences)
        });
        let outcome = match cleaned.await {
            Ok(o) => o,
            Err(e) => {
                warn!(restore = %snap.id, collection = %c.target, error = %e, "cleanup failed");
                complete = false;
                // Said as it is: the cleanup is due, and a server of this
                // Milvus runs it again (drops or releases what it made).
                Outcome::LeftAlone(format!(
                    "cleanup failed: {e}; a server of this Milvus tries it again (it drops \
                     what this restore made, or releases the load it asked): do not write \
                     into a collection this restore made"
                ))
            }
        };
        match &outcome {
            Outcome::Nothing => {}
            Outcome::Dropped(what) => {
                info!(restore = %snap.id, collection = %what, "dropped a collection this restore created")
            }
            Outcome::SwapCompleted => {
                info!(restore = %snap.id, collection = %c.target, "completed the replace: the restored copy took the target's name")
            }
            Outcome::LeftAlone(why) => {
                warn!(restore = %snap.id, collection = %c.target, why = %why, "left alone")
            }
        }
        // A load it asked on a collection it leaves in place (not dropped:
        // the user's, or its copy swapped in) is released again, except on
        // a copy that replaced a loaded original: it serves in its place.
        let serves =
            matches!(outcome, Outcome::SwapCompleted) && c.original_replicas.is_some_and(|r| r > 0);
        if serves && c.loaded_by_job.is_some() {
            info!(restore = %snap.id, collection = %c.target, "kept the load this restore asked for: the collection it replaced was loaded");
        }
        if let (Some(id), Outcome::Nothing | Outcome::LeftAlone(_) | Outcome::SwapCompleted) =
            (c.loaded_by_job, &outcome)
            && !serves
            && !release_load(ctx, &snap.id, c, id, fences, reachable_by).await
        {
            complete = false;
        }
        out.push((i, outcome));
    }
    // Staged binlogs go unless an import may still read them: a queued
    // import reading a folder half removed would import rows without their
    // deletes.
    let prefix = super::staging_prefix(&snap.id);
    let staged = match ctx.milvus_store.list(&prefix).await {
        Ok(objects) => !objects.is_empty(),
        Err(e) => {
            warn!(restore = %snap.id, prefix = %prefix, error = %e, "cannot list the staged binlogs");
            true
        }
    };
    // Unstaged imports read the backup's own folder when it is in Milvus's
    // bucket (an incremental backup is always staged).
    let in_place = !staged && ctx.backups_in_milvus_bucket();
    let running = match out.iter().any(|(_, o)| matches!(o, Outcome::LeftAlone(_))) {
        _ if !staged && !in_place => None,
        // A drop left alone waited for the imports already.
        true => Some("a collection was left alone".to_string()),
        false => imports_may_run(ctx, snap, &out).await,
    };
    let (keep, imports_in_place) = match staged {
        true => (running, None),
        false => (None, running),
    };
    if let Some(why) = &imports_in_place {
        warn!(restore = %snap.id, backup = %snap.backup_name, why = %why, "imports may still read the backup's folder after the job lets go of it; delete the backup only once they ended");
    }
    let databases_left =
        drop_databases_left_empty(ctx, snap, databases, complete, fences, reachable_by).await;
    let staging_left = match keep {
        Some(why) => {
            warn!(restore = %snap.id, prefix = %prefix, why = %why, "staged binlogs kept: an import may still read them; remove them once it ended");
            Some(prefix)
        }
        None if staged && Fence::check_all(fences, Duration::ZERO).is_err() => Some(prefix),
        None if staged => remove_staging(ctx, snap).await.then_some(prefix),
        None => None,
    };
    Cleaned {
        outcomes: out,
        staging_left,
        imports_in_place,
        complete: complete
            && databases_left.is_empty()
            && Fence::check_all(fences, Duration::ZERO).is_ok(),
        databases_left,
    }
}

/// Drops each of `databases` (created by this job) that holds no collection
/// now (its own were dropped above). Milvus refuses to drop one that holds
/// a collection, so one that anyone filled meanwhile stays. Returns those
/// it could not drop, with why (tried again while Milvus is unreachable,
/// until `deadline`); unless `collections_cleaned`, also those that still
/// hold a collection, which may be one of the job's own it could not drop.
async fn drop_databases_left_empty(
    ctx: &Context,
    snap: &RestoreSnapshot,
    databases: &[String],
    collections_cleaned: bool,
    fences: &[Fence],
    deadline: Instant,
) -> Vec<(String, String)> {
    let mut left = Vec::new();
    for db in databases {
        if Fence::check_all(fences, Duration::ZERO).is_err() {
            return left;
        }
        let dropped = when_reachable(&snap.id, db, fences, deadline, || async {
            match ctx.milvus.list_collections(db).await? {
                colls if colls.is_empty() => ctx.milvus.drop_database(db).await.map(|()| true),
                _ => Ok(false),
            }
        })
        .await;
        match dropped {
            Ok(true) => {
                info!(restore = %snap.id, database = %db, "dropped the database this restore created")
            }
            Ok(false) if !collections_cleaned => {
                let why = "it still holds a collection, which may be one of this restore's";
                left.push((db.clone(), why.to_string()));
            }
            Ok(false) => {
                info!(restore = %snap.id, database = %db, "the database this restore created holds collections: it stays")
            }
            Err(e) if e.is_milvus_not_found() => {}
            Err(e) => {
                warn!(restore = %snap.id, database = %db, error = %e, "cannot drop the database this restore created");
                left.push((db.clone(), e.to_string()));
            }
        }
    }
    left
}

/// Releases collection `c` while its name holds the collection `id` that
/// restore `job` asked Milvus to load. False when Milvus could not be asked.
async fn release_load(
    ctx: &Context,
    job: &str,
    c: &RestoreCollectionStatus,
    id: i64,
    fences: &[Fence],
    deadline: Instant,
) -> bool {
    if Fence::check_all(fences, Duration::ZERO).is_err() {
        return false;
    }
    let at = &c.target;
    let released = when_reachable(job, &at.to_string(), fences, deadline, || async {
        match ctx.milvus.collection_id(at.db(), at.name()).await? {
            Some(now) if now == id => ctx
                .milvus
                .release_collection(at.db(), at.name())
                .await
                .map(|()| true),
            _ => Ok(false),
        }
    })
    .await;
    match released {
        Ok(true) => {
            info!(restore = %job, collection = %at, "released the load this restore asked for");
            true
        }
        Ok(false) => true,
        Err(e) => {
            warn!(restore = %job, collection = %at, error = %e, "cannot release the load this restore asked for");
            false
        }
    }
}

/// Why an import this job asked for may still read its staged binlogs (or
/// the backup's folder), if one may: an import not recorded done, into a
/// collection cleanup did not drop (a drop waits for the collection's
/// imports first), whose imports could not be seen to end (Milvus is only
/// asked while the collection under the name has the id the imports went
/// into).
async fn imports_may_run(
    ctx: &Context,
    snap: &RestoreSnapshot,
    out: &[(usize, Outcome)],
) -> Option<String> {
    for (i, c) in snap.collections.iter().enumerate() {
        let Some(pending) = c.imports.iter().find(|r| !r.done) else {
            continue;
        };
        if c.state == JobState::Succeeded
            || out
                .iter()
                .any(|(j, o)| *j == i && matches!(o, Outcome::Dropped(_)))
        {
            continue;
        }
        let into = match &c.temp {
            Some(temp) => CollectionRef::normalized(c.target.db(), temp),
            None => c.target.clone(),
        };
        let now = match ctx.milvus.collection_id(into.db(), into.name()).await {
            Ok(now) => now,
            Err(e) => return Some(format!("cannot look {into} up: {e}")),
        };
        if pending.into_id.is_none() || now != pending.into_id {
            return Some(format!(
                "{into} is not the collection its imports went into (id {:?}, now {now:?})",
                pending.into_id
            ));
        }
        match wait_imports_done(ctx, &into).await {
            Ok(true) => {}
            Ok(false) => return Some(format!("Milvus still imports into {into}")),
            Err(e) => return Some(format!("cannot list the imports into {into}: {e}")),
        }
    }
    None
}

/// Removes the binlogs a restore staged in Milvus's bucket (a cancel or a
/// crash skips the removal at the end of the run). An incremental backup is
/// staged even when backups live in Milvus's bucket.
/// `true` when they could not be removed.
async fn remove_staging(ctx: &Context, snap: &RestoreSnapshot) -> bool {
    let prefix = super::staging_prefix(&snap.id);
    match ctx.milvus_store.delete_under(&prefix).await {
        Ok(n) => {
            info!(restore = %snap.id, prefix = %prefix, objects = n, "removed the staged binlogs");
            false
        }
        Err(e) => {
            warn!(restore = %snap.id, prefix = %prefix, error = %e, "cannot remove the staged binlogs");
            true
        }
    }
}

/// Takes `step` (cleanup of `what`) again while Milvus cannot be reached,
/// with growing waits, until `deadline` or until a fence fails. Each step is
/// by identity, so a repeat finds done what the last try did.
async fn when_reachable<T, F, Fut>(
    job: &str,
    what: &str,
    fences: &[Fence],
    deadline: Instant,
    mut step: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut wait = Duration::from_secs(1);
    loop {
        match step().await {
            Err(e)
                if e.kind() == ErrorKind::Unavailable
                    && Instant::now() + wait < deadline
                    && Fence::check_all(fences, Duration::ZERO).is_ok() =>
            {
                warn!(restore = %job, of = %what, error = %e, retry_in = ?wait, "cleanup cannot reach Milvus; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(UNREACHABLE_MAX_WAIT);
            }
            other => return other,
        }
    }
}

async fn clean_one(
    ctx: &Context,
    c: &RestoreCollectionStatus,
    fences: &[Fence],
) -> Result<Outcome> {
    let Some(created) = c.created_id else {
        return Ok(Outcome::Nothing);
    };
    let db = c.target.db();
    let Some(temp) = &c.temp else {
        return drop_if_ours(ctx, &c.target, created, fences).await;
    };
    let temp_ref = CollectionRef::normalized(db, temp);
    let milvus = ctx.milvus.as_ref();
    match c.swap {
        SwapStep::None => drop_if_ours(ctx, &temp_ref, created, fences).await,
        SwapStep::Done => Ok(Outcome::SwapCompleted),
        SwapStep::DroppingOriginal | SwapStep::Renaming => {
            let target_id = milvus.collection_id(db, c.target.name()).await?;
            match target_id {
                Some(id) if id == created => Ok(Outcome::SwapCompleted),
                // The original is still there: undo, it stays as it was.
                Some(id) if Some(id) == c.original_id => {
                    drop_if_ours(ctx, &temp_ref, created, fences).await
                }
                Some(id) => Ok(Outcome::LeftAlone(format!(
                    "{} now has id {id}, which is neither the original nor this restore's; \
                     the restored copy stays as {temp_ref}",
                    c.target
                ))),
                None => {
                    if milvus.collection_id(db, temp).await? == Some(created) {
                        Fence::check_all(fences, Duration::ZERO)?;
                        milvus.rename_collection(db, temp, c.target.name()).await?;
                        Ok(Outcome::SwapCompleted)
                    } else {
                        Ok(Outcome::LeftAlone(format!(
                            "neither {} nor its restored copy {temp_ref} is there",
                            c.target
                        )))
                    }
                }
            }
        }
    }
}

/// Drops `target` if its id is still `id`, after its imports ended.
async fn drop_if_ours(
    ctx: &Context,
    target: &CollectionRef,
    id: i64,
    fences: &[Fence],
) -> Result<Outcome> {
    match ctx.milvus.collection_id(target.db(), target.name()).await? {
        None => Ok(Outcome::Nothing),
        Some(current) if current != id => Ok(Outcome::LeftAlone(format!(
            "{target} has id {current}, not {id} that this restore created"
        ))),
        Some(_) => {
            // Milvus 2.3 runs imports one at a time, and an import whose
            // collection is dropped under it blocks the queue until it
            // expires: let the collection's imports end first.
            if !wait_imports_done(ctx, target).await? {
                return Ok(Outcome::LeftAlone(format!(
                    "Milvus still imports into {target}; dropping it now would block Milvus's \
                     import queue, so it stays: drop it once its imports ended"
                )));
            }
            // Bounded to end while the cleanup holds its leases: Milvus
            // drops by name. The id is checked again right before the drop
            // (the waits can be long).
            let by = Fence::calls_end_by(fences, ctx.leases().ttl() / 3).await?;
            let milvus = ctx.milvus.as_ref();
            let dropped = ended_by(by, async {
                if milvus.collection_id(target.db(), target.name()).await? != Some(id) {
                    return Ok::<_, crate::Error>(false);
                }
                milvus.drop_collection(target.db(), target.name()).await?;
                Ok(true)
            })
            .await?;
            Ok(match dropped {
                true => Outcome::Dropped(target.clone()),
                false => Outcome::Nothing,
            })
        }
    }
}

/// Waits (up to [`IMPORT_DRAIN_TIMEOUT`]) until no import into `target` runs;
/// `false` when imports still run (or cannot be listed) after it.
pub async fn wait_imports_done(ctx: &Context, target: &CollectionRef) -> Result<bool> {
    let started = Instant::now();
    loop {
        let tasks = ctx
            .milvus
            .collection_imports(target.db(), target.name())
            .await?;
        if tasks.iter().all(|t| t.phase != ImportPhase::Running) {
            return Ok(true);
        }
        if started.elapsed() >= IMPORT_DRAIN_TIMEOUT {
            warn!(collection = %target, "imports still running after the wait");
            return Ok(false);
        }
        tokio::time::sleep(ctx.timing.poll_interval).await
    }
}
