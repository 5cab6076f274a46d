//! A restore that replaces an existing target (`drop_existing`) fills a
//! temporary copy first; once the copy is checked, the original is dropped
//! and the copy renamed in its place, each step recorded before it is taken.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{JobHandle, RestoreSnapshot, SwapStep};
use crate::meta::schema;
use crate::milvus::ended_by;
use crate::model::{CollectionRef, MAX_MILVUS_NAME_LEN};
use crate::restore::{RestoreTarget, check_compatible, status};

/// The temporary collection that a replaced target is restored into.
pub(super) fn temp_name(target: &str, job_id: &str) -> String {
    let tag: String = job_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    // Within Milvus's 255: a long target is cut (names are ASCII), and
    // the CRC of its whole name keeps two cut alike apart.
    let keep = MAX_MILVUS_NAME_LEN - "_restoring_".len() - tag.len();
    if target.len() <= keep {
        return format!("{target}_restoring_{tag}");
    }
    let crc = crc32c::crc32c(target.as_bytes());
    format!("{}{crc:08x}_restoring_{tag}", &target[..keep - 8])
}

/// Before a replace: the restored copy has the backup's schema and holds the
/// rows Milvus reported as imported.
pub(super) async fn check_copy(
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

/// Replaces the original target with the checked copy `created`: drop the
/// original (only while it has the id seen at planning), then rename the
/// copy. Each step is recorded first, so that recovery after a crash
/// completes or undoes it, and a resumed job continues from the step its
/// record shows.
pub(super) async fn swap_in(
    ctx: &Context,
    t: &RestoreTarget,
    copy: &CollectionRef,
    created: i64,
    job: &JobHandle<RestoreSnapshot>,
) -> Result<()> {
    let milvus = ctx.milvus.as_ref();
    let (db, name) = (t.target.db(), t.target.name());
    let step = status(&mut job.snapshot(), t).swap;
    let current = milvus.collection_id(db, name).await?;
    if current == Some(created) {
        // Renamed before the job's previous server recorded it.
        job.checkpoint(|s| status(s, t).swap = SwapStep::Done)
            .await?;
        return Ok(());
    }
    // Dropped by this job, before its previous server died.
    let dropped =
        current.is_none() && matches!(step, SwapStep::DroppingOriginal | SwapStep::Renaming);
    if !dropped {
        job.checkpoint(|s| status(s, t).swap = SwapStep::DroppingOriginal)
            .await?;
        crate::failpoint::pause_at("restore.swap.before_drop").await;
        let current = milvus.collection_id(db, name).await?;
        if current != t.original_id {
            // Resumed after a drop recorded as begun: the original may be
            // gone by this job's hand, and the copy is all that is left of
            // it. The record keeps the step, so cleanup keeps the copy.
            if matches!(step, SwapStep::DroppingOriginal | SwapStep::Renaming) {
                return Err(Error::FailedPrecondition(format!(
                    "{} is a collection someone else made (id {current:?}) after this restore \
                     began dropping the original (id {:?}); it is left as it is, and the \
                     restored copy stays as {copy}",
                    t.target, t.original_id
                )));
            }
            job.checkpoint(|s| status(s, t).swap = SwapStep::None)
                .await?;
            return Err(Error::FailedPrecondition(format!(
                "{} was changed by someone else during the restore (id {current:?}, was {:?}); \
                 it was left as it is and the restored copy was dropped",
                t.target, t.original_id
            )));
        }
        // Milvus drops a collection's aliases with it: ones given to the
        // original since the plan checked (hours of import) stop the swap.
        let aliases = milvus.describe_collection(db, name).await?.aliases;
        if !aliases.is_empty() {
            job.checkpoint(|s| status(s, t).swap = SwapStep::None)
                .await?;
            return Err(Error::FailedPrecondition(format!(
                "{} was given aliases {aliases:?} during the restore, which Milvus would drop \
                 with it; it was left as it is and the restored copy was dropped",
                t.target
            )));
        }
        // The copy must still be the one this job made and checked: one
        // dropped or replaced by hand meanwhile (a leftover `_restoring_`
        // collection looks like the user's to remove) leaves the original as
        // all there is of the data.
        let made = milvus.collection_id(copy.db(), copy.name()).await?;
        if made != Some(created) {
            job.checkpoint(|s| status(s, t).swap = SwapStep::None)
                .await?;
            return Err(Error::FailedPrecondition(format!(
                "the restored copy {copy} was dropped or replaced by someone else during the \
                 restore (id {made:?}, was {created}); {} was left as it is",
                t.target
            )));
        }
        crate::failpoint::pause_at("restore.swap.checked").await;
        // Bounded to end while the job holds its leases: Milvus drops by
        // name, and a drop landing after a takeover swapped in the copy
        // would drop the copy.
        let by = job.calls_end_by(ctx.leases().ttl() / 3).await?;
        // Not cut by a cancel: a drop cut in flight may still land after the
        // cleanup found the original there and dropped the copy.
        let (m, (d, n)) = (ctx.milvus.clone(), (db.to_string(), name.to_string()));
        let original = t.original_id;
        let dropped = job
            .uninterrupted(ended_by(by, async move {
                crate::failpoint::pause_at("restore.swap.dropping").await;
                // Milvus drops by name: the id is read again right before,
                // so that a target dropped and made again since the checks
                // above (a late lease renewal waited for) is never dropped.
                if m.collection_id(&d, &n).await? != original {
                    return Ok(false);
                }
                m.drop_collection(&d, &n).await.map(|()| true)
            }))
            .await?;
        if !dropped {
            job.checkpoint(|s| status(s, t).swap = SwapStep::None)
                .await?;
            return Err(Error::FailedPrecondition(format!(
                "{} was dropped and made again by someone else right before this restore \
                 dropped the original (id {:?}); it was left as it is and the restored copy \
                 was dropped",
                t.target, t.original_id
            )));
        }
        crate::failpoint::pause_at("restore.swap.dropped").await;
    }
    job.checkpoint(|s| status(s, t).swap = SwapStep::Renaming)
        .await?;
    crate::failpoint::pause_at("restore.swap.after_drop").await;
    // Never renames another collection into the target: a copy dropped or
    // replaced right after the check above is reported, not taken.
    let made = milvus.collection_id(copy.db(), copy.name()).await?;
    if made != Some(created) {
        return Err(Error::FailedPrecondition(format!(
            "the restored copy {copy} was dropped or replaced by someone else (id {made:?}, \
             was {created}) after this restore dropped the original {}; nothing was renamed",
            t.target
        )));
    }
    // Bounded as the drop: a late rename could move a collection a
    // takeover made meanwhile.
    let by = job.calls_end_by(ctx.leases().ttl() / 3).await?;
    // Nor is the rename, for the same reason.
    let (m, (d, from, to)) = (
        ctx.milvus.clone(),
        (db.to_string(), copy.name().to_string(), name.to_string()),
    );
    job.uninterrupted(ended_by(by, async move {
        m.rename_collection(&d, &from, &to).await
    }))
    .await?;
    crate::failpoint::pause_at("restore.swap.renamed").await;
    job.checkpoint(|s| status(s, t).swap = SwapStep::Done)
        .await?;
    crate::failpoint::pause_at("restore.swap.after_rename").await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copys_name_stays_within_milvuss_limit() {
        assert_eq!(
            temp_name("orders", "ab-12cd34ef56"),
            "orders_restoring_ab12cd34"
        );
        let long = temp_name(&"c".repeat(MAX_MILVUS_NAME_LEN), "ab-12cd34ef56");
        assert_eq!(long.len(), MAX_MILVUS_NAME_LEN);
        assert!(long.ends_with("_restoring_ab12cd34"), "{long}");
        let other = temp_name(&format!("{}d", "c".repeat(254)), "ab-12cd34ef56");
        assert_eq!(other.len(), MAX_MILVUS_NAME_LEN);
        assert_ne!(long, other, "two targets cut alike");
    }
}
