//! Leases against a local directory store.

use super::*;
use crate::storage::LocalDir;

fn leases(root: &std::path::Path, ttl_ms: u64) -> Leases {
    Leases::new(
        Arc::new(LocalDir::new(root)),
        "backup",
        Duration::from_millis(ttl_ms),
    )
}

#[tokio::test]
async fn one_holder_at_a_time_on_a_local_directory() {
    let root = std::env::temp_dir().join(format!("mb-lease-{}", uuid::Uuid::new_v4().simple()));
    let l = leases(&root, 60_000);
    assert!(l.probe_conditional_writes().await.unwrap());
    let held = l
        .acquire("target/default.c", "job-1", "restore into")
        .await
        .unwrap();
    let err = l
        .acquire("target/default.c", "job-2", "restore into")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Aborted(m) if m.contains("job-1")),
        "{err}"
    );
    assert_eq!(
        l.holder("target/default.c").await.unwrap().unwrap().job,
        "job-1"
    );
    // Not even the same job in this process takes a live hold from itself
    // (a second start of one request would stop the first).
    let err = l
        .acquire("target/default.c", "job-1", "restore into")
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Aborted(_)), "{err}");
    held.release().await;
    assert!(l.holder("target/default.c").await.unwrap().is_none());
    let again = l
        .acquire("target/default.c", "job-2", "restore into")
        .await
        .unwrap();
    // Recovery frees only the named job's lease.
    l.release_for_job("target/default.c", "job-1")
        .await
        .unwrap();
    assert_eq!(
        l.holder("target/default.c").await.unwrap().unwrap().job,
        "job-2"
    );
    l.release_for_job("target/default.c", "job-2")
        .await
        .unwrap();
    assert!(l.holder("target/default.c").await.unwrap().is_none());
    drop(again);
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test]
async fn a_handed_back_lease_shows_the_next_taker_the_holder_before_it() {
    let root = std::env::temp_dir().join(format!("mb-lease-{}", uuid::Uuid::new_v4().simple()));
    let l = leases(&root, 60_000);
    let name = "names/b1";
    l.acquire(name, "create-1", "create")
        .await
        .unwrap()
        .release()
        .await;
    let refused = l.acquire(name, "delete-1", "delete").await.unwrap();
    assert_eq!(refused.previous_holder().unwrap().job, "create-1");
    refused.hand_back().await;
    assert!(l.holder(name).await.unwrap().is_none(), "free");
    let next = l.acquire(name, "delete-2", "delete").await.unwrap();
    let before = next.previous_holder().unwrap();
    assert_eq!(
        (before.job.as_str(), before.purpose.as_str()),
        ("create-1", "create")
    );
    // Released as usual, it is the one the taker after it sees.
    next.release().await;
    let last = l.acquire(name, "delete-3", "delete").await.unwrap();
    assert_eq!(last.previous_holder().unwrap().job, "delete-2");
    // A lease that was free is free again, with no holder before.
    last.release().await;
    let fresh = l.acquire("names/b2", "delete-4", "delete").await.unwrap();
    assert!(fresh.previous_holder().is_none());
    fresh.hand_back().await;
    assert!(l.holder("names/b2").await.unwrap().is_none(), "free");
    assert!(
        l.last_holder("names/b2").await.unwrap().is_none(),
        "no holder"
    );
    let after = l.acquire("names/b2", "create-2", "create").await.unwrap();
    assert!(
        after.previous_holder().is_none(),
        "{:?}",
        after.previous_holder()
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_process_is_named_by_host_pid_and_a_tag_of_its_own() {
    let me = host_pid();
    let (host_pid_part, tag) = me.rsplit_once('/').unwrap();
    assert!(host_pid_part.ends_with(&format!(":{}", std::process::id())));
    assert_eq!(tag.len(), 8);
    assert_eq!(host_pid(), me, "drawn once per process");
}

#[tokio::test]
async fn an_expired_lease_has_exactly_one_taker() {
    let root = std::env::temp_dir().join(format!("mb-lease-{}", uuid::Uuid::new_v4().simple()));
    for round in 0..5 {
        let name = format!("backup/b{round}");
        // A holder that died: its lease is never renewed.
        let dead = leases(&root, 1_000)
            .acquire(&name, "dead", "create")
            .await
            .unwrap();
        dead.renewer.abort();
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let takers = (0..8).map(|i| {
            let l = leases(&root, 60_000);
            let name = name.clone();
            tokio::spawn(async move { l.acquire(&name, &format!("t{i}"), "create").await })
        });
        let results = futures::future::join_all(takers).await;
        let won: Vec<_> = results
            .into_iter()
            .filter_map(|r| r.unwrap().ok())
            .collect();
        assert_eq!(won.len(), 1, "round {round}: exactly one taker wins");
    }
    std::fs::remove_dir_all(root).unwrap();
}

/// A holder paused past its expiry (here: its only thread blocked) finds
/// the lease lost when it runs again; it never renews it back to life,
/// as a delete may have seen it free meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn a_lease_paused_past_its_expiry_is_lost_not_renewed() {
    let root = std::env::temp_dir().join(format!("mb-lease-{}", uuid::Uuid::new_v4().simple()));
    let l = leases(&root, 1_000);
    let held = l.acquire("reads/b1/x", "x", "read").await.unwrap();
    std::thread::sleep(Duration::from_millis(1_300));
    assert!(l.holder("reads/b1/x").await.unwrap().is_none(), "expired");
    assert!(held.fence().check().is_err());
    tokio::time::timeout(Duration::from_secs(2), held.lost().cancelled())
        .await
        .expect("the lease is lost");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        l.holder("reads/b1/x").await.unwrap().is_none(),
        "the lease stays expired"
    );
    drop(held);
    std::fs::remove_dir_all(root).unwrap();
}

