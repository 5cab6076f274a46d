//! `skip_create_collection` into a collection that exists, against the real
//! Milvus 2.3.5 and S3: a collection that cannot take the backup's rows as
//! they were (another index on a field, another partition-key routing) is
//! refused before any row is imported; one that restores into it holds the
//! backup until Milvus's imports from its folder ended, and a load it asked
//! is released again when it does not succeed. A delete is refused while
//! Milvus imports read the backup's folder in place.

mod common;

use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use common::process;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::{ImportPhase, MilvusApi, MilvusClient};
use milvus_backup::storage::ObjectStore;

/// `skip_create_collection` into a collection that routes its partition key
/// over another number of partitions than the backup's: Milvus would hash
/// the rows into partitions where queries do not look, so the restore is
/// refused before any import (FAILED_PRECONDITION naming both counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_key_routed_over_other_partitions_is_refused() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec {
        partition_key: Some(16),
        ..Spec::new(&common::unique("pkey_src"))
    };
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..120, 4).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let backup = common::unique("pkey_b");
    flows::backup_collections(&mut client, &backup, &[&spec.name]).await;

    let target = format!("{}_into", spec.name);
    let mine = Spec {
        partition_key: Some(8),
        ..Spec::new(&target)
    };
    data::create(&m, &mine).await;
    let err = client
        .restore(pb::RestoreRequest {
            backup_name: backup.clone(),
            collection_renames: [(spec.name.clone(), target.clone())].into(),
            skip_create_collection: true,
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains("over 8 partitions, the backup over 16"),
        "{err:?}"
    );
    assert!(
        m.collection_imports(&mine.db, &target)
            .await
            .unwrap()
            .is_empty(),
        "nothing was imported"
    );

    data::drop_if_exists(&m, &mine.db, &target).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// Drops index `name` of `field` of collection `db.coll`.
async fn drop_index(
    m: &milvus_backup::milvus::MilvusClient,
    db: &str,
    coll: &str,
    (field, name): (&str, &str),
) {
    let drop = milvus_backup::milvus::proto::milvus::DropIndexRequest {
        db_name: db.into(),
        collection_name: coll.into(),
        field_name: field.into(),
        index_name: name.into(),
        ..Default::default()
    };
    let status = m
        .raw()
        .drop_index(m.request(db, drop))
        .await
        .unwrap()
        .into_inner();
    milvus_backup::milvus::check_status("DropIndex", Some(&status)).unwrap();
}

/// A `skip_create_collection` restore with `restore_index` of `source` in
/// `backup` into `target`.
fn into_with_indexes(backup: &str, source: &str, target: &str) -> pb::RestoreRequest {
    pb::RestoreRequest {
        backup_name: backup.into(),
        collection_renames: [(source.into(), target.into())].into(),
        skip_create_collection: true,
        restore_index: true,
        ..Default::default()
    }
}

/// Puts an index of the backup's vector index name (`v_float_idx`) on field
/// `f_i64` of `db.coll`.
async fn put_clashing_index(m: &milvus_backup::milvus::MilvusClient, db: &str, coll: &str) {
    let clash = milvus_backup::milvus::IndexInfo {
        name: "v_float_idx".into(),
        id: 0,
        field_name: "f_i64".into(),
        params: vec![("index_type".into(), "STL_SORT".into())],
    };
    m.create_index(db, coll, &clash).await.unwrap();
}

/// `skip_create_collection` with `restore_index` into a collection whose
/// vector field already has another index: Milvus keeps one index per field,
/// so this is refused before any row is imported (it failed after the
/// import); so is an index of the backup's index name on another field
/// (before, the restore took it for made, and the vector field stayed
/// unindexed). With the backup's own index there, the restore goes through,
/// leaves that index as it was, and leaves the collection released (the
/// backup's source was loaded; `load` was not asked).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_into_a_collection_with_another_index_is_refused_before_any_row() {
    use milvus_backup::milvus::IndexInfo;
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("idx_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..150, 8).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let source = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let backup = common::unique("idx_b");
    flows::backup_collections(&mut client, &backup, &[&spec.name]).await;

    let target = format!("{}_into", spec.name);
    let mine = Spec::new(&target);
    data::create(&m, &mine).await;
    let flat = IndexInfo {
        name: "mine_idx".into(),
        id: 0,
        field_name: "v_float".into(),
        params: vec![
            ("index_type".into(), "FLAT".into()),
            ("metric_type".into(), "L2".into()),
        ],
    };
    m.create_index(&mine.db, &target, &flat).await.unwrap();
    let request = into_with_indexes(&backup, &spec.name, &target);
    let err = client.restore(request.clone()).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("\"mine_idx\""), "{err:?}");
    assert!(
        m.collection_imports(&mine.db, &target)
            .await
            .unwrap()
            .is_empty()
    );

    // The backup's own index in place: imported, the index kept.
    drop_index(&m, &mine.db, &target, ("v_float", "mine_idx")).await;

    // The backup's index name on another field: the restore would take it
    // for made, and leave the vector field unindexed (a load then fails).
    put_clashing_index(&m, &mine.db, &target).await;
    let err = client.restore(request.clone()).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("\"v_float_idx\" on field f_i64"),
        "{err:?}"
    );
    assert!(
        m.collection_imports(&mine.db, &target)
            .await
            .unwrap()
            .is_empty()
    );
    drop_index(&m, &mine.db, &target, ("f_i64", "v_float_idx")).await;
    data::index(&m, &mine.db, &target).await;
    let job = flows::restore_job(&mut client, request).await;
    assert_eq!(job.state, pb::JobState::Succeeded as i32, "{job:?}");
    // The user's collection stays released: the backup's source was loaded,
    // but a collection the restore did not make is loaded only when asked
    // (before, it was loaded).
    assert_eq!(m.loading_progress(&mine.db, &target).await.unwrap(), 0);
    data::load(&m, &mine.db, &target).await;
    let rows = data::rows(&m, &mine, &mine.db, &target, &[]).await;
    data::assert_rows_equal("imported beside the backup's own index", &source, &rows);

    data::drop_if_exists(&m, &mine.db, &target).await;
    flows::delete_eventually(&client, &backup, "the backup").await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// An index of the backup's index name put on another field of the user's
