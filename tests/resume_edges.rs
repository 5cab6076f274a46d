//! Jobs resumed after their server paused or died never act on what they
//! did not check, on the real Milvus 2.3.5 and S3, with server processes on
//! backup roots of their own (so that no other test's server takes their
//! jobs over):
//! - a server paused (SIGSTOP) past its lease's expiry: when it wakes, its
//!   job stops as one whose lease was lost, is neither failed nor cleaned
//!   up, and is resumed from its records by the takeover (here, the same
//!   server's): a `drop_existing` restore paused right after it dropped the
//!   original ends with the restored copy under the target's name, never
//!   with the target missing;
//! - a `skip_create_collection` restore killed while importing its first
//!   collection, whose second target the user then made again with rows of
//!   their own: the restarted server imports nothing into that collection
//!   (FAILED_PRECONDITION naming it), and the user's rows stay as they were;
//! - an incremental backup whose server is paused past its hold on its base
//!   while the CLI deletes the base: it never completes naming the deleted
//!   objects (it fails, or is resumed and copies them itself), and whatever
//!   is complete afterwards verifies;
//! - a backup whose server died and whose collection was dropped meanwhile
//!   ends FAILED `not_found` (its kind kept), and what it copied is removed:
//!   its name can be used again;
//! - a restore retried with its `request_id` on another replica, and on its
//!   own server after a restart, gets the same job: the collection it made
//!   (and the rows written to it since) is never replaced again;
//! - a backup whose server died mid-copy, deleted by the CLI: the delete ends
//!   the job CANCELLED first, so no server resumes it into the deleted
//!   folder, and the name can be used again;
//! - a backup taken over whose folder holds another job's plan is not
//!   resumed, and its cleanup leaves that folder whole.

mod common;

