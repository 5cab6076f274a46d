//! The edges of taking over a restore whose server stopped, on the real
//! Milvus 2.3.5 and S3, with server processes on a backup root of their own
//! (so that no other test's server takes the job over):
//! - a cancel sent to another replica while the owner is dead ends the job
//!   CANCELLED, the collection it created dropped;
//! - an owner that is paused (SIGSTOP) past its lease, while another replica
//!   finishes the job, stops when it wakes without cleaning up or writing
//!   the shared record: the job stays SUCCEEDED and its collection stays.
//! - a CLI restore interrupted with Ctrl-C is cancelled and cleaned up;
//! - a backup whose owner dies during its early copy is resumed from the
//!   folder it claimed;
//! - a replica that cannot reach Milvus leaves a dead server's backup and
//!   restore alone (it would only fail them) and resumes them once Milvus
//!   answers again.

mod common;
#[path = "common/figures.rs"]
mod figures;

use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use common::process::Proc;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::proto::milvus as pb_milvus;
use milvus_backup::milvus::rows::Row;
use milvus_backup::milvus::{MilvusApi, MilvusClient};

/// A loaded collection of 300 rows; its spec and rows.
async fn source(m: &MilvusClient, tag: &str) -> (Spec, Vec<Row>) {
    let spec = Spec::new(&common::unique(tag));
    data::create(m, &spec).await;
    data::insert(m, &spec, "", 0..300, 53).await;
    data::flush(m, &spec.db, &spec.name).await;
    data::index(m, &spec.db, &spec.name).await;
    data::load(m, &spec.db, &spec.name).await;
    let rows = data::rows(m, &spec, &spec.db, &spec.name, &[]).await;
    (spec, rows)
}

/// Polls GetBackup of `name` (paused before its description) until its
/// early copies are all made (panics after 2 minutes); the backup then.
async fn early_copies_made(
    client: &mut milvus_backup::api::proto::backup_service_client::BackupServiceClient<
        tonic::transport::Channel,
    >,
    name: &str,
) -> pb::Backup {
    let last = std::sync::Arc::new(std::sync::Mutex::new(None::<pb::Backup>));
    flows::eventually(
        &format!("the early copies of {name} are all made (files done = files total > 0)"),
        Duration::from_secs(120),
        || {
            let (mut c, name, last) = (client.clone(), name.to_string(), last.clone());
            async move {
                let seen = flows::get_backup(&mut c, &name).await;
                let made = seen
                    .progress
                    .as_ref()
                    .is_some_and(|p| p.files_done > 0 && p.files_done == p.files_total);
                *last.lock().unwrap() = Some(seen);
                made
            }
        },
    )
    .await;
    let seen = last.lock().unwrap().take();
    seen.expect("the backup as seen when its early copies were made")
}

/// Starts a backup of `collection` on `server`: its job id. The job runs
/// on when the stream is dropped.
async fn started_backup(server: &Proc, name: &str, collection: &str) -> String {
    let mut stream = server
        .client
        .clone()
        .create_backup(flows::backup_request(name, &[collection]))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap().backup.unwrap().id
}

