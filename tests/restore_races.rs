//! A user changes a restore's target while the restore runs, against the
//! real Milvus 2.3.5 and S3. Milvus 2.3.5's proxy crashes when asked about an
//! import whose collection was dropped, so the restore must notice by id, not
//! by name, and must leave what the user made alone.

mod common;

use std::time::Duration;

use common::data::{self, Spec};
use common::{flows, process, restores};
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;

/// Where a replace waits right before it drops the original.
const BEFORE_DROP: &str = "restore.swap.before_drop";

/// A restore paused at `failpoint` until `release` exists.
struct PausedRestore {
    spec: Spec,
    release: std::path::PathBuf,
    id: String,
    server: process::Proc,
}

/// A collection of `rows` rows, backed up by a server on a backup root of
/// its own, and its restore under the suffix `_t`, paused at `failpoint`.
async fn paused_restore(
    cfg: &milvus_backup::config::Config,
    m: &milvus_backup::milvus::MilvusClient,
    tag: &str,
    rows: i64,
    failpoint: &str,
) -> PausedRestore {
    let spec = Spec::new(&common::unique(&format!("{tag}_src")));
    data::create(m, &spec).await;
    data::insert(m, &spec, "", 0..rows, 5).await;
    data::flush(m, &spec.db, &spec.name).await;
    let release = std::env::temp_dir().join(common::unique(&format!("{tag}_release")));
    let failpoint = format!("{failpoint}@{}", release.display());
    let root = common::unique(&format!("{tag}_root"));
    let state = format!("{tag}-state");
    let mut server =
        process::Proc::start_rooted_paused(cfg, &state, &root, "", Some(&failpoint)).await;
    let backup = common::unique(&format!("{tag}_b"));
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let id = flows::start_restore(
        &mut server.client,
        pb::RestoreRequest {
            backup_name: backup,
            collection_suffix: "_t".into(),
            ..Default::default()
        },
    )
    .await;
    server.wait_paused(Duration::from_secs(120)).await;
    PausedRestore {
        spec,
        release,
        id,
        server,
    }
}