/// A lease another holder took while it was still valid by this process's
/// clock (its object rewritten: a takeover whose clock runs ahead) fails
/// its fences once the renewal finds it taken, not only at the expiry the
/// last renewal gave: a backup's commit, checked by its fences, must not
/// land after a delete saw its hold on a base as gone.
#[tokio::test]
async fn a_lease_found_taken_fails_its_fences_at_once() {
    let root = std::env::temp_dir().join(format!("mb-lease-{}", uuid::Uuid::new_v4().simple()));
    let l = leases(&root, 3_000);
    let held = l.acquire("reads/b1/x", "x", "read").await.unwrap();
    let key = l.key("reads/b1/x");
    let (data, _) = l.store.read_versioned(&key).await.unwrap().unwrap();
    let mut taken: LeaseRecord = serde_json::from_slice(&data).unwrap();
    taken.nonce = "another holder".into();
    l.store
        .write(&key, Bytes::from(serde_json::to_vec(&taken).unwrap()))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(3), held.lost().cancelled())
        .await
        .expect("the renewal finds the lease taken");
    // Still before the expiry its last renewal gave (3 s after it was taken).
    let err = held.fence().check().unwrap_err();
    assert!(
        matches!(&err, Error::Aborted(m) if m.contains("reads/b1/x")),
        "{err}"
    );
    drop(held);
    std::fs::remove_dir_all(root).unwrap();
}

/// A step that needs the lease for a margin longer than its last renewal
/// leaves waits for the next renewal (a store answering late), and fails
/// only once the lease expired unrenewed. Before, it failed at once: a
/// backup on a loaded store lost its commit to a renewal 1 s late.
#[tokio::test]
async fn a_margin_waits_for_a_late_renewal_and_fails_only_at_expiry() {
    let fence = |in_ms: u64| Fence {
        name: "backup/b".into(),
        expires_at_ms: Arc::new(AtomicU64::new(now_ms() + in_ms)),
        settle: Duration::from_secs(1),
    };
    let late = fence(400);
    let renewal = late.expires_at_ms.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        renewal.store(now_ms() + 3_000, Ordering::SeqCst);
    });
    assert!(late.check_for(Duration::from_secs(1)).is_err());
    late.hold_for(Duration::from_secs(1)).await.unwrap();

    let unrenewed = fence(300);
    let started = std::time::Instant::now();
    let err = unrenewed
        .hold_for(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Aborted(m) if m.contains("backup/b")),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// A delete's look for readers removes the reader leases no one holds any
/// more (a reader that died, one that let go) once they are settled, and
/// keeps the live ones. One let go lately stays until it settles: until
/// then it tells a takeover that its job is writing its end.
#[tokio::test]
async fn dead_reader_leases_are_removed_when_readers_are_looked_for() {
    let root = std::env::temp_dir().join(format!("mb-lease-{}", uuid::Uuid::new_v4().simple()));
    let dead = leases(&root, 1_000)
        .acquire("reads/b1/dead", "dead", "verify")
        .await
        .unwrap();
    dead.renewer.abort();
    let l = leases(&root, 60_000);
    let done = l.acquire("reads/b1/done", "done", "verify").await.unwrap();
    done.release().await;
    let live = l
        .acquire("reads/b1/live", "live", "restore from")
        .await
        .unwrap();
    // Past the dead one's expiry and the settle of a 1 s TTL.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let stored = |name: &str| root.join("backup/_leases").join(name).exists();
    assert!(stored("reads/b1/dead"), "left by the reader that died");
    let held = leases(&root, 1_000).sweep_under("reads/b1").await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].1.job, "live");
    assert!(!stored("reads/b1/dead"), "removed");
    assert!(stored("reads/b1/done"), "let go, not settled: kept");
    assert!(stored("reads/b1/live"), "kept");
    let err = l.ensure_unread("b1").await.unwrap_err();
    assert!(err.to_string().contains("live"), "{err}");
    live.release().await;
    l.ensure_unread("b1").await.unwrap();
    std::fs::remove_dir_all(root).unwrap();
}

