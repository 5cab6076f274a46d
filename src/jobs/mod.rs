//! Jobs: their snapshots, and the registry that lets callers find and watch them.
//! A job runs in its own task and publishes snapshots on a `watch` channel, so a
//! caller that goes away never stops it.

pub(crate) mod registry;
pub(crate) mod snapshot;
mod store;

pub use registry::{JobRegistry, Started};
pub use snapshot::{
    BackupSnapshot, CollectionSummary, JobSnapshot, JobState, Progress, RestoreCollectionStatus,
    RestoreSnapshot,
};
pub use store::JobStore;

use tokio::sync::watch;

/// Waits for a job's last snapshot.
pub async fn until_terminal<T: Clone + JobSnapshot>(mut rx: watch::Receiver<T>) -> T {
    loop {
        let snap = rx.borrow_and_update().clone();
        if snap.state().is_terminal() || rx.changed().await.is_err() {
            return rx.borrow().clone();
        }
    }
}

/// The write side of a job's snapshots.
#[derive(Debug)]
pub struct JobHandle<T> {
    tx: watch::Sender<T>,
}

impl<T> JobHandle<T> {
    /// A handle publishing on `tx`.
    pub fn new(tx: watch::Sender<T>) -> Self {
        Self { tx }
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

    /// A new watcher of this job.
    pub fn subscribe(&self) -> watch::Receiver<T> {
        self.tx.subscribe()
    }
}
