//! One runner for every kind of job. A kind ([`JobKind`]) owns its plan, its
//! work, its cleanup and its recovery; the runner owns what they share: the
//! job limit, the registry callers find jobs in, cancellation, supervision
//! (panics, shutdown, a lost lease), the metrics, and the job's record.
//!
//! A job runs in its own task: a caller that goes away never stops it. It
//! ends succeeded, failed or cancelled, and its kind's cleanup has run
//! before any watcher sees a failed or cancelled end.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

mod requests;
mod tasks;

use tasks::{checkpoint, keep_record, supervise};

use super::registry::{Registry, Started};
use super::{JobHandle, JobSnapshot, JobStore, SharedRecords};
use crate::error::{Error, Result};

/// The reason given to jobs a stopped process left running.
pub const INTERRUPTED: &str = "interrupted: the server stopped while the job ran";

/// One kind of job: backup, restore, and the kinds to come.
pub trait JobKind: Send + Sync + Sized + 'static {
    /// What watchers see of it.
    type Snapshot: JobSnapshot + PartialEq;
    /// The validated request that starts one.
    type Request: Send + 'static;
    /// What planning and recovery work with (the flows' context).
    type Env: Clone + Send + Sync + 'static;
    /// Its name in logs and metrics: `backup`, `restore`.
    const NAME: &'static str;
    /// How often a running job's record is rewritten (zero: at every change).
    const RECORD_INTERVAL: Duration;
    /// Whether the request id of `req` is claimed across the servers on the
    /// storage, so that a retry on another replica gets the same job.
    fn claims_request_id(_req: &Self::Request) -> bool {
        false
    }
    /// Whether its jobs keep records (here and in the backup storage), to be
    /// found, followed and resumed after their caller left or their server
    /// stopped. A kind whose jobs only answer their caller (a verification)
    /// keeps none: a restart ends them with the process.
    const KEEPS_RECORDS: bool = true;

    /// The request's idempotency key (empty when none).
    fn request_id(req: &Self::Request) -> &str;

    /// Whether job `s`, started with the same request id, was asked for
    /// with the same parameters as `req` (a retry), not other ones.
    fn same_request(_req: &Self::Request, _s: &Self::Snapshot) -> bool {
        true
    }

    /// Checks the request against the world and takes what the job needs
    /// (its leases) before the job is accepted: a bad request fails here and
    /// starts nothing. Returns the job and its first snapshot.
    fn plan(
        env: &Self::Env,
        req: Self::Request,
    ) -> impl Future<Output = Result<(Self, Self::Snapshot)>> + Send;

    /// Does the work, publishing progress on `job`.
    fn run(&self, job: &JobHandle<Self::Snapshot>) -> impl Future<Output = Result<()>> + Send;

    /// After the work failed or was cancelled: removes what it made.
    fn clean_up(
        &self,
        error: &Error,
        job: &JobHandle<Self::Snapshot>,
    ) -> impl Future<Output = ()> + Send;

    /// Fires when the job loses one of its holds to another process.
    fn lost(&self) -> CancellationToken;

    /// Lets go of the job's holds, at its end.
    fn release(self) -> impl Future<Output = ()> + Send;

    /// Lets go of the holds of a job planned but never run (its start or
    /// its request id refused); by default as at its end.
    fn release_unrun(self) -> impl Future<Output = ()> + Send {
        self.release()
    }

    /// A few words that name the job in logs.
    fn describe(&self) -> String;

    /// The job's leases, checked before its steps (see [`JobHandle::fence`]).
    fn fences(&self) -> Vec<super::Fence> {
        Vec::new()
    }

    /// Whether another server (or this one, restarted) can resume the job
    /// from its shared record: then a shutdown that cuts it short leaves it
    /// running for them rather than cancelling it.
    fn resumable(&self) -> bool {
        false
    }

    /// A record a stopped process left: unchanged when it ended, else marked
    /// as interrupted, with the cleanup that must follow.
    fn recover(
        env: &Self::Env,
        record: Self::Snapshot,
    ) -> impl Future<Output = Recovered<Self::Snapshot>> + Send;
}