/// A JSON object of the backup storage.
async fn read_json(
    store: &dyn milvus_backup::storage::ObjectStore,
    key: &str,
) -> serde_json::Value {
    serde_json::from_slice(&store.read(key).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_sent_while_the_owner_is_dead_ends_the_restore_cancelled() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, _) = source(&m, "cxdead_src").await;
    let root = common::unique("cxdead_root");
    let mut owner =
        Proc::start_rooted_paused(&cfg, "cxowner", &root, "", Some("restore.importing")).await;
    let name = common::unique("cxdead_b");
    flows::backup_collections(&mut owner.client, &name, &[&spec.name]).await;
    let target = format!("{}_cx", spec.name);
    let id = flows::start_restore(&mut owner.client, flows::restore_request(&name, "_cx")).await;
    owner.wait_paused(Duration::from_secs(120)).await;
    assert!(m.has_collection(&spec.db, &target).await.unwrap());
    owner.kill();

    // Sent before any replica runs: the cancel marker waits for the takeover.
    let b = Proc::start_rooted(&cfg, "cxtaker", &root, "").await;
    b.client
        .clone()
        .cancel_restore(pb::CancelRestoreRequest { id: id.clone() })
        .await
        .expect("CancelRestore on the other replica");
    let end = tokio::time::timeout(
        Duration::from_secs(300),
        flows::watch_restore_to_end(&mut b.client.clone(), &id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(end.state, pb::JobState::Cancelled as i32, "{end:?}");
    assert!(
        end.error_message
            .contains("cancelled while its server was down"),
        "{end:?}"
    );
    assert!(
        !m.has_collection(&spec.db, &target).await.unwrap(),
        "the collection the job created is dropped"
    );
    b.finish();
    owner.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// An owner paused (SIGSTOP) past its leases while another replica finishes
/// its restore; woken, it stops and leaves the job alone. Restarted on its
/// state directory, it answers the end the shared record has and leaves the
/// collection alone; with `pruned`, that record is gone first (pruned once
/// 1,000 later restores ended, or the backup root changed), and the
/// restart still leaves the collection alone (before, it cleaned up from
/// its own record, ended when it lost its leases, and dropped it). Unless
/// `woken`, the owner is killed while paused instead, so its own record
/// still says running: restarted after the shared record went, it leaves
/// the collection alone too (before, it ended the job "interrupted" and
/// dropped the collection another replica had finished).
async fn paused_owner_wakes_after_the_takeover(tag: &str, pruned: bool, woken: bool) {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, rows) = source(&m, &format!("{tag}_src")).await;
    let root = common::unique(&format!("{tag}_root"));
    let mut owner = Proc::start_rooted_paused(
        &cfg,
        &format!("{tag}owner"),
        &root,
        "",
        Some("restore.importing"),
    )
    .await;
    let b = Proc::start_rooted(&cfg, &format!("{tag}taker"), &root, "").await;
    let name = common::unique(&format!("{tag}_b"));
    flows::backup_collections(&mut owner.client, &name, &[&spec.name]).await;
    let target = format!("{}_pz", spec.name);
    let id = flows::start_restore(
        &mut owner.client,
        flows::restore_loaded_request(&name, "_pz"),
    )
    .await;
    owner.wait_paused(Duration::from_secs(120)).await;
    owner.signal("STOP");

    let end = tokio::time::timeout(
        Duration::from_secs(300),
        flows::watch_restore_to_end(&mut b.client.clone(), &id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    let restored_id = m.collection_id(&spec.db, &target).await.unwrap();

    // Woken: it finds its leases taken and stops, leaving the job alone.
    if woken {
        owner.signal("CONT");
        common::process::wait_for_log(
            &owner.log,
            "another process took it over",
            Duration::from_secs(30),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = flows::get_restore(&mut b.client.clone(), &id).await;
        assert_eq!(after.state, pb::JobState::Succeeded as i32, "{after:?}");
        assert_eq!(
            m.collection_id(&spec.db, &target).await.unwrap(),
            restored_id,
            "the restored collection stays"
        );
    }
    let now = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    data::assert_rows_equal("restored", &rows, &now);
    b.finish();
    if pruned {
        common::process::rooted_bucket(&cfg)
            .delete(&[format!("{root}/_jobs/restores/{id}.json")])
            .await
            .unwrap();
    }
    // Restarted on its state directory: its recovery's cleanup, if any, runs
    // within seconds (3 s leases).
    let mut owner = owner.kill_and_restart().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        m.collection_id(&spec.db, &target).await.unwrap(),
        restored_id,
        "the restored collection stays"
    );
    match pruned {
        true => {
            common::process::wait_for_log(
                &owner.log,
                "its shared record is gone",
                Duration::from_secs(30),
            )
            .await;
            // A connection of its own: the first one may be idle long enough
            // to be told to go away.
            let mut fresh = common::connect(([127, 0, 0, 1], owner.port).into()).await;
            let after = flows::get_restore(&mut fresh, &id).await;
            if !woken {
                // Its own record, ended now, says what to look at.
                assert_eq!(after.state, pb::JobState::Failed as i32, "{after:?}");
                assert!(
                    after
                        .error_message
                        .contains("nothing was dropped or renamed")
                        && after.error_message.contains(&target),
                    "{after:?}"
                );
            }
        }
        // It answers the job's end as the shared record has it (not its own
        // "lost its hold").
        false => {
            let after = flows::get_restore(&mut owner.client, &id).await;
            assert_eq!(after.state, pb::JobState::Succeeded as i32, "{after:?}");
        }
    }
    owner.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_owner_that_wakes_after_the_takeover_leaves_the_job_alone() {
    paused_owner_wakes_after_the_takeover("paused", false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_owner_restarted_after_the_shared_record_went_leaves_the_job_alone() {
    paused_owner_wakes_after_the_takeover("pruned", true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_killed_while_paused_and_restarted_after_the_shared_record_went_leaves_the_job_alone()
 {
    paused_owner_wakes_after_the_takeover("killedp", true, false).await;
}

/// A CLI restore interrupted with Ctrl-C (SIGINT) while Milvus imports is
/// cancelled, not left for a server to resume: the command fails saying so,
/// the collection it created is dropped, and its shared record says
/// CANCELLED.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_cancels_a_cli_restore_and_removes_what_it_made() {
    use milvus_backup::jobs::RestoreSnapshot;
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, _) = source(&m, "cli_int_src").await;
    let root = common::unique("cli_int_root");
    let mut server = Proc::start_rooted(&cfg, "cli-int", &root, "").await;
    let name = common::unique("cli_int_b");
    flows::backup_collections(&mut server.client, &name, &[&spec.name]).await;
    let config = server.config().to_path_buf();
    server.kill();

    let target = format!("{}_ci", spec.name);
    let (status, text) = common::process::interrupted_cli(
        &config,
        &["restore", "-n", &name, "-s", "_ci"],
        Some("restore.importing"),
        "failpoint reached",
        async { assert!(m.has_collection(&spec.db, &target).await.unwrap()) },
    )
    .await;
    assert!(!status.success(), "{text}");
    assert!(text.contains("interrupted"), "{text}");
    assert!(
        !m.has_collection(&spec.db, &target).await.unwrap(),
        "the collection the interrupted restore created is dropped"
    );
    let store = common::process::rooted_bucket(&cfg);
    let mut records = Vec::new();
    for o in store
        .list(&format!("{root}/_jobs/restores/"))
        .await
        .unwrap()
    {
        let r: RestoreSnapshot =
            serde_json::from_slice(&store.read(&o.key).await.unwrap()).unwrap();
        if r.backup_name == name {
            records.push(r);
        }
    }
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0].state,
        milvus_backup::jobs::JobState::Cancelled,
        "{:?}",
        records[0]
    );
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A CLI backup of a new collection paused at failpoint `point`, sent
/// Ctrl-C there and released after it: its exit status and log, the S3
/// store, the backup's commit point and its shared record.
async fn cli_backup_interrupted_at(
    point: &str,
) -> (
    std::process::ExitStatus,
    String,
    bool,
    milvus_backup::jobs::BackupSnapshot,
) {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, _) = source(&m, "cli_int_b_src").await;
    let root = common::unique("cli_int_b_root");
    let server = Proc::start_rooted(&cfg, "cli-int-b", &root, "").await;
    let config = server.config().to_path_buf();
    server.finish();
    let name = common::unique("cli_int_b");
    let release = std::env::temp_dir().join(common::unique("cli_int_release"));
    let point = format!("{point}@{}", release.display());
    let (status, text) = common::process::interrupted_cli_then(
        &config,
        &["create", "-n", &name, "-c", &spec.name],
        Some(&point),
        "failpoint reached",
        async {},
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            std::fs::write(&release, b"go").unwrap();
        },
    )
    .await;
    let _ = std::fs::remove_file(&release);
    let store = common::process::rooted_bucket(&cfg);
    let committed = store
        .head(&format!("{root}/{name}/meta/full_meta.json"))
        .await
        .unwrap()
        .is_some();
    let record = serde_json::from_slice(
        &store
            .read(&format!("{root}/_jobs/backups/{name}.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    (status, text, committed, record)
}

/// A CLI backup interrupted with Ctrl-C while it is still being planned
/// (paused under its name's hold, `backup.held`, released only after the
/// signal) is cancelled as it starts: the command exits 9 (cancelled), no
/// backup is made, and its shared record says CANCELLED. On the code
/// before, a job planned after the signal was not reached by it: the backup
/// was made, the CLI said it succeeded and then that it was cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_while_a_cli_backup_is_planned_cancels_it() {
    let (status, text, committed, record) = cli_backup_interrupted_at("backup.held").await;
    assert_eq!(status.code(), Some(9), "{text}");
    assert!(!committed, "no backup was made: {text}");
    assert_eq!(
        record.state,
        milvus_backup::jobs::JobState::Cancelled,
        "{record:?}"
    );
}

/// A CLI backup sent Ctrl-C right after its commit point was written
/// (`backup.committed`) has completed, as a cancel no longer stops it
/// there: the command says so and exits 0 (it exited 9, "the job was
/// cancelled", on the code before, for a backup that was made).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_after_a_cli_backup_committed_reports_it_made() {
    let (status, text, committed, record) = cli_backup_interrupted_at("backup.committed").await;
    assert!(committed, "{text}");
    assert_eq!(
        record.state,
        milvus_backup::jobs::JobState::Succeeded,
        "{record:?}"
    );
    assert_eq!(status.code(), Some(0), "{text}");
}

/// A second Ctrl-C stops the CLI without waiting for its job's end (a
/// backup paused for good while it is planned): exit 9 at once. On the
/// code before, the second signal was swallowed and the CLI waited 330 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_ctrl_c_stops_the_cli_at_once() {
    let cfg = common::config();
    let root = common::unique("cli_twice_root");
    let server = Proc::start_rooted(&cfg, "cli-twice", &root, "").await;
    let config = server.config().to_path_buf();
    server.finish();
    let log = std::env::temp_dir().join(common::unique("cli-twice.log"));
    let name = common::unique("cli_twice_b");
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .arg("--config")
        .arg(&config)
        .args(["create", "-n", &name])
        .env("MILVUS_BACKUP_FAILPOINTS", "backup.held")
        .stdout(std::process::Stdio::null())
        .stderr(common::process::log_file(&log))
        .spawn()
        .unwrap();
    common::process::wait_for_log(&log, "failpoint reached", Duration::from_secs(120)).await;
    let int = || {
        std::process::Command::new("kill")
            .args(["-INT", &cli.id().to_string()])
            .status()
            .unwrap()
    };
    int();
    common::process::wait_for_log(&log, "interrupted", Duration::from_secs(30)).await;
    int();
    // Waits at most 60 s (the job's end alone would take 330).
    let mut status = None;
    for _ in 0..600 {
        if let Some(s) = cli.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let Some(status) = status else {
        common::process::kill9(&mut cli);
        panic!("still running 60 s after the second signal: {text}");
    };
    assert_eq!(status.code(), Some(9), "{text}");
    assert!(text.contains("not waited for"), "{text}");
    let _ = std::fs::remove_file(&log);
}

/// A full backup copies what Milvus has flushed already while the flush
/// passes, in a folder it claimed first (a partial plan), and says that its
/// totals may still grow. Its owner is SIGKILLed there, with binlogs copied
/// and nothing described in the plan:
/// another replica resumes it under the same id, describes the collection
/// anew, keeps the copies whose MD5 ETag equals the source's, and the backup
/// verifies and restores row for row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_killed_during_its_early_copy_is_resumed_from_the_claimed_folder() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, rows) = source(&m, "early_src").await;
    let root = common::unique("early_root");
    let mut owner =
        Proc::start_rooted_paused(&cfg, "eowner", &root, "", Some("backup.describing")).await;
    let b = Proc::start_rooted(&cfg, "etaker", &root, "").await;
    let name = common::unique("early_b");
    let id = started_backup(&owner, &name, &spec.name).await;
    owner.wait_paused(Duration::from_secs(60)).await;
    // Paused before any description; the early copy runs on until it is done.
    let mut on_owner = owner.client.clone();
    let seen = early_copies_made(&mut on_owner, &name).await;
    let p = seen.progress.unwrap();
    assert_eq!(seen.state, pb::JobState::Running as i32, "{seen:?}");
    assert!(p.files_done > 0 && p.files_done == p.files_total, "{p:?}");
    assert!(p.totals_growing, "nothing is described yet: {p:?}");
    assert_eq!(p.collections_done, 0, "{p:?}");
    let store = common::process::rooted_bucket(&cfg);
    let copied = store
        .list(&format!("{root}/{name}/binlogs/"))
        .await
        .unwrap();
    assert_eq!(
        copied.len() as u64,
        p.files_done,
        "every early copy is counted"
    );
    let plan = read_json(store.as_ref(), &format!("{root}/{name}/resume-plan.json")).await;
    assert_eq!(plan["partial"], true, "{plan}");
    assert_eq!(plan["job"], id.as_str(), "{plan}");
    owner.kill();

    let mut on_b = b.client.clone();
    let end = flows::watch_backup_to_end(&mut on_b, &name, Duration::from_secs(120)).await;
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    assert_eq!(end.id, id, "the same job, resumed");
    let p = end.progress.unwrap();
    assert!(!p.totals_growing, "{p:?}");
    assert_eq!((p.bytes_done, p.files_done), (p.bytes_total, p.files_total));
    flows::assert_verifies(&mut on_b, &name, "resumed from its early copy").await;
    assert!(
        store
            .head(&format!("{root}/{name}/resume-plan.json"))
            .await
            .unwrap()
            .is_none(),
        "the plan is removed once the backup is complete"
    );
    let copied_after = common::curl::copied_bytes(b.port);
    flows::restore(&mut on_b, flows::restore_loaded_request(&name, "_ek")).await;
    let target = format!("{}_ek", spec.name);
    let now = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    data::assert_rows_equal("restored", &rows, &now);
    figures::publish(
        "a_backup_killed_during_its_early_copy_is_resumed_from_the_claimed_folder",
        &[format!(
            "owner SIGKILLed after its early copy of {} binlogs, counted while its totals \
             were growing (plan partial); the other replica resumed it under the same id, \
             copied {copied_after} bytes, verified, restored {} rows equal",
            copied.len(),
            now.len()
        )],
    );
    b.finish();
    owner.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}

/// A backup of `coll` on a new server (its own backup root), paused at
/// failpoint `point` until [`HeldBackup::release`].
struct HeldBackup {
    owner: Proc,
    root: String,
    name: String,
    release: std::path::PathBuf,
    stream: tonic::Streaming<pb::CreateBackupResponse>,
}

impl HeldBackup {
    async fn start(
        cfg: &milvus_backup::config::Config,
        point: &str,
        tag: &str,
        coll: &str,
    ) -> Self {
        let root = common::unique(&format!("{tag}_root"));
        let release = std::env::temp_dir().join(common::unique("release"));
        let failpoint = format!("{point}@{}", release.display());
        let owner = Proc::start_rooted_paused(cfg, tag, &root, "", Some(&failpoint)).await;
        let name = common::unique(&format!("{tag}_b"));
        let stream = owner
            .client
            .clone()
            .create_backup(flows::backup_request(&name, &[coll]))
            .await
            .unwrap()
            .into_inner();
        owner.wait_paused(Duration::from_secs(60)).await;
        Self {
            owner,
            root,
            name,
            release,
            stream,
        }
    }

    /// Lets the job go on from its failpoint; its last snapshot.
    async fn release(self) -> (Proc, String, String, pb::Backup) {
        std::fs::write(&self.release, b"").unwrap();
        let end = flows::last_backup(self.stream).await;
        let _ = std::fs::remove_file(&self.release);
        (self.owner, self.root, self.name, end)
    }
}

/// A partition dropped while a full backup waits for its flush: its binlogs
/// were copied early, no description names them, so they are removed before
/// the meta, and taken out of the progress. The folder holds exactly what the
/// manifest names; the backup verifies and restores the rows that remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn early_copies_of_a_partition_dropped_meanwhile_are_removed() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("drop_src"));
    data::create(&m, &spec).await;
    data::create_partition(&m, &spec, "p1").await;
    data::insert(&m, &spec, "", 0..200, 61).await;
    data::insert(&m, &spec, "p1", 200..400, 61).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::index(&m, &spec.db, &spec.name).await;
    let p1 = m
        .list_partitions(&spec.db, &spec.name)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == "p1")
        .unwrap()
        .id;

    let held = HeldBackup::start(&cfg, "backup.describing", "downer", &spec.name).await;
    let mut on_owner = held.owner.client.clone();
    early_copies_made(&mut on_owner, &held.name).await;
    let store = common::process::rooted_bucket(&cfg);
    let folder = format!("{}/{}/", held.root, held.name);
    let early = store.list(&format!("{folder}binlogs/")).await.unwrap();
    let in_p1 = |key: &str| key.contains(&format!("/{p1}/"));
    let early_p1 = early.iter().filter(|o| in_p1(&o.key)).count();
    assert!(early_p1 > 0, "p1's binlogs were copied early: {early:?}");

    let drop = pb_milvus::DropPartitionRequest {
        db_name: spec.db.clone(),
        collection_name: spec.name.clone(),
        partition_name: "p1".into(),
        ..Default::default()
    };
    let status = m
        .raw()
        .drop_partition(m.request(&spec.db, drop))
        .await
        .unwrap()
        .into_inner();
    milvus_backup::milvus::check_status("DropPartition", Some(&status)).unwrap();
    let (owner, _, name, end) = held.release().await;
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    let p = end.progress.unwrap();
    assert_eq!((p.bytes_done, p.files_done), (p.bytes_total, p.files_total));
    assert!(!p.totals_growing, "{p:?}");
    let kept: Vec<String> = store
        .list(&format!("{folder}binlogs/"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key[folder.len()..].to_string())
        .collect();
    assert!(
        !kept.iter().any(|k| in_p1(k)),
        "p1's copies are removed: {kept:?}"
    );
    let manifest = read_json(store.as_ref(), &format!("{folder}meta/checksums.json")).await;
    let mut named: Vec<String> = manifest["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_string())
        .collect();
    named.sort();
    assert_eq!(
        kept, named,
        "the folder holds exactly what the manifest names"
    );
    assert_eq!(p.files_total as usize, named.len());
    flows::assert_verifies(&mut on_owner, &name, "p1 dropped during the flush").await;

    data::load(&m, &spec.db, &spec.name).await;
    let rows = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    assert_eq!(rows.len(), 200, "the default partition's rows remain");
    flows::restore(&mut on_owner, flows::restore_loaded_request(&name, "_dp")).await;
    let target = format!("{}_dp", spec.name);
    let now = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    data::assert_rows_equal("restored", &rows, &now);
    figures::publish(
        "early_copies_of_a_partition_dropped_meanwhile_are_removed",
        &[format!(
            "{} binlogs copied early, {early_p1} of them in p1; p1 dropped during the flush \
             wait; {} objects kept, exactly the manifest; verified; restored {} rows equal",
            early.len(),
            kept.len(),
            now.len()
        )],
    );
    owner.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}

/// A partition created after a collection's partitions were read, and
/// flushed before its segments are listed: its segments name a partition
/// the description lacks, so the backup reads the partitions again and adds
/// it (failpoint `backup.segments@PATH`) rather than failing. The backup
/// verifies. Its rows were written after the backup's flush point, so they
/// are not of its moment: the restore has partition p2 and the 200 rows of
/// the moment (the import's `end_ts` leaves the later ones out).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_created_while_a_collection_is_described_is_backed_up() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("create_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..200, 62).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let moment = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    assert_eq!(moment.len(), 200);

    let held = HeldBackup::start(&cfg, "backup.segments", "cowner", &spec.name).await;
    data::create_partition(&m, &spec, "p2").await;
    data::insert(&m, &spec, "p2", 200..400, 62).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let (owner, root, name, end) = held.release().await;
    let mut on_owner = owner.client.clone();
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    let store = common::process::rooted_bucket(&cfg);
    let meta = read_json(
        store.as_ref(),
        &format!("{root}/{name}/meta/full_meta.json"),
    )
    .await;
    let partitions: Vec<&str> = meta["collection_backups"][0]["partition_backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["partition_name"].as_str().unwrap())
        .collect();
    assert!(
        partitions.contains(&"p2"),
        "p2 is backed up: {partitions:?}"
    );
    flows::assert_verifies(&mut on_owner, &name, "p2 created while describing").await;

    let all = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    assert_eq!(all.len(), 400, "both partitions' rows in the source");
    flows::restore(&mut on_owner, flows::restore_loaded_request(&name, "_cp")).await;
    let target = format!("{}_cp", spec.name);
    let restored_partitions: Vec<String> = m
        .list_partitions(&spec.db, &target)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(
        restored_partitions.iter().any(|p| p == "p2"),
        "{restored_partitions:?}"
    );
    let now = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    data::assert_rows_equal("restored", &moment, &now);
    figures::publish(
        "a_partition_created_while_a_collection_is_described_is_backed_up",
        &[format!(
            "p2 created and flushed after the partitions were read; backed up with partitions \
             {partitions:?}; verified; restored with partitions {restored_partitions:?} and the \
             {} rows of its moment equal",
            now.len()
        )],
    );
    owner.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}

/// The only other replica cannot reach Milvus (through a proxy switched
/// off) when the owner of a backup and of a restore is SIGKILLed: it takes
/// neither over (a resumed restore would fail UNAVAILABLE at its first call;
/// before, it did) and says why in its log; both jobs stay unended. Once
/// Milvus answers again it resumes both under their ids: the backup ends
/// SUCCEEDED and verifies, the restore ends SUCCEEDED with rows equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_cannot_reach_milvus_leaves_dead_servers_jobs_alone() {
    use std::sync::atomic::Ordering;
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, rows) = source(&m, "nomilvus_src").await;
    let root = common::unique("nomilvus_root");
    let (via_proxy, up) = common::faults::milvus_through_switch(&cfg).await;
    let mut b = Proc::start_rooted(&via_proxy, "nmtaker", &root, "").await;
    let base = common::unique("nomilvus_base");
    flows::backup_collections(&mut b.client, &base, &[&spec.name]).await;
    let name = common::unique("nomilvus_b");
    let (mut owner, backup_id, restore_id) =
        flows::owner_of_paused_jobs(&cfg, "nmowner", &root, (&name, &spec.name), (&base, "_nm"))
            .await;
    common::faults::switch_off(&up).await;
    owner.kill();

    // The 3 s leases expire, half a TTL passes, and B looks every second.
    flows::eventually("B looks", Duration::from_secs(60), || async {
        b.logged("cannot reach Milvus: dead servers") + b.logged("took over a") > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut on_b = b.client.clone();
    let backup = flows::get_backup(&mut on_b, &name).await;
    let restore = flows::get_restore(&mut on_b, &restore_id).await;
    assert_eq!(b.logged("took over a"), 0, "B took a job over");
    assert!(
        backup.state < pb::JobState::Succeeded as i32
            && restore.state < pb::JobState::Succeeded as i32,
        "left alone, unended: {backup:?} {restore:?}"
    );

    up.store(true, Ordering::SeqCst);
    let end = flows::watch_backup_to_end(&mut on_b, &name, Duration::from_secs(120)).await;
    assert_eq!(
        (end.state, end.id.clone()),
        (pb::JobState::Succeeded as i32, backup_id),
        "{end:?}"
    );
    flows::assert_verifies(&mut on_b, &name, "resumed once Milvus answered").await;
    let end = flows::watch_restore_to_end(&mut on_b, &restore_id).await;
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    let target = format!("{}_nm", spec.name);
    let restored = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    data::assert_rows_equal("resumed once Milvus answered", &rows, &restored);
    b.finish();
    owner.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}
