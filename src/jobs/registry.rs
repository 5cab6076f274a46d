//! The jobs of one kind this server runs or ran, found by key (a backup's
//! name, a restore's id) or by the request id that started them.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::{JobHandle, JobSnapshot};
use crate::error::{Error, Result};

/// Finished jobs kept in memory, per kind; the oldest are forgotten first.
const MAX_FINISHED_JOBS: usize = 1000;

/// Every job of one kind of this server process.
#[derive(Debug)]
pub struct Registry<T> {
    jobs: Mutex<Jobs<T>>,
}

#[derive(Debug)]
struct Jobs<T> {
    by_key: HashMap<String, watch::Receiver<T>>,
    /// Keys in insertion order, to forget the oldest finished jobs.
    order: Vec<String>,
    /// `request_id` → the key and id of the job it started, for idempotent
    /// retries (a later job of the key is another request's).
    by_request: HashMap<String, (String, String)>,
}

/// What [`Registry::start`] found.
#[derive(Debug)]
pub enum Started<T> {
    /// A new job: run it with this handle.
    New(JobHandle<T>),
    /// A retry of a known `request_id`: watch the existing job.
    Existing(watch::Receiver<T>),
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self {
            jobs: Mutex::new(Jobs {
                by_key: HashMap::new(),
                order: Vec::new(),
                by_request: HashMap::new(),
            }),
        }
    }
}

impl<T: JobSnapshot> Jobs<T> {
    fn insert(&mut self, key: String, rx: watch::Receiver<T>, request_id: &str) {
        if !request_id.is_empty() {
            let id = rx.borrow().id().to_string();
            self.by_request
                .insert(request_id.to_string(), (key.clone(), id));
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
                self.forget(&key);
                excess -= 1;
            } else {
                i += 1;
            }
        }
    }

    fn forget(&mut self, key: &str) {
        if self.by_key.remove(key).is_some() {
            self.order.retain(|k| k != key);
            self.by_request.retain(|_, (k, _)| k != key);
        }
    }

    fn by_request(&self, request_id: &str) -> Option<watch::Receiver<T>> {
        if request_id.is_empty() {
            return None;
        }
        let (key, id) = self.by_request.get(request_id)?;
        self.by_key
            .get(key)
            .filter(|rx| rx.borrow().id() == id)
            .cloned()
    }
}

impl<T: JobSnapshot> Registry<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Jobs<T>> {
        self.jobs.lock().expect("job registry poisoned")
    }

    /// Registers a job under its key. A key whose job is still running is
    /// refused; a retry with a known `request_id` gets the existing job.
    pub fn start(&self, snapshot: T, request_id: &str) -> Result<Started<T>> {
        let mut jobs = self.lock();
        if let Some(rx) = jobs.by_request(request_id) {
            return Ok(Started::Existing(rx));
        }
        let key = snapshot.key().to_string();
        if let Some(rx) = jobs.by_key.get(&key)
            && !rx.borrow().state().is_terminal()
        {
            return Err(Error::already_exists(T::NOUN, key));
        }
        let (tx, rx) = watch::channel(snapshot);
        jobs.insert(key, rx, request_id);
        Ok(Started::New(JobHandle::new(tx)))
    }

    /// Remembers a finished job (from its record after a restart), also by
    /// the request id that started it.
    pub fn remember(&self, snapshot: T) {
        let key = snapshot.key().to_string();
        let request_id = snapshot.request_id().unwrap_or_default().to_string();
        self.lock()
            .insert(key, watch::channel(snapshot).1, &request_id);
    }

    /// A watcher of the job with `key`, if this server ran one.
    pub fn get(&self, key: &str) -> Option<watch::Receiver<T>> {
        self.lock().by_key.get(key).cloned()
    }

    /// The job started with `request_id`, if any.
    pub fn by_request(&self, request_id: &str) -> Option<watch::Receiver<T>> {
        self.lock().by_request(request_id)
    }

    /// Snapshots of every job this server remembers, oldest first.
    pub fn all(&self) -> Vec<T> {
        let jobs = self.lock();
        jobs.order
            .iter()
            .filter_map(|k| jobs.by_key.get(k))
            .map(|rx| rx.borrow().clone())
            .collect()
    }

    /// Forgets the job with `key`, running or not (the runner's own: one
    /// refused after it was registered, or one another process took over).
    pub fn forget(&self, key: &str) {
        self.lock().forget(key);
    }

    /// Forgets the job with `key` if it has ended (a deleted backup's); a job
    /// started under the key since, and still running, is kept.
    pub fn forget_finished(&self, key: &str) {
        let mut jobs = self.lock();
        if jobs
            .by_key
            .get(key)
            .is_some_and(|rx| rx.borrow().state().is_terminal())
        {
            jobs.forget(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{BackupSnapshot, JobState};

    #[test]
    fn refuses_a_running_key_and_dedups_request_ids() {
        let reg = Registry::default();
        let snap = BackupSnapshot::pending("1".into(), "b".into(), false);
        let Started::New(handle) = reg.start(snap.clone(), "req-1").unwrap() else {
            panic!("expected a new job")
        };
        assert!(matches!(
            reg.start(snap.clone(), ""),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            reg.start(snap.clone(), "req-1"),
            Ok(Started::Existing(_))
        ));
        // A running job is not forgotten as a finished one; once ended, it is.
        reg.forget_finished("b");
        assert!(reg.by_request("req-1").is_some());
        handle.update(|s| s.state = JobState::Failed);
        reg.forget_finished("b");
        assert!(reg.get("b").is_none() && reg.by_request("req-1").is_none());
        assert!(matches!(reg.start(snap, ""), Ok(Started::New(_))));
    }
}
