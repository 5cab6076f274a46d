//! Scheduled policy slots and a replica that cannot reach Milvus, on the real
//! Milvus 2.3.5 and S3, with server processes on a backup root of their own
//! (A reaches Milvus through a TCP proxy switched off): a due slot is left to
//! a replica that reaches Milvus, and run where it can only fail only when
//! no such replica takes it, recorded and retried until Milvus answers.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::data::{self, Spec};
use common::process::{Proc, config_with, root_backups_at, rooted_bucket, wait_for_log};
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
    let yaml = std::fs::read_to_string(&config).unwrap();
    assert!(yaml.contains("leaseTtlSeconds: 3\n"), "{yaml}");
    std::fs::write(
        &config,
        yaml.replace("leaseTtlSeconds: 3\n", "leaseTtlSeconds: 10\n"),
    )
    .unwrap();
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
