//! A job's end reaches the shared record before any server may resume the
//! job, on the real Milvus 2.3.5 and S3, with server processes on a backup
//! root of their own:
//! - a restore that failed while the store refused the writes of its record
//!   for a while (it cannot record its imports, so it stops and drops the
//!   collection it made) is not taken over by a replica, or by its own
//!   server, in the meantime. Its end is written once the store takes
//!   writes again. On the code before, the replica resumed it 0.15 s after
//!   it let go of its leases (a reader's lease object went at once) and
//!   ended it with an error of its own;
//! - a takeover that ends a dead server's restore (cancelled meanwhile) or
//!   backup (its collection dropped) writes that end before it lets go of
//!   the job's leases, so another replica does not end it a second time
//!   while the write is refused (on the code before, it did, 2 runs of 2
//!   for each).

mod common;

use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use common::process::{self, Proc};
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;

/// How many tries of the job's end the store refuses: the owner tries at
/// once, then 0.5 s and 1.5 s later (each refused try but the last it may
/// make logs [`TRYING_AGAIN`]), then once more before a takeover may resume
/// the job (its leases' last expiry plus a quarter TTL). Refusing the first
/// three keeps the end unwritten for 1.5 s, more than the takeover's sweep
/// period (1 s with the tests' 3 s lease TTL), and lets the last try land.
const REFUSED_TRIES: usize = 3;

/// What the owner logs after each refused try of the end that it will try again.
const TRYING_AGAIN: &str = "cannot write the shared job record; trying again";

/// How long the store refuses a takeover's end of a job it abandons: past
/// the time a replica could have acted on the code before (its leases let
/// go, then settled, then a sweep), within the 7.5 s the end is tried.
const REFUSED_WHILE_HELD: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_restore_whose_end_is_recorded_late_is_not_resumed_by_a_takeover() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("lateend_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..300, 61).await;
    data::flush(&m, &spec.db, &spec.name).await;

    // The owner reaches S3 through a fault proxy and pauses once its
    // imports are asked, until `go` exists; the replica reaches S3 directly.
    let go = std::env::temp_dir().join(common::unique("lateend_go"));
    let pause = format!("restore.importing@{}", go.display());
    let (proxy, mut owner, root) =
        process::behind_fault_proxy_paused(&cfg, "lateend_owner", Some(&pause)).await;
    let replica = Proc::start_rooted(&cfg, "lateend_replica", &root, "").await;

    let name = common::unique("lateend_b");
    flows::backup_collections(&mut owner.client, &name, &[&spec.name]).await;
    let target = format!("{}_le", spec.name);
    let id = flows::start_restore(&mut owner.client, flows::restore_request(&name, "_le")).await;
    owner.wait_paused(Duration::from_secs(120)).await;

    // From here the store refuses every write of the job's shared record.
    proxy.refuse_puts_for(Some(&format!("/_jobs/restores/{id}.json")));
    std::fs::write(&go, b"").unwrap();
    process::wait_for_log(&owner.log, TRYING_AGAIN, Duration::from_secs(300)).await;
    // The store takes writes again as soon as the third try was refused (its
    // line logged), whatever the load: the next try comes up to 2 s later.
    // No fixed sleep: the last try may come as early as 0.8 s after the third.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while owner.logged(TRYING_AGAIN) < REFUSED_TRIES {
        assert!(
            std::time::Instant::now() < deadline,
            "the owner tried its end {REFUSED_TRIES} times within 60 s ({} refused tries logged)",
            owner.logged(TRYING_AGAIN)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.refuse_puts_for(None);
    let refused = proxy
        .counts
        .refused_puts
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        refused >= REFUSED_TRIES as u64,
        "the end was refused {REFUSED_TRIES} times ({refused})"
    );

    let end = tokio::time::timeout(
        Duration::from_secs(60),
        flows::watch_restore_to_end(&mut replica.client.clone(), &id),
    )
    .await
    .expect("the end is recorded once the store takes it");
    // The owner's end: it could not record its imports.
    // The store's refusal keeps its kind (it was INTERNAL before).
    let failed = |r: &pb::RestoreJob| {
        r.state == pb::JobState::Failed as i32
            && r.error_message.contains("cannot record restore job")
            && r.error_kind == "permission_denied"
    };
    assert!(failed(&end), "{end:?}");
    // Past the time a takeover would have needed to act on it.
    tokio::time::sleep(Duration::from_secs(6)).await;

    for (server, log) in [("replica", &replica.log), ("owner", &owner.log)] {
        let text = std::fs::read_to_string(log).unwrap();
        let resumed = text
            .lines()
            .any(|l| l.contains("took over a restore") && l.contains(&id));
        assert!(!resumed, "the {server} resumed the restore that had ended");
    }
    let after = flows::get_restore(&mut replica.client.clone(), &id).await;
    assert!(failed(&after), "{after:?}");
    assert!(
        !m.has_collection(&spec.db, &target).await.unwrap(),
        "the collection the restore made is dropped by its cleanup, and not made again"
    );

    replica.finish();
    owner.finish();
    let _ = std::fs::remove_file(&go);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}

