//! The jobs this server runs or ran, found by backup name or restore id.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::{BackupSnapshot, JobHandle, JobSnapshot, RestoreSnapshot};
use crate::error::{Error, Result};

/// Finished jobs kept in memory, per kind; the oldest are forgotten first.
const MAX_FINISHED_JOBS: usize = 1000;

/// Every job of this server process.
#[derive(Debug, Default)]
pub struct JobRegistry {
    backups: Mutex<Jobs<BackupSnapshot>>,
    restores: Mutex<Jobs<RestoreSnapshot>>,
}

#[derive(Debug)]
struct Jobs<T> {
    by_key: HashMap<String, watch::Receiver<T>>,
    /// Keys in insertion order, to forget the oldest finished jobs.
    order: Vec<String>,
    /// `request_id` → job key, for idempotent retries.
    by_request: HashMap<String, String>,
}

impl<T> Default for Jobs<T> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            order: Vec::new(),
            by_request: HashMap::new(),
        }
    }
}

impl<T: JobSnapshot> Jobs<T> {
    fn insert(&mut self, key: String, rx: watch::Receiver<T>, request_id: &str) {
        if !request_id.is_empty() {
            self.by_request.insert(request_id.to_string(), key.clone());
        }
        self.order.retain(|k| k != &key);
        self.order.push(key.clone());
        self.by_key.insert(key, rx);
        self.forget_old();
    }

    fn forget_old(&mut self) {
        let finished = self
            .by_key
            .values()
            .filter(|rx| rx.borrow().state().is_terminal())
            .count();
        let mut excess = finished.saturating_sub(MAX_FINISHED_JOBS);
        let mut i = 0;
        while excess > 0 && i < self.order.len() {
            let key = &self.order[i];
            if self.by_key[key].borrow().state().is_terminal() {
                let key = self.order.remove(i);
                self.by_key.remove(&key);
                self.by_request.retain(|_, k| k != &key);
                excess -= 1;
            } else {
                i += 1;
            }
        }
    }

    fn by_request(&self, request_id: &str) -> Option<watch::Receiver<T>> {
        if request_id.is_empty() {
            return None;
        }
        let key = self.by_request.get(request_id)?;
        self.by_key.get(key).cloned()
    }
}

/// What [`JobRegistry::start_backup`] found.
#[derive(Debug)]
pub enum Started<T> {
    /// A new job: run it with this handle.
    New(JobHandle<T>),
    /// A retry of a known `request_id`: watch the existing job.
    Existing(watch::Receiver<T>),
}

impl JobRegistry {
    /// Registers a backup job under its name. A name whose job is still running
    /// is refused; a retry with a known `request_id` gets the existing job.
    pub fn start_backup(
        &self,
        snapshot: BackupSnapshot,
        request_id: &str,
    ) -> Result<Started<BackupSnapshot>> {
        let mut jobs = self.backups.lock().expect("job registry poisoned");
        if let Some(rx) = jobs.by_request(request_id) {
            return Ok(Started::Existing(rx));
        }
        if let Some(rx) = jobs.by_key.get(&snapshot.name)
            && !rx.borrow().state.is_terminal()
        {
            return Err(Error::already_exists("backup", &snapshot.name));
        }
        let key = snapshot.name.clone();
        let (tx, rx) = watch::channel(snapshot);
        jobs.insert(key, rx, request_id);
        Ok(Started::New(JobHandle::new(tx)))
    }

    /// Registers a restore job under its id; a known `request_id` gets the existing job.
    pub fn start_restore(
        &self,
        snapshot: RestoreSnapshot,
        request_id: &str,
    ) -> Started<RestoreSnapshot> {
        let mut jobs = self.restores.lock().expect("job registry poisoned");
        if let Some(rx) = jobs.by_request(request_id) {
            return Started::Existing(rx);
        }
        let key = snapshot.id.clone();
        let (tx, rx) = watch::channel(snapshot);
        jobs.insert(key, rx, request_id);
        Started::New(JobHandle::new(tx))
    }

    /// A watcher of the backup job named `name`, if this server ran one.
    pub fn backup(&self, name: &str) -> Option<watch::Receiver<BackupSnapshot>> {
        let jobs = self.backups.lock().expect("job registry poisoned");
        jobs.by_key.get(name).cloned()
    }

    /// Snapshots of every backup job this server remembers, oldest first.
    pub fn backups(&self) -> Vec<BackupSnapshot> {
        let jobs = self.backups.lock().expect("job registry poisoned");
        jobs.order
            .iter()
            .filter_map(|k| jobs.by_key.get(k))
            .map(|rx| rx.borrow().clone())
            .collect()
    }

    /// Forgets the finished job of backup `name` (after the backup is deleted).
    pub fn forget_backup(&self, name: &str) {
        let mut jobs = self.backups.lock().expect("job registry poisoned");
        if jobs.by_key.remove(name).is_some() {
            jobs.order.retain(|k| k != name);
            jobs.by_request.retain(|_, k| k != name);
        }
    }

    /// The backup job started with `request_id`, if any.
    pub fn backup_by_request(&self, request_id: &str) -> Option<watch::Receiver<BackupSnapshot>> {
        let jobs = self.backups.lock().expect("job registry poisoned");
        jobs.by_request(request_id)
    }

    /// The restore job started with `request_id`, if any.
    pub fn restore_by_request(&self, request_id: &str) -> Option<watch::Receiver<RestoreSnapshot>> {
        let jobs = self.restores.lock().expect("job registry poisoned");
        jobs.by_request(request_id)
    }

    /// Remembers a finished backup job (from its record after a restart).
    pub fn remember_backup(&self, snapshot: BackupSnapshot) {
        let mut jobs = self.backups.lock().expect("job registry poisoned");
        let key = snapshot.name.clone();
        jobs.insert(key, watch::channel(snapshot).1, "");
    }

    /// Remembers a finished restore job (from its record after a restart).
    pub fn remember_restore(&self, snapshot: RestoreSnapshot) {
        let mut jobs = self.restores.lock().expect("job registry poisoned");
        let key = snapshot.id.clone();
        jobs.insert(key, watch::channel(snapshot).1, "");
    }

    /// A watcher of the restore job `id`.
    pub fn restore(&self, id: &str) -> Option<watch::Receiver<RestoreSnapshot>> {
        let jobs = self.restores.lock().expect("job registry poisoned");
        jobs.by_key.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobState;

    #[test]
    fn refuses_a_running_name_and_dedups_request_ids() {
        let reg = JobRegistry::default();
        let snap = BackupSnapshot::pending("1".into(), "b".into(), false);
        let Started::New(handle) = reg.start_backup(snap.clone(), "req-1").unwrap() else {
            panic!("expected a new job")
        };
        assert!(matches!(
            reg.start_backup(snap.clone(), ""),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            reg.start_backup(snap.clone(), "req-1"),
            Ok(Started::Existing(_))
        ));
        handle.update(|s| s.state = JobState::Failed);
        assert!(matches!(reg.start_backup(snap, ""), Ok(Started::New(_))));
    }
}
