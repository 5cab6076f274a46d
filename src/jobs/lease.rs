//! Leases held in the backup storage, so that every process on the same
//! storage (server replicas, the CLI, a restarted server) sees them.
//!
//! A lease is one small JSON object, `{root}/_leases/{name}`. It is taken with
//! `If-None-Match: *` (or, when the object is expired or released, with
//! `If-Match` on the etag that was read, so exactly one taker wins), renewed
//! with `If-Match` every third of its TTL, and released by an `If-Match` write
//! that marks it free. A holder that cannot renew before the expiry loses it:
//! its `lost` token fires, and the job holding it stops.
//!
//! Names in use:
//! - `backup/{name}`: one job creates or deletes backup `name`;
//! - `reads/{name}/{job}`: a restore reads backup `name` (many at once);
//! - `target/{db}.{coll}` (or `target/{db}/{coll}`, see `holds.rs`): one
//!   restore fills collection `db.coll`;
//! - `policy/{name}/{slot}`: one server runs that slot of policy `name`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::storage::{CondPut, ObjectStore, join_key};

mod fence;
mod released;
pub use fence::Fence;
pub use released::end_recorded;

/// The folder under the backup root that holds the leases (not a backup name).
pub const LEASE_DIR: &str = "_leases";

/// Who holds a lease, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The job holding it.
    pub job: String,
    /// What the job does with it ("restore into", "delete", ...).
    pub purpose: String,
    /// `host:pid/tag` of the holding process ([`host_pid`]).
    pub process: String,
    /// Unique per acquisition: tells our own write from another's.
    pub nonce: String,
    /// Milliseconds since the epoch after which the lease is free.
    pub expires_at_ms: u64,
    /// Set by a release: free at once.
    #[serde(default)]
    pub released: bool,
}

impl LeaseRecord {
    /// What a lease that was free is handed back as: released, held by no
    /// job (read back as no holder at all).
    fn nobody() -> Self {
        Self {
            job: String::new(),
            purpose: String::new(),
            process: String::new(),
            nonce: String::new(),
            expires_at_ms: 0,
            released: true,
        }
    }

    /// `None` for [`LeaseRecord::nobody`].
    fn of_a_job(self) -> Option<Self> {
        (!self.job.is_empty()).then_some(self)
    }

    fn is_live(&self, now_ms: u64) -> bool {
        !self.released && self.expires_at_ms > now_ms
    }

    fn describe(&self, name: &str) -> String {
        format!(
            "{name} is held by job {} ({}) on {}",
            self.job, self.purpose, self.process
        )
    }
}

/// Takes and inspects leases in one store.
#[derive(Debug, Clone)]
pub struct Leases {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    ttl: Duration,
    process: String,
}

/// One held lease. Renewed in the background until released or dropped.
#[derive(Debug)]
pub struct Lease {
    name: String,
    key: String,
    store: Arc<dyn ObjectStore>,
    record: Arc<Mutex<(LeaseRecord, String)>>,
    lost: CancellationToken,
    renewer: tokio::task::JoinHandle<()>,
    /// The expiry of the last renewal that was written.
    expires_at_ms: Arc<AtomicU64>,
    /// The released or expired holder this lease took the place of (`None`
    /// when it was free, or not known).
    previous: Option<LeaseRecord>,
    /// See [`Leases::settle`].
    settle: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `host:pid/tag` of this process, as records name their owner. The random
/// tag, drawn once per process, tells apart two processes that share a host
/// name and a pid (containers on one host network all run as pid 1).
pub fn host_pid() -> String {
    static ME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let tag = uuid::Uuid::new_v4().simple().to_string();
        format!("{host}:{}/{}", std::process::id(), &tag[..8])
    })
    .clone()
}

impl Leases {
    /// Leases under `{root}/_leases/` of `store`, each valid `ttl` past its last renewal.
    pub fn new(store: Arc<dyn ObjectStore>, root: &str, ttl: Duration) -> Self {
        Self {
            store,
            prefix: join_key([root, LEASE_DIR]),
            ttl: ttl.max(Duration::from_secs(1)),
            process: host_pid(),
        }
    }

