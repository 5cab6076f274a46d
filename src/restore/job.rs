//! A restore as a job: planned against the backup, checked against Milvus
//! under the leases of its targets, run, and cleaned up by identity when it
//! does not succeed (also after a crash, by the next process).

use std::time::{Duration, SystemTime};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ended::{
    check_no_cleanup_due, cleanup_failed, end_in_flight, hold_backup, swap_pending, targets_of,
};
use super::{Cleaned, Outcome, RestoreTarget, check_targets, clean_up, plan, run};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::lease::release_all;
use crate::jobs::runner::{INTERRUPTED, JobKind, Recovered};
use crate::jobs::{
    JobHandle, JobState, Lease, RestoreCollectionStatus, RestoreOrder, RestoreSnapshot, SwapStep,
};
use crate::meta::model::BackupInfo;
use crate::meta::summary::summary_of;
use crate::model::{CollectionRef, RestoreRequest};

/// One restore job.
pub struct RestoreJob {
    ctx: Context,
    req: RestoreRequest,
    backup: BackupInfo,
    targets: Vec<RestoreTarget>,
    leases: Vec<Lease>,
    /// Fires when any of the leases is lost.
    lost: CancellationToken,
}

impl JobKind for RestoreJob {
    type Snapshot = RestoreSnapshot;
    type Request = RestoreRequest;
    type Env = Context;
    const NAME: &'static str = "restore";
    /// Every change: a collection's id must be on record before it is used.
    const RECORD_INTERVAL: Duration = Duration::ZERO;

    /// A retried restore (a replace, above all) must never run twice.
    fn claims_request_id(_req: &RestoreRequest) -> bool {
        true
    }

    fn request_id(req: &RestoreRequest) -> &str {
        // A resumed job is not a caller's retry (its id is the request id).
        match req.resumes() {
            true => "",
            false => req.caller().request_id(),
        }
    }

    fn same_request(req: &RestoreRequest, s: &RestoreSnapshot) -> bool {
        s.backup_name == req.backup_name().as_str()
            && s.order
                .as_ref()
                .is_none_or(|o| *o == order_of(req, &o.backup_id))
    }

    async fn plan(ctx: &Context, req: RestoreRequest) -> Result<(Self, RestoreSnapshot)> {
        let (backup, mut targets) = plan(ctx, &req).await?;
        let id = match req.resumes() {
            true => req.caller().request_id().to_string(),
            false => uuid::Uuid::new_v4().to_string(),
        };
        let target_refs: Vec<CollectionRef> = targets.iter().map(|t| t.target.clone()).collect();
        let reading = ctx
            .hold_backup_for_reading(req.backup_name(), &id, "restore from")
            .await?;
        let leases = ctx
            .leases()
            .hold_for_restore(&id, reading, &target_refs)
            .await?;
        // The backup was read before it was held: under the hold it is read
        // again, so one deleted (or deleted and made again under its name)
        // meanwhile is never restored from what was read of it.
        let snapshot = match still_the_planned(ctx, &req, &backup.id).await {
            Err(e) => Err(e),
            Ok(()) if req.resumes() => resumed(ctx, &id, &backup.id, &mut targets).await,
            Ok(()) => match check_targets(ctx, &req, &mut targets).await {
                Ok(()) => check_no_cleanup_due(ctx, &targets)
                    .await
                    .map(|()| pending(id, &req, &backup.id, &targets)),
                Err(e) => Err(e),
            },
        };
        let mut snapshot = match snapshot {
            Ok(s) => s,
            Err(e) => {
                release_all(leases).await;
                return Err(e);
            }
        };
        // A resumed job keeps the Milvus it was recorded with (the takeover
        // checked it is this one).
        if snapshot.milvus_id.is_none() {
            snapshot.milvus_id = ctx.milvus_id_for_record().await;
        }
        let lost = any_lost(&leases);
        let job = Self {
            ctx: ctx.clone(),
            req,
            backup,
            targets,
            leases,
            lost,
        };
        Ok((job, snapshot))
    }

    async fn run(&self, job: &JobHandle<RestoreSnapshot>) -> Result<()> {
        run(&self.ctx, &self.req, &self.backup, &self.targets, job).await
    }