/// A flushed source collection of 300 rows, an owner (paused at a
/// failpoint), a taker (A) reaching S3 through a fault proxy, and a replica
/// (B) reaching Milvus through a switch, all on one backup root of their own.
struct Abandoning {
    spec: Spec,
    owner: Proc,
    proxy: common::faults::FaultProxy,
    taker: Proc,
    replica: Proc,
    milvus_up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    root: String,
}

impl Abandoning {
    async fn start(
        cfg: &milvus_backup::config::Config,
        m: &milvus_backup::milvus::MilvusClient,
        tag: &str,
        failpoint: &str,
    ) -> Self {
        let spec = Spec::new(&common::unique(&format!("{tag}_src")));
        data::create(m, &spec).await;
        data::insert(m, &spec, "", 0..300, 67).await;
        data::flush(m, &spec.db, &spec.name).await;
        let (proxy, taker, root) = process::behind_fault_proxy(cfg, &format!("{tag}_taker")).await;
        let (via_switch, milvus_up) = common::faults::milvus_through_switch(cfg).await;
        let replica = Proc::start_rooted(&via_switch, &format!("{tag}_replica"), &root, "").await;
        let owner =
            Proc::start_rooted_paused(cfg, &format!("{tag}_owner"), &root, "", Some(failpoint))
                .await;
        Self {
            spec,
            owner,
            proxy,
            taker,
            replica,
            milvus_up,
            root,
        }
    }

    /// Cuts B off Milvus, SIGKILLs the owner (paused), and has the proxy
    /// refuse A's writes of the shared record ending in `record`.
    async fn kill_owner_refusing(&mut self, record: &str) {
        self.owner.wait_paused(Duration::from_secs(120)).await;
        common::faults::switch_off(&self.milvus_up).await;
        self.owner.kill();
        self.proxy.refuse_puts_for(Some(record));
    }

