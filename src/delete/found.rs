//! What a delete finds under a backup's name before it begins: Milvus
//! imports still reading the folder, what earlier jobs left there, and the
//! records of the name's backup job to end.

use tracing::info;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{BackupSnapshot, DeleteSnapshot, JobSnapshot, JobState, Lease, holds};
use crate::meta::summary::snapshot_of;
use crate::milvus::ImportPhase;
use crate::model::BackupName;

/// The Milvus import tasks that read backup `name`'s own folder, said in
/// words, if any (a backup in Milvus's bucket is imported in place): a
/// restore that let go of the backup while Milvus still had its imports, or
/// another tool's. Removing the folder under them would import rows without
/// their deletes, or fail them half-way.
pub(super) async fn imports_reading(ctx: &Context, name: &str) -> Result<Option<String>> {
    if !ctx.backups_in_milvus_bucket() {
        return Ok(None);
    }
    let folder = ctx.catalog.layout().backup_prefix(name);
    let reading: Vec<String> = ctx
        .milvus
        .all_imports()
        .await?
        .into_iter()
        .filter(|t| {
            t.phase == ImportPhase::Running && t.files.iter().any(|f| f.starts_with(&folder))
        })
        .map(|t| format!("{} (into collection id {})", t.task, t.collection_id))
        .collect();
    Ok((!reading.is_empty()).then(|| {
        format!(
            "Milvus import tasks {} still read backup {:?} from {folder:?}",
            reading.join(", "),
            name
        )
    }))
}

/// Whether backup `name`'s unmarked folder holds only what one of our
/// backup jobs left after it ended without success: a copy the store
/// completed after the job's cleanup had emptied the folder (a CopyObject in
/// flight when the job was cancelled) leaves objects and no mark. The name's
/// writer before this delete (the holder its `hold` took the place of) was
/// then that job's create, and its record says it failed or was cancelled.
/// Any other unmarked folder (one someone put under the root) is not ours
/// to remove.
pub(super) async fn left_by_ended_backup(
    ctx: &Context,
    name: &BackupName,
    hold: &Lease,
) -> Result<bool> {
    let Some(creator) = hold
        .previous_holder()
        .filter(|h| h.purpose == holds::CREATE)
    else {
        return Ok(false);
    };
    let creator = &creator.job;
    Ok(ctx
        .shared_records()
        .load::<BackupSnapshot>(name.as_str())
        .await?
        .is_some_and(|r| {
            r.id == *creator && matches!(r.state, JobState::Failed | JobState::Cancelled)
        }))
}

/// What a delete that succeeded left under the name, when it was the name's
/// last holder: the objects it kept for the backups that reference them. A
/// delete asked again (a retry) is told the backup is gone, not that the
/// folder is someone else's.
pub(super) async fn kept_by_ended_delete(ctx: &Context, hold: &Lease) -> Result<Option<String>> {
    let Some(deleter) = hold
        .previous_holder()
        .filter(|h| h.purpose == holds::DELETE)
    else {
        return Ok(None);
    };
    let record = ctx
        .shared_records()
        .load::<DeleteSnapshot>(&deleter.job)
        .await?;
    Ok(record
        .filter(|d| d.state == JobState::Succeeded && d.objects_kept > 0)
        .map(|d| {
            format!(
                "deleted by delete job {}; its folder keeps {} objects that other backups \
                 reference, removed with the last of them",
                d.id, d.objects_kept
            )
        }))
}

/// Ends the name's backup job record when it still says the job runs but
/// the backup is complete (its server died between the commit point and the
/// record's end): once deleted, it must not be taken over and made again.
/// Under the name's hold, which a takeover needs too.
pub(super) async fn end_completed_job(
    ctx: &Context,
    info: &crate::meta::model::BackupInfo,
) -> Result<()> {
    let records = ctx.shared_records();
    match records.load::<BackupSnapshot>(&info.name).await? {
        Some(record) if !record.state().is_terminal() && record.id == info.id => {
            info!(backup = %info.name, job = %record.id, "the backup's job completed it before its server died; its record is ended before the delete");
            records.save(&snapshot_of(info)).await
        }
        _ => Ok(()),
    }
}

/// Ends the record of the name's backup job when it says the job has not
/// ended (its server stopped before it did): under the name's hold no
/// process runs it, and a takeover, which needs the hold too and reads the
/// record under it, then leaves it alone rather than resuming it into the
/// folder this delete removes. It ends CANCELLED, naming the delete. The
/// write is conditional: a job that ended just before this hold was taken
/// (it writes its end after releasing the name) keeps its own end.
pub(super) async fn end_interrupted_job(
    ctx: &Context,
    name: &BackupName,
    delete: &str,
) -> Result<()> {
    let records = ctx.shared_records();
    let Some((mut record, etag)) = records
        .load_versioned::<BackupSnapshot>(name.as_str())
        .await?
    else {
        return Ok(());
    };
    if record.state().is_terminal() {
        return Ok(());
    }
    info!(backup = %name, job = %record.id, "the backup's job was interrupted: it ends now, as its folder is deleted");
    record.finish(&Err(Error::Cancelled(format!(
        "its server stopped before it ended, and delete job {delete} removed its folder: \
         it is not resumed"
    ))));
    if records.save_if_match(&record, &etag).await? {
        return Ok(());
    }
    match records.load::<BackupSnapshot>(name.as_str()).await? {
        Some(now) if now.state().is_terminal() => Ok(()),
        _ => Err(Error::Aborted(format!(
            "the record of backup job {} changed while the delete read it; delete it again",
            record.id
        ))),
    }
}