/// What recovery made of a record.
pub struct Recovered<T> {
    /// The state to show at once.
    pub now: T,
    /// Cleanup to run in the background (it may wait minutes for Milvus);
    /// it returns the final state.
    pub later: Option<BoxFuture<'static, T>>,
    /// Left running for a server to resume (this one included) once the
    /// stopped process's leases expire: neither saved nor remembered now.
    pub resume: bool,
}

impl<T> Recovered<T> {
    /// Recovered at once, with nothing left to do.
    pub fn at_once(record: T) -> Self {
        Self {
            now: record,
            later: None,
            resume: false,
        }
    }

    /// Left to be resumed by the takeover of jobs whose server died.
    pub fn resume(record: T) -> Self {
        Self {
            now: record,
            later: None,
            resume: true,
        }
    }
}

/// What every kind of job shares.
#[derive(Debug)]
pub struct Pool {
    /// One permit per running job.
    slots: Arc<Semaphore>,
    max_jobs: usize,
    /// Every job task and record writer; closed when the server shuts down.
    tasks: TaskTracker,
    /// Cancels every job when a shutdown's grace period is over.
    shutdown: CancellationToken,
    /// Where job records are kept, if anywhere.
    records: Option<JobStore>,
    /// The records every server on the backup storage reads.
    shared: Option<SharedRecords>,
}

impl Pool {
    /// At most `max_jobs` jobs at once (at least one), with records in
    /// `records` and, shared with other servers, in `shared`.
    pub fn new(
        max_jobs: usize,
        records: Option<JobStore>,
        shared: Option<SharedRecords>,
    ) -> Arc<Self> {
        let max_jobs = max_jobs.max(1);
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max_jobs)),
            max_jobs,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            records,
            shared,
        })
    }

    /// The records shared with the other servers, if kept.
    pub fn shared(&self) -> Option<&SharedRecords> {
        self.shared.as_ref()
    }

    /// A slot of the job limit, or RESOURCE_EXHAUSTED (UNAVAILABLE once the
    /// server shuts down).
    fn take_slot(&self) -> Result<OwnedSemaphorePermit> {
        if self.tasks.is_closed() {
            return Err(Error::ShuttingDown);
        }
        self.slots.clone().try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "{} jobs are running, the most this server runs at once; retry later",
                self.max_jobs
            ))
        })
    }

    /// Stops taking jobs, gives the running ones `grace` to finish, cancels
    /// those still running, and returns once every job and record is done.
    pub async fn shut_down(&self, grace: Duration) {
        self.tasks.close();
        let running = self.tasks.len();
        if running > 0 {
            info!(
                tasks = running,
                ?grace,
                "waiting for running jobs to finish"
            );
        }
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                ?grace,
                "jobs still running after the grace period; cancelling them"
            );
            self.shutdown.cancel();
            self.tasks.wait().await;
        }
    }
}

/// The jobs of one kind: started, found, cancelled and recovered here.
pub struct Runner<K: JobKind> {
    pool: Arc<Pool>,
    registry: Registry<K::Snapshot>,
    /// Cancellation of the running jobs, by key.
    cancels: Mutex<HashMap<String, CancellationToken>>,
    /// The parent of every job's cancellation: [`Self::cancel_all`] also
    /// reaches a job still planning then.
    cancel_every: CancellationToken,
    /// One start at a time per request id.
    turns: requests::RequestTurns,
}

impl<K: JobKind> std::fmt::Debug for Runner<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("kind", &K::NAME).finish()
    }
}

impl<K: JobKind> Runner<K> {
    /// A runner sharing `pool` with the other kinds.
    pub fn new(pool: Arc<Pool>) -> Arc<Self> {
        Arc::new(Self {
            pool,
            registry: Registry::default(),
            cancels: Mutex::new(HashMap::new()),
            cancel_every: CancellationToken::new(),
            turns: requests::RequestTurns::default(),
        })
    }

    /// The jobs of this kind this server remembers.
    pub fn registry(&self) -> &Registry<K::Snapshot> {
        &self.registry
    }

