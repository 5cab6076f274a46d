//! Jobs whose server died are taken over. Every third of a lease TTL (1 to
//! 10 s) each server reads the shared records of unfinished backups and restores; one that no
//! process of this server runs and whose lease has expired (its owner
//! stopped renewing it) is resumed here under the same id: the job's plan
//! takes the leases over, which exactly one server wins.
//! - A backup keeps the objects the dead server copied (see
//!   `backup/resume.rs`); one whose meta the dead server completed is only
//!   marked SUCCEEDED.
//! - A restore continues from its record: collections restored stay, imports
//!   recorded are followed, not asked again (see `restore/imports.rs`).
//! - A delete runs again over what is left of the backup (it removes only
//!   what no other backup references); one that finds nothing left ended.
//!
//! A server that cannot reach Milvus resumes no backup or restore (it would
//! only fail them): it leaves them to a replica that can, or to itself once
//! Milvus answers again. Nor does a server of another Milvus sharing the
//! backup storage (`milvus/identity.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tracing::{info, warn};

use super::Engine;
use crate::delete::DeleteRequest;
use crate::error::{Error, Result};
use crate::jobs::{
    BackupOrder, BackupSnapshot, DeleteSnapshot, JobSnapshot, RestoreOrder, RestoreSnapshot,
    SharedRecords, holds,
};
use crate::meta::summary::snapshot_of;
use crate::milvus::identity::Whose;
use crate::model::{BackupInput, BackupName, BackupRequest, Caller, RestoreInput, RestoreRequest};

/// How often a server looks for jobs to take over: a third of the lease
/// TTL (a dead server's job waits for its lease to expire and half a TTL
/// more anyway), within these bounds. Each look is three LISTs, paid by
/// every server also while nothing is left to take over.
const SWEEP_BOUNDS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(10));

/// The first and the longest wait before the cleanup of an ended restore
/// is tried here again, after a try that did not run to its end.
const CLEANUP_RETRY: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(1800));

/// When the cleanup of each ended restore may next be tried here, and the
/// wait before that.
#[derive(Default)]
struct CleanupRetries(HashMap<String, (Instant, Duration)>);

/// The jobs of another Milvus this server was told of (logged once each).
#[derive(Default)]
struct Foreign(HashSet<String>);

/// Whether Milvus answers this server, asked at most once per look and only
/// when a job to resume needs it: `Some(why)` when it does not.
#[derive(Default)]
struct MilvusProbe(OnceCell<Option<String>>);

