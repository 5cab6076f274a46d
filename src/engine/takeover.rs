//! Backups whose server died are taken over. Every few seconds each server
//! reads the shared records of unfinished backups; one that no process of
//! this server runs and whose name's lease has expired (its owner stopped
//! renewing it) is resumed here: the job's plan takes the lease over, which
//! exactly one server wins, and the run keeps the objects the dead server
//! copied (see `backup/resume.rs`). A backup whose meta the dead server
//! completed is only marked SUCCEEDED.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::Engine;
use crate::error::{Error, Result};
use crate::jobs::{BackupOrder, BackupSnapshot, JobSnapshot};
use crate::meta::summary::snapshot_of;
use crate::model::{BackupInput, BackupRequest, Caller};

/// How often a server looks for backups to take over.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

impl Engine {
    /// Looks for backups to take over until the engine shuts down.
    pub fn start_takeover(self: &Arc<Self>) {
        let (engine, stop) = (self.clone(), self.stop.clone());
        tokio::spawn(async move {
            let mut finished = HashSet::new();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
                }
                if let Err(e) = engine.take_over_backups(&mut finished).await {
                    warn!(error = %e, "cannot look for backups to take over");
                }
            }
        });
    }

    async fn take_over_backups(&self, finished: &mut HashSet<String>) -> Result<()> {
        let Some(shared) = self.pool.shared() else {
            return Ok(());
        };
        let leases = self.ctx.leases();
        // Taken over only once the name's lease is past its expiry by half a
        // TTL, even when released: the dead process's other leases (reads of
        // an incremental backup's bases) have expired by then, and an owner
        // that released the name as its job ended has written the end into
        // the shared record (it does so right after the release).
        let settle = leases.ttl() / 2;
        for record in shared.unfinished::<BackupSnapshot>(finished).await? {
            let name = record.name.clone();
            if self.backups.runs_here(&name) {
                continue;
            }
            let Some(order) = record.order.clone() else {
                continue;
            };
            // Held, or expired too recently.
            if !leases
                .expired_for(&format!("backup/{name}"), settle)
                .await?
            {
                continue;
            }
            let outcome = match shared.cancel_requested::<BackupSnapshot>(&name).await? {
                true => Err(Error::Cancelled(format!(
                    "backup {name} was cancelled while its server was down"
                ))),
                false => self.take_over(record.clone(), order).await,
            };
            match outcome {
                Ok(()) => {}
                // Milvus no longer has what it backs up.
                Err(e @ Error::Milvus { .. }) if e.is_milvus_not_found() => {
                    self.end_unresumable(record, e).await
                }
                // Another server took it first, or this one cannot start a
                // job now, or storage or Milvus failed: the next sweep tries
                // again (a completed one is then marked so).
                Err(
                    Error::Aborted(_)
                    | Error::AlreadyExists { .. }
                    | Error::ResourceExhausted(_)
                    | Error::ShuttingDown
                    | Error::Unavailable { .. }
                    | Error::Storage { .. }
                    | Error::Milvus { .. }
                    | Error::Internal(_),
                ) => {}
                Err(e) => self.end_unresumable(record, e).await,
            }
        }
        Ok(())
    }

    /// A backup that cannot be resumed (its collection was dropped, it was
    /// cancelled, its folder is not its own) ends with the reason; what it
    /// copied is removed under the name's hold, only when the folder's plan
    /// is the job's own.
    async fn end_unresumable(&self, mut record: BackupSnapshot, reason: Error) {
        let name = record.name.clone();
        warn!(backup = %name, error = %reason, "a backup whose server died is not resumed");
        let job = uuid::Uuid::new_v4().to_string();
        let hold = match self
            .ctx
            .leases()
            .hold_for_writing(&name, &job, "clean up")
            .await
        {
            Ok(hold) => hold,
            Err(e) => {
                return warn!(backup = %name, error = %e, "the name is held; tried again later");
            }
        };
        let ours = matches!(
            crate::backup::plan_owner(&self.ctx, &name).await,
            Ok(Some(owner)) if owner == record.id
        );
        if ours
            && matches!(self.ctx.catalog.is_complete(&name).await, Ok(false))
            && let Err(e) = self.ctx.catalog.delete(&name).await
        {
            warn!(backup = %name, error = %e, "cannot remove the backup's objects");
        }
        hold.release().await;
        let reason = match reason {
            Error::Cancelled(m) => Error::Cancelled(m),
            e => Error::FailedPrecondition(format!(
                "its server died and it could not be resumed: {e}"
            )),
        };
        record.finish(&Err(reason));
        if let Some(shared) = self.pool.shared() {
            shared.finish(&record).await;
        }
    }

    async fn take_over(&self, record: BackupSnapshot, order: BackupOrder) -> Result<()> {
        let name = record.name.clone();
        if let Some(info) = self.ctx.catalog.read(&name).await? {
            info!(backup = %name, "a backup whose server died had completed: marked SUCCEEDED");
            crate::backup::completed_elsewhere(&self.ctx, &info).await;
            if let Some(shared) = self.pool.shared() {
                shared.finish(&snapshot_of(&info)).await;
            }
            return Ok(());
        }
        let traceparent = record
            .trace_id
            .as_deref()
            .map(|t| format!("00-{t}-{}-01", "0".repeat(15) + "1"))
            .unwrap_or_default();
        let req = BackupRequest::resume(BackupInput {
            name: name.clone(),
            collections: order.collections,
            databases: order.databases,
            meta_only: order.meta_only,
            incremental: order.incremental,
            caller: Caller::new(record.id.clone(), &traceparent),
        })?;
        self.create_backup(req).await?;
        info!(backup = %name, id = %record.id, "took over a backup whose server died");
        Ok(())
    }
}