    async fn clean_up(&self, error: &Error, job: &JobHandle<RestoreSnapshot>) {
        if matches!(error, Error::Aborted(_)) || job.fence().is_err() {
            // Its leases went to another process, which resumes the job:
            // what it made is that process's now.
            warn!(restore = %job.snapshot().id, "the restore's collections are left to it: another process took it over");
            return;
        }
        let snapshot = job.snapshot();
        let done = clean_up(
            &self.ctx,
            &snapshot,
            &snapshot.databases_created,
            &self.fences(),
        )
        .await;
        job.update(|s| {
            apply_cleanup(s, &done);
            end_in_flight(s, error);
        });
    }

    fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    async fn release(self) {
        self.lost.cancel();
        release_all(self.leases).await;
    }

    fn resumable(&self) -> bool {
        true
    }

    fn fences(&self) -> Vec<crate::jobs::Fence> {
        self.leases.iter().map(Lease::fence).collect()
    }

    fn describe(&self) -> String {
        format!(
            "restore of backup {} into {} collections",
            self.req.backup_name(),
            self.targets.len()
        )
    }

    async fn recover(ctx: &Context, mut r: RestoreSnapshot) -> Recovered<RestoreSnapshot> {
        // A replace that a crash (even one during an earlier recovery) left
        // half-way is finished again: cleanup is by identity, so repeating it is safe.
        // Once a cleanup ran to its end, never again: what it left alone is
        // said in the job's error, and by a later start the user may have
        // reused the names (a copy renamed into a target the user freed, an
        // empty database of theirs dropped).
        let swap_pending = swap_pending(&r);
        // So is a cleanup that could not reach Milvus: what it could not
        // drop (by identity) or release, and the databases it could not drop.
        if r.state.is_terminal() && !swap_pending && !cleanup_failed(&r) {
            return Recovered::at_once(r);
        }
        // The shared record is the truth once another server may have taken
        // the job over: ended there (its cleanup done there), or running or
        // unreadable (left to the takeover, by this server or another).
        match ctx.shared_records().load::<RestoreSnapshot>(&r.id).await {
            Ok(Some(shared)) if shared.state.is_terminal() && shared != r => {
                info!(restore = %r.id, "restore ended on another server");
                return Recovered::at_once(shared);
            }
            Ok(Some(shared)) if !shared.state.is_terminal() && shared.order.is_some() => {
                info!(restore = %r.id, "restore was interrupted by a restart; it will be resumed");
                return Recovered::resume(r);
            }
            Err(e) if r.order.is_some() => {
                warn!(restore = %r.id, error = %e, "cannot read the shared record; left to the takeover");
                return Recovered::resume(r);
            }
            // Its shared record gone (pruned once ended, or under another
            // backup root): another server may have taken the job over and
            // finished it, or run its cleanup, and what it made may be in
            // use. Whatever this record says (running when its process was
            // killed, ended, a cleanup due), nothing is dropped or renamed
            // on its word: the job ends saying what to look at.
            Ok(None) if r.order.is_some() => {
                warn!(restore = %r.id, "its shared record is gone: another server may have finished it; nothing is cleaned up");
                let targets: Vec<String> = targets_of(&r).iter().map(ToString::to_string).collect();
                let left = format!(
                    "its shared record is gone (ended on another server and pruned since, or \
                     the backup root changed), so another server may have finished it: nothing \
                     was dropped or renamed; look at {}",
                    targets.join(", ")
                );
                if !r.state.is_terminal() {
                    r.state = JobState::Failed;
                    r.error = Some(format!("{INTERRUPTED}; {left}"));
                    r.end_time = Some(SystemTime::now());
                    end_in_flight(&mut r, &Error::Internal(INTERRUPTED.into()));
                } else if r.cleanup_due {
                    let ended = r.error.take().unwrap_or_default();
                    r.error = Some(format!("{ended}; its cleanup is unfinished and {left}"));
                    r.cleanup_due = false;
                }
                return Recovered::at_once(r);
            }
            _ => {}
        }
        let recorded_ended = r.state.is_terminal();
        if !recorded_ended {
            warn!(restore = %r.id, "restore was interrupted by a restart");
            r.state = JobState::Failed;
            r.error = Some(INTERRUPTED.into());
            r.end_time = Some(SystemTime::now());
            end_in_flight(&mut r, &Error::Internal(INTERRUPTED.into()));
        }
        // Cleanup by identity, in the background (it can wait minutes for
        // Milvus's imports to end, and the server must not wait to listen):
        // it drops only what this job created, and completes a replace whose
        // original was already dropped.
        let (ctx, snapshot) = (ctx.clone(), r.clone());
        let later = async move {
            // Under its targets' leases, once the dead process's have expired.
            let targets = targets_of(&snapshot);
            let held = hold_targets_when_free(&ctx, &snapshot.id, &targets).await;
            let held = match held {
                Some(held) => held,
                // Its record is saved ended before this runs, so an
                // unfinished swap is tried again: by any server's next
                // look ([`super::clean_up_again`]), or at the next start.
                None if recorded_ended || swap_pending => {
                    warn!(restore = %snapshot.id, "its unfinished swap is left to be tried again");
                    let mut after = snapshot;
                    after.cleanup_due = true;
                    return after;
                }
                // Only drops by identity are left: done without the leases,
                // as nothing on record would bring them back.
                None => {
                    warn!(restore = %snapshot.id, "cleaned up without the targets' leases");
                    Vec::new()
                }
            };
            // Read again under them: a server of this Milvus may have run
            // its cleanup again meanwhile (`ended::clean_up_again`).
            let shared = ctx.shared_records();
            if let Ok(Some(theirs)) = shared.load::<RestoreSnapshot>(&snapshot.id).await
                && theirs.id == snapshot.id
                && theirs.state.is_terminal()
                && theirs != snapshot
            {
                info!(restore = %snapshot.id, "its cleanup ran on another server meanwhile");
                release_all(held).await;
                return theirs;
            }
            let fences: Vec<_> = held.iter().map(Lease::fence).collect();
            let reading = hold_backup(&ctx, &snapshot).await;
            // An ended job's cleanup dropped its databases already, but
            // those it could not: a database made again since is the user's.
            let databases = match recorded_ended {
                true => &snapshot.databases_left,
                false => &snapshot.databases_created,
            };
            let done = clean_up(&ctx, &snapshot, databases, &fences).await;
            let mut after = snapshot.clone();
            apply_cleanup(&mut after, &done);
            // Recorded before the targets are let go, so that no server
            // runs it again (the runner's own write then finds it there).
            let after = shared.finish_cleaned(&snapshot, after).await;
            let held: Vec<Lease> = held.into_iter().chain(reading).collect();
            let (job, backup) = (&after.id, &after.backup_name);
            ctx.leases()
                .release_stopped_restore(job, backup, &targets, &held)
                .await;
            release_all(held).await;
            after
        };
        Recovered {
            now: r,
            later: Some(later.boxed()),
            resume: false,
        }
    }
}