/// Cancels restores `ids`, paused at their failpoint, then lets them go on
/// (creates `release`); each ends CANCELLED: their last snapshots.
async fn cancel_then_release(
    server: &mut process::Proc,
    ids: &[String],
    release: &std::path::Path,
) -> Vec<pb::RestoreJob> {
    for id in ids {
        server
            .client
            .cancel_restore(pb::CancelRestoreRequest { id: id.clone() })
            .await
            .expect("cancel accepted");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(release, b"").unwrap();
    let mut ended = Vec::new();
    for id in ids {
        let job = tokio::time::timeout(
            Duration::from_secs(120),
            flows::watch_restore_to_end(&mut server.client, id),
        )
        .await
        .expect("the restore ends");
        assert_eq!(job.state, pb::JobState::Cancelled as i32, "{job:?}");
        ended.push(job);
    }
    ended
}

/// The restore waits on its imports at `restore.importing`; meanwhile the
/// user drops the target and makes a collection of their own under the name.
/// The job ends FAILED, naming both ids, without asking Milvus about the
/// imports of the dropped collection; Milvus still answers, and the user's
/// collection and rows are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_made_again_under_its_name_mid_import_is_noticed_by_id() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let PausedRestore {
        spec,
        release,
        id,
        mut server,
    } = paused_restore(&cfg, &m, "race", 300, "restore.importing").await;

    let target = format!("{}_t", spec.name);
    let restored_id = m.collection_id(&spec.db, &target).await.unwrap().unwrap();
    data::drop_after_imports(&m, &spec.db, &target).await;
    let mine = Spec::new(&target);
    data::create(&m, &mine).await;
    data::insert(&m, &mine, "", 0..40, 9).await;
    data::flush(&m, &mine.db, &mine.name).await;
    let my_id = m.collection_id(&mine.db, &target).await.unwrap().unwrap();
    std::fs::write(&release, b"").unwrap();

    let job = tokio::time::timeout(
        Duration::from_secs(120),
        flows::watch_restore_to_end(&mut server.client, &id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    assert!(
        job.error_message.contains(&format!("id {restored_id}"))
            && job
                .error_message
                .contains(&format!("made again (id {my_id})")),
        "{job:?}"
    );
    m.version().await.expect("Milvus still answers");
    assert_eq!(
        m.collection_id(&mine.db, &target).await.unwrap(),
        Some(my_id)
    );
    data::index(&m, &mine.db, &target).await;
    data::load(&m, &mine.db, &target).await;
    let rows = data::rows(&m, &mine, &mine.db, &target, &[]).await;
    assert_eq!(rows.len(), 40, "the user's rows are untouched");

    let _ = std::fs::remove_file(&release);
    server.finish();
    data::drop_if_exists(&m, &mine.db, &target).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A `skip_create_collection` restore of an incremental backup (its objects
/// are staged into one folder per partition) cancelled while Milvus still
/// has its imports queued, one at a time: cleanup keeps the staged binlogs
/// until those imports ended, so each reads whole folders (its deletes with
/// its rows) and the user's collection ends with exactly the backup's rows.
/// The code before removed the staging at once, under the queued imports.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_restore_keeps_its_staging_until_queued_imports_ended() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("stage_src"));
    let source = data::populated(&m, &spec, 400, 300, 31).await;
    let root = common::unique("stage_root");
    let mut server = process::Proc::start_rooted_paused(
        &cfg,
        "stage-state",
        &root,
        "",
        Some("restore.importing"),
    )
    .await;
    let (full, inc) = (common::unique("stage_f"), common::unique("stage_i"));
    flows::backup_collections(&mut server.client, &full, &[&spec.name]).await;
    flows::incremental_backup(&mut server.client, &inc, &[&spec.name]).await;

    // The user's own empty collection of the same schema, restored into.
    let target = format!("{}_into", spec.name);
    let mine = Spec::new(&target);
    data::create(&m, &mine).await;
    let id = flows::start_restore(
        &mut server.client,
        pb::RestoreRequest {
            backup_name: inc.clone(),
            collection_renames: [(spec.name.clone(), target.clone())].into(),
            skip_create_collection: true,
            ..Default::default()
        },
    )
    .await;
    server.wait_paused(Duration::from_secs(120)).await;
    let job = flows::cancelled_restore(&mut server.client, &id).await;
    assert!(job.staging_left.is_empty(), "{job:?}");
    let staged = common::process::rooted_bucket(&cfg)
        .list(&format!("restore-temp-{id}/"))
        .await
        .unwrap();
    assert!(staged.is_empty(), "staging left: {} objects", staged.len());

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
                    .all(|t| t.phase != milvus_backup::milvus::ImportPhase::Running)
            }
        },
    )
    .await;
    data::index(&m, &mine.db, &target).await;
    data::load(&m, &mine.db, &target).await;
    let rows = data::rows(&m, &mine, &mine.db, &target, &[]).await;
    data::assert_rows_equal(
        "the user's collection after the queued imports",
        &source,
        &rows,
    );

    server.finish();
    data::drop_if_exists(&m, &mine.db, &target).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// Runs `code` with pymilvus (the venv `scripts/test.sh` makes), connected
