//! A restore resumed after a SIGKILL, on the real Milvus 2.3.5 and S3: a
//! replace killed at every step of its swap ends as the restored copy, one
//! killed on its third collection keeps the first two, and a resumed job
//! never imports into, drops or replaces a collection the user made under
//! its target's name meanwhile; a swap, collection or database its cleanup
//! could not finish (Milvus away) is finished at the next start, or by a
//! live server's next look once Milvus answers.

mod common;
#[path = "common/figures.rs"]
mod figures;

use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use common::process;
use common::restores::{backed_up, restore_req, rows_of, source};
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;

/// A `drop_existing` restore killed at each step of its swap: the restarted
/// server resumes it from the step its record shows, so the target ends as
/// the full restored copy, row for row, never missing, the job SUCCEEDED
/// under the same id, and no temporary collection is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_at_every_step_of_the_swap_is_resumed_to_the_copy() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, backed_up, backup) = backed_up(&cfg, &m, "swap", 600).await;
    // The original moves on after the backup: 100 more rows.
    data::insert(&m, &spec, "", 600..700, 7).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let original = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    assert_eq!(original.len(), 700);

    let mut figures = Vec::new();
    for step in [
        "restore.swap.before_drop",
        "restore.swap.dropped",
        "restore.swap.after_drop",
        "restore.swap.renamed",
        "restore.swap.after_rename",
    ] {
        let before = m.collection_id(&spec.db, &spec.name).await.unwrap();
        let mut server = process::Proc::start(&cfg, "swap-state", "", Some(step)).await;
        let id = flows::start_restore(&mut server.client, restore_req(&backup, "", true)).await;
        server.wait_paused(Duration::from_secs(180)).await;
        let server = server.kill_and_restart().await;
        let mut client = server.client.clone();
        let job = tokio::time::timeout(
            Duration::from_secs(300),
            flows::watch_restore_to_end(&mut client, &id),
        )
        .await
        .unwrap_or_else(|_| panic!("{step}: the restore did not end"));
        assert_eq!(job.state, pb::JobState::Succeeded as i32, "{step}: {job:?}");
        let temp = &job.collections[0].temp_collection_name;
        assert!(!temp.is_empty(), "{step}: {job:?}");
        assert!(
            !m.has_collection(&spec.db, temp).await.unwrap(),
            "{step}: the temporary collection is renamed away"
        );
        assert_ne!(
            m.collection_id(&spec.db, &spec.name).await.unwrap(),
            before,
            "{step}: the target is the restored copy"
        );
        let now = rows_of(&m, &spec, &spec.name).await;
        data::assert_rows_equal(&format!("{step}: the restored copy"), &backed_up, &now);
        figures.push(format!("{step}: copy"));
        // The resumed job let go of the target at its end.
        let leases = milvus_backup::context::Context::from_config(&cfg)
            .unwrap()
            .leases();
        let lease = format!("target/{}.{}", spec.db, spec.name);
        assert!(
            leases.holder(&lease).await.unwrap().is_none(),
            "{step}: the target's lease is free"
        );
        server.finish();
    }
    figures::publish(
        "restore_resume",
        &[format!(
            "drop_existing replace killed at each of {} swap steps, resumed by the restarted \
             server and ending as: {}",
            figures.len(),
            figures.join(", ")
        )],
    );
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A restore killed mid-import; the user then drops its target and makes a
/// collection of their own under the name. The restarted server does not
/// resume into it (its id is not the one the job created): the job ends
/// FAILED, and cleanup leaves the user's collection alone. On a backup root
/// of its own, so that no other test's server takes the job over first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_restore_leaves_a_collection_someone_else_made_alone() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, _) = source(&m, &common::unique("own"), 400).await;
    let root = common::unique("own_root");
    let mut server =
        process::Proc::start_rooted_paused(&cfg, "own-state", &root, "", Some("restore.importing"))
            .await;
    let backup = common::unique("own_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let target = format!("{}_t", spec.name);
    let id = flows::start_restore(&mut server.client, restore_req(&backup, "_t", false)).await;
    server.wait_paused(Duration::from_secs(120)).await;
    server.kill();

    // The user's own collection under the target name, with 50 rows.
    data::drop_after_imports(&m, &spec.db, &target).await;
    let mine = Spec::new(&target);
    data::create(&m, &mine).await;
    data::insert(&m, &mine, "", 0..50, 99).await;
    data::flush(&m, &mine.db, &mine.name).await;
    let my_id = m.collection_id(&mine.db, &target).await.unwrap();

    let server = server.kill_and_restart().await;
    let mut client = server.client.clone();
    let job = tokio::time::timeout(
        Duration::from_secs(300),
        flows::watch_restore_to_end(&mut client, &id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    assert!(
        job.error_message
            .contains("no longer the collection this restore created"),
        "{job:?}"
    );
    process::wait_for_log(&server.log, "left alone", Duration::from_secs(30)).await;
    assert_eq!(
        m.collection_id(&mine.db, &target).await.unwrap(),
        my_id,
        "the user's collection survives"
    );
    let rows = rows_of(&m, &mine, &target).await;
    assert_eq!(rows.len(), 50, "the user's rows are untouched");
    server.finish();
    data::drop_if_exists(&m, &mine.db, &target).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A replace of three collections killed while the third imports: the
/// restarted server resumes the job; the first two, already swapped in, are
/// not restored again (their ids are those at the kill), and the third is
/// finished. All three end as the restored copies, row for row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_on_the_third_collection_keeps_the_first_two_and_resumes_the_third() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let mut specs = Vec::new();
    for i in 0..3 {
        specs.push(source(&m, &common::unique(&format!("three{i}")), 300).await);
    }
    let backup = common::unique("three_b");
    {
        let server = common::TestServer::start(&cfg).await;
        let names: Vec<&str> = specs.iter().map(|(s, _)| s.name.as_str()).collect();
        flows::backup_collections(&mut server.client.clone(), &backup, &names).await;
    }
    // Each original moves on after the backup.
    let mut originals = Vec::new();
    for (spec, _) in &specs {
        data::insert(&m, spec, "", 300..350, 7).await;
        data::flush(&m, &spec.db, &spec.name).await;
        originals.push(data::rows(&m, spec, &spec.db, &spec.name, &[]).await);
    }
    // The backup restores its collections in its own order: the last is "the third".
    let third = {
        let server = common::TestServer::start(&cfg).await;
        let b = flows::get_backup(&mut server.client.clone(), &backup).await;
        b.collections.last().unwrap().collection_name.clone()
    };
    let failpoint = format!("restore.importing:default.{third}");
    let mut server = process::Proc::start(&cfg, "three-state", "", Some(&failpoint)).await;
    let id = flows::start_restore(&mut server.client, restore_req(&backup, "", true)).await;
    server.wait_paused(Duration::from_secs(240)).await;
    // The first two are swapped in; the ids they have at the kill.
    let mut at_kill = Vec::new();
    for (spec, _) in &specs {
        at_kill.push(m.collection_id(&spec.db, &spec.name).await.unwrap());
    }
    let server = server.kill_and_restart().await;
    let mut client = server.client.clone();
    let job = tokio::time::timeout(
        Duration::from_secs(300),
        flows::watch_restore_to_end(&mut client, &id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(job.state, pb::JobState::Succeeded as i32, "{job:?}");
    for (((spec, backed_up), original), before) in specs.iter().zip(&originals).zip(&at_kill) {
        let now = rows_of(&m, spec, &spec.name).await;
        data::assert_rows_equal(
            &format!("{} is the restored copy", spec.name),
            backed_up,
            &now,
        );
        assert_ne!(backed_up.len(), original.len());
        let id_now = m.collection_id(&spec.db, &spec.name).await.unwrap();
        if spec.name == third {
            assert_ne!(&id_now, before, "the third is swapped in after the restart");
        } else {
            assert_eq!(&id_now, before, "{} is not restored again", spec.name);
        }
    }
    server.finish();
    for (spec, _) in &specs {
        data::drop_if_exists(&m, &spec.db, &spec.name).await;
    }
}

/// A replace killed right after it dropped the original (`restore.swap.dropped`,
/// the drop not yet recorded past "dropping"); the user then makes a
/// collection of their own under the name. The restarted server does not
/// take it for the original: the job ends FAILED, the user's collection and
/// rows are untouched, and the restored copy, now the only copy of the
/// backup's rows in Milvus, is kept under its temporary name; a later
/// restart leaves it there even once the user dropped their collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_replace_keeps_its_copy_when_the_target_was_made_again() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, backed_up) = source(&m, &common::unique("keep"), 400).await;
    let root = common::unique("keep_root");
    let mut server = process::Proc::start_rooted_paused(
        &cfg,
        "keep-state",
        &root,
        "",
        Some("restore.swap.dropped"),
    )
    .await;
    let backup = common::unique("keep_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let id = flows::start_restore(&mut server.client, restore_req(&backup, "", true)).await;
    server.wait_paused(Duration::from_secs(180)).await;
    server.kill();
    assert_eq!(
        m.collection_id(&spec.db, &spec.name).await.unwrap(),
        None,
        "the original was dropped before the kill"
    );

    let mine = Spec::new(&spec.name);
    data::create(&m, &mine).await;
    data::insert(&m, &mine, "", 0..50, 99).await;
    data::flush(&m, &mine.db, &mine.name).await;
    let my_id = m.collection_id(&mine.db, &mine.name).await.unwrap();

    let server = server.kill_and_restart().await;
    let mut client = server.client.clone();
    let job = tokio::time::timeout(
        Duration::from_secs(300),
        flows::watch_restore_to_end(&mut client, &id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    assert!(job.error_message.contains("someone else made"), "{job:?}");
    let temp = job.collections[0].temp_collection_name.clone();
    assert!(!temp.is_empty(), "{job:?}");
    process::wait_for_log(&server.log, "left alone", Duration::from_secs(30)).await;
    assert_eq!(
        m.collection_id(&mine.db, &mine.name).await.unwrap(),
        my_id,
        "the user's collection survives"
    );
    assert_eq!(rows_of(&m, &mine, &mine.name).await.len(), 50);
    let copy = rows_of(&m, &spec, &temp).await;
    data::assert_rows_equal("the kept copy", &backed_up, &copy);

    // Later the user drops their collection, and the server restarts: the
    // ended job's cleanup is not run again, so the kept copy is not renamed
    // into the name the user freed (before, every start did so).
    data::drop_if_exists(&m, &mine.db, &mine.name).await;
    let server = server.kill_and_restart().await;
    let watched = std::time::Instant::now();
    while watched.elapsed() < Duration::from_secs(15) {
        assert_eq!(
            m.collection_id(&spec.db, &spec.name).await.unwrap(),
            None,
            "a restart renamed the kept copy into the freed target"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains("completed the replace"), "{log}");
    assert!(
        m.has_collection(&spec.db, &temp).await.unwrap(),
        "the copy stays"
    );

    server.finish();
    data::drop_if_exists(&m, &spec.db, &temp).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A replace whose rename fails because Milvus went away right after the
/// drop (released from `restore.swap.dropped` with Milvus off through a
/// proxy): the job fails, and its cleanup, which cannot reach Milvus
/// either, gives up after its retries, so its record does not say the
/// cleanup is done. Once Milvus is back, the restarted server finishes the
/// swap: the target is the restored copy, row for row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_swap_its_cleanup_could_not_finish_is_finished_at_the_next_start() {
    use std::sync::atomic::Ordering;
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, backed_up) = source(&m, &common::unique("unfin"), 300).await;
    let (via_proxy, up) = common::faults::milvus_through_switch(&cfg).await;
    let release = std::env::temp_dir().join(common::unique("unfin_release"));
    let failpoint = format!("restore.swap.dropped@{}", release.display());
    // A root of its own: switched off, its Milvus fails any job it takes over.
    let root = common::unique("unfin_root");
    let mut server =
        process::Proc::start_rooted_paused(&via_proxy, "unfin-state", &root, "", Some(&failpoint))
            .await;
    let backup = common::unique("unfin_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let id = flows::start_restore(&mut server.client, restore_req(&backup, "", true)).await;
    server.wait_paused(Duration::from_secs(180)).await;
    assert_eq!(m.collection_id(&spec.db, &spec.name).await.unwrap(), None);

    common::faults::switch_off(&up).await;
    std::fs::write(&release, b"").unwrap();
    let job = tokio::time::timeout(
        Duration::from_secs(300),
        flows::watch_restore_to_end(&mut server.client, &id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    process::wait_for_log(&server.log, "cleanup failed", Duration::from_secs(10)).await;
    let temp = job.collections[0].temp_collection_name.clone();
    assert!(!temp.is_empty(), "{job:?}");

    up.store(true, Ordering::SeqCst);
    let server = server.kill_and_restart().await;
    flows::eventually(
        "the restarted server finishes the swap",
        Duration::from_secs(120),
        || {
            let (m, db, name) = (m.clone(), spec.db.clone(), spec.name.clone());
            async move { m.collection_id(&db, &name).await.unwrap().is_some() }
        },
    )
    .await;
    assert!(
        !m.has_collection(&spec.db, &temp).await.unwrap(),
        "renamed away"
    );
    let now = rows_of(&m, &spec, &spec.name).await;
    data::assert_rows_equal("the target after the next start", &backed_up, &now);

    let _ = std::fs::remove_file(&release);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A restore into a database that did not exist fails while Milvus cannot
/// be reached (a switchable proxy), right after it made its collection
/// (`restore.created`): its cleanup can drop neither that collection nor
/// the database, and the collection's error says the database is tried
/// again. Once Milvus is back, the restarted server drops both. The code
/// before left them for good (a restart re-ran only an unfinished swap).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cleanup_that_could_not_reach_milvus_drops_the_database_at_the_next_start() {
    use std::sync::atomic::Ordering;
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = fifty_rows(&m, "unreach_src").await;
    let (via_proxy, up) = common::faults::milvus_through_switch(&cfg).await;
    let release = std::env::temp_dir().join(common::unique("unreach_release"));
    let failpoint = format!("restore.created@{}", release.display());
    let root = common::unique("unreach_root");
    let mut server = process::Proc::start_rooted_paused(
        &via_proxy,
        "unreach-state",
        &root,
        "",
        Some(&failpoint),
    )
    .await;
    let backup = common::unique("unreach_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let db = common::unique("unreach_db");
    let request = into_new_database(&backup, &spec, &db);
    let id = flows::start_restore(&mut server.client, request).await;
    server.wait_paused(Duration::from_secs(180)).await;
    assert!(m.has_collection(&db, &spec.name).await.unwrap(), "made");

    common::faults::switch_off(&up).await;
    std::fs::write(&release, b"").unwrap();
    let job = ended(&mut server.client, &id).await;
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    let error = &job.collections[0].error_message;
    assert!(
        error.contains(&format!("database {db:?}")) && error.contains("tried again"),
        "the collection's error says the database is left: {job:?}"
    );
    let dbs = m.list_databases().await.unwrap();
    assert!(dbs.contains(&db), "left while Milvus was away: {dbs:?}");

    up.store(true, Ordering::SeqCst);
    let server = server.kill_and_restart().await;
    flows::database_dropped(&m, &db, "the restarted server drops the database").await;

    let _ = std::fs::remove_file(&release);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A restore into a new database whose owner is SIGKILLed while it imports,
/// then cancelled on the only other server B, which ends it while Milvus
/// cannot be reached from B (a switchable proxy, off from the failpoint
/// `restore.abandon.before_cleanup` on): B's cleanup can drop neither the
/// collection nor the database, and records the job CANCELLED with its
/// cleanup unfinished. Once Milvus answers B again, B (never restarted;
/// the owner never comes back) runs that cleanup again: the collection and
/// the database are dropped, and the job says so. The code before left
/// both for good: only the owner's restart ran an ended cleanup again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_takeovers_cleanup_that_could_not_reach_milvus_is_run_again_by_a_live_server() {
    use std::sync::atomic::Ordering;
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = fifty_rows(&m, "again_src").await;
    let root = common::unique("again_root");
    let (via_proxy, up) = common::faults::milvus_through_switch(&cfg).await;
    let release = std::env::temp_dir().join(common::unique("again_release"));
    let failpoint = format!("restore.abandon.before_cleanup@{}", release.display());
    let mut b =
        process::Proc::start_rooted_paused(&via_proxy, "again-b", &root, "", Some(&failpoint))
            .await;
    let backup = common::unique("again_b");
    flows::backup_collections(&mut b.client, &backup, &[&spec.name]).await;

    let mut owner = process::Proc::start_rooted_paused(
        &cfg,
        "again-owner",
        &root,
        "",
        Some("restore.importing"),
    )
    .await;
    let db = common::unique("again_db");
    let request = into_new_database(&backup, &spec, &db);
    let id = flows::start_restore(&mut owner.client, request).await;
    owner.wait_paused(Duration::from_secs(180)).await;
    assert!(m.has_collection(&db, &spec.name).await.unwrap(), "made");
    owner.kill();
    b.client
        .cancel_restore(pb::CancelRestoreRequest { id: id.clone() })
        .await
        .expect("CancelRestore on B");

    // B ends it once the owner's 3 s leases have expired; Milvus goes away
    // from B right before its cleanup.
    b.wait_paused(Duration::from_secs(120)).await;
    common::faults::switch_off(&up).await;
    std::fs::write(&release, b"").unwrap();
    let job = ended(&mut b.client, &id).await;
    assert_eq!(job.state, pb::JobState::Cancelled as i32, "{job:?}");
    let error = &job.collections[0].error_message;
    assert!(error.contains("left in Milvus"), "{job:?}");
    // Said as it is: not left for good, but to be dropped.
    assert!(
        error.contains("tries it again") && error.contains("do not write into a collection"),
        "{job:?}"
    );
    assert!(m.has_collection(&db, &spec.name).await.unwrap(), "left");
    assert!(m.list_databases().await.unwrap().contains(&db), "left");

    up.store(true, Ordering::SeqCst);
    flows::database_dropped(&m, &db, "B drops the collection and the database").await;
    let job = flows::get_restore(&mut b.client, &id).await;
    assert_eq!(job.state, pb::JobState::Cancelled as i32, "{job:?}");
    assert!(
        job.collections[0]
            .error_message
            .contains("its cleanup, tried again, ran to its end"),
        "{job:?}"
    );
    assert_eq!(
        b.logged("the cleanup of an ended restore ran to its end"),
        1
    );
    figures::publish(
        "a_takeovers_cleanup_that_could_not_reach_milvus_is_run_again_by_a_live_server",
        &[format!(
            "collection and database {db:?} left while Milvus was away from B; dropped by B's \
             next look once it answered; job CANCELLED: {}",
            job.collections[0].error_message
        )],
    );
    let _ = std::fs::remove_file(&release);
    b.finish();
    owner.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A collection of 50 flushed rows, named after `tag`.
async fn fifty_rows(m: &milvus_backup::milvus::MilvusClient, tag: &str) -> Spec {
    let spec = Spec::new(&common::unique(tag));
    data::create(m, &spec).await;
    data::insert(m, &spec, "", 0..50, 6).await;
    data::flush(m, &spec.db, &spec.name).await;
    spec
}

/// A restore of `spec` from `backup` into database `db`, which does not exist.
fn into_new_database(backup: &str, spec: &Spec, db: &str) -> pb::RestoreRequest {
    pb::RestoreRequest {
        backup_name: backup.to_string(),
        collection_renames: [(
            format!("default.{}", spec.name),
            format!("{db}.{}", spec.name),
        )]
        .into(),
        ..Default::default()
    }
}

/// The end of restore `id`, watched on `client` (at most 400 s).
async fn ended(
    client: &mut milvus_backup::api::proto::backup_service_client::BackupServiceClient<
        tonic::transport::Channel,
    >,
    id: &str,
) -> pb::RestoreJob {
    tokio::time::timeout(
        Duration::from_secs(400),
        flows::watch_restore_to_end(client, id),
    )
    .await
    .expect("the restore ends")
}

/// A server paused after the swap of a replace that reloads the target (the
/// original was loaded; `restore.loading@PATH`, Milvus through a switchable
/// proxy), its restore id and the collection's rows.
async fn swapped_and_loading(
    tag: &str,
) -> (
    process::Proc,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::path::PathBuf,
    String,
    Spec,
    Vec<milvus_backup::milvus::rows::Row>,
) {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, rows) = source(&m, &common::unique(tag), 300).await;
    let (via_proxy, up) = common::faults::milvus_through_switch(&cfg).await;
    let release = std::env::temp_dir().join(common::unique(&format!("{tag}_release")));
    let failpoint = format!("restore.loading@{}", release.display());
    let root = common::unique(&format!("{tag}_root"));
    let state = format!("{tag}-state");
    let mut server =
        process::Proc::start_rooted_paused(&via_proxy, &state, &root, "", Some(&failpoint)).await;
    let backup = common::unique(&format!("{tag}_b"));
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let req = pb::RestoreRequest {
        restore_index: true,
        ..restore_req(&backup, "", true)
    };
    let id = flows::start_restore(&mut server.client, req).await;
    server.wait_paused(Duration::from_secs(180)).await;
    (server, up, release, id, spec, rows)
}

/// A replace that waits for its load after the swap while Milvus is away
/// for 2 s: the wait asks again and the job SUCCEEDS, the target the
/// restored copy, loaded. Before, one lost GetLoadingProgress answer failed
/// the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_load_wait_after_the_swap_asks_again_when_milvus_is_briefly_away() {
    use std::sync::atomic::Ordering;
    let m = common::milvus(&common::config());
    let (mut server, up, release, id, spec, rows) = swapped_and_loading("loadwait").await;
    common::faults::switch_off(&up).await;
    std::fs::write(&release, b"").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    up.store(true, Ordering::SeqCst);
    let job = ended(&mut server.client, &id).await;
    assert_eq!(job.state, pb::JobState::Succeeded as i32, "{job:?}");
    assert_eq!(m.loading_progress(&spec.db, &spec.name).await.unwrap(), 100);
    let now = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    data::assert_rows_equal("the restored target", &rows, &now);
    let _ = std::fs::remove_file(&release);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A replace whose load wait after the swap fails (Milvus away past the
/// retries): the job fails, and its cleanup, once Milvus is back, keeps the
/// load of the restored copy, which now serves in place of the loaded
/// original. Before, it released it: the production collection unloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_load_wait_after_the_swap_leaves_the_target_loaded() {
    use std::sync::atomic::Ordering;
    let m = common::milvus(&common::config());
    let (mut server, up, release, id, spec, rows) = swapped_and_loading("loadfail").await;
    common::faults::switch_off(&up).await;
    std::fs::write(&release, b"").unwrap();
    process::wait_for_log(&server.log, "did not succeed", Duration::from_secs(120)).await;
    up.store(true, Ordering::SeqCst);
    let job = ended(&mut server.client, &id).await;
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    // Its cleanup has run: a release would have been asked by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while m.loading_progress(&spec.db, &spec.name).await.unwrap() < 100 {
        assert!(
            std::time::Instant::now() < deadline,
            "the restored target stays loaded (its load goes on)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let now = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    data::assert_rows_equal("the restored target", &rows, &now);
    let _ = std::fs::remove_file(&release);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
