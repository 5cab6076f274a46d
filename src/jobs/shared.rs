//! Job records in the backup storage, shared by every server on it: each
//! running job's owner mirrors its snapshot to `{root}/_jobs/{kind}/{key}.json`
//! at most once a second and once more at its end, so that any replica can
//! answer for it (and follow it, with about a second of lag). A cancel sent to
//! a replica that does not run the job leaves a marker,
//! `{root}/_jobs/cancel/{kind}/{key}`, which the owner sees within a second;
//! the owner leaves one for a cancel asked of it, until the job's end is
//! written, so that a takeover never resumes a cancelled job.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::JobSnapshot;
use crate::error::{Error, Result};
use crate::storage::{CondPut, ObjectStore, join_key};

/// The folder of shared records under the backup root (a reserved backup name).
pub const JOBS_DIR: &str = "_jobs";

/// How often an owner mirrors its job and looks for a cancel, and a
/// follower re-reads it.
pub const MIRROR_INTERVAL: Duration = Duration::from_secs(1);

/// The shared job records of one backup storage.
#[derive(Debug, Clone)]
pub struct SharedRecords {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

/// Which job a request id started (`requests/{kind}/{md5 of the id}`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RequestClaim {
    request_id: String,
    key: String,
    /// When it was claimed (ms since the Unix epoch).
    #[serde(default)]
    at_ms: u64,
    /// The id of the job (empty in claims of earlier versions): a later
    /// job of the same key is another request's.
    #[serde(default)]
    job: String,
}

/// How long [`SharedRecords::finish`] and [`SharedRecords::finish_held`]
/// try a job's end.
const FINISH_TRIES: Duration = Duration::from_millis(7_500);

/// How long before the end of its time a last try is made: a sleep that
/// ended right at it would find no time left.
const LAST_TRY_SPARE: Duration = Duration::from_millis(50);

/// A claim whose job has no record this long after it was made is stale
/// (its record was pruned, or its server died before writing it).
const STALE_CLAIM: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Keys as they appear in an object key: `/` and `%` escaped.
fn escape(key: &str) -> String {
    key.replace('%', "%25").replace('/', "%2F")
}

impl SharedRecords {
    /// Records in `store` under `root` (the backup root).
    pub fn new(store: Arc<dyn ObjectStore>, root: &str) -> Self {
        Self {
            store,
            prefix: join_key([root, JOBS_DIR]),
        }
    }

    fn record_key<T: JobSnapshot>(&self, key: &str) -> String {
        join_key([&self.prefix, T::KIND, &format!("{}.json", escape(key))])
    }

    /// Where the claim of `request_id` for a job of kind `T` is kept (the
    /// id hashed: any string makes a short, plain object key).
    fn claim_key<T: JobSnapshot>(&self, request_id: &str) -> String {
        join_key([
            &self.prefix,
            "requests",
            T::KIND,
            &super::md5_hex(request_id),
        ])
    }

    /// The key and the id (empty in claims of earlier versions) of the
    /// job that claimed `request_id`, if one did.
    pub async fn claimed<T: JobSnapshot>(
        &self,
        request_id: &str,
    ) -> Result<Option<(String, String)>> {
        Ok(self
            .claim_of::<T>(request_id)
            .await?
            .map(|c| (c.key, c.job)))
    }

