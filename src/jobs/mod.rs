//! Jobs: their snapshots, the runner every kind of job runs under, the
//! registry that lets callers find and watch them, their records, and the
//! leases they hold in the backup storage.
//! A job runs in its own task and publishes snapshots on a `watch` channel, so a
//! caller that goes away never stops it.

pub mod holds;
pub mod lease;
pub(crate) mod registry;
pub mod runner;
pub mod shared;
pub(crate) mod snapshot;
mod store;

pub use lease::{Fence, Lease, LeaseRecord, Leases, host_pid};
pub use registry::{Registry, Started};
pub use runner::{INTERRUPTED, JobKind, Pool, Runner};
pub use shared::SharedRecords;
pub use snapshot::{
    BackupOrder, BackupSnapshot, CollectionSummary, DeleteSnapshot, ImportRecord, JobSnapshot,
    JobState, ObjectProblem, PhaseTime, Progress, RestoreCollectionStatus, RestoreOrder,
    RestoreSnapshot, Reuse, SwapStep, VerifyProgress, VerifySnapshot,
};
pub use store::{JobStore, MAX_RECORDS};

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// Waits for a job's last snapshot.
pub async fn until_terminal<T: Clone + JobSnapshot>(mut rx: watch::Receiver<T>) -> T {
    loop {
        let snap = rx.borrow_and_update().clone();
        if snap.state().is_terminal() || rx.changed().await.is_err() {
            return rx.borrow().clone();
        }
    }
}

/// Writes a job's record at once (before a step that must be recoverable):
/// the local record, then the shared one that another server resumes from.
pub type Checkpoint<T> = std::sync::Arc<
    dyn Fn(&T) -> futures::future::BoxFuture<'static, crate::Result<()>> + Send + Sync,
>;

/// The write side of a job's snapshots.
pub struct JobHandle<T> {
    tx: watch::Sender<T>,
    checkpoint: Option<Checkpoint<T>>,
    /// The job's leases, checked before each step.
    fences: Vec<Fence>,
    /// Steps that run to their end even when the job is cancelled.
    uninterrupted: TaskTracker,
    /// Set once the job's work is done whatever follows (its commit point).
    committed: Arc<AtomicBool>,
}

impl<T> Clone for JobHandle<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            checkpoint: self.checkpoint.clone(),
            fences: self.fences.clone(),
            uninterrupted: self.uninterrupted.clone(),
            committed: self.committed.clone(),
        }
    }
}

impl<T> std::fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("checkpoint", &self.checkpoint.is_some())
            .finish()
    }
}

impl<T> JobHandle<T> {
    /// A handle publishing on `tx`.
    pub fn new(tx: watch::Sender<T>) -> Self {
        Self {
            tx,
            checkpoint: None,
            fences: Vec::new(),
            uninterrupted: TaskTracker::new(),
            committed: Arc::default(),
        }
    }

    /// Checks `fences` before each checkpoint and at [`JobHandle::fence`].
    pub fn with_fences(mut self, fences: Vec<Fence>) -> Self {
        self.fences = fences;
        self
    }

    /// [`crate::Error::Aborted`] once one of the job's leases has expired
    /// (by this process's clock): called before steps another process that
    /// took the job over could also take.
    pub fn fence(&self) -> crate::Result<()> {
        Fence::check_all(&self.fences, std::time::Duration::ZERO)
    }

    /// The job's leases, to check before each step of a longer write.
    pub fn fences(&self) -> &[Fence] {
        &self.fences
    }

    /// [`JobHandle::fence`] with `margin` to spare, waiting for a late
    /// renewal: before a step that must end while the job still holds its
    /// leases.
    pub async fn hold_for(&self, margin: std::time::Duration) -> crate::Result<()> {
        Fence::hold_all(&self.fences, margin).await
    }

    /// [`Fence::calls_end_by`] over the job's leases: the instant by which
    /// a call to Milvus that a takeover could repeat must have ended.
    pub async fn calls_end_by(
        &self,
        margin: std::time::Duration,
    ) -> crate::Result<Option<tokio::time::Instant>> {
        Fence::calls_end_by(&self.fences, margin).await
    }

    /// Records the snapshot with `save` whenever [`JobHandle::checkpoint`] is called.
    pub fn with_checkpoint(mut self, save: Checkpoint<T>) -> Self {
        self.checkpoint = Some(save);
        self
    }

    /// Changes the snapshot, then writes the job's record before returning:
    /// what recovery after a crash must know before the next step. An error
    /// means the record could not be written: the step must not be taken.
    pub async fn checkpoint(&self, f: impl FnOnce(&mut T)) -> crate::Result<()>
    where
        T: Clone,
    {
        self.fence()?;
        self.tx.send_modify(f);
        // A copy, so that no lock of the channel is held while writing.
        let snapshot = self.tx.borrow().clone();
        match &self.checkpoint {
            Some(save) => save(&snapshot).await,
            None => Ok(()),
        }
    }

    /// Changes the snapshot whatever the fences say (what this process made
    /// must be known to its own cleanup), then records it as
    /// [`JobHandle::checkpoint`] does.
    pub async fn keep(&self, f: impl FnOnce(&mut T)) -> crate::Result<()>
    where
        T: Clone,
    {
        self.tx.send_modify(f);
        self.checkpoint(|_| {}).await
    }

    /// Changes the snapshot in place and wakes the watchers.
    pub fn update(&self, f: impl FnOnce(&mut T)) {
        self.tx.send_modify(f);
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> T
    where
        T: Clone,
    {
        self.tx.borrow().clone()
    }

    /// Runs `step` to its end even if the job is cancelled meanwhile: for a
    /// step that makes something and records it, which a cancel between the
    /// two would leave made and unknown to cleanup. The runner waits for
    /// these steps ([`JobHandle::settle`]) before the job's cleanup.
    pub async fn uninterrupted<R>(
        &self,
        step: impl Future<Output = crate::Result<R>> + Send + 'static,
    ) -> crate::Result<R>
    where
        R: Send + 'static,
    {
        self.uninterrupted.spawn(step).await.map_err(|e| {
            crate::Error::Internal(format!("a step that must run to its end did not: {e}"))
        })?
    }

    /// Where work runs that the job's cleanup must wait for, as for the
    /// steps of [`JobHandle::uninterrupted`] (a copy request in flight).
    pub fn in_flight(&self) -> &TaskTracker {
        &self.uninterrupted
    }

    /// Waits for the steps begun with [`JobHandle::uninterrupted`] and
    /// [`JobHandle::in_flight`] to end.
    pub async fn settle(&self) {
        self.uninterrupted.close();
        self.uninterrupted.wait().await;
    }

    /// Marks the job's commit point as written: from now on it has done its
    /// work, and a cancel or an error in what follows does not undo that.
    pub fn reached_commit_point(&self) {
        self.committed.store(true, Ordering::SeqCst);
    }

    /// Whether [`JobHandle::reached_commit_point`] was called.
    pub fn past_commit_point(&self) -> bool {
        self.committed.load(Ordering::SeqCst)
    }

    /// A new watcher of this job.
    pub fn subscribe(&self) -> watch::Receiver<T> {
        self.tx.subscribe()
    }
}

/// The MD5 of `s` in lowercase hex: a short, plain object-key segment for
/// any string a caller gave.
pub(crate) fn md5_hex(s: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