/// The leases on `targets` for the cleanup of restore `job`, recovered after
/// a restart: its previous process's leases keep them for up to a TTL, so
/// they are asked for until twice the TTL has passed (at most 2 minutes: a
/// shutdown waits for this). `None` when another job holds one still.
async fn hold_targets_when_free(
    ctx: &Context,
    job: &str,
    targets: &[CollectionRef],
) -> Option<Vec<Lease>> {
    let leases = ctx.leases();
    let give_up = std::time::Instant::now() + (2 * leases.ttl()).min(Duration::from_secs(120));
    loop {
        match leases.hold_targets(job, targets).await {
            Ok(held) => return Some(held),
            Err(e) if std::time::Instant::now() >= give_up => {
                warn!(restore = %job, error = %e, "a target is held by another job");
                return None;
            }
            Err(_) => {
                tokio::time::sleep(ctx.timing.poll_interval.max(Duration::from_secs(1))).await
            }
        }
    }
}

/// The record of restore `id`, whose server died, to continue from: the
/// targets must be the ones it was started with, and each keeps what was
/// seen of it then (whether it existed, and its id).
async fn resumed(
    ctx: &Context,
    id: &str,
    backup_id: &str,
    targets: &mut [RestoreTarget],
) -> Result<RestoreSnapshot> {
    let mut record = ctx
        .shared_records()
        .load::<RestoreSnapshot>(id)
        .await?
        .ok_or_else(|| Error::not_found("restore job", id))?;
    if record.state.is_terminal() {
        // Another server ended it meanwhile: nothing to take over.
        return Err(Error::Aborted(format!(
            "restore {id} already ended {:?}",
            record.state
        )));
    }
    let recorded_backup = record.order.as_ref().map(|o| o.backup_id.as_str());
    if recorded_backup.is_some_and(|b| !b.is_empty() && b != backup_id) {
        return Err(Error::FailedPrecondition(format!(
            "backup {:?} was made again (id {backup_id}) since restore {id} started from it",
            record.backup_name
        )));
    }
    let recorded: Vec<&CollectionRef> = record.collections.iter().map(|c| &c.target).collect();
    let planned: Vec<&CollectionRef> = targets.iter().map(|t| &t.target).collect();
    if recorded != planned {
        return Err(Error::FailedPrecondition(format!(
            "the backup now gives the targets {planned:?}, not {recorded:?} that restore {id} \
             started with"
        )));
    }
    for (t, c) in targets.iter_mut().zip(&record.collections) {
        t.original_id = c.original_id;
        t.exists = c.original_id.is_some();
    }
    record.error = None;
    record.error_kind = None;
    record.end_time = None;
    record.cleaned_up = false;
    record.cleanup_due = false;
    record.databases_left.clear();
    record.phase.clear();
    record.verified_files = 0;
    record.verified_bytes = 0;
    Ok(record)
}