    /// The TTL of the leases this process takes.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How long past a lease's expiry, released or not, a takeover waits
    /// before it resumes the job that held it: half a TTL. A job that ended
    /// writes its end into its shared record within that time (see
    /// [`Fence::end_deadline_ms`]), and the other leases of a process that
    /// died have expired by then.
    pub fn settle(&self) -> Duration {
        self.ttl / 2
    }

    fn key(&self, name: &str) -> String {
        join_key([self.prefix.as_str(), name])
    }

    fn record(&self, job: &str, purpose: &str) -> LeaseRecord {
        LeaseRecord {
            job: job.to_string(),
            purpose: purpose.to_string(),
            process: self.process.clone(),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            expires_at_ms: now_ms() + self.ttl.as_millis() as u64,
            released: false,
        }
    }

    /// Takes lease `name` for `job`, or fails with [`Error::Aborted`] naming
    /// the job that holds it.
    pub async fn acquire(&self, name: &str, job: &str, purpose: &str) -> Result<Lease> {
        let key = self.key(name);
        let mine = self.record(job, purpose);
        let body = Bytes::from(serde_json::to_vec(&mine)?);
        // The holder a takeover's write replaced, kept across tries: a write
        // that landed with its answer lost is retried by the store and then
        // refused (its `If-Match` is stale by then), and is found ours on the
        // next try.
        let mut taken_from: Option<LeaseRecord> = None;
        for _ in 0..5 {
            let mut previous = None;
            let etag = match self.store.put_if_absent(&key, body.clone()).await? {
                CondPut::Written(etag) => Some(etag),
                CondPut::Conflict => match self.store.read_versioned(&key).await? {
                    // Released and removed in between: try again.
                    None => None,
                    Some((data, etag)) => {
                        let held: Option<LeaseRecord> = serde_json::from_slice(&data).ok();
                        match held {
                            // Our own write, whose answer was lost and retried
                            // (not once released: a hand-back may write back
                            // a holder whose answer was lost).
                            Some(h) if h.nonce == mine.nonce && !h.released => {
                                previous = taken_from.take().and_then(LeaseRecord::of_a_job);
                                Some(etag)
                            }
                            // Held by any other live holder: another job, the
                            // same job in another process (a resumed job on
                            // two servers), or another start of the same job
                            // here (a retried request planned again, a client's
                            // retry beside the takeover's resume): taking it
                            // would stop the job that holds it.
                            Some(h) if h.is_live(now_ms()) => {
                                return Err(Error::Aborted(h.describe(name)));
                            }
                            // Expired, released or unreadable: take it over, if nobody else does first.
                            h => match self.store.put_if_match(&key, body.clone(), &etag).await? {
                                CondPut::Written(etag) => {
                                    previous = h.and_then(LeaseRecord::of_a_job);
                                    Some(etag)
                                }
                                CondPut::Conflict => {
                                    taken_from = h;
                                    None
                                }
                            },
                        }
                    }
                },
            };
            if let Some(etag) = etag {
                debug!(lease = %name, job, "lease taken");
                return Ok(self.held(name, key, mine, etag, previous));
            }
        }
        Err(Error::Aborted(format!(
            "{name} is changing hands too often to be taken; retry"
        )))
    }

    /// The live holder of lease `name`, if any.
    pub async fn holder(&self, name: &str) -> Result<Option<LeaseRecord>> {
        Ok(self
            .store
            .read_versioned(&self.key(name))
            .await?
            .and_then(|(data, _)| serde_json::from_slice::<LeaseRecord>(&data).ok())
            .filter(|r| r.is_live(now_ms())))
    }

    /// The last holder of lease `name`, live or not (`None` when it was never
    /// taken).
    pub async fn last_holder(&self, name: &str) -> Result<Option<LeaseRecord>> {
        Ok(self
            .store
            .read_versioned(&self.key(name))
            .await?
            .and_then(|(data, _)| serde_json::from_slice::<LeaseRecord>(&data).ok())
            .and_then(LeaseRecord::of_a_job))
    }