/// collection while a `skip_create_collection` restore with `restore_index`
/// imports into it (after the restore's check): the job ends FAILED naming
/// the index and both fields, and makes no index on the vector field. On the
/// code before, it took that index for its own and ended SUCCEEDED, the
/// vector field left unindexed (a load then fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_index_name_taken_on_another_field_during_the_import_fails_the_restore() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("idxrace_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..120, 9).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::index(&m, &spec.db, &spec.name).await;
    let go = std::env::temp_dir().join(common::unique("idxrace_go"));
    let pause = format!("restore.importing@{}", go.display());
    let root = common::unique("idxrace_root");
    let mut server =
        process::Proc::start_rooted_paused(&cfg, "idxrace", &root, "", Some(&pause)).await;
    let backup = common::unique("idxrace_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;

    let target = format!("{}_into", spec.name);
    let mine = Spec::new(&target);
    data::create(&m, &mine).await;
    let request = into_with_indexes(&backup, &spec.name, &target);
    let id = flows::start_restore(&mut server.client, request).await;
    server.wait_paused(Duration::from_secs(120)).await;
    put_clashing_index(&m, &mine.db, &target).await;
    std::fs::write(&go, b"").unwrap();
    let job = flows::watch_restore_to_end(&mut server.client, &id).await;
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    let said = "an index named \"v_float_idx\" on field f_i64";
    let errors =
        std::iter::once(&job.error_message).chain(job.collections.iter().map(|c| &c.error_message));
    assert!(errors.clone().any(|e| e.contains(said)), "{job:?}");
    let indexes = m.describe_indexes(&mine.db, &target).await.unwrap();
    assert!(
        indexes.iter().all(|i| i.field_name != "v_float"),
        "no index made on the vector field: {indexes:?}"
    );

    server.finish();
    let _ = std::fs::remove_file(&go);
    data::drop_if_exists(&m, &mine.db, &target).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A `skip_create_collection` restore of a full backup in Milvus's bucket
/// (imported in place, from the backup's own folder) cancelled while Milvus
/// still has its imports queued: the job holds the backup as a reader until
/// those imports ended, so a DeleteBackup right after the cancel removes
/// nothing under them. Every import completes and the user's collection ends
/// with exactly the backup's rows, its deletes applied. Before, the hold went
/// with the cancel, and the delete removed the folder (delete logs first)
/// under the queued imports. The job's error names the partition (`p1`) it
/// added to the user's collection, which stays (before, it was not said).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_restore_holds_its_backup_until_imports_from_it_ended() {
    use milvus_backup::milvus::ImportPhase;
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("inplace_src"));
    let source = data::populated(&m, &spec, 400, 300, 37).await;
    let root = common::unique("inplace_root");
    let mut server = process::Proc::start_rooted_paused(
        &cfg,
        "inplace-state",
        &root,
        "",
        Some("restore.importing"),
    )
    .await;
    let backup = common::unique("inplace_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;

    // The user's own empty collection of the same schema, restored into.
    let target = format!("{}_into", spec.name);
    let mine = Spec::new(&target);
    data::create(&m, &mine).await;
    let id = flows::start_restore(
        &mut server.client,
        pb::RestoreRequest {
            backup_name: backup.clone(),
            collection_renames: [(spec.name.clone(), target.clone())].into(),
            skip_create_collection: true,
            ..Default::default()
        },
    )
    .await;
    server.wait_paused(Duration::from_secs(120)).await;
    let job = flows::cancelled_restore(&mut server.client, &id).await;
    // The rows its imports bring are said to stay (it did not create the collection).
    assert!(
        job.collections[0]
            .error_message
            .contains(&format!("stay in default.{target}")),
        "{job:?}"
    );
    assert_eq!(
        job.collections[0].state,
        pb::JobState::Cancelled as i32,
        "the collection in flight ends as its job: {job:?}"
    );
    let partitions = m.list_partitions("default", &target).await.unwrap();
    assert!(partitions.iter().any(|p| p.name == "p1"), "{partitions:?}");
    assert!(
        job.collections[0].error_message.contains(&format!(
            r#"partitions ["p1"] it asked Milvus to add to default.{target} stay"#
        )),
        "{job:?}"
    );
    let staged = process::rooted_bucket(&cfg)
        .list(&format!("restore-temp-{id}/"))
        .await
        .unwrap();
    assert!(
        staged.is_empty(),
        "imported in place, not staged: {staged:?}"
    );

    flows::delete_eventually(&server.client, &backup, "the delete right after the cancel").await;
    flows::eventually(
        "Milvus's imports into the user's collection end",
        Duration::from_secs(300),
        || {
            let (m, target) = (m.clone(), target.clone());
            async move {
                m.collection_imports("default", &target)
                    .await
                    .unwrap()
                    .iter()
                    .all(|t| t.phase != ImportPhase::Running)
            }
        },
    )
    .await;
    let tasks = m.collection_imports("default", &target).await.unwrap();
    assert!(!tasks.is_empty());
    for t in &tasks {
        assert_eq!(t.phase, ImportPhase::Completed, "{tasks:?}");
    }
    data::index(&m, &mine.db, &target).await;
    data::load(&m, &mine.db, &target).await;
    let rows = data::rows(&m, &mine, &mine.db, &target, &[]).await;
    data::assert_rows_equal("the user's collection after the imports", &source, &rows);

    server.finish();
    data::drop_if_exists(&m, &mine.db, &target).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// `skip_create_collection` with `load` into the user's released collection,
/// cancelled once Milvus has loaded it (paused right after LoadCollection,
/// `restore.loading`): the cleanup releases it again, so the collection is
/// left released as it was (Milvus would otherwise go on with a load that
/// could not finish, holding query nodes' memory). The code before left it
/// loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_load_asked_by_a_restore_that_did_not_succeed_is_released() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("relload_src"));
    data::populated(&m, &spec, 200, 100, 11).await;
    let root = common::unique("relload_root");
    let mut server = process::Proc::start_rooted_paused(
        &cfg,
        "relload-state",
        &root,
        "",
        Some("restore.loading"),
    )
    .await;
    let backup = common::unique("relload_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let target = format!("{}_into", spec.name);
    let mine = Spec::new(&target);
    data::create(&m, &mine).await;
    data::index(&m, &mine.db, &target).await;
    assert_eq!(m.loading_progress(&mine.db, &target).await.unwrap(), 0);
    let id = flows::start_restore(
        &mut server.client,
        pb::RestoreRequest {
            backup_name: backup.clone(),
            collection_renames: [(spec.name.clone(), target.clone())].into(),
            skip_create_collection: true,
            load: true,
            ..Default::default()
        },
    )
    .await;
    server.wait_paused(Duration::from_secs(300)).await;
    flows::eventually("Milvus loads it", Duration::from_secs(120), || {
        let (m, target) = (m.clone(), target.clone());
        async move { m.loading_progress("default", &target).await.unwrap() == 100 }
    })
    .await;
    flows::cancelled_restore(&mut server.client, &id).await;
    assert_eq!(
        m.loading_progress(&mine.db, &target).await.unwrap(),
        0,
        "released again"
    );
    assert!(m.has_collection(&mine.db, &target).await.unwrap(), "kept");

    server.finish();
    data::drop_if_exists(&m, &mine.db, &target).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// The folders of the one partition of the backup in `folder` (`…/`), under
/// insert_log/ and delta_log/: what an import of it reads.
async fn partition_folders(bucket: &dyn ObjectStore, folder: &str) -> Vec<String> {
    let insert_logs = format!("{folder}binlogs/insert_log/");
    let keys = bucket.list(&insert_logs).await.unwrap();
    let rel = &keys[0].key[insert_logs.len()..];
    let part: Vec<&str> = rel.split('/').take(2).collect();
    let files = vec![
        format!("{insert_logs}{}/{}/", part[0], part[1]),
        format!("{folder}binlogs/delta_log/{}/{}/", part[0], part[1]),
    ];
    assert!(
        !bucket.list(&files[1]).await.unwrap().is_empty(),
        "the backup has delete logs"
    );
    files
}

/// Imports of `files` queued straight through Milvus (as another tool's
/// restore would) into 6 new collections of `spec`'s schema; their names.
async fn queue_imports(m: &MilvusClient, spec: &Spec, files: &[String]) -> Vec<String> {
    use milvus_backup::milvus::ImportRequest;
    let targets: Vec<String> = (0..6).map(|i| format!("{}_r{i}", spec.name)).collect();
    for t in &targets {
        data::create(m, &Spec::new(t)).await;
        m.import(&ImportRequest {
            db: spec.db.clone(),
            collection: t.clone(),
            partition: "_default".into(),
            files: files.to_vec(),
            options: vec![("backup".into(), "true".into())],
        })
        .await
        .unwrap();
    }
    targets
}

/// Waits until no Milvus import reads from `folder`.
async fn imports_ended(m: &MilvusClient, folder: &str) {
    flows::eventually(
        "Milvus's imports from the folder end",
        Duration::from_secs(300),
        || {
            let (m, folder) = (m.clone(), folder.to_string());
            async move {
                !m.all_imports().await.unwrap().into_iter().any(|t| {
                    t.phase == ImportPhase::Running
                        && t.files.iter().any(|f| f.starts_with(&folder))
                })
            }
        },
    )
    .await;
}

/// Every import into `targets` completed, each with `source`'s rows.
async fn imported_whole(
    m: &MilvusClient,
    spec: &Spec,
    targets: &[String],
    source: &[milvus_backup::milvus::rows::Row],
) {
    for t in targets {
        let tasks = m.collection_imports(&spec.db, t).await.unwrap();
        assert!(
            !tasks.is_empty() && tasks.iter().all(|x| x.phase == ImportPhase::Completed),
            "{t}: {tasks:?}"
        );
        let rows = flows::flushed_and_loaded(m, &Spec::new(t)).await;
        data::assert_rows_equal(t, source, &rows);
    }
}

/// Milvus import tasks that read a backup's own folder in place, asked
/// straight through Milvus's Import (as another tool's restore would), so no
/// job of ours holds the backup: a DeleteBackup meanwhile is refused with
/// FAILED_PRECONDITION naming the tasks and the folder, and removes nothing.
/// Once they ended, the delete goes through, and every collection imported
/// into has the backup's rows, its deletes applied. The code before removed
/// the folder under the imports.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_is_refused_while_milvus_imports_read_the_backups_folder() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("readby_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..300, 41).await;
    data::delete(&m, &spec, "pk in [5, 100]").await;
    let source = flows::flushed_and_loaded(&m, &spec).await;
    assert_eq!(source.len(), 298);
    let root = common::unique("readby_root");
    let mut server =
        process::Proc::start_rooted_paused(&cfg, "readby-state", &root, "", None).await;
    let backup = common::unique("readby_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;

    let bucket = process::rooted_bucket(&cfg);
    let folder = format!("{root}/{backup}/");
    let files = partition_folders(bucket.as_ref(), &folder).await;
    let targets = queue_imports(&m, &spec, &files).await;
    let err = server
        .client
        .delete_backup(pb::DeleteBackupRequest {
            name: backup.clone(),
            ..Default::default()
        })
        .await
        .expect_err("refused while Milvus imports read the folder");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("still read backup") && err.message().contains(&folder),
        "{err:?}"
    );
    assert!(
        !bucket.list(&folder).await.unwrap().is_empty(),
        "nothing removed"
    );

    imports_ended(&m, &folder).await;
    flows::delete_eventually(&server.client, &backup, "the delete once the imports ended").await;
    assert!(bucket.list(&folder).await.unwrap().is_empty(), "deleted");
    imported_whole(&m, &spec, &targets, &source).await;

    server.finish();
    for t in &targets {
        data::drop_if_exists(&m, &spec.db, t).await;
    }
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A full backup H and an incremental backup B reusing its binlogs. H's
/// delete is held right after its commit point (`delete.after_commit_point`)
/// while Milvus imports read H's folder in place (asked straight through
/// Milvus, as the Go tool's restore of H would); released, it stops
/// FAILED_PRECONDITION, H incomplete and its folder whole. B's delete, which
/// would remove what H left, is refused FAILED_PRECONDITION naming the
/// imports, and removes nothing of H's. Once they ended, it goes through:
/// both folders empty, every import whole. Before, it removed H's binlogs
/// under the running imports.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_leaves_a_deleted_backups_objects_while_milvus_imports_read_them() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("homeread_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..300, 43).await;
    data::delete(&m, &spec, "pk in [7, 200]").await;
    let source = flows::flushed_and_loaded(&m, &spec).await;
    let root = common::unique("homeread_root");
    let (mut server, go) =
        flows::held_rooted_at(&cfg, "homeread", &root, &["delete.after_commit_point"]).await;
    let (home, inc) = (common::unique("homeread_h"), common::unique("homeread_i"));
    flows::backup_collections(&mut server.client, &home, &[&spec.name]).await;
    flows::incremental_backup(&mut server.client, &inc, &[&spec.name]).await;
    let bucket = process::rooted_bucket(&cfg);
    let home_folder = format!("{root}/{home}/");
    let files = partition_folders(bucket.as_ref(), &home_folder).await;

    let home_delete = flows::detached_delete(&mut server.client, &home).await;
    server.wait_paused(Duration::from_secs(60)).await;
    let targets = queue_imports(&m, &spec, &files).await;
    std::fs::write(&go[0], b"").unwrap();
    let ended = flows::watched_delete_end(&mut server.client, &home_delete.id).await;
    assert_eq!(ended.state, pb::JobState::Failed as i32, "{ended:?}");
    let left = bucket.list(&home_folder).await.unwrap().len();
    assert!(left > 0, "H's folder stays");

    let err = server
        .client
        .delete_backup(pb::DeleteBackupRequest {
            name: inc.clone(),
            ..Default::default()
        })
        .await
        .expect_err("refused while Milvus imports read H's folder");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("still read backup") && err.message().contains(&home_folder),
        "{err:?}"
    );
    assert_eq!(
        bucket.list(&home_folder).await.unwrap().len(),
        left,
        "nothing of H's removed"
    );

    imports_ended(&m, &home_folder).await;
    flows::delete_eventually(&server.client, &inc, "B's delete once the imports ended").await;
    if !bucket.list(&home_folder).await.unwrap().is_empty() {
        flows::delete_eventually(&server.client, &home, "H's delete run again").await;
    }
    for folder in [&home_folder, &format!("{root}/{inc}/")] {
        assert!(bucket.list(folder).await.unwrap().is_empty(), "{folder}");
    }
    imported_whole(&m, &spec, &targets, &source).await;

    let _ = std::fs::remove_file(&go[0]);
    server.finish();
    for t in &targets {
        data::drop_if_exists(&m, &spec.db, t).await;
    }
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A replace of a loaded collection, its copy loaded once swapped in (the
/// implied load), cancelled while Milvus loads it (`restore.loading`): the
/// swap stands, with the backup's rows, and the cleanup keeps the load: the
/// copy serves in place of the loaded original, which is gone. (Releasing
/// it, as a version of 2026-12-05 did, left the collection unloaded.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_load_asked_after_the_swap_of_a_loaded_original_is_kept_when_cancelled() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("swapload_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 29).await;
    let rows = flows::flushed_and_loaded(&m, &spec).await;
    let root = common::unique("swapload_root");
    let mut server = process::Proc::start_rooted_paused(
        &cfg,
        "swapload-state",
        &root,
        "",
        Some("restore.loading"),
    )
    .await;
    let backup = common::unique("swapload_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let original = m.collection_id(&spec.db, &spec.name).await.unwrap();
    let id = flows::start_restore(
        &mut server.client,
        pb::RestoreRequest {
            backup_name: backup.clone(),
            drop_existing_collections: true,
            restore_index: true,
            ..Default::default()
        },
    )
    .await;
    server.wait_paused(Duration::from_secs(300)).await;
    flows::eventually(
        "Milvus loads the copy swapped in",
        Duration::from_secs(120),
        || {
            let (m, spec) = (m.clone(), spec.clone());
            async move { m.loading_progress(&spec.db, &spec.name).await.unwrap() == 100 }
        },
    )
    .await;
    flows::cancelled_restore(&mut server.client, &id).await;
    assert_ne!(
        m.collection_id(&spec.db, &spec.name).await.unwrap(),
        original,
        "the copy was swapped in"
    );
    assert_eq!(
        m.loading_progress(&spec.db, &spec.name).await.unwrap(),
        100,
        "still loaded"
    );
    assert_eq!(data::rows(&m, &spec, &spec.db, &spec.name, &[]).await, rows);

    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
