//! A retention delete that stopped after its backup was retired is finished
//! by a later run, even with no rule left. Against the real Milvus 2.3.5
//! and S3, on a backup root of its own. A test binary of its own: it sets
//! `MILVUS_BACKUP_FAILPOINTS` for its process.

mod common;

use std::time::Duration;

use common::flows::eventually;
use common::hello;
use common::process::rooted_bucket;
use milvus_backup::context::Context;
use milvus_backup::engine::Engine;
use milvus_backup::jobs::holds;
use milvus_backup::model::{BackupName, Policy, PolicyInput, PolicyName, RetentionInput};
use milvus_backup::policy::{PolicyStore, RunState};

/// The retention delete of the first backup is held just after it retired
/// it (`delete.after_commit_point`), and a reader takes the backup in that
/// moment (a lease written by hand, as a verification's): the delete stops
/// ABORTED, the backup no longer complete, so no decision names it again.
/// A later run finishes the delete after the reader let go (before, its
/// folder stayed for good, its name taken), even after every rule was
/// removed, and deletes nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retention_delete_that_stopped_is_finished_by_a_later_run() {
    let release = std::env::temp_dir().join(common::unique("retired_release"));
    let failpoint = format!("delete.after_commit_point@{}", release.display());
    // SAFETY: set before any other thread of this test binary reads it.
    unsafe { std::env::set_var("MILVUS_BACKUP_FAILPOINTS", failpoint) };
    let mut cfg = common::config();
    let root = common::unique("retire_root");
    cfg.minio.backup_bucket_name = cfg.minio.bucket_name.clone();
    cfg.minio.backup_root_path = root.clone();
    let ctx = Context::from_config(&cfg).unwrap();
    let (catalog, leases) = (ctx.catalog.clone(), ctx.leases());
    let engine = Engine::new(ctx);
    let m = common::milvus(&cfg);
    let coll = common::unique("retire_src");
    hello::create(&m, &coll, 200, 1, 11).await;
    let name = common::unique("retire_p");
    let policy = |keep_last| {
        Policy::parse(PolicyInput {
            name: name.clone(),
            schedule: "0 0 1 1 *".into(),
            collection_names: vec![coll.clone()],
            name_template: "{policy}_{yyyyMMdd_HHmmss}".into(),
            retention: RetentionInput {
                keep_last,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap()
    };
    engine.create_policy(policy(1)).await.unwrap();
    let pname = PolicyName::parse(&name).unwrap();
    let runs = PolicyStore::new(rooted_bucket(&cfg), &root);
    let run = || async {
        // Backup names go by the second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = engine.run_policy_and_wait(&pname, |_| {}).await.unwrap();
        assert_eq!(r.state, RunState::Succeeded, "{r:?}");
        r.backup
    };

    let first = run().await;
    let (second, reader) = tokio::join!(run(), async {
        eventually(
            "the first backup is retired",
            Duration::from_secs(120),
            || {
                let (catalog, first) = (catalog.clone(), first.clone());
                async move { !catalog.is_complete(&first).await.unwrap() }
            },
        )
        .await;
        let reader = leases
            .acquire(&holds::reader(&first, "a-reader"), "a-reader", "verify")
            .await
            .unwrap();
        std::fs::write(&release, b"").unwrap();
        reader
    });
    eventually(
        "retention marks the first backup retiring, not deleted",
        Duration::from_secs(60),
        || {
            let (runs, name, first) = (&runs, &name, &first);
            async move {
                let record = runs.runs(name).await.unwrap();
                record
                    .iter()
                    .find(|r| &r.backup == first)
                    .is_some_and(|r| r.retiring && !r.deleted)
            }
        },
    )
    .await;
    assert!(
        catalog.is_taken(&first).await.unwrap(),
        "its delete stopped"
    );
    assert!(!catalog.is_complete(&first).await.unwrap(), "retired");
    reader.release().await;

    // With no rule left, the stopped delete is finished all the same (it
    // was left for good before), and nothing else is deleted.
    engine.update_policy(policy(0).into()).await.unwrap();
    let third = run().await;
    eventually(
        "the stopped delete was finished",
        Duration::from_secs(60),
        || {
            let (catalog, first) = (catalog.clone(), first.clone());
            async move { !catalog.is_taken(&first).await.unwrap() }
        },
    )
    .await;
    assert!(catalog.is_complete(&second).await.unwrap(), "no rule left");
    assert!(catalog.is_complete(&third).await.unwrap());
    let record = runs.runs(&name).await.unwrap();
    let r = record.iter().find(|r| r.backup == first).unwrap();
    assert!(r.deleted, "{r:?}");

    engine.delete_policy(&pname).await.unwrap();
    for kept in [second, third] {
        let kept = BackupName::parse(&kept).unwrap();
        engine
            .delete_backup_until_ended(&kept, &milvus_backup::model::Caller::default())
            .await
            .unwrap();
    }
    let _ = std::fs::remove_file(&release);
    hello::drop_if_exists(&m, "default", &coll).await;
}