    /// Whether `log` has a line naming `job` that holds `needle`.
    fn logged(log: &std::path::Path, needle: &str, job: &str) -> bool {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(needle) && l.contains(job))
    }

    /// Once A logs `abandoned` for `job`, B reaches Milvus again; A's end is
    /// refused (the proxy already refuses the record's writes) until B
    /// logs `abandoned` too, or for [`REFUSED_WHILE_HELD`]. On the code
    /// before, A had let go by then, and B could act once A's leases
    /// settled: within 4.5 s of that, plus its sweep's second.
    async fn refuse_while_a_ends(&self, abandoned: &str, job: &str) {
        process::wait_for_log(&self.taker.log, abandoned, Duration::from_secs(60)).await;
        self.milvus_up
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let first_refusal = "cannot write the shared job record; trying again";
        let waited = std::time::Instant::now();
        while !Self::logged(&self.taker.log, first_refusal, job) {
            assert!(
                waited.elapsed() < Duration::from_secs(120),
                "A's end was never refused"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let refused_since = std::time::Instant::now();
        while refused_since.elapsed() < REFUSED_WHILE_HELD
            && !Self::logged(&self.replica.log, abandoned, job)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.proxy.refuse_puts_for(None);
        let refused = self
            .proxy
            .counts
            .refused_puts
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(refused >= 4, "A's end was refused for a while ({refused})");
    }

    /// Asserts that B neither ended nor resumed `job`.
    fn assert_left_by_b(&self, abandoned: &str, resumed: &str, job: &str) {
        assert!(
            !Self::logged(&self.replica.log, abandoned, job)
                && !Self::logged(&self.replica.log, resumed, job),
            "B ended or resumed the job that A was ending"
        );
    }

    async fn finish(self, m: &milvus_backup::milvus::MilvusClient) {
        self.replica.finish();
        self.taker.finish();
        self.owner.finish();
        data::drop_if_exists(m, &self.spec.db, &self.spec.name).await;
    }
}

/// The owner of a restore is SIGKILLed while Milvus imports, and the restore
/// is cancelled. Taker A (reaching S3 through a fault proxy) ends it: it
/// drops the collection the restore made, and the store refuses A's writes
/// of the restore's record for 6 s. Replica B, which could not reach
/// Milvus until A began (so it could not end the restore first), looks
/// every second meanwhile: the restore's leases are A's, and B leaves it.
/// The end is A's, written once the store takes it. On the code before, A
/// let go of the leases before it wrote the end, and B ended the restore
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_takeover_records_the_end_of_a_restore_it_abandons_before_letting_go() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let mut servers = Abandoning::start(&cfg, &m, "abend", "restore.importing").await;
    let spec = servers.spec.clone();
    let name = common::unique("abend_b");
    let owner = &mut servers.owner.client;
    flows::backup_collections(owner, &name, &[&spec.name]).await;
    let target = format!("{}_ab", spec.name);
    let id = flows::start_restore(owner, flows::restore_request(&name, "_ab")).await;
    servers
        .kill_owner_refusing(&format!("/_jobs/restores/{id}.json"))
        .await;
    assert!(m.has_collection(&spec.db, &target).await.unwrap());
    servers
        .taker
        .client
        .clone()
        .cancel_restore(pb::CancelRestoreRequest { id: id.clone() })
        .await
        .expect("CancelRestore on the taker");
    let abandoned = "a restore whose server died is not resumed";
    servers.refuse_while_a_ends(abandoned, &id).await;

    let end = tokio::time::timeout(
        Duration::from_secs(60),
        flows::watch_restore_to_end(&mut servers.replica.client.clone(), &id),
    )
    .await
    .expect("the end is recorded once the store takes it");
    assert_eq!(end.state, pb::JobState::Cancelled as i32, "{end:?}");
    assert!(
        end.error_message
            .contains("cancelled while its server was down"),
        "{end:?}"
    );
    servers.assert_left_by_b(abandoned, "took over a restore", &id);
    assert!(
        !m.has_collection(&spec.db, &target).await.unwrap(),
        "the collection the restore made is dropped"
    );
    servers.finish(&m).await;
}

/// The same for a backup: its owner is SIGKILLed once every collection is
/// described, and its collection is dropped, so it cannot be resumed. A
/// ends it FAILED and removes the objects it copied, while the store
/// refuses A's writes of its record for 6 s; B, which looks meanwhile,
/// leaves it. On the code before, B ended it a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_takeover_records_the_end_of_a_backup_it_abandons_before_letting_go() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let mut servers = Abandoning::start(&cfg, &m, "abbk", "backup.described").await;
    let spec = servers.spec.clone();
    let name = common::unique("abbk_b");
    let mut stream = servers
        .owner
        .client
        .create_backup(flows::backup_request(&name, &[&spec.name]))
        .await
        .unwrap()
        .into_inner();
    let id = stream.message().await.unwrap().unwrap().backup.unwrap().id;
    servers
        .kill_owner_refusing(&format!("/_jobs/backups/{name}.json"))
        .await;
    drop(stream);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    let abandoned = "a backup whose server died is not resumed";
    servers.refuse_while_a_ends(abandoned, &name).await;

    let end = flows::watch_backup_to_end(
        &mut servers.replica.client.clone(),
        &name,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        (end.state, end.id.clone()),
        (pb::JobState::Failed as i32, id),
        "{end:?}"
    );
    assert!(
        end.error_message.contains("could not be resumed"),
        "{end:?}"
    );
    servers.assert_left_by_b(abandoned, "took over a backup", &name);
    let store = process::rooted_bucket(&cfg);
    let folder = format!("{}/{name}/", servers.root);
    assert!(
        store.list(&folder).await.unwrap().is_empty(),
        "what the backup copied is removed"
    );

    servers.finish(&m).await;
}

