//! The tasks around a job's work: its supervision, its checkpoints and the
//! writer that keeps its record as it runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::JobKind;
use crate::error::{Error, Result};
use crate::jobs::{Fence, JobSnapshot, JobStore, SharedRecords};

/// Runs a job's work: a panic becomes an internal error, a cancellation (on
/// request, or at the end of a shutdown's grace period) stops it at its next
/// await. The runner counts the end in the metrics, once it knows it.
pub(super) async fn supervise(
    kind: &'static str,
    token: &CancellationToken,
    shutdown: &CancellationToken,
    lease_lost: &CancellationToken,
    work: impl Future<Output = Result<()>>,
) -> Result<()> {
    crate::metrics::global().job_started(kind);
    let result = tokio::select! {
        r = std::panic::AssertUnwindSafe(work).catch_unwind() => {
            r.unwrap_or_else(|_| Err(Error::Internal(format!("the {kind} job panicked"))))
        }
        _ = token.cancelled() => Err(Error::Cancelled(format!("{kind} cancelled on request"))),
        _ = shutdown.cancelled() => Err(Error::Cancelled(format!(
            "{kind} interrupted: the server shut down before it finished"
        ))),
        _ = lease_lost.cancelled() => Err(Error::Aborted(format!(
            "{kind} stopped: it lost its hold on its backup or target to another process"
        ))),
    };
    result
}

/// The checkpoint of a job: its local record, then its shared one (the one
/// another server resumes it from), both written before the step is taken.
/// The shared one is written only while the job's leases `fences` leave
/// time for it to land (see [`SharedRecords::save_latest_held`]).
pub(super) fn checkpoint<K: JobKind>(
    records: Option<JobStore>,
    shared: Option<SharedRecords>,
    turn: Arc<tokio::sync::Mutex<()>>,
    latest: watch::Receiver<K::Snapshot>,
    fences: Vec<Fence>,
) -> crate::jobs::Checkpoint<K::Snapshot> {
    let fences: Arc<[Fence]> = fences.into();
    Arc::new(move |s| {
        let local = records.as_ref().map_or(Ok(()), |r| r.checkpoint(s));
        let (shared, turn, latest) = (shared.clone(), turn.clone(), latest.clone());
        let fences = fences.clone();
        let id = s.id().to_string();
        async move {
            local?;
            let Some(shared) = shared else { return Ok(()) };
            shared
                .save_latest_held(&turn, || latest.borrow().clone(), &fences)
                .await
                .map_err(|e| {
                    e.context(&format!(
                        "cannot record {} {id} in the backup storage before its next step",
                        K::Snapshot::NOUN
                    ))
                })
        }
        .boxed()
    })
}

/// Rewrites a running job's record as it changes (at most once per `interval`).
pub(super) fn keep_record<T, F>(
    tasks: &TaskTracker,
    mut rx: watch::Receiver<T>,
    interval: Duration,
    save: F,
) where
    T: JobSnapshot,
    F: Fn(&T) + Send + 'static,
{
    tasks.spawn(async move {
        loop {
            let snap = rx.borrow_and_update().clone();
            // The last state is recorded by the job itself as it ends
            // (`save_last_then`), before anyone sees it: nothing to add here.
            if snap.state().is_terminal() {
                return;
            }
            save(&snap);
            if !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
}