    /// Whether lease `name` is past its expiry by at least the settle
    /// (released or not), or was never taken: whether a takeover may resume
    /// the job that held it.
    pub async fn settled(&self, name: &str) -> Result<bool> {
        Ok(match self.last_holder(name).await? {
            Some(h) => self.is_settled(&h),
            None => true,
        })
    }

    fn is_settled(&self, h: &LeaseRecord) -> bool {
        h.expires_at_ms + (self.settle().as_millis() as u64) < now_ms()
    }

    /// Removes the lease objects under `folder/` (of runs that ended).
    pub async fn remove_under(&self, folder: &str) -> Result<usize> {
        self.store
            .delete_under(&format!("{}/", self.key(folder)))
            .await
    }

    /// Removes lease object `name` (its holder ended and released it).
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.store.delete(&[self.key(name)]).await
    }

    /// The live holders of the leases under `folder/`, with their names.
    pub async fn holders_under(&self, folder: &str) -> Result<Vec<(String, LeaseRecord)>> {
        let prefix = format!("{}/", self.key(folder));
        let mut out = Vec::new();
        for o in self.store.list(&prefix).await? {
            let name = o.key[self.prefix.len() + 1..].to_string();
            if let Some(r) = self.holder(&name).await? {
                out.push((name, r));
            }
        }
        Ok(out)
    }

    /// [`Leases::holders_under`] for a folder of single-use leases (a
    /// reader's key names its job and is never taken again): those that no
    /// one holds any more, expired or released, are removed as they are
    /// seen once settled, so that the folder does not grow with the jobs
    /// that died. (Before that, a takeover reads one to learn that the job
    /// that held it may still be writing its end.)
    pub async fn sweep_under(&self, folder: &str) -> Result<Vec<(String, LeaseRecord)>> {
        let prefix = format!("{}/", self.key(folder));
        let (mut live, mut dead) = (Vec::new(), Vec::new());
        for o in self.store.list(&prefix).await? {
            let name = o.key[self.prefix.len() + 1..].to_string();
            let Some((data, _)) = self.store.read_versioned(&o.key).await? else {
                continue;
            };
            match serde_json::from_slice::<LeaseRecord>(&data) {
                Ok(r) if r.is_live(now_ms()) => live.push((name, r)),
                Ok(r) if !self.is_settled(&r) => {}
                _ => dead.push(o.key),
            }
        }
        if !dead.is_empty() {
            match self.store.delete(&dead).await {
                Ok(()) => debug!(folder, removed = dead.len(), "removed leases no one holds"),
                Err(e) => debug!(folder, error = %e, "cannot remove leases no one holds"),
            }
        }
        Ok(live)
    }

    /// Fails with [`Error::Aborted`] when lease `name` is held by someone.
    pub async fn ensure_free(&self, name: &str) -> Result<()> {
        match self.holder(name).await? {
            Some(h) => Err(Error::Aborted(h.describe(name))),
            None => Ok(()),
        }
    }

    /// Frees lease `name` if `job` holds it (after a restart, for the jobs of
    /// the process that died); leaves anyone else's alone.
    pub async fn release_for_job(&self, name: &str, job: &str) -> Result<()> {
        let key = self.key(name);
        let Some((data, etag)) = self.store.read_versioned(&key).await? else {
            return Ok(());
        };
        let Ok(mut record) = serde_json::from_slice::<LeaseRecord>(&data) else {
            return Ok(());
        };
        if record.job != job || record.released {
            return Ok(());
        }
        record.released = true;
        self.store
            .put_if_match(&key, Bytes::from(serde_json::to_vec(&record)?), &etag)
            .await?;
        Ok(())
    }

    /// Whether the store refuses a second `If-None-Match: *` write, a stale
    /// `If-Match`, and an `If-Match` on an object that is gone (which some
    /// stores, MinIO for a time, answered by making it), as leases rely on.
    /// Leaves nothing behind.
    pub async fn probe_conditional_writes(&self) -> Result<bool> {
        let key = self.key(&format!("probe/{}", uuid::Uuid::new_v4().simple()));
        let version = |n: u8| Bytes::from(format!("{{\"version\":{n}}}"));
        let probe = async {
            let CondPut::Written(first) = self.store.put_if_absent(&key, version(1)).await? else {
                return Ok(false);
            };
            let again = self.store.put_if_absent(&key, version(2)).await?;
            // The tag the store gave, made stale by a write that matched it.
            let CondPut::Written(third) = self.store.put_if_match(&key, version(3), &first).await?
            else {
                return Ok(false);
            };
            let stale = self.store.put_if_match(&key, version(4), &first).await?;
            // A removed lease stays removed: a late renewal never makes it again.
            self.store.delete(std::slice::from_ref(&key)).await?;
            let gone = self.store.put_if_match(&key, version(5), &third).await?;
            let made = self.store.head(&key).await?.is_some();
            Ok(again == CondPut::Conflict
                && stale == CondPut::Conflict
                && gone == CondPut::Conflict
                && !made)
        };
        let honoured = probe.await;
        self.store.delete(std::slice::from_ref(&key)).await?;
        honoured
    }

    fn held(
        &self,
        name: &str,
        key: String,
        record: LeaseRecord,
        etag: String,
        previous: Option<LeaseRecord>,
    ) -> Lease {
        let expires_at_ms = Arc::new(AtomicU64::new(record.expires_at_ms));
        let state = Arc::new(Mutex::new((record, etag)));
        let lost = CancellationToken::new();
        let renewer = tokio::spawn(renew(
            self.clone(),
            name.to_string(),
            key.clone(),
            state.clone(),
            lost.clone(),
            expires_at_ms.clone(),
        ));
        Lease {
            name: name.to_string(),
            key,
            store: self.store.clone(),
            record: state,
            lost,
            renewer,
            expires_at_ms,
            previous,
            settle: self.settle(),
        }
    }
}