impl Engine {
    /// Looks for backups to take over until the engine shuts down.
    pub fn start_takeover(self: &Arc<Self>) {
        let (engine, stop) = (self.clone(), self.stop.clone());
        let every = (self.ctx.leases().ttl() / 3).clamp(SWEEP_BOUNDS.0, SWEEP_BOUNDS.1);
        tokio::spawn(async move {
            let mut finished = HashSet::new();
            let mut foreign = Foreign::default();
            let mut cleanups = CleanupRetries::default();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let milvus = MilvusProbe::default();
                if let Err(e) = engine
                    .take_over_backups(&mut finished, &mut foreign, &milvus)
                    .await
                {
                    warn!(error = %e, "cannot look for backups to take over");
                }
                if let Err(e) = engine
                    .take_over_restores(&mut finished, &mut foreign, &milvus, &mut cleanups)
                    .await
                {
                    warn!(error = %e, "cannot look for restores to take over");
                }
                if let Err(e) = engine.take_over_deletes(&mut finished).await {
                    warn!(error = %e, "cannot look for deletes to take over");
                }
            }
        });
    }

    /// The unfinished shared records of one kind whose job runs in no
    /// process of this server (`lease_of` gives `None` for those that do) and
    /// whose lease (`lease_of`) has been expired for at least half a TTL.
    async fn orphans<T: JobSnapshot>(
        &self,
        shared: &SharedRecords,
        finished: &mut HashSet<String>,
        lease_of: impl Fn(&T) -> Option<String>,
    ) -> Result<Vec<T>> {
        self.orphans_or(shared, finished, lease_of, |_| false).await
    }

    /// [`Engine::orphans`], with the ended records for which `wanted` holds.
    async fn orphans_or<T: JobSnapshot>(
        &self,
        shared: &SharedRecords,
        finished: &mut HashSet<String>,
        lease_of: impl Fn(&T) -> Option<String>,
        wanted: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>> {
        let leases = self.ctx.leases();
        let mut out = Vec::new();
        for record in shared.unfinished_or::<T>(finished, wanted).await? {
            let Some(lease) = lease_of(&record) else {
                continue;
            };
            // Held, or expired too recently.
            if leases.settled(&lease).await? {
                out.push(record);
            }
        }
        Ok(out)
    }

    async fn take_over_backups(
        &self,
        finished: &mut HashSet<String>,
        foreign: &mut Foreign,
        milvus: &MilvusProbe,
    ) -> Result<()> {
        let Some(shared) = self.pool.shared() else {
            return Ok(());
        };
        // Taken over only once the name's lease is past its expiry by half a
        // TTL, even when released: the dead process's other leases (reads of
        // an incremental backup's bases) have expired by then, and an owner
        // that released the name as its job ended has written the end into
        // the shared record (it tries until then, see `Fence::end_deadline_ms`).
        let orphans = self
            .orphans(shared, finished, |b: &BackupSnapshot| {
                (!self.backups.runs_here(&b.name)).then(|| holds::writer(&b.name))
            })
            .await?;
        for record in orphans {
            let name = record.name.clone();
            if !self
                .of_this_milvus(&record, record.milvus_id.as_deref(), foreign)
                .await
            {
                continue;
            }
            let Some(order) = record.order.clone() else {
                continue;
            };
            let cancelled = shared.cancel_requested::<BackupSnapshot>(&name).await?;
            let outcome = self
                .take_over(record.clone(), order, cancelled, milvus)
                .await;
            match outcome {
                Ok(()) => {}
                // Milvus no longer has what it backs up.
                Err(e @ Error::Milvus { .. }) if e.is_milvus_not_found() => {
                    self.end_unresumable(record, e).await
                }
                Err(e) if tried_again(&e) => {}
                Err(e) => self.end_unresumable(record, e).await,
            }
        }
        Ok(())
    }

    async fn take_over_restores(
        &self,
        finished: &mut HashSet<String>,
        foreign: &mut Foreign,
        milvus: &MilvusProbe,
        cleanups: &mut CleanupRetries,
    ) -> Result<()> {
        let Some(shared) = self.pool.shared() else {
            return Ok(());
        };
        // With the ended ones whose cleanup is unfinished: it is tried again.
        let orphans = self
            .orphans_or(
                shared,
                finished,
                |r: &RestoreSnapshot| {
                    (!self.restores.runs_here(&r.id)).then(|| holds::reader(&r.backup_name, &r.id))
                },
                crate::restore::cleanup_unfinished,
            )
            .await?;
        for record in orphans {
            let id = record.id.clone();
            if !self
                .of_this_milvus(&record, record.milvus_id.as_deref(), foreign)
                .await
            {
                continue;
            }
            let Some(order) = record.order.clone() else {
                continue;
            };
            // Both a resume and the cleanup of a cancelled restore need
            // Milvus: without it the cleanup would leave its collections.
            // Without it, every restore waits for the next look (the probe
            // logged why).
            if self.milvus_answers(milvus).await.is_err() {
                return Ok(());
            }
            if record.state.is_terminal() {
                self.clean_up_again(&record, cleanups).await;
                continue;
            }
            let outcome = match shared.cancel_requested::<RestoreSnapshot>(&id).await? {
                true => Err(Error::Cancelled(format!(
                    "restore {id} was cancelled while its server was down"
                ))),
                false => self.resume_restore(&record, order).await,
            };
            match outcome {
                Ok(()) => {}
                Err(e) if tried_again(&e) => {}
                Err(e) => {
                    let reason = match e {
                        Error::Cancelled(m) => Error::Cancelled(m),
                        e => Error::FailedPrecondition(format!(
                            "its server died and it could not be resumed: {e}"
                        )),
                    };
                    if let Err(e) = crate::restore::abandon(&self.ctx, record, reason).await {
                        warn!(restore = %id, error = %e, "cannot end the restore now; tried again later")
                    }
                }
            }
        }
        Ok(())
    }

    async fn take_over_deletes(&self, finished: &mut HashSet<String>) -> Result<()> {
        let Some(shared) = self.pool.shared() else {
            return Ok(());
        };
        let orphans = self
            .orphans(shared, finished, |d: &DeleteSnapshot| {
                (!self.deletes.runs_here(&d.id)).then(|| holds::writer(&d.backup_name))
            })
            .await?;
        for mut record in orphans {
            let id = record.id.clone();
            let req = BackupName::parse(&record.backup_name)
                .map(|name| DeleteRequest::resume(name, id.clone(), record.trace_id.clone()));
            let outcome = match req {
                Ok(req) => self.deletes.start(&self.ctx, req).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {
                    info!(delete = %id, backup = %record.backup_name, "took over a delete whose server died")
                }
                // Its server removed everything before it died.
                Err(Error::NotFound { .. }) => {
                    info!(delete = %id, backup = %record.backup_name, "a delete whose server died had removed the backup");
                    record.finish(&Ok(()));
                    shared.finish(&record).await;
                }
                Err(e) if tried_again(&e) => {}
                Err(e) => {
                    record.finish(&Err(not_resumed(e)));
                    shared.finish(&record).await;
                }
            }
        }
        Ok(())
    }

    /// Runs again the unfinished cleanup of ended restore `record`
    /// ([`crate::restore::clean_up_again`]), unless one tried here failed
    /// too recently ([`CleanupRetries`]).
    async fn clean_up_again(&self, record: &RestoreSnapshot, retries: &mut CleanupRetries) {
        let now = Instant::now();
        if retries
            .0
            .get(&record.id)
            .is_some_and(|(next, _)| now < *next)
        {
            return;
        }
        match crate::restore::clean_up_again(&self.ctx, record).await {
            Ok(true) => {
                retries.0.remove(&record.id);
            }
            // Not run (a target held, the record changed), or run and not
            // to its end: after a wait that doubles each time.
            outcome => {
                if let Err(e) = outcome {
                    warn!(restore = %record.id, error = %e, "cannot clean up the ended restore now; tried again later");
                }
                let wait = retries
                    .0
                    .get(&record.id)
                    .map_or(CLEANUP_RETRY.0, |(_, w)| (*w * 2).min(CLEANUP_RETRY.1));
                retries.0.insert(record.id.clone(), (now + wait, wait));
            }
        }
    }

    async fn resume_restore(&self, record: &RestoreSnapshot, order: RestoreOrder) -> Result<()> {
        let req = RestoreRequest::resume(RestoreInput {
            backup_name: record.backup_name.clone(),
            collections: order.collections,
            databases: order.databases,
            suffix: order.suffix,
            renames: order.renames,
            drop_existing: order.drop_existing,
            skip_create: order.skip_create,
            restore_index: order.restore_index,
            load: order.load,
            meta_only: order.meta_only,
            caller: resumed_caller(&record.id, record.trace_id.as_deref()),
        })?;
        self.restores.start(&self.ctx, req).await?;
        info!(restore = %record.id, "took over a restore whose server died");
        Ok(())
    }

    /// Whether `record`, a job of the Milvus `theirs` (`None`: recorded
    /// without one), is for this server's Milvus. A job of another Milvus
    /// sharing the backup storage is left to that Milvus's servers: resumed
    /// here, a restore would write into a Milvus nobody asked to change, a
    /// backup would hold another Milvus's collections, and an end here would
    /// clean up by ids of the other Milvus. Said once per job; when this
    /// Milvus's id cannot be read, only jobs recorded without one are taken
    /// over.
    async fn of_this_milvus<T: JobSnapshot>(
        &self,
        record: &T,
        theirs: Option<&str>,
        foreign: &mut Foreign,
    ) -> bool {
        let whose = self.ctx.milvus_id.whose(theirs).await;
        if whose == Whose::Ours {
            return true;
        }
        // Said once per job and state (`?id`: not known).
        let said = match whose {
            Whose::Unknown(_) => format!("?{}", record.id()),
            _ => record.id().to_string(),
        };
        if foreign.0.insert(said) {
            let (job, key, milvus) = (record.id(), record.key(), theirs.unwrap_or_default());
            match whose {
                Whose::Unknown(why) => warn!(job, key, milvus, error = %why,
                    "cannot tell whether a dead server's {} is of this server's Milvus (its id does not read): left to servers that can tell", T::NOUN),
                _ => info!(
                    job,
                    key,
                    milvus,
                    "a dead server's {} is of another Milvus: left to that Milvus's servers",
                    T::NOUN
                ),
            }
        }
        false
    }

    /// [`Error::Unavailable`] (tried again at the next look) when this server
    /// cannot reach Milvus ([`Engine::milvus_unreachable`]): a job resumed here would
    /// fail at its first call. Any other answer lets the job go on (a refusal
    /// of our credentials fails it, naming why, as it did before).
    async fn milvus_answers(&self, probe: &MilvusProbe) -> Result<()> {
        let failure = probe
            .0
            .get_or_init(|| async {
                let why = self.milvus_unreachable().await?;
                warn!(error = %why, "cannot reach Milvus: dead servers' backups and restores are left to a replica that can");
                Some(why)
            })
            .await;
        match failure {
            None => Ok(()),
            Some(why) => Err(Error::Unavailable {
                service: "milvus",
                address: self.ctx.milvus.address().to_string(),
                detail: format!("jobs are not resumed here: {why}"),
            }),
        }
    }

    /// Ends a backup that cannot be resumed and records its end (see
    /// [`crate::backup::abandon`]).
    async fn end_unresumable(&self, record: BackupSnapshot, reason: Error) {
        let reason = match reason {
            Error::Cancelled(m) => Error::Cancelled(m),
            e => not_resumed(e),
        };
        crate::backup::abandon(&self.ctx, record, reason).await
    }

    /// Marks `record` SUCCEEDED when its backup completed, else resumes it,
    /// unless it was `cancelled` (a marker is left): then it is ended.
    async fn take_over(
        &self,
        record: BackupSnapshot,
        order: BackupOrder,
        cancelled: bool,
        milvus: &MilvusProbe,
    ) -> Result<()> {
        let name = record.name.clone();
        // Before the name's lease: taking it, even briefly, would put the
        // job's takeover off by a TTL for the replicas that can reach Milvus.
        if !cancelled {
            self.milvus_answers(milvus).await?;
        }
        // Under the name's lease: a delete of the completed backup cannot
        // run between the read and the publication of its index entry.
        let job = uuid::Uuid::new_v4().to_string();
        let hold = self
            .ctx
            .leases()
            .acquire(&holds::writer(&name), &job, "mark completed")
            .await?;
        // Read again under the lease: another server may have ended it since
        // it was listed.
        let shared = self.ctx.shared_records();
        match shared.unended(&record).await {
            Ok(Some(_)) => {}
            other => {
                hold.release().await;
                return other.map(|_| ());
            }
        }
        // Its end is recorded before the lease is let go.
        let completed = self.ctx.catalog.read(&name).await;
        if let Ok(Some(info)) = &completed {
            info!(backup = %name, "a backup whose server died had completed: marked SUCCEEDED");
            crate::backup::completed_elsewhere(&self.ctx, info).await;
            shared
                .finish_held(&snapshot_of(info), &[hold.fence()])
                .await;
        }
        hold.release().await;
        if completed?.is_some() {
            return Ok(());
        }
        if cancelled {
            return Err(Error::Cancelled(format!(
                "backup {name} was cancelled while its server was down"
            )));
        }
        let req = BackupRequest::resume(BackupInput {
            name: name.clone(),
            collections: order.collections,
            databases: order.databases,
            meta_only: order.meta_only,
            incremental: order.incremental,
            caller: resumed_caller(&record.id, record.trace_id.as_deref()),
            generated_name: false,
        })?;
        self.create_backup(req).await?;
        info!(backup = %name, id = %record.id, "took over a backup whose server died");
        Ok(())
    }
}

/// The caller of a resumed job: its id as the request id, and the trace of
/// the request that started it.
fn resumed_caller(id: &str, trace_id: Option<&str>) -> Caller {
    let traceparent = trace_id
        .map(|t| format!("00-{t}-{}-01", "0".repeat(15) + "1"))
        .unwrap_or_default();
    Caller::new(id.to_string(), &traceparent)
}

/// The end of a job that could not be resumed: the error's kind (a
/// DATA_LOSS stays one), its message after the reason.
fn not_resumed(e: Error) -> Error {
    Error::Recorded {
        kind: e.kind(),
        message: format!("its server died and it could not be resumed: {e}"),
    }
}

/// Errors after which the next sweep tries again: another server took the
/// job first, this one cannot start a job now, or storage or Milvus failed.
fn tried_again(e: &Error) -> bool {
    matches!(
        e,
        Error::Aborted(_)
            | Error::AlreadyExists { .. }
            | Error::ResourceExhausted(_)
            | Error::ShuttingDown
            | Error::Unavailable { .. }
            | Error::Storage { .. }
            | Error::Milvus { .. }
            | Error::Internal(_)
    )
}
