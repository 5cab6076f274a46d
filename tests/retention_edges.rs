//! Retention when the backups change under it, against the real Milvus 2.3.5
//! and S3, on backup roots of their own: a backup the rules kept that is
//! deleted by hand while retention deletes is replaced by the next older
//! one, never deleted for it, and the runs it marks are marked as their
//! records are then; a backup that cannot be read is left alone while the
//! others are still decided about.

mod common;

use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use common::policies::{policy, policy_client, run_now, settled_runs, store_of};
use common::process::{Proc, rooted_bucket};
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::policy_service_client::PolicyServiceClient;
use milvus_backup::config::Config;
use milvus_backup::context::Context;
use milvus_backup::engine::Engine;
use milvus_backup::model::{BackupName, Caller, Policy, PolicyInput, PolicyName, RetentionInput};
use milvus_backup::policy::RunState;
use tonic::transport::Channel;

/// A collection of 100 rows, flushed, for the policies to back up.
async fn source(cfg: &Config, tag: &str) -> Spec {
    let m = common::milvus(cfg);
    let spec = Spec::new(&common::unique(tag));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 12).await;
    data::flush(&m, &spec.db, &spec.name).await;
    spec
}

/// Runs policy `name` now on `c` and waits for its run to end succeeded;
/// the run's backup.
async fn run_to_end(
    c: &mut PolicyServiceClient<Channel>,
    store: &milvus_backup::policy::PolicyStore,
    name: &str,
) -> String {
    let backup = run_now(c, name).await;
    // Its record is written once the run begins.
    flows::eventually("the run's record", Duration::from_secs(60), || {
        let (store, name, backup) = (store.clone(), name.to_string(), backup.clone());
        async move {
            let runs = store.runs(&name).await.unwrap();
            runs.iter().any(|r| r.backup == backup)
        }
    })
    .await;
    let runs = settled_runs(store, name, Duration::from_secs(180)).await;
    let run = runs.iter().find(|r| r.backup == backup).unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    backup
}

/// Three runs without a rule, then `keep_last 1`: the fourth run's
/// retention keeps its own backup and deletes the three others, newest
/// first. Its first delete is held (`delete.planned@PATH` on server A)
/// while the fourth backup, the one the rules kept, is deleted by hand on
/// server B. Let go, retention decides again before its next delete: the
/// second backup is now the newest left, and kept; only the first goes.
/// On the code before, it went on with its first decisions and deleted the
/// second and the first too, leaving the policy no backup at all.
/// The first run's record, changed while the delete is held, is marked
/// deleted as it is then: on the code before, retention wrote back the
/// copy it read when it began over it (a run that ended meanwhile was so
/// shown running again, and taken over).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kept_backup_deleted_by_hand_meanwhile_is_replaced_not_followed() {
    let cfg = common::config();
    let spec = source(&cfg, "kept_src").await;
    let root = common::unique("kept_root");
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let held = format!("delete.planned@{}", go.display());
    let a = Proc::start_rooted_paused(&cfg, "kepta", &root, "", Some(&held)).await;
    let b = Proc::start_rooted(&cfg, "keptb", &root, "").await;
    let (on_a, mut on_b) = (policy_client(&a).await, policy_client(&b).await);
    let name = common::unique("kept");
    // Not due while the test runs; no rule at first.
    let mut p = policy(&name, "0 0 1 1 *", &spec.name, 0);
    p.retention = None;
    on_b.create_policy(pb::CreatePolicyRequest {
        policy: Some(p.clone()),
    })
    .await
    .unwrap();
    let store = store_of(&cfg, &root);
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(run_to_end(&mut on_b, &store, &name).await);
    }
    p.retention = Some(pb::Retention {
        keep_last: 1,
        ..Default::default()
    });
    on_b.update_policy(pb::UpdatePolicyRequest { policy: Some(p) })
        .await
        .unwrap();

    // The fourth run, on A: its first delete (of the third) is held.
    let fourth = run_now(&on_a, &name).await;
    a.wait_paused(Duration::from_secs(120)).await;
    // Meanwhile the first run's record changes, as a run's owner rewrites
    // it (at its end, say): retention marks it as it is now.
    let first_run = |store: &milvus_backup::policy::PolicyStore| {
        let (store, name, first) = (store.clone(), name.clone(), made[0].clone());
        async move {
            let runs = store.runs(&name).await.unwrap();
            runs.into_iter().find(|r| r.backup == first).unwrap()
        }
    };
    let mut changed = first_run(&store).await;
    changed.attempts = 41;
    store.save_run(&name, &changed).await.unwrap();
    let mut client = b.client.clone();
    flows::delete_eventually(&client, &fourth, "the kept backup is deleted by hand").await;
    flows::eventually("the kept backup is gone", Duration::from_secs(60), || {
        let (mut c, fourth) = (client.clone(), fourth.clone());
        async move { flows::listed_state(&mut c, &fourth).await.is_none() }
    })
    .await;

    std::fs::write(&go, b"").unwrap();
    let [first, second, third] = [&made[0], &made[1], &made[2]];
    // The run's record ends before its retention does; the first backup
    // is deleted last.
    flows::eventually(
        "retention deletes the third backup, then the first",
        Duration::from_secs(180),
        || {
            let (mut c, first, third) = (client.clone(), first.clone(), third.clone());
            async move {
                flows::listed_state(&mut c, &third).await.is_none()
                    && flows::listed_state(&mut c, &first).await.is_none()
            }
        },
    )
    .await;
    assert_eq!(
        flows::listed_state(&mut client, second).await,
        Some(pb::JobState::Succeeded as i32),
        "{second}, the newest left once {fourth} was deleted by hand, is kept"
    );
    flows::eventually(
        "the first run is marked deleted",
        Duration::from_secs(60),
        || {
            let run = first_run(&store);
            async move { run.await.deleted }
        },
    )
    .await;
    let marked = first_run(&store).await;
    assert_eq!(
        marked.attempts, 41,
        "the first run's record as it was written meanwhile, not as retention read it: {marked:?}"
    );
    on_b.delete_policy(pb::DeletePolicyRequest { name })
        .await
        .unwrap();
    flows::delete_eventually(&client, second, "the last backup is deleted").await;
    a.finish();
    b.finish();
    data::drop_if_exists(&common::milvus(&cfg), &spec.db, &spec.name).await;
}

