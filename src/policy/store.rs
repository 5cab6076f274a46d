//! Policies and their runs, kept in the backup storage so that every server
//! on it (and a restarted one) sees them:
//! - `{root}/_policies/{name}/policy.json`: the definition, created with
//!   `If-None-Match: *` and replaced with `If-Match`;
//! - `{root}/_policies/{name}/runs/{slot}.json`: one record per run (the
//!   slot in milliseconds since the epoch, zero-padded so keys sort by time),
//!   created when the run starts and rewritten by its owner, which holds the
//!   slot's lease (`_leases/policy/{name}/{slot}`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::{Error, Result};
use crate::model::{Policy, PolicyInput, PolicyUpdate};
use crate::storage::{CondPut, ObjectInfo, ObjectStore, join_key};

/// The folder of policies under the backup root (a reserved backup name).
pub const POLICIES_DIR: &str = "_policies";

/// A policy as stored: its input and when it was created.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(rename = "policy")]
    input: PolicyInput,
    created_ms: i64,
    updated_ms: i64,
    /// Slots before this are never due: moved when the policy is turned on
    /// again or its schedule changes, not by other updates (a retention
    /// change keeps a slot waiting to catch up). `None` in records written
    /// before it was kept: `updated_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since_ms: Option<i64>,
    /// The Milvus it backs up (`milvus::identity`); `None` in records
    /// written before it was kept (any server's then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    milvus_id: Option<String>,
}

/// A stored policy, parsed.
#[derive(Debug, Clone)]
pub struct StoredPolicy {
    pub policy: Policy,
    /// When it was created, turned on again or given another schedule:
    /// slots before this are never due (re-enabling a policy does not run a
    /// slot that passed while it was off).
    pub since: DateTime<Utc>,
    /// The Milvus it backs up: only that Milvus's servers run it.
    pub milvus_id: Option<String>,
    /// When it was created (ms since the epoch): a policy deleted and
    /// created again under its name is another policy.
    pub created_ms: i64,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
}

/// One run of a policy: one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub slot_ms: i64,
    pub backup: String,
    pub state: RunState,
    pub attempts: u32,
    #[serde(default)]
    pub error: Option<String>,
    /// The kind of `error` ([`crate::error::ErrorKind::as_str`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// `host:pid/tag` of the server running it.
    pub owner: String,
    pub started_ms: i64,
    #[serde(default)]
    pub ended_ms: Option<i64>,
    /// Started by RunPolicyNow.
    #[serde(default)]
    pub manual: bool,
    /// Its backup was deleted by retention.
    #[serde(default)]
    pub deleted: bool,
    /// What the policy backed up when the run started
    /// ([`crate::model::Selection::key`]; empty in records of earlier
    /// versions): retention decides among the backups of one selection.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selection: String,
    /// Retention started deleting its backup (recorded before the delete
    /// starts): a delete that stopped after the backup was retired is
    /// finished by a later retention.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retiring: bool,
    /// The ids of the backup jobs it started, recorded before each starts:
    /// a backup of the run's name is the run's only when its id is one of them.
    #[serde(default)]
    pub jobs: Vec<String>,
    /// When the policy it ran for was created ([`StoredPolicy::created_ms`];
    /// `None` in records of earlier versions): a run that outlives its
    /// policy never writes into a later policy of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_created_ms: Option<i64>,
}

impl RunRecord {
    /// Whether this ended run holds its backup, which `exists`: one that
    /// may have made it (a failed run that started a job too: a takeover's,
    /// or one past its deadline, may have completed after the run gave up)
    /// and has not deleted it.
    pub fn holds_backup(&self, exists: &impl Fn(&str) -> bool) -> bool {
        let may_have_made_it = match self.state {
            RunState::Succeeded => true,
            // Not one whose name was taken by another backup (its job id is
            // recorded first).
            RunState::Failed => {
                !self.jobs.is_empty() && self.error_kind.as_deref() != Some("already_exists")
            }
            RunState::Running => false,
        };
        may_have_made_it && !self.deleted && exists(&self.backup)
    }

    /// The slot as a time.
    pub fn slot(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.slot_ms).unwrap_or_default()
    }
}

