//! A policy whose run outlasts its schedule, on the real Milvus 2.3.5 and
//! S3, with a server process on a backup root of its own: the slots that
//! come due meanwhile wait for the run to end, so backups of one policy never
//! pile up on Milvus; the newest of them runs once it has ended. Runs that
//! overlap (asked for by hand) are kept or deleted by when their backups
//! were taken.

mod common;

use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use common::process::{Proc, rooted_bucket, wait_for_log};
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::policy_service_client::PolicyServiceClient;
use milvus_backup::policy::{PolicyStore, RunRecord, RunState};

/// An every-2-s policy whose first backup is held (`backup.described@PATH`)
/// for about 4 slots. Only that run exists while it is held, and the server
/// says the next slot waits. Released, it ends, and the next run starts
/// after its end, for a slot past those that came due while it ran. The
/// code before started a run per slot, each holding a backup job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slots_due_while_a_run_runs_wait_for_it() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("overlap_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 12).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("overlap_root");
    let release = std::env::temp_dir().join(common::unique("overlap_release"));
    let failpoint = format!("backup.described@{}", release.display());
    let server = Proc::start_rooted_paused(&cfg, "overlap", &root, "", Some(&failpoint)).await;
    let mut client = PolicyServiceClient::connect(format!("http://127.0.0.1:{}", server.port))
        .await
        .unwrap();
    let name = common::unique("overlap");
    let mut policy = pb::Policy {
        name: name.clone(),
        schedule: "*/2 * * * * *".into(),
        collection_names: vec![spec.name.clone()],
        ..Default::default()
    };
    client
        .create_policy(pb::CreatePolicyRequest {
            policy: Some(policy.clone()),
        })
        .await
        .expect("CreatePolicy");
    server.wait_paused(Duration::from_secs(60)).await;
    wait_for_log(
        &server.log,
        "the slot waits for the policy's run still running",
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let store = PolicyStore::new(rooted_bucket(&cfg), &root);
    let held = store.runs(&name).await.unwrap();
    assert_eq!(held.len(), 1, "one run while it is held: {held:?}");
    assert_eq!(held[0].state, RunState::Running, "{held:?}");

    std::fs::write(&release, b"").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while store.runs(&name).await.unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "a second run starts");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    policy.enabled = Some(false);
    client
        .update_policy(pb::UpdatePolicyRequest {
            policy: Some(policy),
        })
        .await
        .expect("UpdatePolicy");
    let runs = loop {
        let runs = store.runs(&name).await.unwrap();
        if runs.iter().all(|r| r.state != RunState::Running) {
            break runs;
        }
        assert!(std::time::Instant::now() < deadline, "runs end: {runs:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for r in &runs {
        assert_eq!(r.state, RunState::Succeeded, "{runs:?}");
    }
    for pair in runs.windows(2) {
        let (first, next) = (&pair[0], &pair[1]);
        assert!(
            next.started_ms >= first.ended_ms.unwrap(),
            "each run starts after the one before ended: {runs:?}"
        );
    }
    let (first, second) = (&runs[0], &runs[1]);
    assert!(
        second.slot_ms >= first.slot_ms + 4 * 2000,
        "the slots due while the first run was held were not made: {runs:?}"
    );
    println!(
        "{} runs; the first held {} ms, the next for slot +{} ms",
        runs.len(),
        first.ended_ms.unwrap() - first.started_ms,
        second.slot_ms - first.slot_ms
    );
    let _ = std::fs::remove_file(&release);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A server on a backup root of its own, a small collection, and a policy
/// over it on `schedule`, stored disabled.
struct Staged {
    cfg: milvus_backup::config::Config,
    m: milvus_backup::milvus::MilvusClient,
    spec: Spec,
    root: String,
    server: Proc,
    client: PolicyServiceClient<tonic::transport::Channel>,
    policy: pb::Policy,
    store: PolicyStore,
}

impl Staged {
    async fn new(tag: &str, schedule: &str, seed: u64) -> Self {
        let cfg = common::config();
        let m = common::milvus(&cfg);
        let spec = Spec::new(&common::unique(&format!("{tag}_src")));
        data::create(&m, &spec).await;
        data::insert(&m, &spec, "", 0..50, seed).await;
        data::flush(&m, &spec.db, &spec.name).await;
        let root = common::unique(&format!("{tag}_root"));
        let server = Proc::start_rooted(&cfg, tag, &root, "").await;
        let mut client = PolicyServiceClient::connect(format!("http://127.0.0.1:{}", server.port))
            .await
            .unwrap();
        let policy = pb::Policy {
            name: common::unique(tag),
            schedule: schedule.into(),
            collection_names: vec![spec.name.clone()],
            enabled: Some(false),
            ..Default::default()
        };
        client
            .create_policy(pb::CreatePolicyRequest {
                policy: Some(policy.clone()),
            })
            .await
            .expect("CreatePolicy");
        let store = PolicyStore::new(rooted_bucket(&cfg), &root);
        Self {
            cfg,
            m,
            spec,
            root,
            server,
            client,
            policy,
            store,
        }
    }

    fn name(&self) -> &str {
        &self.policy.name
    }

    async fn set_enabled(&mut self, on: bool) {
        self.policy.enabled = Some(on);
        self.client
            .update_policy(pb::UpdatePolicyRequest {
                policy: Some(self.policy.clone()),
            })
            .await
            .expect("UpdatePolicy");
    }

    /// The policy's runs, polled until `done` says so (within 60 s).
    async fn runs_until(&self, what: &str, done: impl Fn(&[RunRecord]) -> bool) -> Vec<RunRecord> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let runs = self.store.runs(self.name()).await.unwrap();
            if done(&runs) {
                return runs;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {runs:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Enables the policy (an every-20-s one) just after a slot, then kills
    /// its server: the slot due next, at least 15 s away.
    async fn enabled_then_killed(&mut self) -> i64 {
        while !(1000..4000).contains(&(chrono::Utc::now().timestamp_millis() % 20_000)) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.set_enabled(true).await;
        self.server.kill();
        let now_ms = chrono::Utc::now().timestamp_millis();
        (now_ms as u64).div_ceil(20_000) as i64 * 20_000
    }

    /// A RUNNING record of slot `slot_ms`, as a server that died left it
    /// (no lease), with `extra` fields.
    async fn plant_dead_run(&self, slot_ms: i64, backup: &str, extra: serde_json::Value) {
        let mut record = serde_json::json!({
            "slot_ms": slot_ms,
            "backup": backup,
            "state": "running",
            "attempts": 1,
            "owner": "dead-host:1/gone",
            "started_ms": slot_ms,
        });
        record
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let dead: RunRecord = serde_json::from_value(record).unwrap();
        assert!(self.store.start_run(self.name(), &dead).await.unwrap());
    }

    /// Starts another server on the root (`tag`), once `at_ms` has passed.
    async fn restart_after(&mut self, at_ms: i64, tag: &str) {
        while chrono::Utc::now().timestamp_millis() < at_ms {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.server = Proc::start_rooted(&self.cfg, tag, &self.root, "").await;
        self.client =
            PolicyServiceClient::connect(format!("http://127.0.0.1:{}", self.server.port))
                .await
                .unwrap();
    }

    /// Turns the policy off, waits for its runs to end and stops everything;
    /// the runs.
    async fn end(mut self) -> Vec<RunRecord> {
        self.set_enabled(false).await;
        let runs = self
            .runs_until("runs end", |runs| {
                runs.iter().all(|r| r.state != RunState::Running)
            })
            .await;
        self.server.finish();
        data::drop_if_exists(&self.m, &self.spec.db, &self.spec.name).await;
        runs
    }
}

/// A server that won a slot's lease and died before writing the slot's run
/// record (shown by a live lease written by hand, expiring 6 s after the
/// slot): the slot still runs here once that lease has expired. The code
/// before took the refused lease for a run elsewhere and never ran the slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_whose_lease_winner_died_before_its_record_still_runs() {
    let mut staged = Staged::new("orphan_slot", "*/20 * * * * *", 13).await;
    // The next slot at least 4 s away, and the dead winner's lease on it.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let slot_ms = ((now_ms + 4000) as u64).div_ceil(20_000) as i64 * 20_000;
    let lease = serde_json::json!({
        "job": "dead-job",
        "purpose": "policy run",
        "process": "dead-host:1/gone",
        "nonce": "dead",
        "expires_at_ms": (slot_ms + 6000) as u64,
        "released": false,
    });
    rooted_bucket(&staged.cfg)
        .write(
            &format!("{}/_leases/policy/{}/{slot_ms}", staged.root, staged.name()),
            bytes::Bytes::from(lease.to_string()),
        )
        .await
        .unwrap();
    staged.set_enabled(true).await;
    let runs = staged
        .runs_until("the slot never ran", |runs| {
            runs.iter().any(|r| r.slot_ms == slot_ms)
        })
        .await;
    let ran = runs.iter().find(|r| r.slot_ms == slot_ms).unwrap();
    assert!(
        ran.started_ms >= slot_ms + 6000,
        "it ran once the dead winner's lease expired: {ran:?}"
    );
    let runs = staged.end().await;
    let of_slot = runs.iter().find(|r| r.slot_ms == slot_ms).unwrap();
    assert_eq!(of_slot.state, RunState::Succeeded, "{runs:?}");
}

/// A run recorded for a slot a day ahead (a server whose clock ran ahead
/// wrote it): the real slots still run. The code before took it for a
/// newer slot and skipped every real one until that day.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_recorded_for_a_future_slot_holds_no_real_slot_back() {
    let mut staged = Staged::new("future_slot", "*/3 * * * * *", 14).await;
    let tomorrow = chrono::Utc::now().timestamp_millis() / 3000 * 3000 + 86_400_000;
    let ahead = RunRecord {
        owner: "clock-ahead".into(),
        jobs: vec!["clock-ahead-job".into()],
        ..common::runs::succeeded(tomorrow, &format!("{}_tomorrow", staged.name()))
    };
    assert!(staged.store.start_run(staged.name(), &ahead).await.unwrap());
    staged.set_enabled(true).await;
    staged
        .runs_until("no real slot ran", |runs| {
            runs.iter()
                .any(|r| r.slot_ms < tomorrow && r.state == RunState::Succeeded)
        })
        .await;
    staged.end().await;
}

/// A run whose server died before its backup started (a RUNNING record of
/// an older slot, planted by hand, with no lease), found by a server
/// started after the policy's next slot came due: the takeover makes no
/// backup (FAILED, superseded), and the slot due runs as the one catch-up.
/// On the code before, the takeover made a backup under the old slot's name
/// at restart time, and then the catch-up a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_run_taken_over_after_a_newer_slot_came_due_makes_no_backup() {
    let mut staged = Staged::new("superseded", "*/20 * * * * *", 19).await;
    let due = staged.enabled_then_killed().await;
    let dead_slot = due - 40_000;
    let dead_backup = format!("{}_dead", staged.name());
    staged
        .plant_dead_run(dead_slot, &dead_backup, serde_json::json!({}))
        .await;
    staged.restart_after(due + 1000, "superseded_b").await;
    let runs = staged
        .runs_until("the dead run ended and the due slot succeeded", |runs| {
            let ended = |slot| {
                runs.iter()
                    .any(|r| r.slot_ms == slot && r.state != RunState::Running)
            };
            ended(dead_slot) && ended(due)
        })
        .await;
    let taken_over = runs.iter().find(|r| r.slot_ms == dead_slot).unwrap();
    assert_eq!(taken_over.state, RunState::Failed, "{runs:?}");
    assert!(
        taken_over
            .error
            .as_deref()
            .is_some_and(|e| e.contains("superseded")),
        "{taken_over:?}"
    );
    let caught_up = runs.iter().find(|r| r.slot_ms == due).unwrap();
    assert_eq!(caught_up.state, RunState::Succeeded, "{runs:?}");
    let store = rooted_bucket(&staged.cfg);
    let taken = store
        .list(&format!("{}/{dead_backup}/", staged.root))
        .await
        .unwrap();
    assert!(taken.is_empty(), "no backup of the old slot: {taken:?}");
    let runs = staged.end().await;
    // Later slots may have run since: up to the one due, one backup.
    let made = runs
        .iter()
        .filter(|r| r.slot_ms <= due && r.state == RunState::Succeeded)
        .count();
    assert_eq!(made, 1, "one backup: {runs:?}");
}

/// A dead server's run of the slot now due, begun for another selection
/// (a RUNNING record planted by hand, before the policy was narrowed), is
/// taken over by a server started then: it backs up the policy as it is
/// now, and its record names that selection, among whose backups retention
/// decides. On the code before, the record kept the old selection, so that
/// backup counted among the old selection's and could get its last backup
/// deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_taken_over_run_records_the_selection_it_backed_up() {
    let mut staged = Staged::new("reselected", "*/20 * * * * *", 23).await;
    let due = staged.enabled_then_killed().await;
    while chrono::Utc::now().timestamp_millis() < due + 500 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old_selection = "collections=default.dropped_since;databases=";
    let taken = format!("{}_taken", staged.name());
    staged
        .plant_dead_run(
            due,
            &taken,
            serde_json::json!({ "selection": old_selection }),
        )
        .await;
    staged.restart_after(due, "reselected_b").await;
    let runs = staged
        .runs_until("the taken-over run ended", |runs| {
            runs.iter()
                .any(|r| r.slot_ms == due && r.state != RunState::Running)
        })
        .await;
    let run = runs.iter().find(|r| r.slot_ms == due).unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{runs:?}");
    let now = format!("collections=default.{};databases=", staged.spec.name);
    assert_eq!(run.selection, now, "{run:?}");
    staged.end().await;
}