    /// Plans a job and starts it; returns its snapshots. A retry with a known
    /// request id watches the job it started (sent while that job is still
    /// being planned here, it waits for the plan).
    ///
    /// The start runs in a task of its own: a caller that goes away mid-way
    /// (a disconnect, a deadline) never leaves a hold taken but not handed
    /// back, or a job registered under its name but never run.
    pub async fn start(
        self: &Arc<Self>,
        env: &K::Env,
        req: K::Request,
    ) -> Result<watch::Receiver<K::Snapshot>> {
        let (runner, env) = (self.clone(), env.clone());
        self.pool
            .tasks
            .spawn(async move { runner.start_detached(&env, req).await })
            .await
            .unwrap_or_else(|e| {
                Err(Error::Internal(format!(
                    "the start of a {} job failed: {e}",
                    K::NAME
                )))
            })
    }

    async fn start_detached(
        self: &Arc<Self>,
        env: &K::Env,
        req: K::Request,
    ) -> Result<watch::Receiver<K::Snapshot>> {
        let request_id = K::request_id(&req).to_string();
        let claims = K::claims_request_id(&req);
        let _turn = self.turns.take(&request_id).await;
        let retried = match self.registry.by_request(&request_id) {
            Some(existing) => Some(existing),
            None if claims => self.claimed(&request_id).await?,
            None => None,
        };
        if let Some(existing) = retried {
            let s = existing.borrow().clone();
            if !K::same_request(&req, &s) {
                return Err(Error::invalid(format!(
                    "request id {request_id:?} started {} {:?} with other parameters; \
                     a retry must repeat the request, another request needs another id",
                    K::Snapshot::NOUN,
                    s.key()
                )));
            }
            return Ok(existing);
        }
        let slot = self.pool.take_slot()?;
        let (job, mut snapshot) = K::plan(env, req).await?;
        snapshot.set_request_id(&request_id);
        let mut handle = match self.registry.start(snapshot, &request_id) {
            Ok(Started::New(handle)) => handle,
            Ok(Started::Existing(rx)) => {
                job.release_unrun().await;
                return Ok(rx);
            }
            Err(e) => {
                job.release_unrun().await;
                return Err(e);
            }
        };
        let (key, id) = {
            let s = handle.snapshot();
            (s.key().to_string(), s.id().to_string())
        };
        if claims && let Err(first) = self.claim(&request_id, &key, &id).await {
            self.registry.forget(handle.snapshot().key());
            job.release_unrun().await;
            return first;
        }
        let (records, shared) = match K::KEEPS_RECORDS {
            true => (self.pool.records.clone(), self.pool.shared.clone()),
            false => (None, None),
        };
        // Every writer of the shared record takes this turn (see `save_latest`).
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let latest = handle.subscribe();
        handle = handle.with_fences(job.fences());
        handle = handle.with_checkpoint(checkpoint::<K>(
            records.clone(),
            shared.clone(),
            turn.clone(),
            latest,
            job.fences(),
        ));
        let rx = handle.subscribe();
        if let Some(records) = records.clone() {
            // Always the newest state: a checkpoint may have written a newer
            // one since this writer woke up.
            let latest = handle.subscribe();
            keep_record(
                &self.pool.tasks,
                handle.subscribe(),
                K::RECORD_INTERVAL,
                move |_| records.save_latest(|| latest.borrow().clone()),
            );
        }
        let token = self.cancel_every.child_token();
        self.cancels
            .lock()
            .expect("cancels")
            .insert(key.clone(), token.clone());
        let runner = self.clone();
        // Every log line of the job carries its kind, its id and the caller's trace.
        let first = handle.snapshot();
        let span = tracing::info_span!(
            "job",
            kind = K::NAME,
            id = %first.id(),
            trace_id = first.trace_id().unwrap_or_default()
        );
        span.in_scope(|| info!(job = %job.describe(), "{} started", K::NAME));
        // Mirrored for the other servers, from before the caller learns of the
        // job to its end (written below).
        if let Some(shared) = &shared
            && let Err(e) = shared.start(&handle.snapshot()).await
        {
            span.in_scope(|| warn!(error = %e, "cannot write the shared job record"));
        }
        let mirror = shared.clone().map(|shared| {
            let stop = CancellationToken::new();
            let task = tokio::spawn(shared.mirror(
                handle.subscribe(),
                job.fences(),
                turn,
                token.clone(),
                stop.clone(),
            ));
            (stop, task)
        });
        self.pool.tasks.spawn(tracing::Instrument::instrument(
            async move {
                let pool = &runner.pool;
                let lost = job.lost();
                let started = std::time::Instant::now();
                let result =
                    supervise(K::NAME, &token, &pool.shutdown, &lost, job.run(&handle)).await;
                // A cancel drops the work, not its uninterrupted steps:
                // cleanup sees what they made and recorded.
                handle.settle().await;
                // Stopped past its commit point, the job has done its work.
                let result = match result {
                    Err(e) if handle.past_commit_point() => {
                        warn!(error = %e, "{} stopped past its commit point: it completed", K::NAME);
                        Ok(())
                    }
                    result => result,
                };
                crate::metrics::global().job_ended(K::NAME, &result, started.elapsed());
                // A job whose lease went to another process (which resumes it
                // under the same id) leaves the shared record to that process.
                // So does one that failed after its lease expired by this
                // process's clock (paused past it): another server, or this
                // one's takeover, resumes it from its records.
                // (A kind without records has nothing to hand over.)
                let superseded = K::KEEPS_RECORDS
                    && (lost.is_cancelled()
                        || (result.is_err() && job.fences().iter().any(|f| f.check().is_err())));
                // Cut short by a shutdown: left running in the records, for
                // another server (or this one, restarted) to resume.
                let handed_over = matches!(result, Err(Error::Cancelled(_)))
                    && pool.shutdown.is_cancelled()
                    && !token.is_cancelled()
                    && !superseded
                    && shared.is_some()
                    && job.resumable();
                // Ends the watchers of the leases.
                lost.cancel();
                match &result {
                    Ok(()) => info!(job = %job.describe(), "{} succeeded", K::NAME),
                    Err(e) if superseded => warn!(
                        job = %job.describe(),
                        error = %e,
                        "{} stopped: another process took it over and owns what it made; left to it",
                        K::NAME
                    ),
                    Err(_) if handed_over => warn!(
                        job = %job.describe(),
                        "{} left running for another server to resume: this one shut down \
                         before it finished",
                        K::NAME
                    ),
                    Err(e @ Error::Cancelled(_)) => {
                        info!(job = %job.describe(), error = %e, "{} cancelled", K::NAME);
                        job.clean_up(e, &handle).await;
                    }
                    Err(e) => {
                        error!(job = %job.describe(), error = %e, "{} did not succeed", K::NAME);
                        job.clean_up(e, &handle).await;
                    }
                }
                runner.cancels.lock().expect("cancels").remove(&key);
                // Everything is let go before watchers see the end; the end
                // is written before a takeover may resume the job.
                let end_by = super::Fence::end_deadline_ms(&job.fences());
                job.release().await;
                drop(slot);
                if handed_over {
                    if let Some((stop, task)) = mirror {
                        stop.cancel();
                        let _ = task.await;
                    }
                    // Its watchers here see the stream end while it runs.
                    return;
                }
                // The records say how it ended before any watcher sees the end.
                let mut last = handle.snapshot();
                last.finish(&result);
                let recorded = match (mirror, &shared) {
                    (Some((stop, task)), Some(shared)) => {
                        stop.cancel();
                        let _ = task.await;
                        match end_by {
                            _ if superseded => false,
                            Some(deadline_ms) => shared.finish_by(&last, deadline_ms).await,
                            None => shared.finish(&last).await,
                        }
                    }
                    // Without a shared record, no takeover resumes it.
                    _ => !superseded,
                };
                // No takeover resumes it now: its readers' lease objects go.
                if recorded {
                    super::lease::end_recorded(last.id()).await;
                }
                match &records {
                    Some(records) => {
                        records.save_last_then(&last.clone(), || handle.update(|s| *s = last))
                    }
                    None => handle.update(|s| *s = last),
                }
                // Callers here follow the shared record of the process that
                // took it; a kind without records is only its caller's.
                if superseded || !K::KEEPS_RECORDS {
                    runner.registry.forget(&key);
                }
            },
            span,
        ));
        Ok(rx)
    }

