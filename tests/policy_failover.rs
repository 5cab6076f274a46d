//! Scheduled policy slots and a replica that cannot reach Milvus, on the real
//! Milvus 2.3.5 and S3, with server processes on a backup root of their own
//! (A reaches Milvus through a TCP proxy switched off): a due slot is left to
//! a replica that reaches Milvus, and run where it can only fail only when
//! no such replica takes it, recorded and retried until Milvus answers. A
//! run retried after its first look at its name failed still leaves another
//! tool's half-written backup there alone. A dead server's run is taken over
//! only by a server of the policy's Milvus.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::data::{self, Spec};
use common::process::{
    Proc, config_with, root_backups_at, rooted_bucket, set_lease_ttl, wait_for_log,
};
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::policy_service_client::PolicyServiceClient;
use milvus_backup::policy::{PolicyStore, RunRecord, RunState};

/// The first run `done` holds for, waited for (at most 90 s; `what` names it).
async fn run_of(
    store: &PolicyStore,
    name: &str,
    what: &str,
    done: impl Fn(&RunRecord) -> bool,
) -> RunRecord {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let runs = store.runs(name).await.unwrap();
        if let Some(r) = runs.iter().find(|r| done(r)) {
            return r.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {runs:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A server on `root` with a 10 s lease TTL: its listing period, so that a
/// slot is left for 15 s (half the gap of an every-30-s policy; a listing
/// period, two ticks and a probe's 5 s would be 17 s), well past B's start
/// (A's probe, refused by the switched-off proxy, answers at once).
async fn server(cfg: &milvus_backup::config::Config, tag: &str, root: &str) -> Proc {
    let (state, config) = config_with(cfg, tag, "");
    root_backups_at(&config, root);
    set_lease_ttl(&config, 10);
    Proc::on(state, config, None).await
}

/// A is the only server when the first slot of an every-30-s policy comes
/// due, and cannot reach Milvus: it leaves the slot to a replica that can and
/// says so. B, started then, runs it: B's process, one attempt, SUCCEEDED.
/// With B stopped, A takes the next slot once its grace (15 s) is over: the
/// run is A's, recorded with its failed attempt naming Milvus, and succeeds
/// once Milvus answers. The code before took the first slot on A at once
/// (never leaving it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_due_while_a_replica_cannot_reach_milvus_runs_on_one_that_can() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("failover_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..50, 21).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("failover_root");
    let (via_proxy, up) = common::faults::milvus_through_switch(&cfg).await;
    common::faults::switch_off(&up).await;
    let a = server(&via_proxy, "failover_a", &root).await;
    let name = common::unique("failover");
    PolicyServiceClient::connect(format!("http://127.0.0.1:{}", a.port))
        .await
        .unwrap()
        .create_policy(pb::CreatePolicyRequest {
            policy: Some(pb::Policy {
                name: name.clone(),
                schedule: "*/30 * * * * *".into(),
                collection_names: vec![spec.name.clone()],
                ..Default::default()
            }),
        })
        .await
        .expect("CreatePolicy needs no Milvus");
    let store = PolicyStore::new(rooted_bucket(&cfg), &root);

    let left = "cannot reach Milvus: the slot is left to a replica that can";
    wait_for_log(&a.log, left, Duration::from_secs(45)).await;
    let b = server(&cfg, "failover_b", &root).await;
    let first = run_of(&store, &name, "the first slot's run ends", |r| {
        r.state != RunState::Running
    })
    .await;
    assert_eq!(
        (first.state, first.attempts),
        (RunState::Succeeded, 1),
        "run at its first attempt: {first:?}"
    );
    let of = |p: &Proc| format!(":{}/", p.pid());
    assert!(first.owner.contains(&of(&b)), "run by B: {first:?}");
    b.finish();

    let taken = "no replica that reaches Milvus took the slot";
    wait_for_log(&a.log, taken, Duration::from_secs(60)).await;
    let failing = run_of(&store, &name, "A records the next slot's failures", |r| {
        r.slot_ms > first.slot_ms && r.error.is_some()
    })
    .await;
    assert_eq!(failing.state, RunState::Running, "retried: {failing:?}");
    assert!(failing.owner.contains(&of(&a)), "run by A: {failing:?}");
    assert!(
        failing.started_ms - failing.slot_ms >= 14_000,
        "A left the slot for its grace first: {failing:?}"
    );
    assert_eq!(
        failing.error_kind.as_deref(),
        Some("unavailable"),
        "{failing:?}"
    );
    up.store(true, Ordering::SeqCst);
    let slot = failing.slot_ms;
    let end = run_of(
        &store,
        &name,
        "the slot's run ends once Milvus answers",
        |r| r.slot_ms == slot && r.state != RunState::Running,
    )
    .await;
    assert_eq!(end.state, RunState::Succeeded, "{end:?}");
    a.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A scheduled run whose name holds another tool's half-written backup
/// (objects and no lease, as a Go-tool backup in progress) fails
/// ALREADY_EXISTS and leaves it alone, also when its first look at the name
/// fails (a proxy answers the GetObjects of commit points 403 until then)
/// and a second attempt looks again. On the code before, the first
/// attempt's hold of the name, released, made the run's own job the name's
/// last writer: the second attempt took the folder for the run's own
/// half-written backup, removed it and made the backup there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_run_leaves_another_tools_half_written_backup_alone() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("foreign_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 13).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let (proxy, server, root) = common::process::behind_fault_proxy(&cfg, "foreign").await;
    let mut client = PolicyServiceClient::connect(format!("http://127.0.0.1:{}", server.port))
        .await
        .unwrap();
    // The names of the next slots of an every-20-s schedule: each holds the
    // other tool's folder before the policy exists.
    let name = common::unique("foreign");
    let now = chrono::Utc::now().timestamp();
    let bucket = rooted_bucket(&cfg);
    let mut foreign = Vec::new();
    for slot in (1..=4).map(|i| (now / 20 + i) * 20) {
        let at = chrono::DateTime::from_timestamp(slot, 0).unwrap();
        let backup = format!("{name}_{}", at.format("%Y%m%d_%H%M%S"));
        let key = format!("{root}/{backup}/binlogs/insert_log/1/2/3/4/5/6");
        bucket
            .write(&key, bytes::Bytes::from_static(b"another tool's binlog"))
            .await
            .unwrap();
        foreign.push((backup, key));
    }
    proxy.refuse_gets_for(Some("/meta/full_meta.json"));
    let mut policy = pb::Policy {
        name: name.clone(),
        schedule: "*/20 * * * * *".into(),
        collection_names: vec![spec.name.clone()],
        name_template: "{policy}_{yyyyMMdd_HHmmss}".into(),
        ..Default::default()
    };
    client
        .create_policy(pb::CreatePolicyRequest {
            policy: Some(policy.clone()),
        })
        .await
        .expect("CreatePolicy");
    let store = PolicyStore::new(bucket.clone(), &root);
    let first = run_of(&store, &name, "a failed first attempt", |r| {
        r.error.is_some()
    })
    .await;
    assert!(proxy.counts.refused_gets.load(Ordering::Relaxed) >= 1);
    proxy.refuse_gets_for(None);
    let run = run_of(&store, &name, "the run's end", |r| {
        r.slot_ms == first.slot_ms && r.state != RunState::Running
    })
    .await;
    policy.enabled = Some(false);
    client
        .update_policy(pb::UpdatePolicyRequest {
            policy: Some(policy),
        })
        .await
        .expect("UpdatePolicy");
    assert_eq!(run.state, RunState::Failed, "{run:?}");
    assert!(run.attempts >= 2, "looked at the name again: {run:?}");
    assert!(
        run.error
            .as_deref()
            .is_some_and(|e| e.contains("half-written by another job")),
        "{run:?}"
    );
    let (_, key) = foreign
        .iter()
        .find(|(backup, _)| *backup == run.backup)
        .unwrap_or_else(|| panic!("{} is one of {foreign:?}", run.backup));
    let left = bucket
        .list(&format!("{root}/{}/", run.backup))
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        [key.as_str()],
        "the other tool's folder is left as it was"
    );
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A run whose server died is taken over only by a server of the policy's
/// Milvus. A (its Milvus switched off) runs the policy now: the run is
/// RUNNING, retried; A is killed. O, a server of another Milvus on the same
/// backup storage, leaves the run alone past A's lease and two of its
/// sweeps; S, a server of the policy's Milvus, takes it over and it
/// succeeds. On the code before, O's sweep took the run over and made its
/// backup of the other Milvus as the policy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_servers_run_is_taken_over_only_by_a_server_of_the_policys_milvus() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("ownm_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..30, 17).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("ownm_root");
    let (via_proxy, up) = common::faults::milvus_through_switch(&cfg).await;
    common::faults::switch_off(&up).await;
    let mut a = server(&via_proxy, "ownm_a", &root).await;
    let name = common::unique("ownm");
    let client = |p: &Proc| PolicyServiceClient::connect(format!("http://127.0.0.1:{}", p.port));
    let mut on_a = client(&a).await.unwrap();
    on_a.create_policy(pb::CreatePolicyRequest {
        policy: Some(pb::Policy {
            name: name.clone(),
            // Not due while the test runs: only the run asked for now.
            schedule: "0 0 1 1 *".into(),
            collection_names: vec![spec.name.clone()],
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    on_a.run_policy_now(pb::RunPolicyNowRequest { name: name.clone() })
        .await
        .expect("a run now starts without Milvus");
    let store = PolicyStore::new(rooted_bucket(&cfg), &root);
    let failing = run_of(&store, &name, "A records a failed attempt", |r| {
        r.error.is_some()
    })
    .await;
    assert_eq!(failing.state, RunState::Running, "retried: {failing:?}");
    let of = |p: &Proc| format!(":{}/", p.pid());
    assert!(failing.owner.contains(&of(&a)), "{failing:?}");
    a.kill();

    let mut elsewhere = cfg.clone();
    elsewhere.minio.root_path = common::unique("ownm_files");
    let o = server(&elsewhere, "ownm_o", &root).await;
    // A's 10 s lease expires; O sweeps every listing period (10 s).
    tokio::time::sleep(Duration::from_secs(35)).await;
    let left = store.run(&name, failing.slot_ms).await.unwrap().unwrap();
    assert_eq!(
        o.logged("taking over a policy run"),
        0,
        "another Milvus's server took the run over: {left:?}"
    );
    assert_eq!(left.state, RunState::Running, "{left:?}");
    assert_eq!(left.owner, failing.owner, "still A's: {left:?}");
    assert!(
        o.logged("the policy backs up another Milvus") >= 1,
        "O says why"
    );

    let s = server(&cfg, "ownm_s", &root).await;
    let end = run_of(&store, &name, "S ends the run", |r| {
        r.slot_ms == failing.slot_ms && r.state != RunState::Running
    })
    .await;
    assert_eq!(end.state, RunState::Succeeded, "{end:?}");
    assert!(end.owner.contains(&of(&s)), "run by S: {end:?}");
    client(&s)
        .await
        .unwrap()
        .delete_policy(pb::DeletePolicyRequest { name: name.clone() })
        .await
        .unwrap();
    s.finish();
    o.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