/// A run held (`backup.described@PATH`) while its policy is deleted and
/// created again under the same name: released, its backup completes, and
/// its record is not written into the new policy, which would take the
/// backup for its own (and its retention could delete it). The code before
/// wrote it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_that_outlives_its_policy_writes_nothing_into_a_new_one_of_its_name() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("recreated_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..50, 13).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("recreated_root");
    let (server, go) = flows::held_rooted_at(&cfg, "recreated", &root, &["backup.described"]).await;
    let mut client = PolicyServiceClient::connect(format!("http://127.0.0.1:{}", server.port))
        .await
        .unwrap();
    let policy = pb::Policy {
        name: common::unique("recreated"),
        // Not due while the test runs: only the run asked for now.
        schedule: "0 0 1 1 *".into(),
        collection_names: vec![spec.name.clone()],
        ..Default::default()
    };
    let name = policy.name.clone();
    let create = pb::CreatePolicyRequest {
        policy: Some(policy),
    };
    client.create_policy(create.clone()).await.unwrap();
    client
        .run_policy_now(pb::RunPolicyNowRequest { name: name.clone() })
        .await
        .expect("RunPolicyNow");
    server.wait_paused(Duration::from_secs(60)).await;
    let store = PolicyStore::new(rooted_bucket(&cfg), &root);
    let held = store.runs(&name).await.unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    let backup = held[0].backup.clone();
    client
        .delete_policy(pb::DeletePolicyRequest { name: name.clone() })
        .await
        .expect("DeletePolicy");
    client.create_policy(create).await.expect("created again");

    std::fs::write(&go[0], b"").unwrap();
    let backups = server.client.clone();
    flows::eventually(
        "the held run's backup completes",
        Duration::from_secs(120),
        || {
            let (mut backups, backup) = (backups.clone(), backup.clone());
            async move {
                flows::listed_state(&mut backups, &backup).await
                    == Some(pb::JobState::Succeeded as i32)
            }
        },
    )
    .await;
    // The run stops without writing its end: the stored policy is another
    // one, or (as DeletePolicy removed its slot's lease) its lease is lost
    // first, whichever its next write meets. The code before wrote it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = store.runs(&name).await.unwrap();
    assert!(runs.is_empty(), "the new policy has no run: {runs:?}");
    wait_for_log(&server.log, "policy run stopped", Duration::from_secs(30)).await;
    let _ = std::fs::remove_file(&go[0]);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// Two runs of one policy (`keep_last 1`) overlap: the first, asked for on
