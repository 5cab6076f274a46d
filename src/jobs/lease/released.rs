//! Reader leases let go by this process's jobs, kept until nobody needs
//! them. A reader's lease object names its job and is never taken again by
//! another job, so it goes, so that the readers a delete lists stay few. Not
//! at once: until the job's end is in its shared record, the released
//! object tells a takeover that the job ended and is writing that end (a
//! missing one reads as a lease long expired). It goes when the runner has
//! recorded the end ([`end_recorded`]), or else, as a fallback, a TTL after
//! it settled (a takeover that resumed the job meanwhile took it again: a
//! changed object is left alone). A process that stops before leaves it to
//! a sweep ([`super::Leases::sweep_under`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use super::now_ms;
use crate::storage::ObjectStore;

/// One released lease object, at version `etag`.
struct Released {
    store: Arc<dyn ObjectStore>,
    key: String,
    etag: String,
}

impl Released {
    /// Removes the object unless it changed since its release.
    async fn remove(self) {
        if let Ok(Some((_, now))) = self.store.read_versioned(&self.key).await
            && now == self.etag
        {
            let _ = self.store.delete(std::slice::from_ref(&self.key)).await;
        }
    }
}

/// The released reader leases of each job (by id) whose end is not recorded yet.
static AWAITING_END: LazyLock<Mutex<HashMap<String, Vec<Released>>>> =
    LazyLock::new(Default::default);

fn awaiting() -> std::sync::MutexGuard<'static, HashMap<String, Vec<Released>>> {
    AWAITING_END.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps reader lease object `key` (released at version `etag`) of job
/// `job` until the job's end is recorded, or until `fallback_ms`.
pub(super) fn keep_until_end(
    job: &str,
    store: Arc<dyn ObjectStore>,
    key: String,
    etag: String,
    fallback_ms: u64,
) {
    let released = Released { store, key, etag };
    let (job, key, etag) = (job.to_string(), released.key.clone(), released.etag.clone());
    awaiting().entry(job.clone()).or_default().push(released);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(fallback_ms.saturating_sub(now_ms()))).await;
        let left = {
            let mut map = awaiting();
            let Some(list) = map.get_mut(&job) else {
                return;
            };
            let found = list.iter().position(|r| r.key == key && r.etag == etag);
            let left = found.map(|i| list.swap_remove(i));
            if list.is_empty() {
                map.remove(&job);
            }
            left
        };
        if let Some(released) = left {
            released.remove().await;
        }
    });
}

/// Removes the reader leases job `job` let go in this process: its end is
/// recorded (or it keeps no shared record), so no takeover resumes it.
pub async fn end_recorded(job: &str) {
    let released = awaiting().remove(job).unwrap_or_default();
    for r in released {
        r.remove().await;
    }
}