/// Three runs without a rule; the first backup's meta is then unreadable
/// (`full_meta.json` not JSON, its catalog entry gone). With `keep_last 1`,
/// the fourth run's retention leaves the unreadable backup alone and still
/// deletes the second and the third. On the code before, one unreadable
/// backup stopped retention for the whole policy: nothing was deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_backup_is_left_alone_and_retention_goes_on() {
    let mut cfg = common::config();
    let spec = source(&cfg, "unread_src").await;
    let root = common::unique("unread_root");
    cfg.minio.backup_bucket_name = cfg.minio.bucket_name.clone();
    cfg.minio.backup_root_path = root.clone();
    let ctx = Context::from_config(&cfg).unwrap();
    let catalog = ctx.catalog.clone();
    let engine = Engine::new(ctx);
    let name = common::unique("unread");
    let policy = |keep_last| {
        Policy::parse(PolicyInput {
            name: name.clone(),
            schedule: "0 0 1 1 *".into(),
            collection_names: vec![spec.name.clone()],
            name_template: "{policy}_{yyyyMMdd_HHmmss}".into(),
            retention: RetentionInput {
                keep_last,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap()
    };
    engine.create_policy(policy(0)).await.unwrap();
    let pname = PolicyName::parse(&name).unwrap();
    let run = || async {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = engine.run_policy_and_wait(&pname, |_| {}).await.unwrap();
        assert_eq!(r.state, RunState::Succeeded, "{r:?}");
        r.backup
    };
    let (first, second, third) = (run().await, run().await, run().await);

    let store = rooted_bucket(&cfg);
    store
        .write(
            &format!("{root}/{first}/meta/full_meta.json"),
            bytes::Bytes::from("not json"),
        )
        .await
        .unwrap();
    let entries: Vec<String> = store
        .list(&format!("{root}/_catalog/{first}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(!entries.is_empty(), "the first backup had a catalog entry");
    store.delete(&entries).await.unwrap();

    engine.update_policy(policy(1).into()).await.unwrap();
    let fourth = run().await;
    for gone in [&second, &third] {
        assert!(!catalog.is_taken(gone).await.unwrap(), "{gone} deleted");
    }
    assert!(
        catalog.is_taken(&first).await.unwrap(),
        "the unreadable backup is left alone"
    );
    assert!(catalog.is_complete(&fourth).await.unwrap());

    engine.delete_policy(&pname).await.unwrap();
    let fourth = BackupName::parse(&fourth).unwrap();
    engine
        .delete_backup_until_ended(&fourth, &Caller::default())
        .await
        .unwrap();
    store
        .delete_under(&format!("{root}/{first}/"))
        .await
        .unwrap();
    data::drop_if_exists(&common::milvus(&cfg), &spec.db, &spec.name).await;
}