/// Waits until GetBackup of `name` on `client` says `want` (`what`, within `secs`).
async fn backup_state_becomes(
    client: &milvus_backup::api::proto::backup_service_client::BackupServiceClient<
        tonic::transport::Channel,
    >,
    name: &str,
    want: pb::JobState,
    what: &str,
    secs: u64,
) {
    flows::eventually(what, Duration::from_secs(secs), || {
        let mut client = client.clone();
        async move { flows::get_backup(&mut client, name).await.state == want as i32 }
    })
    .await;
}

/// A backup that ended CANCELLED on replica B does not hide a later job of
/// its name on replica A: while A's runs, GetBackup and ListBackups on B say
/// RUNNING and a CancelBackup on B reaches it; once another succeeded on A,
/// GetBackup on B says SUCCEEDED. On the code before, B answered its own
/// stale CANCELLED end throughout, and refused the cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_end_on_one_replica_does_not_hide_a_later_job_of_the_name_on_another() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("stale_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 5).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("stale_root");
    let release = std::env::temp_dir().join(common::unique("stale_release"));
    let a_point = format!("backup.describing@{}", release.display());
    let a = Proc::start_rooted_paused(&cfg, "stale-a", &root, "", Some(&a_point)).await;
    let b = Proc::start_rooted_paused(&cfg, "stale-b", &root, "", Some("backup.describing")).await;
    let (mut on_a, mut on_b) = (a.client.clone(), b.client.clone());
    let name = common::unique("stale_b");

    // On B: started, paused, cancelled.
    on_b.create_backup(flows::backup_request(&name, &[&spec.name]))
        .await
        .unwrap();
    b.wait_paused(Duration::from_secs(60)).await;
    on_b.cancel_backup(pb::CancelBackupRequest { name: name.clone() })
        .await
        .unwrap();
    backup_state_becomes(
        &on_b,
        &name,
        pb::JobState::Cancelled,
        "B's backup cancelled",
        60,
    )
    .await;

    // On A: the name again, paused while B is asked.
    on_a.create_backup(flows::backup_request(&name, &[&spec.name]))
        .await
        .unwrap();
    a.wait_paused(Duration::from_secs(60)).await;
    backup_state_becomes(
        &on_b,
        &name,
        pb::JobState::Running,
        "B sees A's job running",
        30,
    )
    .await;
    assert_eq!(
        flows::listed_state(&mut on_b, &name).await,
        Some(pb::JobState::Running as i32)
    );
    // A cancel asked of B reaches A's job (B refused it FAILED_PRECONDITION).
    on_b.cancel_backup(pb::CancelBackupRequest { name: name.clone() })
        .await
        .expect("CancelBackup on B");
    backup_state_becomes(
        &on_a,
        &name,
        pb::JobState::Cancelled,
        "A's backup cancelled",
        60,
    )
    .await;

    // Once more on A, not paused: B says SUCCEEDED once it is.
    std::fs::write(&release, b"go").unwrap();
    on_a.create_backup(flows::backup_request(&name, &[&spec.name]))
        .await
        .unwrap();
    backup_state_becomes(
        &on_a,
        &name,
        pb::JobState::Succeeded,
        "A's backup succeeded",
        120,
    )
    .await;
    assert_eq!(
        flows::get_backup(&mut on_b, &name).await.state,
        pb::JobState::Succeeded as i32
    );
    let _ = std::fs::remove_file(&release);
    a.finish();
    b.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