/// Renews every third of the TTL; fires `lost` when another holder took the
/// lease or the expiry passed without a successful renewal (also when the
/// renewal landed only after it).
async fn renew(
    leases: Leases,
    name: String,
    key: String,
    state: Arc<Mutex<(LeaseRecord, String)>>,
    lost: CancellationToken,
    expires_at_ms: Arc<AtomicU64>,
) {
    loop {
        tokio::time::sleep(leases.ttl / 3).await;
        let mut guard = state.lock().await;
        let (record, etag) = &mut *guard;
        // Past the expiry (the process was paused, or renewals failed),
        // another process may have seen the lease free and acted on it (a
        // delete that found no reader): it is never renewed back to life.
        let expiry = record.expires_at_ms;
        if now_ms() >= expiry {
            warn!(lease = %name, job = %record.job, "lease expired before it was renewed");
            fence::revoke(&expires_at_ms, &lost);
            return;
        }
        let mut next = record.clone();
        next.expires_at_ms = now_ms() + leases.ttl.as_millis() as u64;
        let body = match serde_json::to_vec(&next) {
            Ok(b) => Bytes::from(b),
            Err(_) => return,
        };
        // A renewal that has not landed by the expiry is too late, however
        // long the store's retries would go on: the lease is lost then.
        let left = Duration::from_millis(expiry.saturating_sub(now_ms()));
        let written = tokio::time::timeout(left, leases.store.put_if_match(&key, body, etag)).await;
        let Ok(written) = written else {
            warn!(lease = %name, job = %record.job, "lease renewal not answered before the expiry");
            fence::revoke(&expires_at_ms, &lost);
            return;
        };
        match written {
            Ok(CondPut::Written(new)) => {
                *record = next;
                *etag = new;
                if now_ms() >= expiry {
                    warn!(lease = %name, job = %record.job, "lease renewed only after it expired");
                    fence::revoke(&expires_at_ms, &lost);
                    return;
                }
                expires_at_ms.store(record.expires_at_ms, Ordering::SeqCst);
            }
            Ok(CondPut::Conflict) => {
                // A retried write whose first answer was lost looks like a
                // conflict: the object then holds this very renewal.
                let ours = match leases.store.read_versioned(&key).await {
                    Ok(Some((data, tag))) => serde_json::from_slice::<LeaseRecord>(&data)
                        .ok()
                        .filter(|h| h.nonce == next.nonce && !h.released)
                        .map(|h| (h, tag)),
                    _ => None,
                };
                match ours {
                    Some((held, tag)) if now_ms() < expiry => {
                        expires_at_ms.store(held.expires_at_ms, Ordering::SeqCst);
                        *record = held;
                        *etag = tag;
                    }
                    _ => {
                        warn!(lease = %name, job = %record.job, "lease taken by another holder, or renewed only after it expired");
                        fence::revoke(&expires_at_ms, &lost);
                        return;
                    }
                }
            }
            Err(e) if now_ms() >= expiry => {
                warn!(lease = %name, job = %record.job, error = %e, "lease expired before it could be renewed");
                fence::revoke(&expires_at_ms, &lost);
                return;
            }
            Err(e) => warn!(lease = %name, error = %e, "cannot renew the lease; retrying"),
        }
    }
}