/// The policies of one backup storage.
#[derive(Debug, Clone)]
pub struct PolicyStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// Run records read before, by key, with the ETag the listing showed:
    /// one listed again with the same ETag is not read again (every replica
    /// looks at every run record every few seconds).
    runs_read: Arc<Mutex<HashMap<String, (String, RunRecord)>>>,
    /// The scheduler's last listing of the policies (see [`Self::list_recent`]).
    listed: Arc<Mutex<Option<Listing>>>,
    /// Writes made through this store: a listing begun before one is stale.
    writes: Arc<AtomicU64>,
}

/// Policies as listed at one moment.
#[derive(Debug)]
struct Listing {
    at: Instant,
    /// [`PolicyStore::writes`] when the listing began.
    writes: u64,
    policies: Vec<StoredPolicy>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl PolicyStore {
    /// Policies in `store` under `root` (the backup root).
    pub fn new(store: Arc<dyn ObjectStore>, root: &str) -> Self {
        Self {
            store,
            prefix: join_key([root, POLICIES_DIR]),
            runs_read: Arc::default(),
            listed: Arc::default(),
            writes: Arc::default(),
        }
    }

    /// A policy written here: the listing the scheduler keeps is stale.
    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    fn folder(&self, name: &str) -> String {
        format!("{}/", join_key([&self.prefix, name]))
    }

    fn def_key(&self, name: &str) -> String {
        join_key([&self.prefix, name, "policy.json"])
    }

    fn runs_folder(&self, name: &str) -> String {
        format!("{}/", join_key([&self.prefix, name, "runs"]))
    }

    fn run_key(&self, name: &str, slot_ms: i64) -> String {
        join_key([&self.prefix, name, "runs", &format!("{slot_ms:020}.json")])
    }

    /// Stores a new policy of the Milvus `milvus_id`; ALREADY_EXISTS when
    /// the name is taken.
    pub async fn create(&self, policy: &Policy, milvus_id: Option<String>) -> Result<StoredPolicy> {
        self.store.ensure_bucket(true).await?;
        // Run records under a name no policy has are a deleted policy's (a
        // delete cut short, a run that saved its record late): a new policy
        // of the name must not take their backups for its own.
        let name = policy.name();
        if !self.exists(name).await? {
            let left = self.store.delete_under(&self.runs_folder(name)).await?;
            if left > 0 {
                tracing::info!(
                    policy = name,
                    records = left,
                    "removed the run records a deleted policy of the name left"
                );
            }
        }
        let now = now_ms();
        let stored = Stored {
            input: policy.input().clone(),
            created_ms: now,
            updated_ms: now,
            since_ms: Some(now),
            milvus_id,
        };
        let body = Bytes::from(serde_json::to_vec_pretty(&stored)?);
        let key = self.def_key(policy.name());
        // Our own creation retried by the store reads as a conflict: its
        // body (with this call's creation time) tells it apart.
        let written = self.store.put_if_absent(&key, body.clone()).await;
        // Also when the answer is an error: the write may have landed.
        self.wrote();
        match written?.confirmed(self.store.as_ref(), &key, &body).await? {
            CondPut::Written(_) => Ok(parsed(stored)?),
            CondPut::Conflict => Err(Error::already_exists("policy", policy.name())),
        }
    }

    /// Replaces policy `update.name()`, keeping its creation time and its
    /// Milvus (`milvus_id` for one recorded without). An update that leaves
    /// `enabled` unset keeps it as it was, and is refused, with nothing
    /// written, when the policy is on and its check of that waited
    /// ([`PolicyUpdate::keeping_enabled`]).
    pub async fn update(
        &self,
        update: &PolicyUpdate,
        milvus_id: Option<String>,
    ) -> Result<StoredPolicy> {
        let key = self.def_key(update.name());
        let Some((body, etag)) = self.store.read_versioned(&key).await? else {
            return Err(Error::not_found("policy", update.name()));
        };
        let old: Stored = serde_json::from_slice(&body)?;
        let policy = update.keeping_enabled(old.input.enabled)?;
        let input = policy.input().clone();
        let now = now_ms();
        let turned_on = !old.input.enabled.unwrap_or(true) && input.enabled.unwrap_or(true);
        let rescheduled =
            old.input.schedule != input.schedule || old.input.time_zone != input.time_zone;
        let since_ms = match turned_on || rescheduled {
            true => now,
            false => old.since_ms.unwrap_or(old.updated_ms),
        };
        let stored = Stored {
            input,
            created_ms: old.created_ms,
            updated_ms: now,
            since_ms: Some(since_ms),
            milvus_id: old.milvus_id.or(milvus_id),
        };
        let body = Bytes::from(serde_json::to_vec_pretty(&stored)?);
        // A retried write whose first answer was lost finds its own bytes.
        let written = self.store.put_if_match(&key, body.clone(), &etag).await;
        self.wrote();
        match written?.confirmed(self.store.as_ref(), &key, &body).await? {
            CondPut::Written(_) => Ok(parsed(stored)?),
            CondPut::Conflict => Err(Error::Aborted(format!(
                "policy {:?} was changed by another call at the same time; retry",
                policy.name()
            ))),
        }
    }

    /// Removes policy `name` and its run records (its backups stay): the
    /// records first, so that a delete cut short leaves the policy, to be
    /// deleted again.
    pub async fn delete(&self, name: &str) -> Result<()> {
        if self.store.head(&self.def_key(name)).await?.is_none() {
            return Err(Error::not_found("policy", name));
        }
        self.store.delete_under(&self.runs_folder(name)).await?;
        let deleted = self.store.delete(&[self.def_key(name)]).await;
        self.wrote();
        deleted?;
        self.store.delete_under(&self.folder(name)).await?;
        Ok(())
    }

    /// When policy `name` was created, if it is stored.
    pub async fn created_ms(&self, name: &str) -> Result<Option<i64>> {
        match self.store.read(&self.def_key(name)).await {
            Ok(body) => Ok(Some(serde_json::from_slice::<Stored>(&body)?.created_ms)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether policy `name` is stored.
    pub async fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.store.head(&self.def_key(name)).await?.is_some())
    }

    /// Policy `name`, if stored.
    pub async fn get(&self, name: &str) -> Result<Option<StoredPolicy>> {
        match self.store.read(&self.def_key(name)).await {
            Ok(body) => Ok(Some(parsed(serde_json::from_slice(&body)?)?)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every stored policy, by name. One that no longer parses (edited by
    /// hand) is left out with a warning naming it.
    pub async fn list(&self) -> Result<Vec<StoredPolicy>> {
        let mut out = Vec::new();
        for dir in self.store.list_dirs(&format!("{}/", self.prefix)).await? {
            // `{prefix}/{name}/`
            let name = dir
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default();
            match self.get(name).await {
                Ok(Some(p)) => out.push(p),
                Ok(None) => {}
                Err(e) => warn!(policy = %name, error = %e, "unreadable policy left out"),
            }
        }
        Ok(out)
    }

    /// Every stored policy, as listed at most `max_age` ago. The scheduler
    /// looks every second, and a listing costs a LIST and a GET per policy:
    /// within `max_age` it sees a change made through another server only
    /// when it reads that policy again. A write through this store is seen
    /// at once.
    pub async fn list_recent(&self, max_age: Duration) -> Result<Vec<StoredPolicy>> {
        let writes = self.writes.load(Ordering::SeqCst);
        if let Some(l) = &*self.listed.lock().expect("policy listing")
            && l.writes == writes
            && l.at.elapsed() < max_age
        {
            return Ok(l.policies.clone());
        }
        let at = Instant::now();
        let policies = self.list().await?;
        *self.listed.lock().expect("policy listing") = Some(Listing {
            at,
            writes,
            policies: policies.clone(),
        });
        Ok(policies)
    }

    /// Makes the next [`Self::list_recent`] list anew.
    pub fn forget_listing(&self) {
        self.wrote();
    }

    /// The run records of policy `name`, oldest first. A record whose ETag
    /// is the one it was read at before is taken from memory.
    pub async fn runs(&self, name: &str) -> Result<Vec<RunRecord>> {
        let prefix = self.runs_folder(name);
        let mut listed = self.store.list(&prefix).await?;
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        let known = |o: &ObjectInfo| {
            let read = self.runs_read.lock().expect("runs read");
            let (etag, record) = read.get(&o.key)?;
            (o.etag.as_ref() == Some(etag)).then(|| record.clone())
        };
        let mut out = Vec::with_capacity(listed.len());
        for o in &listed {
            if let Some(r) = known(o) {
                out.push(r);
                continue;
            }
            match self.store.read(&o.key).await {
                Ok(body) => match serde_json::from_slice::<RunRecord>(&body) {
                    Ok(r) => {
                        // Read after the listing: at least as new as its ETag.
                        if let Some(etag) = &o.etag {
                            let mut read = self.runs_read.lock().expect("runs read");
                            read.insert(o.key.clone(), (etag.clone(), r.clone()));
                        }
                        out.push(r);
                    }
                    Err(e) => {
                        warn!(record = %o.key, error = %e, "unreadable policy run record left out")
                    }
                },
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        // Records gone (pruned, their policy deleted) are forgotten.
        let present: HashSet<&str> = listed.iter().map(|o| o.key.as_str()).collect();
        let mut read = self.runs_read.lock().expect("runs read");
        read.retain(|k, _| !k.starts_with(&prefix) || present.contains(k.as_str()));
        Ok(out)
    }

    /// The record of the run of `name` for `slot_ms`, if it started.
    pub async fn run(&self, name: &str, slot_ms: i64) -> Result<Option<RunRecord>> {
        match self.store.read(&self.run_key(name, slot_ms)).await {
            Ok(body) => Ok(Some(serde_json::from_slice(&body)?)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the first record of a run; `false` when it already has one.
    pub async fn start_run(&self, name: &str, record: &RunRecord) -> Result<bool> {
        let body = Bytes::from(serde_json::to_vec_pretty(record)?);
        let key = self.run_key(name, record.slot_ms);
        let put = self.store.put_if_absent(&key, body.clone()).await?;
        // Our own write retried by the store is ours, not an earlier run's.
        let put = put.confirmed(self.store.as_ref(), &key, &body).await?;
        Ok(matches!(put, CondPut::Written(_)))
    }

    /// Rewrites a run's record (its owner holds the slot's lease).
    pub async fn save_run(&self, name: &str, record: &RunRecord) -> Result<()> {
        let body = Bytes::from(serde_json::to_vec_pretty(record)?);
        self.store
            .write(&self.run_key(name, record.slot_ms), body)
            .await
    }

    /// Changes the record of run `slot_ms` of policy `name` as it is now in
    /// the store with `change`: written only while no other write came
    /// since it was read (its owner rewrites it as it goes), else read and
    /// changed again, up to 5 times. A record read earlier is never written
    /// back over a newer one (a run that ended meanwhile shown running
    /// again, and taken over). `false` when it has no record.
    pub async fn change_run(
        &self,
        name: &str,
        slot_ms: i64,
        change: impl Fn(&mut RunRecord),
    ) -> Result<bool> {
        let key = self.run_key(name, slot_ms);
        for _ in 0..5 {
            let Some((body, etag)) = self.store.read_versioned(&key).await? else {
                return Ok(false);
            };
            let mut record: RunRecord = serde_json::from_slice(&body)?;
            change(&mut record);
            let body = Bytes::from(serde_json::to_vec_pretty(&record)?);
            // A retried write whose first answer was lost finds its own bytes.
            let written = self.store.put_if_match(&key, body.clone(), &etag).await?;
            if let CondPut::Written(_) = written.confirmed(self.store.as_ref(), &key, &body).await?
            {
                return Ok(true);
            }
        }
        Err(Error::Aborted(format!(
            "the record of policy {name:?}'s run {slot_ms} kept changing while it was written; \
             tried again later"
        )))
    }

    /// Removes the records of ended runs beyond the newest `keep`, except
    /// those that hold their backup ([`RunRecord::holds_backup`]: they say
    /// which backups are the policy's, a failed run's whose job completed
    /// after it gave up too), and the newest scheduled run's: it says its
    /// slot ran, so a restart (or another replica) does not run it again,
    /// however many runs asked now came after it.
    pub async fn prune_runs(
        &self,
        name: &str,
        runs: &[RunRecord],
        keep: usize,
        exists: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let newest_slot = runs.iter().filter(|r| !r.manual).map(|r| r.slot_ms).max();
        let ended = runs.iter().rev().filter(|r| r.state != RunState::Running);
        let old: Vec<String> = ended
            .skip(keep)
            .filter(|r| !r.holds_backup(&exists))
            .filter(|r| r.manual || Some(r.slot_ms) != newest_slot)
            .map(|r| self.run_key(name, r.slot_ms))
            .collect();
        if !old.is_empty() {
            self.store.delete(&old).await?;
        }
        Ok(())
    }
}

fn parsed(stored: Stored) -> Result<StoredPolicy> {
    let name = stored.input.name.clone();
    let policy = Policy::parse_stored(stored.input).map_err(|e| {
        Error::FailedPrecondition(format!("stored policy {name:?} is no longer valid: {e}"))
    })?;
    Ok(StoredPolicy {
        policy,
        since: DateTime::from_timestamp_millis(stored.since_ms.unwrap_or(stored.updated_ms))
            .unwrap_or_default(),
        milvus_id: stored.milvus_id,
        created_ms: stored.created_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PolicyInput;
    use crate::storage::LocalDir;

    /// Slots count from the policy's creation, turning it on again or a new
    /// schedule; a retention change (or turning it off) moves nothing, so a
    /// slot waiting to catch up still runs.
    #[tokio::test]
    async fn only_turning_on_or_rescheduling_moves_where_slots_count_from() {
        let dir = std::env::temp_dir().join(format!("policies-{}", uuid::Uuid::new_v4().simple()));
        let store = PolicyStore::new(Arc::new(LocalDir::new(&dir)), "backup");
        let mut input = PolicyInput {
            name: "nightly".into(),
            schedule: "0 3 * * *".into(),
            all_collections: true,
            ..Default::default()
        };
        let update = |input: &PolicyInput| {
            let (store, policy) = (store.clone(), PolicyUpdate::parse(input.clone()).unwrap());
            async move { store.update(&policy, None).await.unwrap().since }
        };
        let pause = || tokio::time::sleep(std::time::Duration::from_millis(5));
        let created = store
            .create(&Policy::parse(input.clone()).unwrap(), None)
            .await
            .unwrap()
            .since;
        pause().await;
        input.retention.keep_last = 3;
        assert_eq!(update(&input).await, created, "a retention change");
        input.enabled = Some(false);
        assert_eq!(update(&input).await, created, "turned off");
        pause().await;
        input.enabled = Some(true);
        let on = update(&input).await;
        assert!(on > created, "turned on again");
        pause().await;
        input.schedule = "0 4 * * *".into();
        assert!(update(&input).await > on, "another schedule");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// More than `keep` runs asked now after the newest scheduled one, which
    /// failed (its backup holds nothing to keep it by): its record stays,
    /// so that its slot is not run again. Before, it went with the others.
    #[tokio::test]
    async fn the_newest_scheduled_runs_record_outlives_later_manual_ones() {
        let dir = std::env::temp_dir().join(format!("policies-{}", uuid::Uuid::new_v4().simple()));
        let store = PolicyStore::new(Arc::new(LocalDir::new(&dir)), "backup");
        let run = |slot_ms: i64, manual: bool| RunRecord {
            slot_ms,
            backup: format!("b{slot_ms}"),
            state: RunState::Failed,
            attempts: 1,
            error: Some("failed".into()),
            error_kind: Some("unavailable".into()),
            owner: "test".into(),
            started_ms: slot_ms,
            ended_ms: Some(slot_ms + 1),
            manual,
            deleted: false,
            selection: String::new(),
            retiring: false,
            jobs: Vec::new(),
            policy_created_ms: None,
        };
        let mut runs = vec![run(1_000, false), run(2_000, false)];
        runs.extend((0..5).map(|i| run(3_000 + i, true)));
        for r in &runs {
            store.save_run("nightly", r).await.unwrap();
        }
        store
            .prune_runs("nightly", &runs, 3, |_| false)
            .await
            .unwrap();
        let left: Vec<i64> = store
            .runs("nightly")
            .await
            .unwrap()
            .iter()
            .map(|r| r.slot_ms)
            .collect();
        assert_eq!(
            left,
            [2_000, 3_002, 3_003, 3_004],
            "the newest scheduled run stays"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
