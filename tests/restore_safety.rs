//! A restore never harms the database it protects, on the real Milvus 2.3.5
//! and S3: damaged binlogs are refused before Milvus is touched (by checksum,
//! and by decoding when the backup has no checksums), and jobs that want the
//! same backup or target exclude each other through leases in the backup
//! storage, also across processes. Restores resumed after a SIGKILL are in
//! `restore_resume.rs`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::data;
use common::flows::{self, eventually, listed_state};
use common::process;
use common::restores::{backed_up, restore_req, rows_of, source};
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::{MilvusApi, MilvusClient};
use milvus_backup::storage::{ObjectStore, S3Bucket};

fn backup_store(cfg: &milvus_backup::config::Config) -> S3Bucket {
    S3Bucket::new(&cfg.minio.backup_bucket().unwrap()).unwrap()
}

/// Flips one byte in the middle of the largest insert binlog of `backup`
/// (the object keeps its size); returns its key relative to the backup.
async fn damage_largest_binlog(store: &S3Bucket, backup: &str) -> String {
    data::flip_largest_object(store, &format!("backup/{backup}/"), "binlogs/insert_log/").await
}

/// Milvus still answers: it did not crash.
async fn assert_milvus_up(m: &MilvusClient) {
    m.version()
        .await
        .expect("Milvus answers GetVersion after the restore attempt");
}