use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use common::process::Proc;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replace_paused_past_its_lease_after_the_drop_is_resumed_to_the_copy() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("lexp_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..300, 61).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let backed_up = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    let root = common::unique("lexp_root");
    let release = std::env::temp_dir().join(common::unique("lexp_release"));
    let failpoint = format!("restore.swap.after_drop@{}", release.display());
    let mut server = Proc::start_rooted_paused(&cfg, "lexp", &root, "", Some(&failpoint)).await;
    let name = common::unique("lexp_b");
    flows::backup_collections(&mut server.client, &name, &[&spec.name]).await;
    // The original moves on after the backup; the replace restores the backup.
    data::insert(&m, &spec, "", 300..400, 61).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let original = m.collection_id(&spec.db, &spec.name).await.unwrap();

    let id = flows::start_restore(
        &mut server.client,
        pb::RestoreRequest {
            backup_name: name.clone(),
            drop_existing_collections: true,
            ..flows::restore_loaded_request(&name, "")
        },
    )
    .await;
    server.wait_paused(Duration::from_secs(180)).await;
    assert!(
        !m.has_collection(&spec.db, &spec.name).await.unwrap(),
        "paused after the drop"
    );
    // Paused past its 3 s lease, then let on.
    server.signal("STOP");
    tokio::time::sleep(Duration::from_secs(5)).await;
    std::fs::write(&release, b"").unwrap();
    server.signal("CONT");

    let job =
        flows::poll_restore_to_end(&mut server.client.clone(), &id, Duration::from_secs(120)).await;
    assert_eq!(job.state, pb::JobState::Succeeded as i32, "{job:?}");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.contains("expired before it was renewed")
            || log.contains("another process took it over"),
        "the job stopped for its lease"
    );
    let now = m.collection_id(&spec.db, &spec.name).await.unwrap();
    assert_ne!(now, original, "the target is the restored copy");
    let temp = &job.collections[0].temp_collection_name;
    assert!(
        !m.has_collection(&spec.db, temp).await.unwrap(),
        "the temporary collection is renamed away"
    );
    let rows = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    data::assert_rows_equal("after the pause", &backed_up, &rows);
    println!(
        "resumed to the copy: {} rows, job {id} SUCCEEDED",
        rows.len()
    );
    let _ = std::fs::remove_file(&release);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_restore_imports_nothing_into_a_collection_made_again_meanwhile() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let tag = common::unique("rskip");
    let sources: Vec<Spec> = ["a", "b"]
        .iter()
        .map(|s| Spec::new(&format!("{tag}_{s}")))
        .collect();
    for s in &sources {
        data::create(&m, s).await;
        data::insert(&m, s, "", 0..200, 67).await;
        data::flush(&m, &s.db, &s.name).await;
    }
    let root = common::unique("rskip_root");
    let first = format!("{}_sk", sources[0].name);
    let failpoint = format!("restore.importing:default.{first}");
    let server = Proc::start_rooted_paused(&cfg, "rskip", &root, "", Some(&failpoint)).await;
    let name = common::unique("rskip_b");
    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    flows::backup_collections(&mut server.client.clone(), &name, &names).await;
    // The existing, empty targets of a skip_create restore.
    let targets: Vec<Spec> = sources
        .iter()
        .map(|s| Spec::new(&format!("{}_sk", s.name)))
        .collect();
    for t in &targets {
        data::create(&m, t).await;
    }
    let id = flows::start_restore(
        &mut server.client.clone(),
        pb::RestoreRequest {
            skip_create_collection: true,
            ..flows::restore_request(&name, "_sk")
        },
    )
    .await;
    server.wait_paused(Duration::from_secs(180)).await;

    // Killed while importing the first; the user makes the second again,
    // with rows of their own.
    let mut server = server;
    server.kill();
    let second = &targets[1];
    let checked = m.collection_id(&second.db, &second.name).await.unwrap();
    data::drop_if_exists(&m, &second.db, &second.name).await;
    data::create(&m, second).await;
    data::insert(&m, second, "", 1000..1005, 3).await;
    data::flush(&m, &second.db, &second.name).await;
    let theirs = m.collection_id(&second.db, &second.name).await.unwrap();
    assert_ne!(theirs, checked);

    let server = server.kill_and_restart().await;
    let job =
        flows::poll_restore_to_end(&mut server.client.clone(), &id, Duration::from_secs(180)).await;
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    assert_eq!(job.error_kind, "failed_precondition", "{job:?}");
    // Refused before its partitions, by the check before each change.
    assert!(
        job.error_message.contains(&second.name)
            && job
                .error_message
                .contains("no longer the collection this restore fills"),
        "{}",
        job.error_message
    );
    // The user's collection holds their 5 rows, nothing else.
    data::index(&m, &second.db, &second.name).await;
    data::load(&m, &second.db, &second.name).await;
    let rows = data::rows(&m, second, &second.db, &second.name, &[]).await;
    assert_eq!(rows.len(), 5, "the user's rows only");
    assert_eq!(
        m.collection_id(&second.db, &second.name).await.unwrap(),
        theirs,
        "their collection stays"
    );
    println!("resumed restore refused: {}", job.error_message);
    server.finish();
    for s in sources.iter().chain(&targets) {
        data::drop_if_exists(&m, &s.db, &s.name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incremental_backup_paused_past_its_base_hold_never_names_deleted_objects() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("rinc_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..300, 71).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("rinc_root");
    let release = std::env::temp_dir().join(common::unique("rinc_release"));
    let failpoint = format!("backup.incremental.bases_held@{}", release.display());
    let owner = Proc::start_rooted_paused(&cfg, "rinc_a", &root, "", Some(&failpoint)).await;
    let base = common::unique("rinc_full");
    flows::backup_collections(&mut owner.client.clone(), &base, &[&spec.name]).await;
    let inc = common::unique("rinc_inc");
    let mut client = owner.client.clone();
    let request = pb::CreateBackupRequest {
        incremental: Some(true),
        ..flows::backup_request(&inc, &[&spec.name])
    };
    let _started = tokio::spawn(async move { client.create_backup(request).await });
    owner.wait_paused(Duration::from_secs(120)).await;

    // Paused past its 3 s hold on the base, which a CLI deletes (a process
    // that takes no job over).
    owner.signal("STOP");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let config = owner.config().to_path_buf();
    let deleted = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
            .arg("--config")
            .arg(&config)
            .args(["delete", "-n", &base])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        deleted.status.success(),
        "the base is deleted: its only reader's hold expired: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    println!("{}", String::from_utf8_lossy(&deleted.stdout).trim());
    std::fs::write(&release, b"").unwrap();
    owner.signal("CONT");

    let end =
        flows::watch_backup_to_end(&mut owner.client.clone(), &inc, Duration::from_secs(180)).await;
    match pb::JobState::try_from(end.state) {
        Ok(pb::JobState::Succeeded) => {
            flows::assert_verifies(&mut owner.client.clone(), &inc, "the incremental backup").await;
            println!("the incremental backup was resumed and copied what it needs");
        }
        Ok(pb::JobState::Failed) => {
            assert!(end.error_message.contains("lost its hold"), "{end:?}");
            let mut listed = owner
                .client
                .clone()
                .list_backups(pb::ListBackupsRequest::default())
                .await
                .unwrap()
                .into_inner();
            while let Some(b) = listed.message().await.unwrap() {
                let b = b.backup.unwrap();
                assert!(b.name != inc, "a failed backup is not listed: {b:?}");
            }
            println!("the incremental backup failed: {}", end.error_message);
        }
        _ => panic!("the incremental backup did not end: {end:?}"),
    }
    let _ = std::fs::remove_file(&release);
    owner.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_whose_collection_went_with_its_server_ends_not_found_and_frees_its_name() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("rgone_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..200, 73).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("rgone_root");
    let mut owner =
        Proc::start_rooted_paused(&cfg, "rgone", &root, "", Some("backup.describing")).await;
    let name = common::unique("rgone_b");
    let mut client = owner.client.clone();
    let request = flows::backup_request(&name, &[&spec.name]);
    let _started = tokio::spawn(async move { client.create_backup(request).await });
    owner.wait_paused(Duration::from_secs(120)).await;
    // Its server dies, and its collection goes too.
    owner.kill();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;

    let taker = Proc::start_rooted(&cfg, "rgone_t", &root, "").await;
    let end =
        flows::watch_backup_to_end(&mut taker.client.clone(), &name, Duration::from_secs(120))
            .await;
    assert_eq!(end.state, pb::JobState::Failed as i32, "{end:?}");
    assert_eq!(end.error_kind, "not_found", "{end:?}");
    assert!(
        end.error_message.contains("could not be resumed")
            && end.error_message.contains(&spec.name),
        "{}",
        end.error_message
    );
    // What it had copied is gone: the name can be used again.
    let again = Spec::new(&common::unique("rgone_again"));
    data::create(&m, &again).await;
    data::insert(&m, &again, "", 0..10, 5).await;
    data::flush(&m, &again.db, &again.name).await;
    flows::backup_collections(&mut taker.client.clone(), &name, &[&again.name]).await;
    println!("ended {}: {}", end.error_kind, end.error_message);
    taker.finish();
    owner.finish();
    data::drop_if_exists(&m, &again.db, &again.name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_request_id_gets_the_same_restore_on_any_server_and_after_a_restart() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("rrid_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..300, 79).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let root = common::unique("rrid_root");
    let a = Proc::start_rooted(&cfg, "rrid_a", &root, "").await;
    let b = Proc::start_rooted(&cfg, "rrid_b", &root, "").await;
    let name = common::unique("rrid_b");
    flows::backup_collections(&mut a.client.clone(), &name, &[&spec.name]).await;
    let request_id = common::unique("rrid_req");
    let request = pb::RestoreRequest {
        request_id: request_id.clone(),
        drop_existing_collections: true,
        ..flows::restore_loaded_request(&name, "_rid")
    };
    let id = flows::start_restore(&mut a.client.clone(), request.clone()).await;
    let end = flows::watch_restore_to_end(&mut a.client.clone(), &id).await;
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    // The user writes to what the restore made.
    let target = format!("{}_rid", spec.name);
    let made = m.collection_id(&spec.db, &target).await.unwrap();
    data::insert(&m, &Spec::new(&target), "", 1000..1007, 5).await;
    data::flush(&m, &spec.db, &target).await;

    // Retried on the other replica, then on its own server after a restart.
    let on_b = flows::start_restore(&mut b.client.clone(), request.clone()).await;
    assert_eq!(on_b, id, "the other replica answers with the same job");
    let a = a.kill_and_restart().await;
    let again = flows::start_restore(&mut a.client.clone(), request.clone()).await;
    assert_eq!(again, id, "the restarted server answers with the same job");
    let job = flows::get_restore(&mut a.client.clone(), &id).await;
    assert_eq!(job.state, pb::JobState::Succeeded as i32, "{job:?}");
    assert_eq!(
        m.collection_id(&spec.db, &target).await.unwrap(),
        made,
        "the collection the restore made is not replaced"
    );
    let rows = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    assert_eq!(rows.len(), 307, "the restored rows and the user's 7");
    println!(
        "request id {request_id}: job {id} on both servers, {} rows kept",
        rows.len()
    );
    a.finish();
    b.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}

/// A backup of a new collection of 200 rows, by a server on a new root
/// paused at `point` and then killed, 4 s ago (past its 3 s lease): the
/// collection, the killed server, the backup's name and the root.
async fn killed_at(
    cfg: &milvus_backup::config::Config,
    m: &milvus_backup::milvus::MilvusClient,
    tag: &str,
    point: &str,
) -> (Spec, Proc, String, String) {
    let spec = Spec::new(&common::unique(&format!("{tag}_src")));
    data::create(m, &spec).await;
    data::insert(m, &spec, "", 0..200, 79).await;
    data::flush(m, &spec.db, &spec.name).await;
    let root = common::unique(&format!("{tag}_root"));
    let mut owner = Proc::start_rooted_paused(cfg, tag, &root, "", Some(point)).await;
    let name = common::unique(&format!("{tag}_b"));
    let mut client = owner.client.clone();
    let request = flows::backup_request(&name, &[&spec.name]);
    let _started = tokio::spawn(async move { client.create_backup(request).await });
    owner.wait_paused(Duration::from_secs(120)).await;
    owner.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    (spec, owner, name, root)
}

/// Deletes backup `name` under `root` with the CLI on `config`: it succeeds,
/// leaves nothing in the folder, and ends the job's shared record CANCELLED;
/// that record.
async fn deleted_by_cli(
    config: &std::path::Path,
    store: &std::sync::Arc<dyn milvus_backup::storage::ObjectStore>,
    root: &str,
    name: &str,
) -> milvus_backup::jobs::BackupSnapshot {
    let deleted = cli(config, &["delete", "-n", name]).await;
    let said = String::from_utf8_lossy(&deleted.stderr);
    assert!(
        deleted.status.success(),
        "the CLI deletes the backup: {said}"
    );
    let left = store.list(&format!("{root}/{name}/")).await.unwrap();
    assert!(left.is_empty(), "nothing left: {left:?}");
    let records = milvus_backup::jobs::SharedRecords::new(store.clone(), root);
    let ended = records
        .load::<milvus_backup::jobs::BackupSnapshot>(name)
        .await
        .unwrap()
        .expect("the job's shared record");
    let cancelled = milvus_backup::jobs::JobState::Cancelled;
    assert_eq!(ended.state, cancelled, "{ended:?}");
    ended
}

/// The CLI run with `args` on `config`.
async fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    let (config, args) = (
        config.to_path_buf(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
            .arg("--config")
            .arg(&config)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_ends_an_interrupted_backup_job_which_is_then_not_resumed() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, owner, name, root) = killed_at(&cfg, &m, "rpend", "backup.described").await;
    // Past its 3 s lease, a CLI (which takes no job over) deletes the name.
    let store = common::process::rooted_bucket(&cfg);
    let prefix = format!("{root}/{name}/");
    assert!(
        store
            .list(&prefix)
            .await
            .unwrap()
            .iter()
            .any(|o| o.key.ends_with("resume-plan.json")),
        "the dead job's folder, with its plan"
    );
    // Made again by the CLI: refused, saying the folder is incomplete and
    // what frees it.
    let made = cli(owner.config(), &["create", "-n", &name, "-c", &spec.name]).await;
    let said = String::from_utf8_lossy(&made.stderr).to_string();
    assert_eq!(made.status.code(), Some(4), "{said}");
    assert!(
        said.contains("incomplete") && said.contains("DeleteBackup"),
        "{said}"
    );
    let ended = deleted_by_cli(owner.config(), &store, &root, &name).await;
    assert!(
        ended
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("not resumed"),
        "{ended:?}"
    );

    // A server on the root does not resume it (the code before would have
    // made the deleted backup again); the name is free.
    let taker = Proc::start_rooted(&cfg, "rpend_t", &root, "").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        store.list(&prefix).await.unwrap().is_empty(),
        "not resumed into the deleted folder"
    );
    let log = std::fs::read_to_string(&taker.log).unwrap_or_default();
    assert!(!log.contains("took over a backup"), "{log}");
    let mut client = taker.client.clone();
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    flows::assert_verifies(&mut client, &name, "a new backup under the name").await;
    println!("the interrupted job ended: {:?}", ended.error);
    owner.finish();
    taker.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A backup whose server died mid-copy, and whose folder then holds the plan
/// of another job (here, rewritten by hand): the server that takes it over
/// does not resume it (FAILED, naming both jobs), and its cleanup leaves the
/// folder to that job. The code before removed the other job's folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_taken_over_backup_leaves_a_folder_another_job_planned() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("rforeign_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..200, 83).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("rforeign_root");
    let mut owner =
        Proc::start_rooted_paused(&cfg, "rforeign", &root, "", Some("backup.described")).await;
    let name = common::unique("rforeign_b");
    let mut client = owner.client.clone();
    let request = flows::backup_request(&name, &[&spec.name]);
    let _started = tokio::spawn(async move { client.create_backup(request).await });
    owner.wait_paused(Duration::from_secs(120)).await;
    owner.kill();
    let store = common::process::rooted_bucket(&cfg);
    let prefix = format!("{root}/{name}/");
    let plan_key = format!("{prefix}resume-plan.json");
    let mut plan: serde_json::Value =
        serde_json::from_slice(&store.read(&plan_key).await.unwrap()).unwrap();
    plan["job"] = "another-job".into();
    store
        .write(&plan_key, serde_json::to_vec(&plan).unwrap().into())
        .await
        .unwrap();
    let before = store.list(&prefix).await.unwrap();
    assert!(before.len() > 1, "the dead job copied binlogs: {before:?}");

    let taker = Proc::start_rooted(&cfg, "rforeign_t", &root, "").await;
    let mut client = taker.client.clone();
    let end = flows::watch_backup_to_end(&mut client, &name, Duration::from_secs(120)).await;
    assert_eq!(end.state, pb::JobState::Failed as i32, "{end:?}");
    assert!(
        end.error_message
            .contains("holds the plan of job another-job"),
        "{end:?}"
    );
    let after = store.list(&prefix).await.unwrap();
    let keys = |l: &[milvus_backup::storage::ObjectInfo]| {
        l.iter().map(|o| o.key.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&after),
        keys(&before),
        "the other job's folder is left whole"
    );
    let kept: serde_json::Value =
        serde_json::from_slice(&store.read(&plan_key).await.unwrap()).unwrap();
    assert_eq!(kept["job"], "another-job");
    let all: Vec<String> = keys(&after);
    store.delete(&all).await.unwrap();
    owner.finish();
    taker.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A backup whose job wrote its commit point (paused at `backup.committed`)
/// and whose server then died, the commit point damaged since (not JSON): a
/// delete by name removes the damaged backup and ends the job's record
/// CANCELLED, so that no takeover resumes it into the removed folder. Before,
/// such a delete was refused DATA_LOSS; ending the record came with allowing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_damaged_backup_whose_job_never_ended_is_deleted_and_its_job_ended() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, owner, name, root) = killed_at(&cfg, &m, "dmgend", "backup.committed").await;
    let store = common::process::rooted_bucket(&cfg);
    let prefix = format!("{root}/{name}/");
    let commit_point = format!("{prefix}meta/full_meta.json");
    store
        .write(&commit_point, bytes::Bytes::from_static(b"{not json"))
        .await
        .unwrap();

    deleted_by_cli(owner.config(), &store, &root, &name).await;
    owner.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
