//! A restore as a job: planned against the backup, checked against Milvus
//! under the leases of its targets, run, and cleaned up by identity when it
//! does not succeed (also after a crash, by the next process).

use std::time::{Duration, SystemTime};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Outcome, RestoreTarget, check_targets, clean_up, plan, run};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::lease::release_all;
use crate::jobs::runner::{INTERRUPTED, JobKind, Recovered};
use crate::jobs::{JobHandle, JobState, Lease, RestoreCollectionStatus, RestoreSnapshot, SwapStep};
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

    fn request_id(req: &RestoreRequest) -> &str {
        req.caller().request_id()
    }

    async fn plan(ctx: &Context, req: RestoreRequest) -> Result<(Self, RestoreSnapshot)> {
        let (backup, mut targets) = plan(ctx, &req).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let target_refs: Vec<CollectionRef> = targets.iter().map(|t| t.target.clone()).collect();
        let leases = ctx
            .leases()
            .hold_for_restore(&id, req.backup_name(), &target_refs)
            .await?;
        if let Err(e) = check_targets(ctx, &req, &mut targets).await {
            release_all(leases).await;
            return Err(e);
        }
        let snapshot = pending(id, &req, &targets);
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

    async fn clean_up(&self, _error: &Error, job: &JobHandle<RestoreSnapshot>) {
        let done = clean_up(&self.ctx, &job.snapshot()).await;
        job.update(|s| apply_cleanup(s, &done));
    }

    fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    async fn release(self) {
        self.lost.cancel();
        release_all(self.leases).await;
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
        let swap_pending = r.collections.iter().any(|c| {
            c.state != JobState::Succeeded
                && c.temp.is_some()
                && matches!(c.swap, SwapStep::DroppingOriginal | SwapStep::Renaming)
        });
        if r.state.is_terminal() && !swap_pending {
            return Recovered::at_once(r);
        }
        if !r.state.is_terminal() {
            warn!(restore = %r.id, "restore was interrupted by a restart");
            r.state = JobState::Failed;
            r.error = Some(INTERRUPTED.into());
            r.end_time = Some(SystemTime::now());
        }
        // Cleanup by identity, in the background (it can wait minutes for
        // Milvus's imports to end, and the server must not wait to listen):
        // it drops only what this job created, and completes a replace whose
        // original was already dropped.
        let (ctx, snapshot) = (ctx.clone(), r.clone());
        let later = async move {
            let done = clean_up(&ctx, &snapshot).await;
            let mut after = snapshot;
            apply_cleanup(&mut after, &done);
            // Its holds are free once it is cleaned up, not only after they expire.
            let targets: Vec<CollectionRef> =
                after.collections.iter().map(|c| c.target.clone()).collect();
            ctx.leases()
                .release_restore(&after.id, &after.backup_name, &targets)
                .await;
            after
        };
        Recovered {
            now: r,
            later: Some(later.boxed()),
            resume: false,
        }
    }
}

/// The snapshot of a restore that has not started.
fn pending(id: String, req: &RestoreRequest, targets: &[RestoreTarget]) -> RestoreSnapshot {
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
    }
}

/// Marks the collections whose replace cleanup completed as restored.
fn apply_cleanup(s: &mut RestoreSnapshot, done: &[(usize, Outcome)]) {
    for (i, outcome) in done {
        if *outcome == Outcome::SwapCompleted {
            let c = &mut s.collections[*i];
            c.state = JobState::Succeeded;
            c.swap = SwapStep::Done;
        }
    }
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