/// A reader's lease let go stays, released, until its job's end is
/// recorded, then goes: until then it tells a takeover that the job is
/// writing its end, which the job may do until half way through the settle
/// (its expiry plus half a TTL). One whose end is never recorded goes a TTL
/// after it settled.
#[tokio::test]
async fn a_released_reader_lease_goes_once_its_end_is_recorded() {
    let root = std::env::temp_dir().join(format!("mb-lease-{}", uuid::Uuid::new_v4().simple()));
    let l = leases(&root, 1_000);
    let ended = l.acquire("reads/b2/e", "e", "restore from").await.unwrap();
    let unended = l.acquire("reads/b2/u", "u", "restore from").await.unwrap();
    let fence = unended.fence();
    let expiry = fence.expires_at_ms.load(Ordering::SeqCst);
    assert_eq!(Fence::end_deadline_ms(&[fence]), Some(expiry + 250));
    ended.release().await;
    unended.release().await;
    let stored = |job: &str| root.join("backup/_leases/reads/b2").join(job).exists();
    assert!(
        stored("e") && stored("u"),
        "kept while a takeover reads them"
    );
    assert!(!l.settled("reads/b2/u").await.unwrap(), "not settled yet");
    end_recorded("e").await;
    assert!(!stored("e"), "removed once its job's end is recorded");
    assert!(stored("u"), "another job's is kept");
    tokio::time::sleep(Duration::from_millis(
        (expiry + 1_800).saturating_sub(now_ms()),
    ))
    .await;
    assert!(!stored("u"), "removed a TTL after it settled");
    assert!(l.settled("reads/b2/u").await.unwrap());
    std::fs::remove_dir_all(root).unwrap();
}

/// A local directory that, like MinIO for a time, makes the object when an
/// `If-Match` write finds none (a fake: no store this project starts behaves
/// so; moto and the local directory answer a conflict).
#[derive(Debug)]
struct IfMatchMakes(LocalDir);

#[async_trait::async_trait]
impl ObjectStore for IfMatchMakes {
    fn place(&self) -> &crate::storage::Place {
        self.0.place()
    }
    async fn ensure_bucket(&self, create: bool) -> Result<()> {
        self.0.ensure_bucket(create).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<crate::storage::ObjectInfo>> {
        self.0.list(prefix).await
    }
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        self.0.list_dirs(prefix).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        self.0.head(key).await
    }
    async fn read(&self, key: &str) -> Result<Bytes> {
        self.0.read(key).await
    }
    async fn write(&self, key: &str, data: Bytes) -> Result<()> {
        self.0.write(key, data).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<CondPut> {
        self.0.put_if_absent(key, data).await
    }
    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<CondPut> {
        match self.0.head(key).await? {
            None => self.0.put_if_absent(key, data).await,
            Some(_) => self.0.put_if_match(key, data, etag).await,
        }
    }
    async fn read_versioned(&self, key: &str) -> Result<Option<(Bytes, String)>> {
        self.0.read_versioned(key).await
    }
    async fn get_stream(&self, key: &str) -> Result<(u64, crate::storage::ByteStream)> {
        self.0.get_stream(key).await
    }
    async fn put_stream(
        &self,
        key: &str,
        size: u64,
        body: crate::storage::ByteStream,
    ) -> Result<Option<String>> {
        self.0.put_stream(key, size, body).await
    }
    async fn copy_in(
        &self,
        from: crate::storage::Source<'_>,
        dst_key: &str,
    ) -> Result<Option<String>> {
        self.0.copy_in(from, dst_key).await
    }
    async fn delete(&self, keys: &[String]) -> Result<()> {
        self.0.delete(keys).await
    }
}

/// The start-up probe finds a store that makes an object on an `If-Match`
/// write when there is none: a removed lease would come back at its holder's
/// next renewal. Before, the probe passed it (it tried If-Match only on an
/// object there). It leaves nothing behind.
#[tokio::test]
async fn the_probe_refuses_a_store_whose_if_match_makes_a_missing_object() {
    let root = std::env::temp_dir().join(format!("mb-lease-{}", uuid::Uuid::new_v4().simple()));
    let store = Arc::new(IfMatchMakes(LocalDir::new(&root)));
    let l = Leases::new(store.clone(), "backup", Duration::from_secs(60));
    assert!(!l.probe_conditional_writes().await.unwrap());
    assert!(
        store.list("").await.unwrap().is_empty(),
        "the probe leaves nothing"
    );
    let _ = std::fs::remove_dir_all(root);
}