/// The request of a restore, as its record keeps it.
fn order_of(req: &RestoreRequest, backup_id: &str) -> RestoreOrder {
    RestoreOrder {
        backup_id: backup_id.to_string(),
        collections: req.collections().iter().map(|c| c.to_string()).collect(),
        databases: req.databases().to_vec(),
        suffix: req.suffix().to_string(),
        renames: req
            .renames()
            .iter()
            .map(|(from, to)| (from.to_string(), to.to_string()))
            .collect(),
        drop_existing: req.drop_existing(),
        skip_create: req.skip_create(),
        restore_index: req.restore_index(),
        load: req.load(),
        meta_only: req.meta_only(),
    }
}

/// The snapshot of a restore that has not started.
fn pending(
    id: String,
    req: &RestoreRequest,
    backup_id: &str,
    targets: &[RestoreTarget],
) -> RestoreSnapshot {
    RestoreSnapshot {
        id,
        backup_name: req.backup_name().to_string(),
        state: JobState::Pending,
        error: None,
        progress: Default::default(),
        collections: targets
            .iter()
            .map(|t| RestoreCollectionStatus {
                source: CollectionRef::normalized(&t.source.db_name, &t.source.collection_name),
                target: t.target.clone(),
                state: JobState::Pending,
                row_count: summary_of(&t.source).row_count,
                imported_rows: 0,
                error: None,
                created_id: None,
                temp: None,
                original_id: t.original_id,
                swap: SwapStep::None,
                loaded_by_job: None,
                original_replicas: None,
                original_resource_groups: Vec::new(),
                imports: Vec::new(),
                partitions_added: Vec::new(),
                indexes_added: Vec::new(),
                not_started: false,
            })
            .collect(),
        start_time: SystemTime::now(),
        end_time: None,
        error_kind: None,
        phase: String::new(),
        phases: Vec::new(),
        verified_files: 0,
        verified_bytes: 0,
        trace_id: req.caller().trace().map(|t| t.as_str().to_string()),
        request_id: None,
        order: Some(order_of(req, backup_id)),
        staging_left: None,
        databases_created: Vec::new(),
        cleaned_up: false,
        cleanup_due: false,
        databases_left: Vec::new(),
        milvus_id: None,
    }
}

