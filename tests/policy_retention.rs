//! Retention of backup policies against the real Milvus 2.3.5 and S3, on a
//! backup root of their own: it deletes only the backup its run made (by
//! id), and a delete of its that stopped after the backup was retired is
//! finished by a later run.

mod common;

use std::time::Duration;

use common::hello;
use common::process::rooted_bucket;
use milvus_backup::context::Context;
use milvus_backup::delete::DeleteRequest;
use milvus_backup::engine::Engine;
use milvus_backup::model::{BackupName, Policy, PolicyInput, PolicyName, RetentionInput};
use milvus_backup::policy::{PolicyStore, RunRecord, RunState};

/// A retention delete stopped after its backup was retired (here every
/// delete fails while a complete backup whose checksums cannot be read is
/// under the root: a delete reads every other backup's). The backup is then
/// no longer complete, so no decision names it again: a later run finishes
/// the delete (before, its folder stayed for good, its name taken).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retention_delete_that_stopped_is_finished_by_a_later_run() {
    let mut cfg = common::config();
    let root = common::unique("retire_root");
    cfg.minio.backup_bucket_name = cfg.minio.bucket_name.clone();
    cfg.minio.backup_root_path = root.clone();
    let ctx = Context::from_config(&cfg).unwrap();
    let catalog = ctx.catalog.clone();
    let engine = Engine::new(ctx);
    let m = common::milvus(&cfg);
    let coll = common::unique("retire_src");
    hello::create(&m, &coll, 200, 1, 11).await;
    let name = common::unique("retire_p");
    let policy = Policy::parse(PolicyInput {
        name: name.clone(),
        schedule: "0 0 1 1 *".into(),
        collection_names: vec![coll.clone()],
        name_template: "{policy}_{yyyyMMdd_HHmmss}".into(),
        retention: RetentionInput {
            keep_last: 1,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    engine.create_policy(policy).await.unwrap();
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
    let store = rooted_bucket(&cfg);
    let junk = [
        format!("{root}/junk_meta/meta/full_meta.json"),
        format!("{root}/junk_meta/meta/checksums.json"),
    ];
    store
        .write(
            &junk[0],
            bytes::Bytes::from(r#"{"id":"junk","name":"junk_meta"}"#),
        )
        .await
        .unwrap();
    store
        .write(&junk[1], bytes::Bytes::from("not json"))
        .await
        .unwrap();
    let second = run().await;
    assert!(
        catalog.is_taken(&first).await.unwrap(),
        "its delete stopped"
    );
    assert!(!catalog.is_complete(&first).await.unwrap(), "retired");
    let record = runs.runs(&name).await.unwrap();
    let r = record.iter().find(|r| r.backup == first).unwrap();
    assert!(r.retiring && !r.deleted, "{r:?}");

    store.delete(&junk).await.unwrap();
    let third = run().await;
    assert!(
        !catalog.is_taken(&first).await.unwrap(),
        "the stopped delete was finished"
    );
    assert!(!catalog.is_taken(&second).await.unwrap(), "keep_last 1");
    assert!(catalog.is_complete(&third).await.unwrap());
    let record = runs.runs(&name).await.unwrap();
    let r = record.iter().find(|r| r.backup == first).unwrap();
    assert!(r.deleted, "{r:?}");

    engine.delete_policy(&pname).await.unwrap();
    let third = BackupName::parse(&third).unwrap();
    engine.delete_backup_until_ended(&third).await.unwrap();
    hello::drop_if_exists(&m, "default", &coll).await;
}

/// Retention deletes by id, not by name: a delete that names the id it saw
/// is refused once another backup is under the name (deleted by hand and
/// made again while retention ran), and leaves it whole; with the id of the
/// backup there, it deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_by_id_leaves_a_backup_made_again_under_the_name() {
    let mut cfg = common::config();
    let root = common::unique("byid_root");
    cfg.minio.backup_bucket_name = cfg.minio.bucket_name.clone();
    cfg.minio.backup_root_path = root.clone();
    let engine = Engine::new(Context::from_config(&cfg).unwrap());
    let store = rooted_bucket(&cfg);
    let backup = common::unique("byid");
    let meta_key = format!("{root}/{backup}/meta/full_meta.json");
    let meta = serde_json::json!({ "id": "made-again", "name": backup });
    store
        .write(&meta_key, bytes::Bytes::from(meta.to_string()))
        .await
        .unwrap();
    let name = BackupName::parse(&backup).unwrap();

    let refused = engine
        .start_delete(DeleteRequest::of_id(
            name.clone(),
            "retention-saw-this".into(),
        ))
        .await
        .expect_err("another backup is under the name");
    assert_eq!(
        refused.kind(),
        milvus_backup::error::ErrorKind::FailedPrecondition,
        "{refused}"
    );
    assert!(
        refused.to_string().contains("retention-saw-this")
            && refused.to_string().contains("made-again"),
        "{refused}"
    );
    assert!(store.head(&meta_key).await.unwrap().is_some(), "left whole");

    let rx = engine
        .start_delete(DeleteRequest::of_id(name, "made-again".into()))
        .await
        .unwrap();
    let end = milvus_backup::jobs::until_terminal(rx).await;
    assert_eq!(
        end.state,
        milvus_backup::jobs::JobState::Succeeded,
        "{end:?}"
    );
    assert!(store.head(&meta_key).await.unwrap().is_none(), "deleted");
}

/// Retention decides among the backups of one selection, as restic groups
/// snapshots by paths: a policy narrowed from every collection to one keeps
/// the newest backup of every collection under `keep_last 1` (before, the
/// backups of the narrowed policy deleted the only ones of the others).
/// Runs recorded without a selection (by an earlier version) are a group of
/// their own. Hand-made run records and commit points, previewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_keeps_the_last_backups_of_a_selection_the_policy_dropped() {
    let mut cfg = common::config();
    let root = common::unique("narrow_root");
    cfg.minio.backup_bucket_name = cfg.minio.bucket_name.clone();
    cfg.minio.backup_root_path = root.clone();
    let engine = Engine::new(Context::from_config(&cfg).unwrap());
    let name = common::unique("narrowed");
    let input = |collections: Vec<String>| PolicyInput {
        name: name.clone(),
        schedule: "0 0 1 1 *".into(),
        all_collections: collections.is_empty(),
        collection_names: collections,
        retention: RetentionInput {
            keep_last: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let everything = Policy::parse(input(Vec::new())).unwrap();
    let narrowed = Policy::parse(input(vec!["orders".into()])).unwrap();
    engine.create_policy(everything.clone()).await.unwrap();
    let runs = PolicyStore::new(rooted_bucket(&cfg), &root);
    let store = rooted_bucket(&cfg);
    let made = |backup: String, slot: &str, selection: String| {
        let slot_ms = chrono::DateTime::parse_from_rfc3339(slot)
            .unwrap()
            .timestamp_millis();
        let record = RunRecord {
            selection,
            ..common::runs::succeeded(slot_ms, &backup)
        };
        let (runs, store, root, name) = (runs.clone(), store.clone(), root.clone(), name.clone());
        async move {
            assert!(runs.start_run(&name, &record).await.unwrap());
            let meta = serde_json::json!({ "id": record.jobs[0], "name": backup });
            store
                .write(
                    &format!("{root}/{backup}/meta/full_meta.json"),
                    bytes::Bytes::from(meta.to_string()),
                )
                .await
                .unwrap();
        }
    };
    let b = |i: u32| format!("{name}_{i}");
    // Runs of an earlier version recorded no selection: a group of their own.
    made(b(0), "2026-10-30T00:00:00Z", String::new()).await;
    made(b(9), "2026-10-31T00:00:00Z", String::new()).await;
    made(b(1), "2026-11-01T00:00:00Z", everything.selection().key()).await;
    made(b(2), "2026-11-02T00:00:00Z", everything.selection().key()).await;
    engine.update_policy(narrowed.clone()).await.unwrap();
    made(b(3), "2026-11-03T00:00:00Z", narrowed.selection().key()).await;
    made(b(4), "2026-11-04T00:00:00Z", narrowed.selection().key()).await;

    let pname = PolicyName::parse(&name).unwrap();
    let decisions = engine.preview_retention(&pname).await.unwrap();
    let kept: Vec<(String, bool)> = decisions.iter().map(|d| (d.name.clone(), d.keep)).collect();
    assert_eq!(
        kept,
        vec![
            (b(4), true),
            (b(3), false),
            (b(2), true),
            (b(1), false),
            (b(9), true),
            (b(0), false)
        ],
        "{decisions:?}"
    );
    let old = decisions.iter().find(|d| d.name == b(2)).unwrap();
    assert!(
        old.reason.contains("keep_last 1") && old.reason.contains("selection all"),
        "{old:?}"
    );
    engine.delete_policy(&pname).await.unwrap();
    for i in [0, 1, 2, 3, 4, 9] {
        store
            .delete(&[format!("{root}/{}/meta/full_meta.json", b(i))])
            .await
            .unwrap();
    }
}