/// server A, is held (`backup.held@PATH`) before its backup begins; the
/// second, asked for a second later on server B, runs to its end. Let go,
/// the first takes its backup after the second's: its data is the newest,
/// so its retention keeps it and deletes the second's. On the code before,
/// a run's slot was its backup's time: the first counted as the older, and
/// its retention deleted the backup it had just made, the newest data (a
/// scheduled slot retried late beside a RunPolicyNow is the same case).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_goes_by_when_a_backup_was_taken_not_by_its_slot() {
    use common::policies::{policy, policy_client, run_now, settled_runs, store_of};
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("taken_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 12).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("taken_root");
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let held = format!("backup.held@{}", go.display());
    let a = Proc::start_rooted_paused(&cfg, "takena", &root, "", Some(&held)).await;
    let b = Proc::start_rooted(&cfg, "takenb", &root, "").await;
    let name = common::unique("taken");
    // Not due while the test runs: only the runs asked for now.
    let p = policy(&name, "0 0 1 1 *", &spec.name, 1);
    let (mut on_a, mut on_b) = (policy_client(&a).await, policy_client(&b).await);
    on_a.create_policy(pb::CreatePolicyRequest { policy: Some(p) })
        .await
        .unwrap();
    let first = run_now(&on_a, &name).await;
    a.wait_paused(Duration::from_secs(60)).await;
    let second = run_now(&on_b, &name).await;
    let store = store_of(&cfg, &root);
    flows::eventually("the second run succeeds", Duration::from_secs(120), || {
        let (store, name, second) = (store.clone(), name.clone(), second.clone());
        async move {
            let runs = store.runs(&name).await.unwrap();
            runs.iter()
                .any(|r| r.backup == second && r.state == RunState::Succeeded)
        }
    })
    .await;

    std::fs::write(&go, b"").unwrap();
    let runs = settled_runs(&store, &name, Duration::from_secs(180)).await;
    assert!(
        runs.iter().all(|r| r.state == RunState::Succeeded),
        "{runs:?}"
    );
    let mut client = b.client.clone();
    // The run's record ends before its retention does.
    flows::eventually(
        "retention deletes one of the two backups",
        Duration::from_secs(120),
        || {
            let (mut c, first, second) = (client.clone(), first.clone(), second.clone());
            async move {
                flows::listed_state(&mut c, &first).await.is_none()
                    || flows::listed_state(&mut c, &second).await.is_none()
            }
        },
    )
    .await;
    assert_eq!(
        flows::listed_state(&mut client, &first).await,
        Some(pb::JobState::Succeeded as i32),
        "the newest data ({first}, taken last) is kept"
    );
    assert_eq!(
        flows::listed_state(&mut client, &second).await,
        None,
        "{second}, taken before it, is deleted by keep_last 1"
    );
    on_b.delete_policy(pb::DeletePolicyRequest { name })
        .await
        .unwrap();
    flows::delete_eventually(&client, &first, "the kept backup is deleted").await;
    a.finish();
    b.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
