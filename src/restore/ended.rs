//! A restore that ended without its cleanup done for good, and one whose
//! server died: ended by another server ([`abandon`]), and its cleanup
//! tried again by any server of its Milvus once Milvus answers
//! ([`clean_up_again`]). Cleanup is by identity, so repeating it is safe;
//! once it ran to its end it is never run again (by then the user may have
//! reused the names).

use tracing::{info, warn};

use super::RestoreTarget;
use super::clean_up;
use super::job::{append_error, apply_cleanup};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::lease::release_all;
use crate::jobs::{JobSnapshot, JobState, Lease, RestoreSnapshot, SwapStep};
use crate::milvus::identity::Whose;
use crate::model::CollectionRef;

/// Whether a replace of `r` was left half-way (its original dropped or
/// being dropped, its copy not yet renamed), with no cleanup that ran to
/// its end since.
pub(super) fn swap_pending(r: &RestoreSnapshot) -> bool {
    !r.cleaned_up
        && r.collections.iter().any(|c| {
            c.state != JobState::Succeeded
                && c.temp.is_some()
                && matches!(c.swap, SwapStep::DroppingOriginal | SwapStep::Renaming)
        })
}

/// Whether `r` did not succeed and a cleanup may still have to drop (by
/// identity) or release what it made, or drop the databases it could not.
pub(super) fn cleanup_failed(r: &RestoreSnapshot) -> bool {
    !r.cleaned_up
        && r.state != JobState::Succeeded
        && (!r.databases_left.is_empty()
            || r.collections.iter().any(|c| {
                c.state != JobState::Succeeded
                    && (c.created_id.is_some() || c.temp.is_some() || c.loaded_by_job.is_some())
            }))
}

/// Whether restore `r` ended with cleanup still to do, on record as due
/// (its cleanup could not reach Milvus, lost a lease, or found a target
/// held): any server of its Milvus runs it again.
pub fn cleanup_unfinished(r: &RestoreSnapshot) -> bool {
    r.state.is_terminal() && r.cleanup_due && (swap_pending(r) || cleanup_failed(r))
}

/// Refuses a restore into a target that the unfinished cleanup of an ended
/// restore ([`cleanup_unfinished`]) would still act on once Milvus answers:
/// it drops the collection it made, or releases the one it loaded, by id,
/// and finishes or undoes a swap left half-way. Without this, a later
/// restore into that very collection (`skip_create_collection`, or `load`)
/// succeeded, and the cleanup tried again afterwards dropped or released
/// what it had filled. Run under the targets' leases, after
/// [`super::check_targets`] recorded the id of each existing target.
pub(super) async fn check_no_cleanup_due(ctx: &Context, targets: &[RestoreTarget]) -> Result<()> {
    let restores = ctx.shared_records().all::<RestoreSnapshot>().await?;
    for r in restores.iter().filter(|r| cleanup_unfinished(r)) {
        // Another Milvus's cleanup acts on that Milvus only.
        if ctx.milvus_id.whose(r.milvus_id.as_deref()).await == Whose::Another {
            continue;
        }
        let half_swapped = swap_pending(r);
        for c in r
            .collections
            .iter()
            .filter(|c| c.state != JobState::Succeeded)
        {
            for t in targets.iter().filter(|t| t.target == c.target) {
                let act = match t.original_id {
                    Some(id) if c.created_id == Some(id) => "drop",
                    Some(id) if c.loaded_by_job == Some(id) => "release",
                    _ if half_swapped && c.temp.is_some() => "finish the replace of",
                    _ => continue,
                };
                return Err(Error::FailedPrecondition(format!(
                    "target {} is still to be cleaned up by restore {}, which ended {} with \
                     its cleanup unfinished: that cleanup would {act} it once Milvus answers \
                     (the servers try it again every 30 s, then less often, up to 30 min). \
                     Restore into it after that cleanup ran, or into another target",
                    t.target,
                    r.id,
                    format!("{:?}", r.state).to_uppercase(),
                )));
            }
        }
    }
    Ok(())
}

/// What a collection the restore never started says when the job ended.
const NOT_STARTED: &str = "not started: the job ended before it";

/// Gives the collections of restore `r` that had not ended the job's end:
/// the one it was filling (RUNNING) CANCELLED for a cancel, FAILED
/// otherwise; those it never started (PENDING), which nothing was asked
/// for, CANCELLED and `not_started`, with [`NOT_STARTED`] (never PENDING in
/// an ended job; the Go tool's REST shape shows them INITIAL, as it does).
pub(super) fn end_in_flight(r: &mut RestoreSnapshot, error: &Error) {
    let state = match error {
        Error::Cancelled(_) => JobState::Cancelled,
        _ => JobState::Failed,
    };
    for c in r.collections.iter_mut() {
        match c.state {
            JobState::Running => c.state = state,
            JobState::Pending => {
                c.state = JobState::Cancelled;
                c.not_started = true;
                append_error(&mut c.error, NOT_STARTED);
            }
            _ => {}
        }
    }
}

