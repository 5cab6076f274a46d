//! After a restart: the jobs of the previous process are remembered again, and
//! those it left running are marked FAILED ("interrupted") and cleaned up, as a
//! failed job would have been.

use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

use super::Engine;
use crate::jobs::{JobState, SwapStep};

/// The reason given to jobs a stopped process left running.
pub const INTERRUPTED: &str = "interrupted: the server stopped while the job ran";

impl Engine {
    /// Loads the job records and marks interrupted jobs. An interrupted
    /// backup's objects are removed here; an interrupted restore's collections
    /// are dropped in the background (that can wait minutes for Milvus's
    /// imports to end, and the server must not wait to listen).
    pub(super) async fn recover(self: &Arc<Self>) {
        let Some(records) = &self.records else {
            return;
        };
        records.prune();
        for mut b in records.backups() {
            if !b.state.is_terminal() {
                match self.ctx.catalog.read(&b.name).await {
                    // The meta is the commit point: written last, so the backup is complete.
                    Ok(Some(info)) => {
                        info!(backup = %b.name, "backup completed its meta before the restart");
                        b = crate::backup::snapshot_of(&info);
                    }
                    Ok(None) => {
                        warn!(backup = %b.name, "backup was interrupted by a restart");
                        b.state = JobState::Failed;
                        b.error = Some(INTERRUPTED.into());
                        b.end_time = Some(SystemTime::now());
                        // Without its meta it is not a backup: remove what was
                        // copied, under the name's lease (the job takes its own
                        // lease back; another holder means the name is in use).
                        let leases = self.ctx.leases();
                        match leases
                            .acquire(&format!("backup/{}", b.name), &b.id, "recover")
                            .await
                        {
                            Ok(lease) => {
                                if let Err(e) = self.ctx.catalog.delete(&b.name).await {
                                    warn!(backup = %b.name, error = %e, "cannot remove the interrupted backup's objects");
                                }
                                lease.release().await;
                            }
                            Err(e) => {
                                warn!(backup = %b.name, error = %e, "the name is in use elsewhere; its objects are left alone")
                            }
                        }
                    }
                    Err(e) => {
                        warn!(backup = %b.name, error = %e, "cannot read the interrupted backup");
                        b.state = JobState::Failed;
                        b.error = Some(format!(
                            "{INTERRUPTED}; its objects could not be checked: {e}"
                        ));
                        b.end_time = Some(SystemTime::now());
                    }
                }
                records.save_backup(&b);
            }
            self.jobs.remember_backup(b);
        }
        for mut r in records.restores() {
            // A replace that a crash (even one during an earlier recovery) left
            // half-way is finished again: cleanup is by identity, so repeating it is safe.
            let swap_pending = r.collections.iter().any(|c| {
                c.state != JobState::Succeeded
                    && c.temp.is_some()
                    && matches!(c.swap, SwapStep::DroppingOriginal | SwapStep::Renaming)
            });
            if !r.state.is_terminal() || swap_pending {
                if !r.state.is_terminal() {
                    warn!(restore = %r.id, "restore was interrupted by a restart");
                    r.state = JobState::Failed;
                    r.error = Some(INTERRUPTED.into());
                    r.end_time = Some(SystemTime::now());
                    records.save_restore(&r);
                }
                // Cleanup by identity: drops only what this job created, and
                // completes a replace whose original was already dropped.
                let (engine, snapshot, records) = (self.clone(), r.clone(), records.clone());
                self.tasks.spawn(async move {
                    let done = crate::restore::clean_up(&engine.ctx, &snapshot).await;
                    let mut after = snapshot;
                    super::jobs::apply_cleanup(&mut after, &done);
                    records.save_restore(&after);
                    // Its holds are free once it is cleaned up, not only after they expire.
                    let leases = engine.ctx.leases();
                    let mut names = vec![format!("reads/{}/{}", after.backup_name, after.id)];
                    names.extend(
                        after
                            .collections
                            .iter()
                            .map(|c| format!("target/{}.{}", c.target.db, c.target.name)),
                    );
                    for name in names {
                        if let Err(e) = leases.release_for_job(&name, &after.id).await {
                            warn!(restore = %after.id, lease = %name, error = %e, "cannot release the lease");
                        }
                    }
                    engine.jobs.remember_restore(after);
                });
            }
            self.jobs.remember_restore(r);
        }
    }
}