    /// Whether the job with `key` runs in this process now.
    pub fn runs_here(&self, key: &str) -> bool {
        self.cancels.lock().expect("cancels").contains_key(key)
    }

    /// Asks the running job with `key` to stop; it ends CANCELLED within
    /// seconds, after its cleanup.
    pub fn cancel(&self, key: &str) -> Result<()> {
        let noun = K::Snapshot::NOUN;
        if self.registry.get(key).is_none() {
            return Err(Error::not_found(noun, key));
        }
        match self.cancels.lock().expect("cancels").get(key) {
            Some(token) => {
                token.cancel();
                Ok(())
            }
            None => Err(Error::FailedPrecondition(format!(
                "{noun} {key:?} is not running on this server"
            ))),
        }
    }

    /// The job with `key`: one of this server's, or one another server on
    /// the same backup storage runs or ran (followed through its shared
    /// record, with about a second of lag; a kind without records is found
    /// only here).
    pub async fn find(&self, key: &str) -> Result<Option<watch::Receiver<K::Snapshot>>> {
        if let Some(rx) = self.registry.get(key) {
            return Ok(Some(rx));
        }
        self.find_shared(key).await
    }

    /// The newest job with `key` as its shared record shows it, wherever it
    /// runs or ran (`None` for a kind without records).
    pub async fn find_shared(&self, key: &str) -> Result<Option<watch::Receiver<K::Snapshot>>> {
        match self.shared_records() {
            Some(shared) => shared.follow::<K::Snapshot>(key).await,
            None => Ok(None),
        }
    }