    async fn claim_of<T: JobSnapshot>(&self, request_id: &str) -> Result<Option<RequestClaim>> {
        match self.store.read(&self.claim_key::<T>(request_id)).await {
            Ok(body) => Ok(serde_json::from_slice::<RequestClaim>(&body)
                .ok()
                .filter(|c| c.request_id == request_id)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Claims `request_id` for the job with `key`, once for every server on
    /// the storage (a conditional write): `None` when the claim is this
    /// job's, else the key of the job that claimed it first.
    pub async fn claim_request<T: JobSnapshot>(
        &self,
        request_id: &str,
        key: &str,
        job: &str,
    ) -> Result<Option<String>> {
        let claim = RequestClaim {
            request_id: request_id.to_string(),
            key: key.to_string(),
            at_ms: now_ms(),
            job: job.to_string(),
        };
        let body = Bytes::from(serde_json::to_vec(&claim)?);
        let at = self.claim_key::<T>(request_id);
        if let CondPut::Written(_) = self.store.put_if_absent(&at, body.clone()).await? {
            return Ok(None);
        }
        let first = match self.claim_of::<T>(request_id).await? {
            Some(first) if first.key != key => first,
            // Its own (a retried write), or removed meanwhile.
            _ => return self.store.write(&at, body).await.map(|()| None),
        };
        let stale = now_ms().saturating_sub(first.at_ms) > STALE_CLAIM.as_millis() as u64
            && self.load::<T>(&first.key).await?.is_none();
        match stale {
            true => self.store.write(&at, body).await.map(|()| None),
            false => Ok(Some(first.key)),
        }
    }

    fn cancel_key<T: JobSnapshot>(&self, key: &str) -> String {
        join_key([&self.prefix, "cancel", T::KIND, &escape(key)])
    }

    /// Writes the record of `s`.
    pub async fn save<T: JobSnapshot>(&self, s: &T) -> Result<()> {
        let body = serde_json::to_vec(s)?;
        self.store
            .write(&self.record_key::<T>(s.key()), Bytes::from(body))
            .await
    }

    /// Writes the newest state of a running job: `latest` is read under
    /// `turn`, which every writer of the job's record takes, so that an older
    /// state is never written after a newer one.
    pub async fn save_latest<T: JobSnapshot>(
        &self,
        turn: &tokio::sync::Mutex<()>,
        latest: impl FnOnce() -> T,
    ) -> Result<()> {
        self.save_latest_held(turn, latest, &[]).await
    }

    /// [`SharedRecords::save_latest`] by a job that holds the leases
    /// `fences`: started only while they leave time for it to land
    /// ([`super::Fence::left_to_write`]), and given up, retries and all,
    /// once that time is out with no renewal that moved it on. A write the store is slow to take so never
    /// lands over the record of a process that took the job over.
    /// [`Error::Aborted`] when it was not made. Without fences, as
    /// [`SharedRecords::save_latest`].
    pub async fn save_latest_held<T: JobSnapshot>(
        &self,
        turn: &tokio::sync::Mutex<()>,
        latest: impl FnOnce() -> T,
        fences: &[super::Fence],
    ) -> Result<()> {
        let _turn = turn.lock().await;
        let s = latest();
        if s.state().is_terminal() {
            return Ok(());
        }
        if fences.is_empty() {
            return self.save(&s).await;
        }
        let late = || {
            Error::Aborted(format!(
                "the record of {} {} could not be written before its leases expired: \
                 another process may own the job now",
                T::NOUN,
                s.id()
            ))
        };
        // The window moves on with each renewal of the leases: the write is
        // given up only once it closed without a renewal.
        let save = self.save(&s);
        tokio::pin!(save);
        loop {
            let left = super::Fence::left_to_write(fences);
            if left.is_zero() {
                return Err(late());
            }
            if let Ok(saved) = tokio::time::timeout(left, &mut save).await {
                return saved;
            }
        }
    }

    /// The record of the job with `key`, if any server keeps one.
    pub async fn load<T: JobSnapshot>(&self, key: &str) -> Result<Option<T>> {
        match self.store.read(&self.record_key::<T>(key)).await {
            Ok(body) => Ok(Some(serde_json::from_slice(&body)?)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The record with the key of `s` while it is still that job's (its id)
    /// and unended: what a server acting on a job it listed reads again
    /// under the job's leases, as another may have ended it since, or
    /// started another job under the same key. `None` otherwise.
    pub async fn unended<T: JobSnapshot>(&self, s: &T) -> Result<Option<T>> {
        Ok(self
            .load::<T>(s.key())
            .await?
            .filter(|now| now.id() == s.id() && !now.state().is_terminal()))
    }

    /// The record of the job with `key` and its version (ETag), if any.
    pub async fn load_versioned<T: JobSnapshot>(&self, key: &str) -> Result<Option<(T, String)>> {
        match self
            .store
            .read_versioned(&self.record_key::<T>(key))
            .await?
        {
            Some((body, etag)) => Ok(Some((serde_json::from_slice(&body)?, etag))),
            None => Ok(None),
        }
    }

    /// Writes the record of `s` only while it is still at version `etag`
    /// (nobody wrote it since it was read); `false` when it changed.
    pub async fn save_if_match<T: JobSnapshot>(&self, s: &T, etag: &str) -> Result<bool> {
        let body = Bytes::from(serde_json::to_vec(s)?);
        let key = self.record_key::<T>(s.key());
        let written = self.store.put_if_match(&key, body.clone(), etag).await?;
        // A record already holding exactly this one (our retried write) is saved.
        Ok(matches!(
            written.confirmed(self.store.as_ref(), &key, &body).await?,
            CondPut::Written(_)
        ))
    }

    /// Every record of one kind of job.
    pub async fn all<T: JobSnapshot>(&self) -> Result<Vec<T>> {
        Ok(self.entries().await?.into_iter().map(|(_, s)| s).collect())
    }

    /// Removes the records of finished jobs of one kind beyond the newest
    /// `keep` (by end time); running jobs' records stay. Returns how many
    /// went. Replicas may prune at once: a delete of a deleted record is no error.
    pub async fn prune<T: JobSnapshot>(&self, keep: usize) -> Result<usize> {
        let mut finished: Vec<(Option<std::time::SystemTime>, String, Option<String>)> = self
            .entries::<T>()
            .await?
            .into_iter()
            .filter(|(_, s)| s.state().is_terminal())
            .map(|(key, s)| (s.end_time(), key, s.request_id().map(str::to_string)))
            .collect();
        if finished.len() <= keep {
            return Ok(0);
        }
        finished.sort();
        let pruned: Vec<_> = finished.drain(..finished.len() - keep).collect();
        // The records first: a claim without its record is taken over.
        let old: Vec<String> = pruned.iter().map(|(_, k, _)| k.clone()).collect();
        self.store.delete(&old).await?;
        let claims: Vec<String> = pruned
            .iter()
            .filter_map(|(_, _, r)| r.as_deref())
            .map(|r| self.claim_key::<T>(r))
            .collect();
        self.store.delete(&claims).await?;
        Ok(old.len())
    }

    /// Whether a cancel was asked for the job with `key` (of another server).
    pub async fn cancel_requested<T: JobSnapshot>(&self, key: &str) -> Result<bool> {
        Ok(self.store.head(&self.cancel_key::<T>(key)).await?.is_some())
    }

    /// The records of one kind of the jobs not finished, reading only those
    /// not in `finished` (object key and ETag: a record rewritten for a new
    /// job under the same key is read again).
    pub async fn unfinished<T: JobSnapshot>(
        &self,
        finished: &mut std::collections::HashSet<String>,
    ) -> Result<Vec<T>> {
        self.unfinished_or(finished, |_: &T| false).await
    }

    /// [`SharedRecords::unfinished`], with the ended records for which
    /// `wanted` holds (a restore whose cleanup is unfinished).
    pub async fn unfinished_or<T: JobSnapshot>(
        &self,
        finished: &mut std::collections::HashSet<String>,
        wanted: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>> {
        let prefix = format!("{}/", join_key([&self.prefix, T::KIND]));
        let mut out = Vec::new();
        for o in self.store.list(&prefix).await? {
            let version = format!("{}@{}", o.key, o.etag.as_deref().unwrap_or_default());
            if finished.contains(&version) {
                continue;
            }
            let body = match self.store.read(&o.key).await {
                Ok(body) => body,
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            match serde_json::from_slice::<T>(&body) {
                Ok(s) if s.state().is_terminal() && wanted(&s) => out.push(s),
                Ok(s) if s.state().is_terminal() => {
                    // Without an ETag a record cannot be told from its next version.
                    if o.etag.is_some() {
                        finished.insert(version);
                    }
                }
                Ok(s) => out.push(s),
                Err(e) => {
                    warn!(record = %o.key, error = %e, "unreadable shared job record skipped")
                }
            }
        }
        Ok(out)
    }

    /// Every record of one kind, with its object key.
    async fn entries<T: JobSnapshot>(&self) -> Result<Vec<(String, T)>> {
        let prefix = format!("{}/", join_key([&self.prefix, T::KIND]));
        let mut out = Vec::new();
        for o in self.store.list(&prefix).await? {
            // A read cut off mid-body is read again.
            let read = crate::retry::retry(
                crate::retry::Backoff::COPY,
                crate::retry::storage_transient,
                || self.store.read(&o.key),
            );
            match read.await {
                Ok(body) => match serde_json::from_slice(&body) {
                    Ok(s) => out.push((o.key, s)),
                    Err(e) => {
                        warn!(record = %o.key, error = %e, "unreadable shared job record skipped")
                    }
                },
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Asks the owner of the running job `s` to cancel it.
    pub async fn request_cancel<T: JobSnapshot>(&self, s: &T) -> Result<()> {
        self.store
            .write(&self.cancel_key::<T>(s.key()), Bytes::from_static(b"{}"))
            .await
    }

    /// Mirrors the running job `rx` watches, and cancels it through `token`
    /// when a cancel marker for it appears, until `stop`; the job's end is
    /// written by [`SharedRecords::finish`] after this returns. A cancel
    /// asked here (`token`) leaves the marker too: should the job's end not
    /// be written, a takeover then ends it instead of resuming it.
    pub async fn mirror<T: JobSnapshot + PartialEq>(
        self,
        rx: watch::Receiver<T>,
        fences: Vec<super::Fence>,
        turn: Arc<tokio::sync::Mutex<()>>,
        token: CancellationToken,
        stop: CancellationToken,
    ) {
        let key = rx.borrow().key().to_string();
        let cancel_key = self.cancel_key::<T>(&key);
        let mut written: Option<T> = None;
        let mut marked = false;
        while !stop.is_cancelled() {
            let snap = rx.borrow().clone();
            // A job whose lease expired writes no more: its record may be
            // another process's now.
            if fences.iter().any(|f| f.check().is_err()) {
                return;
            }
            if written.as_ref() != Some(&snap) && !snap.state().is_terminal() {
                match self
                    .save_latest_held(&turn, || rx.borrow().clone(), &fences)
                    .await
                {
                    Ok(()) => written = Some(snap),
                    Err(e) => warn!(job = %key, error = %e, "cannot write the shared job record"),
                }
            }
            if !marked {
                if token.is_cancelled() {
                    marked = self.leave_marker(&cancel_key, &key).await;
                } else if matches!(self.store.head(&cancel_key).await, Ok(Some(_))) {
                    info!(job = %key, "cancel requested through another server");
                    token.cancel();
                    marked = true;
                }
            }
            // Woken by a cancel only until it happened: a marker that could
            // not be written is tried again after the interval.
            let wake_on_cancel = !token.is_cancelled();
            tokio::select! {
                _ = tokio::time::sleep(MIRROR_INTERVAL) => {}
                _ = stop.cancelled() => {}
                _ = token.cancelled(), if wake_on_cancel => {}
            }
        }
        // A cancel just before the end: its marker still goes first.
        if token.is_cancelled() && !marked && fences.iter().all(|f| f.check().is_ok()) {
            self.leave_marker(&cancel_key, &key).await;
        }
    }

    /// Writes the cancel marker `cancel_key` of job `key`; whether it was.
    async fn leave_marker(&self, cancel_key: &str, key: &str) -> bool {
        match self
            .store
            .write(cancel_key, Bytes::from_static(b"{}"))
            .await
        {
            Ok(()) => true,
            Err(e) => {
                warn!(job = %key, error = %e, "cannot leave the cancel marker");
                false
            }
        }
    }

    /// Writes the first record of a new job. A cancel marker left for an
    /// earlier job with the same key (whose owner died) is removed first: it
    /// was not meant for this one.
    pub async fn start<T: JobSnapshot>(&self, s: &T) -> Result<()> {
        // A resumed job keeps a cancel asked while its server was down.
        let resumed = matches!(self.load::<T>(s.key()).await, Ok(Some(r)) if r.id() == s.id());
        match resumed {
            true => self.save(s).await,
            // The marker goes before the record is seen: a cancel asked of
            // this job once its record shows it running is kept.
            false => {
                self.store.delete(&[self.cancel_key::<T>(s.key())]).await?;
                self.save(s).await
            }
        }
    }

    /// Writes a job's last state, then removes its cancel marker, trying
    /// again for about 7.5 s. See [`SharedRecords::finish_by`].
    pub async fn finish<T: JobSnapshot>(&self, s: &T) -> bool {
        self.finish_by(s, now_ms() + FINISH_TRIES.as_millis() as u64)
            .await
    }

    /// [`SharedRecords::finish`] by a process that still holds the leases
    /// `fences`, which keep every other server from acting on the job (a
    /// takeover ending a job it does not resume): each try is made only
    /// while they stay valid for a quarter TTL more
    /// ([`super::Fence::left_to_write`]; without leases, as
    /// [`SharedRecords::finish`]). Whether it was written.
    pub async fn finish_held<T: JobSnapshot>(&self, s: &T, fences: &[super::Fence]) -> bool {
        if fences.is_empty() {
            return self.finish(s).await;
        }
        let until = now_ms() + FINISH_TRIES.as_millis() as u64;
        let left = || {
            let tries = Duration::from_millis(until.saturating_sub(now_ms()));
            tries.min(super::Fence::left_to_write(fences))
        };
        if left().is_zero() {
            warn!(job = %s.key(), "the job's leases expired before its end was written");
            return false;
        }
        self.finish_while(s, left).await
    }

    /// [`SharedRecords::finish`], tried again until `deadline_ms` (ms since
    /// the epoch; at least once). A record left running is resumed by a
    /// takeover once the job's leases are settled: the runner gives the
    /// deadline before that ([`super::Fence::end_deadline_ms`]). When it
    /// cannot be written the cancel marker stays, so that a cancelled job is
    /// ended by the takeover, not resumed. Whether it was written.
    pub async fn finish_by<T: JobSnapshot>(&self, s: &T, deadline_ms: u64) -> bool {
        self.finish_while(s, || {
            Duration::from_millis(deadline_ms.saturating_sub(now_ms()))
        })
        .await
    }

    /// Tries the end of `s` at once, then again while `left` (how long it
    /// may still start a try) is not zero: checked before each try, so a
    /// process paused meanwhile does not write past it.
    async fn finish_while<T: JobSnapshot>(&self, s: &T, left: impl Fn() -> Duration) -> bool {
        let mut pause = Duration::from_millis(500);
        loop {
            let e = match self.save(s).await {
                Ok(()) => {
                    let _ = self.store.delete(&[self.cancel_key::<T>(s.key())]).await;
                    return true;
                }
                Err(e) => e,
            };
            let before = left().saturating_sub(LAST_TRY_SPARE);
            if !before.is_zero() {
                warn!(job = %s.key(), error = %e, "cannot write the shared job record; trying again");
                tokio::time::sleep(pause.min(before)).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            if before.is_zero() || left().is_zero() {
                warn!(
                    job = %s.key(),
                    error = %e,
                    "cannot write the shared job record before a takeover may resume the job"
                );
                return false;
            }
        }
    }

    /// What a restarted process recovered of its own job `s`, reconciled
    /// with the shared record of the same key: one of another job (a later
    /// backup under the same name) is never written over, and an end
    /// another process recorded (a takeover, a delete) is kept and returned.
    /// Otherwise `s` is written as the job's end.
    pub async fn finish_recovered<T: JobSnapshot>(&self, s: T) -> T {
        match self.load::<T>(s.key()).await {
            Ok(Some(shared)) if shared.id() != s.id() => s,
            Ok(Some(shared)) if shared.state().is_terminal() => shared,
            _ => {
                self.finish(&s).await;
                s
            }
        }
    }

    /// What the cleanup a restarted process ran for its own ended job made
    /// of the job (`after`), reconciled with the shared record: written
    /// when that record is still `held` (the end this process recovered),
    /// so that the next restart does not clean up again; an end another
    /// process wrote since, and another job's record, are kept.
    pub async fn finish_cleaned<T: JobSnapshot + PartialEq>(&self, held: &T, after: T) -> T {
        match self.load::<T>(after.key()).await {
            Ok(Some(shared)) if shared.id() != after.id() => after,
            Ok(Some(shared)) if shared != *held => shared,
            _ => {
                self.finish(&after).await;
                after
            }
        }
    }

    /// Follows the record of a job another server runs: its snapshots, re-read
    /// every second until a terminal one. `None` when no server keeps it.
    pub async fn follow<T: JobSnapshot>(&self, key: &str) -> Result<Option<watch::Receiver<T>>> {
        let Some(first) = self.load::<T>(key).await? else {
            return Ok(None);
        };
        let done = first.state().is_terminal();
        let (tx, rx) = watch::channel(first);
        if !done {
            let (records, key) = (self.clone(), key.to_string());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(MIRROR_INTERVAL).await;
                    if tx.is_closed() {
                        return;
                    }
                    match records.load::<T>(&key).await {
                        Ok(Some(s)) => {
                            let end = s.state().is_terminal();
                            tx.send_replace(s);
                            if end {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(e) => {
                            warn!(job = %key, error = %e, "cannot read the shared job record")
                        }
                    }
                }
            });
        }
        Ok(Some(rx))
    }
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