/// to the test Milvus as `utility`'s default connection.
fn pymilvus(cfg: &milvus_backup::config::Config, code: &str) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".it-env/pymilvus/bin/python");
    let uri = format!("http://{}:{}", cfg.milvus.address, cfg.milvus.port);
    let out = std::process::Command::new(py)
        .arg("-c")
        .arg(format!(
            "from pymilvus import connections, utility\nconnections.connect(uri={uri:?})\n{code}"
        ))
        .output()
        .expect("pymilvus venv (scripts/test.sh makes it)");
    assert!(
        out.status.success(),
        "{code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Milvus drops a collection's aliases with it, and resolves an alias to its
/// collection: a replace of a collection that has an alias, and a restore
/// into an alias's name, are refused before anything changes
/// (FAILED_PRECONDITION naming the alias), and the collection keeps its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aliases_are_never_dropped_by_a_replace_nor_restored_into() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("alias_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 3).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let backup = common::unique("alias_b");
    flows::backup_collections(&mut client, &backup, &[&spec.name]).await;
    let alias = common::unique("alias_a");
    pymilvus(
        &cfg,
        &format!("utility.create_alias({:?}, {alias:?})", spec.name),
    );
    let id = m.collection_id(&spec.db, &spec.name).await.unwrap();

    for (renames, named) in [
        (vec![], alias.clone()),
        (
            vec![(spec.name.clone(), alias.clone())],
            format!("is an alias of collection {}", spec.name),
        ),
    ] {
        let err = client
            .restore(pb::RestoreRequest {
                backup_name: backup.clone(),
                drop_existing_collections: true,
                collection_renames: renames.into_iter().collect(),
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains(&named), "{err:?}");
        assert_eq!(m.collection_id(&spec.db, &spec.name).await.unwrap(), id);
    }

    // An alias given to the original while a replace runs (after its plan
    // checked) stops the swap before the drop: the original keeps its id
    // and its alias. Before, the drop removed the alias with it.
    pymilvus(&cfg, &format!("utility.drop_alias({alias:?})"));
    let release = tempfile::tempdir().unwrap();
    let go = release.path().join("go");
    let failpoint = format!("restore.swap.before_drop@{}", go.display());
    let mut swapper = process::Proc::start(&cfg, "alias-swap", "", Some(&failpoint)).await;
    let job_id = flows::start_restore(
        &mut swapper.client,
        pb::RestoreRequest {
            backup_name: backup.clone(),
            drop_existing_collections: true,
            ..Default::default()
        },
    )
    .await;
    swapper.wait_paused(Duration::from_secs(180)).await;
    pymilvus(
        &cfg,
        &format!("utility.create_alias({:?}, {alias:?})", spec.name),
    );
    std::fs::write(&go, b"").unwrap();
    let job = tokio::time::timeout(
        Duration::from_secs(300),
        flows::watch_restore_to_end(&mut swapper.client, &job_id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    assert!(
        job.error_message.contains("was given aliases") && job.error_message.contains(&alias),
        "{job:?}"
    );
    assert_eq!(m.collection_id(&spec.db, &spec.name).await.unwrap(), id);
    assert_eq!(
        m.collection_id(&spec.db, &alias).await.unwrap(),
        id,
        "the alias still leads to the original"
    );
    swapper.finish();

    pymilvus(&cfg, &format!("utility.drop_alias({alias:?})"));
    flows::delete_eventually(&client, &backup, "the backup").await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A restore cancelled right after Milvus made its collection, before the
/// job recorded it (`restore.created`): the create and its record run to
/// their end whatever the cancel, and cleanup waits for them, so the
/// cancelled restore leaves no collection behind. The code before dropped
/// the job at the pause and left the new collection, unknown to cleanup.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_cancelled_as_milvus_makes_its_collection_leaves_none() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let PausedRestore {
        spec,
        release,
        id,
        mut server,
    } = paused_restore(&cfg, &m, "created", 50, "restore.created").await;
    let target = format!("{}_t", spec.name);
    assert!(
        m.collection_id(&spec.db, &target).await.unwrap().is_some(),
        "Milvus made the collection before the pause"
    );
    let job = cancel_then_release(&mut server, std::slice::from_ref(&id), &release)
        .await
        .remove(0);
    assert_eq!(
        m.collection_id(&spec.db, &target).await.unwrap(),
        None,
        "the collection the cancelled restore made is dropped: {job:?}"
    );
    assert!(
        m.collection_id(&spec.db, &spec.name)
            .await
            .unwrap()
            .is_some(),
        "the source stays"
    );

    let _ = std::fs::remove_file(&release);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &target).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// Two restores into databases that did not exist, both cancelled right
/// after Milvus made their collections (`restore.created`). Meanwhile the
/// user makes a collection of their own in the second database. Cleanup
/// drops each restore's collection, then the database it created when that
/// is empty: the first database goes, the second stays with the user's
/// collection. The code before left both databases.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_restore_drops_the_database_it_created_when_empty() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("newdb_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..50, 6).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let release = std::env::temp_dir().join(common::unique("newdb_release"));
    let failpoint = format!("restore.created@{}", release.display());
    let root = common::unique("newdb_root");
    let mut server =
        process::Proc::start_rooted_paused(&cfg, "newdb-state", &root, "", Some(&failpoint)).await;
    let backup = common::unique("newdb_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let (emptied, filled) = (common::unique("rdb_a"), common::unique("rdb_b"));
    let mut ids = Vec::new();
    for (n, db) in [&emptied, &filled].into_iter().enumerate() {
        let into = format!("{db}.{}", spec.name);
        let id = flows::start_restore(
            &mut server.client,
            pb::RestoreRequest {
                backup_name: backup.clone(),
                collection_renames: [(format!("default.{}", spec.name), into)].into(),
                ..Default::default()
            },
        )
        .await;
        ids.push(id);
        flows::eventually("the restore pauses", Duration::from_secs(120), || {
            let log = server.log.clone();
            async move {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                text.matches("failpoint reached").count() > n
            }
        })
        .await;
    }
    let dbs = m.list_databases().await.unwrap();
    assert!(dbs.contains(&emptied) && dbs.contains(&filled), "{dbs:?}");
    let mine = Spec {
        db: filled.clone(),
        ..Spec::new("users_own")
    };
    data::create(&m, &mine).await;
    cancel_then_release(&mut server, &ids, &release).await;
    let dbs = m.list_databases().await.unwrap();
    assert!(
        !dbs.contains(&emptied),
        "the database the restore created, left empty, is dropped: {dbs:?}"
    );
    assert!(dbs.contains(&filled), "the user's database stays: {dbs:?}");
    assert_eq!(
        m.list_collections(&filled).await.unwrap(),
        ["users_own"],
        "only the user's collection is left in it"
    );

    let _ = std::fs::remove_file(&release);
    server.finish();
    data::drop_if_exists(&m, &filled, "users_own").await;
    m.drop_database(&filled).await.unwrap();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A replace with `restore_index` of a collection that was loaded at backup
/// time, without `load`: its copy is not loaded beside the loaded original
/// (both would hold query nodes' memory until the swap), and is loaded once
/// swapped in. Seen paused right before the drop (`restore.swap.before_drop`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replace_loads_its_copy_after_the_swap_unless_asked_to_load() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let r = restores::replace_paused_at(&cfg, &m, "loadswap", BEFORE_DROP, true).await;
    let (spec, copy, mut server) = (r.spec, r.copy, r.server);
    assert_eq!(
        m.loading_progress(&spec.db, &copy).await.unwrap(),
        0,
        "copy"
    );
    assert_eq!(
        m.loading_progress(&spec.db, &spec.name).await.unwrap(),
        100,
        "the original still serves"
    );
    flows::released_to_success(&mut server, &r.go, &r.id).await;
    assert_ne!(
        m.collection_id(&spec.db, &spec.name).await.unwrap(),
        r.original
    );
    assert_eq!(
        m.loading_progress(&spec.db, &spec.name).await.unwrap(),
        100,
        "loaded once swapped in"
    );
    let restored = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    assert_eq!(restored, r.rows);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A replace paused right before it drops the original
/// (`restore.swap.before_drop`) while the user drops the restored copy (a
/// leftover-looking `_restoring_` collection): the job ends FAILED naming the
/// copy, and the original keeps its id and its rows. The code before dropped
/// the original, then could not rename the missing copy: the user's
/// collection was gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replace_whose_copy_was_dropped_meanwhile_keeps_the_original() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let mut r = restores::replace_paused_at(&cfg, &m, "copygone", BEFORE_DROP, false).await;
    m.drop_collection(&r.spec.db, &r.copy).await.unwrap();
    r.go_on_to_failure().await;
    let spec = &r.spec;
    assert_eq!(
        m.collection_id(&spec.db, &spec.name).await.unwrap(),
        r.original,
        "the original is kept"
    );
    assert_eq!(
        data::rows(&m, spec, &spec.db, &spec.name, &[]).await,
        r.rows
    );
    r.server.finish();
    let _ = std::fs::remove_file(&r.go);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A replace paused right after it dropped the original
/// (`restore.swap.after_drop`) while the user drops the restored copy and
/// makes a collection of their own under its name: the job ends FAILED
/// naming the copy, renames nothing into the target, and leaves the user's
/// collection under the copy's name as it is (its id and its rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replace_whose_copy_was_replaced_after_the_drop_renames_nothing() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let mut r =
        restores::replace_paused_at(&cfg, &m, "copyswap", "restore.swap.after_drop", false).await;
    let (spec, copy) = (r.spec.clone(), r.copy.clone());
    assert!(
        !m.has_collection(&spec.db, &spec.name).await.unwrap(),
        "dropped by the job"
    );
    m.drop_collection(&spec.db, &copy).await.unwrap();
    let theirs = Spec::new(&copy);
    data::create(&m, &theirs).await;
    data::insert(&m, &theirs, "", 0..10, 5).await;
    data::flush(&m, &theirs.db, &theirs.name).await;
    let theirs_id = m.collection_id(&theirs.db, &copy).await.unwrap();
    let job = r.go_on_to_failure().await;
    assert!(job.error_message.contains("nothing was renamed"), "{job:?}");
    assert!(
        !m.has_collection(&spec.db, &spec.name).await.unwrap(),
        "nothing is renamed into the target"
    );
    assert_eq!(
        m.collection_id(&theirs.db, &copy).await.unwrap(),
        theirs_id,
        "the user's collection under the copy's name stays"
    );
    assert_eq!(restores::rows_of(&m, &theirs, &copy).await.len(), 10);
    r.server.finish();
    let _ = std::fs::remove_file(&r.go);
    data::drop_if_exists(&m, &theirs.db, &copy).await;
}