/// Restores of a backup with a damaged binlog fail with DATA_LOSS naming it,
/// never reach Milvus, and leave the original collection whole; with the
/// checksums present and, as for the Go tool's backups, without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damaged_binlogs_never_reach_milvus() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let _restarts = common::RestartsMilvusIfDown::new(&cfg);
    let store = backup_store(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let (spec, original) = source(&m, &common::unique("dmg"), 2000).await;
    let backup = common::unique("dmg_b");
    flows::backup_collections(&mut client, &backup, &[&spec.name]).await;
    let damaged = damage_largest_binlog(&store, &backup).await;

    // The issue's own reproduction, through the CLI: exit 7 (DATA_LOSS) naming the object.
    let (state, config) = process::config_for(&cfg, "dmg-cli");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .arg("--config")
        .arg(&config)
        .args(["restore", "-n", &backup, "--drop_exist_collection"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "CLI restore of a damaged backup: {stderr}"
    );
    assert!(
        stderr.contains(&damaged),
        "the CLI names the object: {stderr}"
    );
    assert_milvus_up(&m).await;
    let _ = std::fs::remove_dir_all(&state);

    for checksums in [true, false] {
        if !checksums {
            store
                .delete(&[format!("backup/{backup}/meta/checksums.json")])
                .await
                .unwrap();
        }
        for drop_existing in [true, false] {
            let suffix = if drop_existing { "" } else { "_r" };
            let job =
                flows::restore_job(&mut client, restore_req(&backup, suffix, drop_existing)).await;
            let case = format!("checksums {checksums}, drop_existing {drop_existing}");
            assert_eq!(job.state, pb::JobState::Failed as i32, "{case}: {job:?}");
            assert_eq!(job.error_kind, "data_loss", "{case}: {job:?}");
            assert!(
                job.error_message.contains(&damaged),
                "{case}: names {damaged}: {}",
                job.error_message
            );
            if !checksums {
                assert!(
                    job.error_message.contains("does not decode"),
                    "{case}: {}",
                    job.error_message
                );
            }
            assert_eq!(job.phases.len(), 0, "{case}: no phase ended: {job:?}");
            assert_milvus_up(&m).await;
            assert!(
                !m.has_collection(&spec.db, &format!("{}_r", spec.name))
                    .await
                    .unwrap(),
                "{case}: nothing was created"
            );
            let now = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
            data::assert_rows_equal(&format!("{case}: original"), &original, &now);
        }
    }
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// Two restores into one target, from this server and from another server
/// process on the same bucket: the second gets ABORTED naming the first, which
/// ends SUCCEEDED and equal. A DeleteBackup while the restore reads the backup
/// gets ABORTED too, and the restore still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_on_one_backup_or_target_exclude_each_other_across_processes() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let _restarts = common::RestartsMilvusIfDown::new(&cfg);
    let (spec, original) = source(&m, &common::unique("excl"), 1000).await;
    let backup = common::unique("excl_b");
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    flows::backup_collections(&mut client, &backup, &[&spec.name]).await;
    let other = process::Proc::start(&cfg, "excl-state", "", None).await;
    let mut other_client = other.client.clone();

    let mut first = client
        .restore(restore_req(&backup, "_x", false))
        .await
        .expect("first restore accepted")
        .into_inner();
    let first_id = first.message().await.unwrap().unwrap().restore.unwrap().id;

    for (who, c) in [
        ("same server", &mut client),
        ("other process", &mut other_client),
    ] {
        let err = c
            .restore(restore_req(&backup, "_x", false))
            .await
            .expect_err("a second restore into the same target is refused");
        assert_eq!(err.code(), tonic::Code::Aborted, "{who}: {err:?}");
        assert!(
            err.message().contains(&first_id),
            "{who}: names the first job: {}",
            err.message()
        );
        let err = c
            .delete_backup(pb::DeleteBackupRequest {
                name: backup.clone(),
                ..Default::default()
            })
            .await
            .expect_err("a delete of a backup being restored is refused");
        assert_eq!(err.code(), tonic::Code::Aborted, "{who}: {err:?}");
        assert!(
            err.message().contains(&first_id),
            "{who}: {}",
            err.message()
        );
    }

    let job = flows::last_restore(first).await;
    assert_eq!(job.state, pb::JobState::Succeeded as i32, "{job:?}");
    let target = format!("{}_x", spec.name);
    let rows = rows_of(&m, &spec, &target).await;
    data::assert_rows_equal("the first restore", &original, &rows);
    // The holds are gone with the job: the delete now goes through.
    other_client
        .delete_backup(pb::DeleteBackupRequest {
            name: backup.clone(),
            ..Default::default()
        })
        .await
        .expect("delete after the restore");
    other.finish();
    data::drop_if_exists(&m, &spec.db, &target).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A backup folder copied by hand keeps its meta's name: its restore is
/// refused naming both, instead of reading the other backup's objects; a
/// folder without backup meta is not deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copied_folders_are_refused_and_foreign_folders_not_deleted() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let _restarts = common::RestartsMilvusIfDown::new(&cfg);
    let store = backup_store(&cfg);
    let (spec, _) = source(&m, &common::unique("copy"), 200).await;
    let backup = common::unique("copy_b");
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    flows::backup_collections(&mut client, &backup, &[&spec.name]).await;
    let copy = format!("{backup}_0101");
    for o in store.list(&format!("backup/{backup}/")).await.unwrap() {
        let body = store.read(&o.key).await.unwrap();
        let key = o
            .key
            .replacen(&format!("backup/{backup}/"), &format!("backup/{copy}/"), 1);
        store.write(&key, body).await.unwrap();
    }
    let err = client
        .restore(restore_req(&copy, "_c", false))
        .await
        .expect_err("a copied folder is refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains(&copy) && err.message().contains(&backup),
        "{}",
        err.message()
    );
    assert!(
        !m.has_collection(&spec.db, &format!("{}_c", spec.name))
            .await
            .unwrap()
    );

    // A folder without meta under the root is not ours to delete.
    let foreign = common::unique("foreign");
    let key = format!("backup/{foreign}/data.bin");
    store
        .write(&key, Bytes::from_static(b"not a backup"))
        .await
        .unwrap();
    let err = client
        .delete_backup(pb::DeleteBackupRequest {
            name: foreign.clone(),
            ..Default::default()
        })
        .await
        .expect_err("a folder without backup meta is refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        store.head(&key).await.unwrap(),
        Some(12),
        "its object is still there"
    );
    store.delete(&[key]).await.unwrap();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A SIGKILL between the meta writes never leaves a backup that is listed as
/// SUCCEEDED: before `full_meta.json` (the commit point) it is incomplete;
/// after the restart the server resumes it (once the dead process's lease
/// expires), and it completes and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_between_meta_writes_never_lists_an_incomplete_backup() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let _restarts = common::RestartsMilvusIfDown::new(&cfg);
    let store = backup_store(&cfg);
    let (spec, _) = source(&m, &common::unique("meta"), 200).await;
    for step in [
        "backup.meta.before_backup_meta",
        "backup.meta.before_full_meta",
    ] {
        let mut server = process::Proc::start(&cfg, "meta-state", "", Some(step)).await;
        let name = common::unique("meta_b");
        let mut s = server
            .client
            .create_backup(flows::backup_request(&name, &[&spec.name]))
            .await
            .unwrap()
            .into_inner();
        s.message().await.unwrap();
        server.wait_paused(Duration::from_secs(120)).await;
        assert!(
            store
                .head(&format!("backup/{name}/meta/checksums.json"))
                .await
                .unwrap()
                .is_some(),
            "{step}: the checksums are written before the commit point"
        );
        server.kill();
        // Another process on the same storage never lists it as complete.
        let other = common::TestServer::start(&cfg).await;
        let listed = listed_state(&mut other.client.clone(), &name).await;
        assert_ne!(listed, Some(pb::JobState::Succeeded as i32), "{step}");

        let server = server.kill_and_restart().await;
        let mut client = server.client.clone();
        flows::eventually(
            "the restarted server resumes the backup to its end",
            Duration::from_secs(90),
            || {
                let mut c = client.clone();
                let name = name.clone();
                async move {
                    flows::get_backup(&mut c, &name).await.state == pb::JobState::Succeeded as i32
                }
            },
        )
        .await;
        // Complete is seen from its commit point, which the resumed job
        // writes before it lets go of the name: a verify asked in between is
        // refused (ABORTED, the name held by the create) for a moment.
        flows::eventually(
            "the resumed job lets go of the backup's name",
            Duration::from_secs(60),
            || {
                let mut c = client.clone();
                let name = name.clone();
                async move {
                    let stream = flows::verify_stream(&mut c, &name).await;
                    flows::last_message(stream).await.is_ok()
                }
            },
        )
        .await;
        flows::assert_verifies(&mut client, &name, step).await;
        server.finish();
    }
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// VerifyBackup is a job: it takes a slot of `backup.maxJobs`, and it stops
/// (freeing the slot and its hold on the backup) when its caller goes away,
/// unless started detached.
/// The verification is held at its start by a failpoint so that the caller
/// surely leaves while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_is_a_job_that_stops_when_nobody_watches() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let _restarts = common::RestartsMilvusIfDown::new(&cfg);
    let (spec, _, backup) = backed_up(&cfg, &m, "ver", 200).await;
    let store = backup_store(&cfg);
    let server =
        process::Proc::start(&cfg, "ver-state", "  maxJobs: 1\n", Some("verify.started")).await;
    let (mut client, log) = (server.client.clone(), server.log.clone());
    let mut other_job = pb::CreateBackupRequest {
        backup_name: common::unique("ver_other"),
        collection_names: vec![spec.name.clone()],
        ..Default::default()
    };
    for detached in [false, true] {
        let stream = client
            .verify_backup(pb::VerifyBackupRequest {
                name: backup.clone(),
                detached,
            })
            .await
            .unwrap()
            .into_inner();
        let needle = "failpoint reached";
        eventually(
            "the verification starts",
            Duration::from_secs(30),
            || async {
                std::fs::read_to_string(&log)
                    .unwrap()
                    .matches(needle)
                    .count()
                    == 1 + detached as usize
            },
        )
        .await;
        let err = client
            .create_backup(other_job.clone())
            .await
            .expect_err("the verification holds the only job slot");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
        drop(stream);
        if detached {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let err = client
                .create_backup(other_job.clone())
                .await
                .expect_err("a detached verification goes on after its caller left");
            assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
        } else {
            process::wait_for_log(&log, "its caller went away", Duration::from_secs(30)).await;
            // Its hold on the backup is released at once (its lease object
            // marked so, removed once settled), not left to expire: a
            // delete is not refused for it.
            let reads = format!("backup/_leases/reads/{backup}/");
            eventually(
                "the stopped verification releases its hold",
                Duration::from_secs(30),
                || flows::readers_released(&store, &reads),
            )
            .await;
            // Its slot is free: another job runs to its end.
            flows::backup(&mut client, other_job.clone()).await;
            other_job.backup_name = common::unique("ver_other");
        }
    }
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A failure of this machine's temporary files while a binlog is proven by
/// decoding (a full, read-only or missing temporary directory) is an error
/// of this machine naming the directory (CLI exit 1, internal), never a
/// DATA_LOSS verdict on an intact backup; nothing reaches Milvus.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_temporary_file_failure_is_not_called_data_loss() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let _restarts = common::RestartsMilvusIfDown::new(&cfg);
    let store = backup_store(&cfg);
    let (spec, _, backup) = backed_up(&cfg, &m, "tmpf", 300).await;
    // As for the Go tool's backups: every binlog is proven by decoding.
    store
        .delete(&[format!("backup/{backup}/meta/checksums.json")])
        .await
        .unwrap();

    let missing = std::env::temp_dir().join(common::unique("no_such_tmp"));
    let (state, config) = process::config_for(&cfg, "tmpf-cli");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .env("TMPDIR", &missing)
        .arg("--config")
        .arg(&config)
        .args(["restore", "-n", &backup, "-s", "_r"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "internal, not DATA_LOSS (7): {stderr}"
    );
    assert!(
        stderr.contains("temporary file") && stderr.contains(&missing.display().to_string()),
        "names the directory: {stderr}"
    );
    let target = format!("{}_r", spec.name);
    assert_eq!(
        m.collection_id(&spec.db, &target).await.unwrap(),
        None,
        "nothing was created"
    );
    assert_milvus_up(&m).await;
    let _ = std::fs::remove_dir_all(&state);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// Lets restore `id`, held before its staging, go on (makes `go`): it fails
/// naming `damaged` as a staged copy unlike what was proven, Milvus still
/// answers, and the collection it made (`db.target`) is dropped.
async fn released_to_a_refused_staging(
    client: &mut milvus_backup::api::proto::backup_service_client::BackupServiceClient<
        tonic::transport::Channel,
    >,
    m: &MilvusClient,
    go: &std::path::Path,
    id: &str,
    damaged: &str,
    db: &str,
    target: &str,
) {
    std::fs::write(go, b"").unwrap();
    let job = tokio::time::timeout(
        Duration::from_secs(300),
        flows::watch_restore_to_end(client, id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    assert!(
        job.error_message.contains(damaged)
            && job
                .error_message
                .contains("differs from what was proven before import"),
        "{}",
        job.error_message
    );
    assert_milvus_up(m).await;
    eventually(
        "the collection the restore made is dropped",
        Duration::from_secs(60),
        || {
            let (m, db, target) = (m.clone(), db.to_string(), target.to_string());
            async move { m.collection_id(&db, &target).await.unwrap().is_none() }
        },
    )
    .await;
}

/// A binlog whose bytes change after the restore proved them (between its
/// proof and its staging into Milvus's bucket) never reaches Milvus: the
/// staged copy is checked against what the proof read, and the restore
/// fails with DATA_LOSS naming it before any import is asked for. An
/// incremental backup is always staged. Before, the CRC the copy computed
/// was dropped, and the changed bytes were imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_binlog_changed_after_its_proof_is_never_imported() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let _restarts = common::RestartsMilvusIfDown::new(&cfg);
    let store = backup_store(&cfg);
    let (spec, _) = source(&m, &common::unique("restaged"), 400).await;
    let release = tempfile::tempdir().unwrap();
    let go = release.path().join("go");
    let failpoint = format!("restore.created@{}", go.display());
    let server = process::Proc::start(&cfg, "restaged-state", "", Some(&failpoint)).await;
    let mut client = server.client.clone();
    let (full, inc) = (common::unique("restaged_f"), common::unique("restaged_i"));
    flows::backup_collections(&mut client, &full, &[&spec.name]).await;
    flows::incremental_backup(&mut client, &inc, &[&spec.name]).await;
    let target = format!("{}_t", spec.name);
    let id = flows::start_restore(&mut client, restore_req(&inc, "_t", false)).await;
    server.wait_paused(Duration::from_secs(120)).await;
    // The incremental backup's objects are the full one's.
    let damaged = damage_largest_binlog(&store, &full).await;
    released_to_a_refused_staging(&mut client, &m, &go, &id, &damaged, &spec.db, &target).await;
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A backup of server-side copies (its checksums MD5 ETags, no CRC32C),
/// copied by hand to the second S3 and restored from there: its binlogs
/// stream into Milvus's bucket in parts (`multipartCopyThresholdMiB: 1`), so
/// a staged copy's ETag is no MD5. A binlog changed between its proof and
/// its staging fails the restore DATA_LOSS naming it, Milvus never called:
/// the proof computes the CRC32C too, which the streamed copy is compared
/// with. Before, only its size was compared: the changed bytes were imported
/// and Milvus 2.3.5 panicked ("CRC check failed"), restarted for the tests
/// after (`RestartsMilvusIfDown`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_binlog_proven_by_its_md5_and_changed_before_a_streamed_staging_is_never_imported() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let _restarts = common::RestartsMilvusIfDown::new(&cfg);
    let here = backup_store(&cfg);
    // Binlogs over 1 MiB: 40,000 rows a segment.
    let spec = data::Spec::new(&common::unique("md5stage"));
    data::create(&m, &spec).await;
    for rows in [0..40_000, 40_000..80_000] {
        data::insert(&m, &spec, "", rows, 7).await;
        data::flush(&m, &spec.db, &spec.name).await;
    }
    let backup = common::unique("md5stage_b");
    let server = common::TestServer::start(&cfg).await;
    flows::backup_collections(&mut server.client.clone(), &backup, &[&spec.name]).await;
    drop(server);
    let checksums = here
        .read(&format!("backup/{backup}/meta/checksums.json"))
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&checksums).contains("crc32c"),
        "server-side copies: MD5 ETags only"
    );

    let (host, port) = common::second_s3();
    let root = common::unique("md5stage_root");
    let offsite = common::backups_on_second_s3(cfg.clone());
    let there = S3Bucket::new(&offsite.minio.backup_bucket().unwrap()).unwrap();
    there.ensure_bucket(true).await.unwrap();
    for o in here.list(&format!("backup/{backup}/")).await.unwrap() {
        let body = here.read(&o.key).await.unwrap();
        let key = format!("{root}/{}", &o.key["backup/".len()..]);
        there.write(&key, body).await.unwrap();
    }

    let go = std::env::temp_dir().join(common::unique("md5stage_go"));
    let (state, config) = process::config_with(&cfg, "md5stage-state", "");
    let yaml = std::fs::read_to_string(&config).unwrap().replace(
        &format!("  backupBucketName: {}\n", cfg.minio.bucket_name),
        &format!(
            "  backupBucketName: offsite\n  backupAddress: {host}\n  backupPort: {port}\n  \
             backupAccessKeyID: offsite-key\n  backupSecretAccessKey: offsite-secret\n  \
             multipartCopyThresholdMiB: 1\n"
        ),
    );
    std::fs::write(&config, yaml).unwrap();
    process::root_backups_at(&config, &root);
    let failpoint = format!("restore.created@{}", go.display());
    let mut server = process::Proc::on(state, config, Some(&failpoint)).await;
    let target = format!("{}_t", spec.name);
    let id = flows::start_restore(&mut server.client, restore_req(&backup, "_t", false)).await;
    server.wait_paused(Duration::from_secs(120)).await;
    let damaged =
        data::flip_largest_object(&there, &format!("{root}/{backup}/"), "binlogs/insert_log/")
            .await;
    released_to_a_refused_staging(
        &mut server.client,
        &m,
        &go,
        &id,
        &damaged,
        &spec.db,
        &target,
    )
    .await;
    let _ = std::fs::remove_file(&go);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A backup whose meta names one partition twice (edited by hand: a second
/// `_default` with another id) is refused DATA_LOSS naming the partition,
/// before anything is made in Milvus. Imports are followed by partition name:
/// the second would have followed the first's and been counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_meta_naming_a_partition_twice_is_refused_before_milvus_is_touched() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let _restarts = common::RestartsMilvusIfDown::new(&cfg);
    let store = backup_store(&cfg);
    let (spec, _) = source(&m, &common::unique("twice"), 100).await;
    let backup = common::unique("twice_b");
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    flows::backup_collections(&mut client, &backup, &[&spec.name]).await;
    let key = format!("backup/{backup}/meta/full_meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&store.read(&key).await.unwrap()).unwrap();
    let partitions = meta["collection_backups"][0]["partition_backups"]
        .as_array_mut()
        .unwrap();
    let mut twin = partitions[0].clone();
    twin["partition_id"] = serde_json::json!(twin["partition_id"].as_i64().unwrap() + 1);
    partitions.push(twin);
    store
        .write(&key, Bytes::from(serde_json::to_vec(&meta).unwrap()))
        .await
        .unwrap();

    let err = client
        .restore(restore_req(&backup, "_t", false))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    assert!(
        err.message().contains("partition \"_default\"") && err.message().contains(&backup),
        "{err:?}"
    );
    assert!(
        !m.has_collection(&spec.db, &format!("{}_t", spec.name))
            .await
            .unwrap()
    );
    flows::delete_eventually(&client, &backup, "the backup").await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A backup whose schema has what Milvus 2.3.5 lacks (a field made nullable,
/// or of type SparseFloatVector, as a backup of Milvus 2.5 could have; the
/// schema edited by hand here) is refused FAILED_PRECONDITION naming the
/// field, before anything is made: 2.3.5 makes such a collection all the
/// same (ignoring the flag, keeping the type it cannot read), and its import
/// could misread or fail on the data. A meta-only restore, so that the code
/// before (which made the collection) imported nothing into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_with_what_milvus_lacks_is_refused_before_milvus_is_touched() {
    use base64::Engine as _;
    use milvus_backup::milvus::proto::schema::CollectionSchema;
    use prost::Message as _;
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let _restarts = common::RestartsMilvusIfDown::new(&cfg);
    let store = backup_store(&cfg);
    let (spec, _) = source(&m, &common::unique("newer"), 50).await;
    let backup = common::unique("newer_b");
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    flows::backup_collections(&mut client, &backup, &[&spec.name]).await;
    let key = format!("backup/{backup}/meta/full_meta.json");
    let original = store.read(&key).await.unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;

    for (edit, named) in [
        ("nullable", "field \"f_i64\", nullable"),
        (
            "sparse",
            "field \"f_float\" of type SparseFloatVector (104)",
        ),
    ] {
        let mut meta: serde_json::Value = serde_json::from_slice(&original).unwrap();
        let coll = &mut meta["collection_backups"][0];
        let bytes = b64
            .decode(coll["schema_proto_base64"].as_str().unwrap())
            .unwrap();
        let mut schema = CollectionSchema::decode(bytes.as_slice()).unwrap();
        for f in &mut schema.fields {
            match (edit, f.name.as_str()) {
                ("nullable", "f_i64") => f.nullable = true,
                ("sparse", "f_float") => f.data_type = 104,
                _ => {}
            }
        }
        coll["schema_proto_base64"] = serde_json::json!(b64.encode(schema.encode_to_vec()));
        store
            .write(&key, Bytes::from(serde_json::to_vec(&meta).unwrap()))
            .await
            .unwrap();
        let request = pb::RestoreRequest {
            meta_only: true,
            ..restore_req(&backup, "_n", false)
        };
        let target = format!("{}_n", spec.name);
        let err = match client.restore(request).await {
            Ok(_) => {
                let made = m.has_collection(&spec.db, &target).await.unwrap();
                data::drop_if_exists(&m, &spec.db, &target).await;
                panic!("{edit}: accepted (collection made: {made})");
            }
            Err(e) => e,
        };
        assert_eq!(
            err.code(),
            tonic::Code::FailedPrecondition,
            "{edit}: {err:?}"
        );
        assert!(err.message().contains(named), "{edit}: {err:?}");
        assert!(
            !m.has_collection(&spec.db, &target).await.unwrap(),
            "{edit}"
        );
    }
    assert_milvus_up(&m).await;
    store.write(&key, original).await.unwrap();
    flows::delete_eventually(&client, &backup, "the backup").await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
