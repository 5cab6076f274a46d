//! A request id claimed once across the servers on the same storage: a
//! retry of a request (on another replica, or on this server after a
//! restart) gets the job the request started, never a second one.

use tokio::sync::watch;

use super::{JobKind, Runner};
use crate::error::{Error, Result};
use crate::jobs::JobSnapshot;

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
        match shared.claimed::<K::Snapshot>(request_id).await? {
            Some(key) => self.find(&key).await,
            None => Ok(None),
        }
    }

    /// Claims `request_id` for the job with `key` across the servers on the
    /// same storage. `Err` holds the answer instead of this job: the job
    /// that claimed it first, or the error.
    pub(super) async fn claim(
        &self,
        request_id: &str,
        key: &str,
    ) -> std::result::Result<(), Result<watch::Receiver<K::Snapshot>>> {
        let Some(shared) = self.shared_claims(request_id) else {
            return Ok(());
        };
        let first = match shared.claim_request::<K::Snapshot>(request_id, key).await {
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
        let claims = K::CLAIMS_REQUEST_IDS && !request_id.is_empty();
        self.pool.shared.as_ref().filter(|_| claims)
    }
}