/// The targets of restore `r`, in its order.
pub(super) fn targets_of(r: &RestoreSnapshot) -> Vec<CollectionRef> {
    r.collections.iter().map(|c| c.target.clone()).collect()
}

/// The hold on its backup that restore `r`'s dead process had, taken again
/// for its cleanup: imports it asked may read the backup's folder (in
/// Milvus's bucket) until they end, and cleanup waits for them.
pub(super) async fn hold_backup(ctx: &Context, r: &RestoreSnapshot) -> Option<Lease> {
    if !ctx.backups_in_milvus_bucket() {
        return None;
    }
    let purpose = "cleanup of a restore";
    match ctx
        .leases()
        .hold_for_reading(&r.backup_name, &r.id, purpose)
        .await
    {
        Ok(lease) => Some(lease),
        Err(e) => {
            warn!(restore = %r.id, backup = %r.backup_name, error = %e, "cleanup runs without a hold on the backup");
            None
        }
    }
}

/// Ends restore `r`, whose server died and which cannot be resumed, with
/// `reason`: its collections are cleaned up by identity under its targets'
/// leases (refused with ABORTED while another process holds one), its end
/// is recorded while they are still held (so that no other server resumes
/// or abandons it again meanwhile), and what the dead process held is
/// freed. One another server ended meanwhile is left as it is. A cleanup
/// that cannot finish is tried again ([`clean_up_again`]).
pub async fn abandon(ctx: &Context, r: RestoreSnapshot, reason: Error) -> Result<()> {
    let targets = targets_of(&r);
    let held = ctx.leases().hold_targets(&r.id, &targets).await?;
    // Read again under the holds: another server may have ended it since.
    let mut r = match ctx.shared_records().unended(&r).await {
        Ok(Some(now)) => now,
        Ok(None) => {
            release_all(held).await;
            return Ok(());
        }
        Err(e) => {
            release_all(held).await;
            return Err(e);
        }
    };
    warn!(restore = %r.id, error = %reason, "a restore whose server died is not resumed");
    let fences: Vec<_> = held.iter().map(Lease::fence).collect();
    let reading = hold_backup(ctx, &r).await;
    crate::failpoint::pause_at("restore.abandon.before_cleanup").await;
    let done = clean_up(ctx, &r, &r.databases_created, &fences).await;
    apply_cleanup(&mut r, &done);
    end_in_flight(&mut r, &reason);
    r.finish(&Err(reason));
    ctx.shared_records().finish_held(&r, &fences).await;
    let held: Vec<Lease> = held.into_iter().chain(reading).collect();
    ctx.leases()
        .release_stopped_restore(&r.id, &r.backup_name, &targets, &held)
        .await;
    release_all(held).await;
    Ok(())
}

/// Runs again the cleanup of restore `seen`, ended with its cleanup
/// unfinished ([`cleanup_unfinished`]), under its targets' leases (ABORTED
/// while another job holds one) and only while its shared record is still
/// `seen`: a cleanup that another process ran since is not run twice. Its
/// outcome is recorded before the leases are let go. Whether it ran to its
/// end (`false` also when it was not run).
pub async fn clean_up_again(ctx: &Context, seen: &RestoreSnapshot) -> Result<bool> {
    let targets = targets_of(seen);
    let held = ctx.leases().hold_targets(&seen.id, &targets).await?;
    let shared = ctx.shared_records();
    match shared.load::<RestoreSnapshot>(&seen.id).await {
        Ok(Some(now)) if now == *seen => {}
        other => {
            release_all(held).await;
            return other.map(|_| false);
        }
    }
    info!(restore = %seen.id, "the cleanup of an ended restore is tried again");
    let fences: Vec<_> = held.iter().map(Lease::fence).collect();
    let reading = hold_backup(ctx, seen).await;
    // Its end dropped the databases it made, but those it could not: one
    // made again since is the user's.
    let done = clean_up(ctx, seen, &seen.databases_left, &fences).await;
    let mut after = seen.clone();
    apply_cleanup(&mut after, &done);
    if done.complete {
        info!(restore = %seen.id, "the cleanup of an ended restore ran to its end");
        for c in after.collections.iter_mut() {
            if c.state != JobState::Succeeded && c.error.is_some() && !c.not_started {
                append_error(&mut c.error, "its cleanup, tried again, ran to its end");
            }
        }
    }
    shared.finish_held(&after, &fences).await;
    release_all(held.into_iter().chain(reading).collect()).await;
    Ok(done.complete)
}