impl Lease {
    /// The lease's name (`target/db.coll`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The released or expired holder this lease took the place of, read by
    /// the conditional write that took it (`None` when it was free).
    pub fn previous_holder(&self) -> Option<&LeaseRecord> {
        self.previous.as_ref()
    }

    /// Fires when the lease was lost; the holder must stop.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// A check of the lease's expiry by this process's clock.
    pub fn fence(&self) -> Fence {
        Fence {
            name: self.name.clone(),
            expires_at_ms: self.expires_at_ms.clone(),
            settle: self.settle,
        }
    }

    /// Frees the lease at once (a conditional write marking it released).
    pub async fn release(self) {
        self.free(None).await
    }

    /// Frees the lease as though this holder had never taken it: the holder
    /// it took the place of is written back, released, so that the next one
    /// to take it sees that holder before it (a lease that was free is
    /// written back held by no job). For a job that changed nothing under
    /// the lease.
    pub async fn hand_back(mut self) {
        let previous = self.previous.take().unwrap_or_else(LeaseRecord::nobody);
        self.free(Some(previous)).await
    }

    /// Marks the lease released, as `instead` when given (else as ours).
    async fn free(self, instead: Option<LeaseRecord>) {
        self.renewer.abort();
        let guard = self.record.lock().await;
        let (record, etag) = &*guard;
        let mut freed = instead.unwrap_or_else(|| record.clone());
        freed.released = true;
        let Ok(body) = serde_json::to_vec(&freed) else {
            return;
        };
        let body = Bytes::from(body);
        let mut etag = etag.clone();
        for _ in 0..3 {
            match self
                .store
                .put_if_match(&self.key, body.clone(), &etag)
                .await
            {
                Ok(CondPut::Written(tag)) => {
                    debug!(lease = %self.name, "lease released");
                    // A reader's lease is the job's own key: it goes once
                    // the job's end is recorded (see `released.rs`).
                    if self.name.starts_with("reads/") {
                        let settle = self.settle.as_millis() as u64;
                        released::keep_until_end(
                            &freed.job,
                            self.store.clone(),
                            self.key.clone(),
                            tag,
                            freed.expires_at_ms + 3 * settle,
                        );
                    }
                    return;
                }
                // A renewal cut off mid-flight may have landed: release that one if it is ours.
                Ok(CondPut::Conflict) => match self.store.read_versioned(&self.key).await {
                    Ok(Some((data, tag)))
                        if serde_json::from_slice::<LeaseRecord>(&data)
                            .is_ok_and(|h| h.nonce == record.nonce && !h.released) =>
                    {
                        etag = tag
                    }
                    _ => return,
                },
                Err(e) => {
                    warn!(lease = %self.name, error = %e, "cannot release the lease; it expires by itself");
                    return;
                }
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Releases every lease of a job, 16 at once (a restore holds one per target).
pub async fn release_all(leases: Vec<Lease>) {
    use futures::StreamExt as _;
    futures::stream::iter(leases)
        .for_each_concurrent(16, Lease::release)
        .await;
}

#[cfg(test)]
mod tests;
