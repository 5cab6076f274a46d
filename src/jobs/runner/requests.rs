//! A request id claimed once across the servers on the same storage: a
//! retry of a request (on another replica, or on this server after a
//! restart) gets the job the request started, never a second one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedMutexGuard, watch};

use super::{JobKind, Runner};
use crate::error::{Error, Result};
use crate::jobs::JobSnapshot;

type Waiting = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

/// The starts of one request id take turns in this process: a retry sent
/// while the first start is still planning waits for it, then finds its job,
/// instead of planning a second one (whose holds, taken under the same job
/// id, would take the first job's from it).
#[derive(Debug, Default)]
pub(super) struct RequestTurns {
    waiting: Waiting,
}

/// The turn of one request id, until dropped.
pub(super) struct Turn {
    request_id: String,
    guard: Option<OwnedMutexGuard<()>>,
    waiting: Waiting,
}

impl RequestTurns {
    /// Waits for the turn of `request_id`; none is needed without one.
    pub(super) async fn take(&self, request_id: &str) -> Option<Turn> {
        if request_id.is_empty() {
            return None;
        }
        let lock = self
            .waiting
            .lock()
            .expect("request turns")
            .entry(request_id.to_string())
            .or_default()
            .clone();
        Some(Turn {
            request_id: request_id.to_string(),
            guard: Some(lock.lock_owned().await),
            waiting: self.waiting.clone(),
        })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut waiting = self.waiting.lock().expect("request turns");
        // Nobody waits (only the map holds it): forgotten.
        if waiting
            .get(&self.request_id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            waiting.remove(&self.request_id);
        }
    }
}

impl<K: JobKind> Runner<K> {
    /// The job a server on the same storage (this one too, before a
    /// restart) started with `request_id`, while its record is kept.
    pub(super) async fn claimed(
        &self,
        request_id: &str,
    ) -> Result<Option<watch::Receiver<K::Snapshot>>> {
        let Some(shared) = self.shared_claims(request_id) else {
            return Ok(None);
        };
        let Some((key, job)) = shared.claimed::<K::Snapshot>(request_id).await? else {
            return Ok(None);
        };
        let Some(rx) = self.find(&key).await? else {
            return Ok(None);
        };
        let now = rx.borrow().id().to_string();
        // The key's job now is a later one, another request's: the job this
        // request started is no longer on record. Never answered with it.
        if !job.is_empty() && now != job {
            return Err(Error::FailedPrecondition(format!(
                "request id {request_id:?} started {} {key:?} as job {job}, which a later job of \
                 the name ({now}) has replaced since; its outcome is no longer kept. Another \
                 request needs another id",
                K::Snapshot::NOUN
            )));
        }
        Ok(Some(rx))
    }

    /// Claims `request_id` for the job with `key` across the servers on the
    /// same storage. `Err` holds the answer instead of this job: the job
    /// that claimed it first, or the error.
    pub(super) async fn claim(
        &self,
        request_id: &str,
        key: &str,
        job: &str,
    ) -> std::result::Result<(), Result<watch::Receiver<K::Snapshot>>> {
        let Some(shared) = self.shared_claims(request_id) else {
            return Ok(());
        };
        let first = match shared
            .claim_request::<K::Snapshot>(request_id, key, job)
            .await
        {
            Ok(None) => return Ok(()),
            Ok(Some(first)) => first,
            Err(e) => return Err(Err(e)),
        };
        Err(match self.find(&first).await {
            Ok(Some(rx)) => Ok(rx),
            Ok(None) => Err(Error::Aborted(format!(
                "request id {request_id:?} started {} {first:?} on another server; retry to follow it",
                K::Snapshot::NOUN
            ))),
            Err(e) => Err(e),
        })
    }

    /// The shared records that keep request claims, when this kind claims
    /// `request_id`.
    fn shared_claims(&self, request_id: &str) -> Option<&crate::jobs::SharedRecords> {
        self.pool.shared.as_ref().filter(|_| !request_id.is_empty())
    }
}