    /// The shared records, for a kind that keeps them.
    fn shared_records(&self) -> Option<&SharedRecords> {
        self.pool.shared.as_ref().filter(|_| K::KEEPS_RECORDS)
    }

    /// Asks every job of this kind running here to stop, and every one
    /// started from now on (one still planning now included) at its start.
    pub fn cancel_all(&self) {
        self.cancel_every.cancel();
    }

    /// Cancels the job with `key` wherever it runs: here at once, on another
    /// server through its shared record (it stops within seconds).
    pub async fn cancel_anywhere(&self, key: &str) -> Result<()> {
        let here = self.registry.get(key).map(|rx| rx.borrow().clone());
        // A job of the key that ended here may have a newer one elsewhere.
        if self.runs_here(key) || (here.is_some() && self.shared_records().is_none()) {
            return self.cancel(key);
        }
        let noun = K::Snapshot::NOUN;
        let Some(shared) = self.shared_records() else {
            return Err(Error::not_found(noun, key));
        };
        let ended = |state: crate::jobs::JobState| {
            Err(Error::FailedPrecondition(format!(
                "{noun} {key:?} is not running: it ended {state:?}"
            )))
        };
        match shared.load::<K::Snapshot>(key).await? {
            None => Err(Error::not_found(noun, key)),
            Some(s) if s.state().is_terminal() => ended(s.state()),
            // The job that ended here, its end not (yet) in its record: a
            // marker would have a takeover clean up what it finished.
            Some(s) if here.as_ref().is_some_and(|h| h.id() == s.id()) => {
                ended(here.map_or(s.state(), |h| h.state()))
            }
            Some(s) => shared.request_cancel(&s).await,
        }
    }

    /// After a restart: the jobs of the previous process are remembered
    /// again, and those it left unfinished are recovered by their kind.
    pub async fn recover(self: &Arc<Self>, env: &K::Env) {
        let Some(records) = self.pool.records.clone().filter(|_| K::KEEPS_RECORDS) else {
            return;
        };
        for record in records.records::<K::Snapshot>() {
            let before = record.clone();
            let Recovered { now, later, resume } = K::recover(env, record).await;
            if resume {
                continue;
            }
            let recovered = now.clone();
            let now = match (&self.pool.shared, now != before) {
                (Some(shared), true) => shared.finish_recovered(now).await,
                (_, _) => now,
            };
            // Another process's end of the job, kept over this one's.
            let theirs = now != recovered;
            if now != before {
                records.save(&now);
            }
            self.registry.remember(now.clone());
            if let Some(later) = later {
                let (records, runner) = (records.clone(), self.clone());
                self.pool.tasks.spawn(async move {
                    let after = later.await;
                    let after = match &runner.pool.shared {
                        Some(_) if theirs => return,
                        Some(shared) => shared.finish_cleaned(&now, after).await,
                        None => after,
                    };
                    records.save(&after);
                    runner.registry.remember(after);
                });
            }
        }
    }
}
