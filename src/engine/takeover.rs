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
        for record in shared.unfinished::<BackupSnapshot>(finished).await? {
            let name = record.name.clone();
            if self.backups.runs_here(&name) {
                continue;
            }
            let Some(order) = record.order.clone() else {
                continue;
            };
            let lease = format!("backup/{name}");
            if self.ctx.leases().holder(&lease).await?.is_some() {
                continue;
            }
            match self.take_over(record.clone(), order).await {
                // Another server took it first.
                Ok(()) | Err(Error::Aborted(_)) => {}
                // Storage trouble: tried again at the next sweep.
                Err(e @ (Error::Unavailable { .. } | Error::Storage { .. })) => {
                    warn!(backup = %name, error = %e, "cannot take the backup over now")
                }
                Err(e) => self.fail_unresumable(record, e).await,
            }
        }
        Ok(())
    }

    /// A backup that cannot be resumed (its collection was dropped, say)
    /// ends FAILED with the reason; what its dead server copied is removed
    /// under the name's hold (left alone when another job holds it).
    async fn fail_unresumable(&self, mut record: BackupSnapshot, reason: Error) {
        let name = record.name.clone();
        warn!(backup = %name, error = %reason, "a backup whose server died cannot be resumed");
        let job = uuid::Uuid::new_v4().to_string();
        match self
            .ctx
            .leases()
            .hold_for_writing(&name, &job, "clean up")
            .await
        {
            Ok(hold) => {
                if matches!(self.ctx.catalog.is_complete(&name).await, Ok(false))
                    && let Err(e) = self.ctx.catalog.delete(&name).await
                {
                    warn!(backup = %name, error = %e, "cannot remove the unresumable backup's objects");
                }
                hold.release().await;
            }
            Err(e) => {
                return warn!(backup = %name, error = %e, "the name is held; its objects are left alone");
            }
        }
        record.finish(&Err(Error::FailedPrecondition(format!(
            "its server died and it could not be resumed: {reason}"
        ))));
        if let Some(shared) = self.pool.shared() {
            shared.finish(&record).await;
        }
    }

    async fn take_over(&self, record: BackupSnapshot, order: BackupOrder) -> Result<()> {
        let name = record.name.clone();
        if let Some(info) = self.ctx.catalog.read(&name).await? {
            info!(backup = %name, "a backup whose server died had completed: marked SUCCEEDED");
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
