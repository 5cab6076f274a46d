//! Cleanup of a restore that failed, was cancelled or was interrupted by a
//! crash. It owns collections by identity: it drops a collection only while
//! its current id is the one the job recorded when it created it, so a
//! collection that anyone else made under that name survives. Collections
//! whose restore succeeded stay. A replace that got past the point of no
//! return (the original dropped) is completed: the restored copy is renamed
//! to the target, so the target ends as the original or as the full copy.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::context::Context;
use crate::error::Result;
use crate::jobs::{JobState, RestoreCollectionStatus, RestoreSnapshot, SwapStep};
use crate::milvus::ImportPhase;
use crate::model::CollectionRef;

/// How long cleanup waits for a collection's imports to end before dropping it.
const IMPORT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

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

/// Cleans up every collection of `snap` that did not succeed. Returns what
/// was done with each, by index.
pub async fn clean_up(ctx: &Context, snap: &RestoreSnapshot) -> Vec<(usize, Outcome)> {
    let mut out = Vec::new();
    for (i, c) in snap.collections.iter().enumerate() {
        if c.state == JobState::Succeeded {
            continue;
        }
        let outcome = match clean_one(ctx, c).await {
            Ok(o) => o,
            Err(e) => {
                warn!(restore = %snap.id, collection = %c.target, error = %e, "cleanup failed");
                Outcome::LeftAlone(format!("cleanup failed: {e}"))
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
        out.push((i, outcome));
    }
    // Staged binlogs go unless an import may still read them.
    if !out.iter().any(|(_, o)| matches!(o, Outcome::LeftAlone(_))) {
        remove_staging(ctx, snap).await;
    }
    out
}

/// Removes the binlogs a restore staged in Milvus's bucket (a cancel or a
/// crash skips the removal at the end of the run). An incremental backup is
/// staged even when backups live in Milvus's bucket.
async fn remove_staging(ctx: &Context, snap: &RestoreSnapshot) {
    let prefix = super::staging_prefix(&snap.id);
    match ctx.milvus_store.delete_under(&prefix).await {
        Ok(0) => {}
        Ok(n) => {
            info!(restore = %snap.id, prefix = %prefix, objects = n, "removed the staged binlogs")
        }
        Err(e) => {
            warn!(restore = %snap.id, prefix = %prefix, error = %e, "cannot remove the staged binlogs")
        }
    }
}

async fn clean_one(ctx: &Context, c: &RestoreCollectionStatus) -> Result<Outcome> {
    let Some(created) = c.created_id else {
        return Ok(Outcome::Nothing);
    };
    let db = c.target.db();
    let Some(temp) = &c.temp else {
        return drop_if_ours(ctx, &c.target, created).await;
    };
    let temp_ref = CollectionRef::normalized(db, temp);
    let milvus = ctx.milvus.as_ref();
    match c.swap {
        SwapStep::None => drop_if_ours(ctx, &temp_ref, created).await,
        SwapStep::Done => Ok(Outcome::SwapCompleted),
        SwapStep::DroppingOriginal | SwapStep::Renaming => {
            let target_id = milvus.collection_id(db, c.target.name()).await?;
            match target_id {
                Some(id) if id == created => Ok(Outcome::SwapCompleted),
                // The original is still there: undo, it stays as it was.
                Some(id) if Some(id) == c.original_id => {
                    drop_if_ours(ctx, &temp_ref, created).await
                }
                Some(id) => Ok(Outcome::LeftAlone(format!(
                    "{} now has id {id}, which is neither the original nor this restore's; \
                     the restored copy stays as {temp_ref}",
                    c.target
                ))),
                None => {
                    if milvus.collection_id(db, temp).await? == Some(created) {
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
async fn drop_if_ours(ctx: &Context, target: &CollectionRef, id: i64) -> Result<Outcome> {
    match ctx.milvus.collection_id(target.db(), target.name()).await? {
        None => Ok(Outcome::Nothing),
        Some(current) if current != id => Ok(Outcome::LeftAlone(format!(
            "{target} has id {current}, not {id} that this restore created"
        ))),
        Some(_) => {
            // Milvus 2.3 runs imports one at a time, and an import whose
            // collection is dropped under it blocks the queue until it
            // expires: let the collection's imports end first.
            if !wait_imports_done(ctx, target).await {
                return Ok(Outcome::LeftAlone(format!(
                    "Milvus still imports into {target}; dropping it now would block Milvus's \
                     import queue, so it stays: drop it once its imports ended"
                )));
            }
            // Checked again: the wait can be long.
            if ctx.milvus.collection_id(target.db(), target.name()).await? != Some(id) {
                return Ok(Outcome::Nothing);
            }
            ctx.milvus
                .drop_collection(target.db(), target.name())
                .await?;
            Ok(Outcome::Dropped(target.clone()))
        }
    }
}

/// Waits (up to [`IMPORT_DRAIN_TIMEOUT`]) until no import into `target` runs;
/// `false` when imports still run (or cannot be listed) after it.
pub async fn wait_imports_done(ctx: &Context, target: &CollectionRef) -> bool {
    let started = Instant::now();
    loop {
        match ctx
            .milvus
            .collection_imports(target.db(), target.name())
            .await
        {
            Ok(tasks) if tasks.iter().all(|t| t.phase != ImportPhase::Running) => return true,
            Ok(_) if started.elapsed() < IMPORT_DRAIN_TIMEOUT => {
                tokio::time::sleep(ctx.timing.poll_interval).await
            }
            Ok(_) => {
                warn!(collection = %target, "imports still running after the wait");
                return false;
            }
            Err(e) => {
                warn!(collection = %target, error = %e, "cannot list imports");
                return false;
            }
        }
    }
}