/// Marks the collections whose replace cleanup completed as restored, and
/// the cleanup as done when it completed.
pub(super) fn apply_cleanup(s: &mut RestoreSnapshot, done: &Cleaned) {
    s.cleaned_up = done.complete;
    s.cleanup_due = !done.complete;
    s.databases_left = done
        .databases_left
        .iter()
        .map(|(db, _)| db.clone())
        .collect();
    // Said with the collections the job did not restore there.
    for (db, why) in &done.databases_left {
        let left = format!(
            "database {db:?}, which this restore created, could not be dropped ({why}): \
             it is tried again later"
        );
        for c in s.collections.iter_mut() {
            if c.state != JobState::Succeeded && c.target.db() == db {
                append_error(&mut c.error, &left);
            }
        }
    }
    if done.staging_left.is_some() {
        s.staging_left = done.staging_left.clone();
    }
    for (i, outcome) in &done.outcomes {
        let c = &mut s.collections[*i];
        match outcome {
            Outcome::SwapCompleted => {
                c.state = JobState::Succeeded;
                c.swap = SwapStep::Done;
            }
            // What cleanup could not undo is said with the collection.
            Outcome::LeftAlone(why) => {
                append_error(&mut c.error, &format!("left in Milvus: {why}"))
            }
            Outcome::Nothing | Outcome::Dropped(_) => {}
        }
    }
    // Said with each collection whose imports may still run (the job's own
    // error is the one it ended with).
    if let Some(why) = &done.imports_in_place {
        let left = format!(
            "Milvus may still import from backup {:?} ({why}): delete the backup only once \
             those imports ended",
            s.backup_name
        );
        for c in s.collections.iter_mut() {
            if c.state != JobState::Succeeded && c.imports.iter().any(|r| !r.done) {
                append_error(&mut c.error, &left);
            }
        }
    }
    // Partitions and indexes added to a collection the job did not create
    // (skip_create) stay: said with the collection, by name.
    for c in s.collections.iter_mut() {
        if c.state == JobState::Succeeded || c.created_id.is_some() {
            continue;
        }
        let added = [
            ("partitions", &c.partitions_added),
            ("indexes", &c.indexes_added),
        ]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what} {names:?}"))
        .collect::<Vec<_>>();
        if !added.is_empty() {
            let left = format!(
                "{} it asked Milvus to add to {} stay: drop them if they are not wanted",
                added.join(" and "),
                c.target
            );
            append_error(&mut c.error, &left);
        }
    }
    // Imports into a collection the job did not create (skip_create) are
    // never undone: said with the collection, with the rows recorded.
    for c in s.collections.iter_mut() {
        if c.state == JobState::Succeeded || c.created_id.is_some() || c.imports.is_empty() {
            continue;
        }
        let recorded: i64 = c.imports.iter().filter(|r| r.done).map(|r| r.rows).sum();
        c.imported_rows = c.imported_rows.max(recorded);
        let left = format!(
            "the rows of its {} imports stay in {} ({recorded} recorded as imported): a \
             collection this restore did not create is never dropped",
            c.imports.len(),
            c.target
        );
        append_error(&mut c.error, &left);
    }
}

/// Adds `note` to `error` once.
pub(super) fn append_error(error: &mut Option<String>, note: &str) {
    *error = Some(match error.take() {
        Some(e) if !e.contains(note) => format!("{e}; {note}"),
        Some(e) => e,
        None => note.to_string(),
    });
}

/// A token that fires when any of `leases` is lost (cancel it to end its watchers).
fn any_lost(leases: &[Lease]) -> CancellationToken {
    let any = CancellationToken::new();
    for lease in leases {
        let (lost, any) = (lease.lost(), any.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = lost.cancelled() => any.cancel(),
                _ = any.cancelled() => {}
            }
        });
    }
    any
}

/// [`Error::NotFound`] when backup `req` names is no longer complete, and
/// [`Error::FailedPrecondition`] when it is another backup now (its id is
/// not `planned`).
async fn still_the_planned(ctx: &Context, req: &RestoreRequest, planned: &str) -> Result<()> {
    let name = req.backup_name();
    match ctx.catalog.read(name).await? {
        Some(b) if b.id == planned => Ok(()),
        Some(b) => Err(Error::FailedPrecondition(format!(
            "backup {:?} was deleted and made again (id {} was {planned}) while this \
             restore was planned; restore it again",
            name.as_str(),
            b.id
        ))),
        None => Err(Error::not_found("backup", name.as_str())),
    }
}
