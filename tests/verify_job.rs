//! VerifyBackup is a job of the one runner, on the real Milvus 2.3.5 and S3:
//! it is counted in the job metrics like every kind, and a verification that
//! loses its hold on the backup (another process may then delete it) stops
//! ABORTED instead of reading what a delete removes as damage. A reader and
//! a writer that meet wait for the one that only lets go.

mod common;

use std::time::Duration;

use common::flows::{self, eventually};
use common::process;
use common::restores::backed_up;
use milvus_backup::api::proto as pb;
use milvus_backup::storage::{ObjectStore, S3Bucket};

/// The value of metric line `name` (with its labels) of the server on
/// `port`; 0 when the line is absent (a counter never incremented).
fn metric(port: u16, name: &str) -> u64 {
    let text = tokio::task::block_in_place(|| common::curl::metrics(port));
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map_or(0, |v| v.trim().parse().expect("a metric value"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verification_is_a_job_that_stops_when_it_loses_its_hold() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, _, backup) = backed_up(&cfg, &m, "vjob", 200).await;
    let store = S3Bucket::new(&cfg.minio.backup_bucket().unwrap()).unwrap();
    let release = std::env::temp_dir().join(common::unique("vjob_release"));
    let point = format!("verify.started@{}", release.display());
    let server = process::Proc::start(&cfg, "vjob-state", "", Some(&point)).await;
    let (mut client, port) = (server.client.clone(), server.port);
    let running = "milvus_backup_jobs_running{kind=\"verify\"}";
    let ended =
        |state: &str| format!("milvus_backup_jobs_total{{kind=\"verify\",state=\"{state}\"}}");

    // Held at its start, the verification runs as a job of the runner.
    let stream = flows::verify_stream(&mut client, &backup).await;
    process::wait_for_log(&server.log, "failpoint reached", Duration::from_secs(30)).await;
    assert_eq!(
        metric(port, running),
        1,
        "the verification is a running job"
    );

    // Its hold is taken from it (its lease object removed, as by a process
    // that found it expired): the job stops ABORTED, counted once as failed,
    // and never reports damage.
    let reads = format!("backup/_leases/reads/{backup}/");
    let held: Vec<String> = store
        .list(&reads)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(held.len(), 1, "one reader's lease: {held:?}");
    store.delete(&held).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), flows::last_message(stream))
        .await
        .expect("the verification ends once its hold is lost")
        .expect_err("a verification without its hold does not succeed");
    assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");
    assert!(err.message().contains("lost its hold"), "{err:?}");
    eventually(
        "the job is counted as ended",
        Duration::from_secs(30),
        || async { metric(port, running) == 0 },
    )
    .await;
    assert_eq!(metric(port, &ended("failed")), 1);
    assert_eq!(metric(port, &ended("succeeded")), 0);

    // Let go at its start, the next one verifies the backup and is counted.
    std::fs::write(&release, b"").unwrap();
    flows::assert_verifies(&mut client, &backup, "after the lost hold").await;
    assert_eq!(metric(port, &ended("succeeded")), 1);
    assert!(
        flows::readers_released(&store, &reads).await,
        "its hold is let go"
    );

    let _ = std::fs::remove_file(&release);
    server.finish();
    common::data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A verification refused by a writer that only lets go (here a lease held
/// by hand as a takeover marking a job holds it, for 1 s) waits for it and
/// verifies. Before, only a create's holder was waited for: it stopped
/// ABORTED naming a job that changed nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verification_waits_for_a_short_lived_writer() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, _, backup) = backed_up(&cfg, &m, "vshort", 100).await;
    let server = common::TestServer::start(&cfg).await;
    let let_go = writer_held_for(&server.ctx, &backup, Duration::from_secs(1)).await;
    flows::assert_verifies(
        &mut server.client.clone(),
        &backup,
        "after the writer let go",
    )
    .await;
    let_go.await.unwrap();
    common::data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A delete (held just after its commit point, `delete.after_commit_point`)
/// whose backup a verification began to read in that moment (its lease
/// written, held at `lease.reading` before it looks at the writer): the
/// verification is refused by the delete's hold and lets go, and the delete
/// waits for that instead of stopping. Before, the delete stopped ABORTED
/// naming the verification, the backup no longer listed and its folder
/// left until a delete was run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_waits_for_a_reader_its_hold_refuses() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    // A root of its own: no other test's orphan job is taken over here (a
    // restore's would reach `lease.reading` too).
    let root = common::unique("vrefused_root");
    let (spec, _) = common::restores::source(&m, &common::unique("vrefused"), 100).await;
    let backup = common::unique("vrefused_b");
    let creator = process::Proc::start_rooted(&cfg, "vrefused-create", &root, "").await;
    flows::backup_collections(&mut creator.client.clone(), &backup, &[&spec.name]).await;
    creator.finish();
    let store = S3Bucket::new(&cfg.minio.backup_bucket().unwrap()).unwrap();
    let (delete_go, read_go) = (
        std::env::temp_dir().join(common::unique("vrefused_delete")),
        std::env::temp_dir().join(common::unique("vrefused_read")),
    );
    // The deleter's lease TTL (its wait for readers) is 10 s, so that the
    // reader is let go well within it.
    let (state, config) = process::config_with(&cfg, "vrefused-delete", "");
    process::set_lease_ttl(&config, 10);
    process::root_backups_at(&config, &root);
    let point = format!("delete.after_commit_point@{}", delete_go.display());
    let deleter = process::Proc::on(state, config, Some(&point)).await;
    let mut c = deleter.client.clone();
    let name = backup.clone();
    let delete = tokio::spawn(async move {
        c.delete_backup(pb::DeleteBackupRequest {
            name,
            ..Default::default()
        })
        .await
    });
    deleter.wait_paused(Duration::from_secs(60)).await;

    let point = format!("lease.reading@{}", read_go.display());
    let reader =
        process::Proc::start_rooted_paused(&cfg, "vrefused-read", &root, "", Some(&point)).await;
    let mut c = reader.client.clone();
    let name = backup.clone();
    let verify = tokio::spawn(async move {
        c.verify_backup(pb::VerifyBackupRequest {
            name,
            detached: false,
        })
        .await
    });
    reader.wait_paused(Duration::from_secs(60)).await;
    std::fs::write(&delete_go, b"").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !delete.is_finished(),
        "the delete waits for the reader: {:?}",
        delete.await
    );
    std::fs::write(&read_go, b"").unwrap();
    // Refused at its start, or in its stream.
    let refused = match verify.await.unwrap() {
        Ok(stream) => flows::last_message(stream.into_inner())
            .await
            .expect_err("the verification is refused"),
        Err(refused) => refused,
    };
    assert_eq!(refused.code(), tonic::Code::Aborted, "{refused:?}");
    assert!(refused.message().contains("delete"), "{refused:?}");
    delete.await.unwrap().expect("the backup is deleted");
    let left = store.list(&format!("{root}/{backup}/")).await.unwrap();
    assert!(left.is_empty(), "{left:?}");

    for f in [&delete_go, &read_go] {
        let _ = std::fs::remove_file(f);
    }
    deleter.finish();
    reader.finish();
    common::data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A REST verification whose caller went away while its start waited for a
/// writer's hold (held by hand for 4 s; curl gives up after 1 s) is stopped
/// once it starts, freeing its job slot and its hold. (Before, it ran on,
/// here held at `verify.started` for good, with no one to stop it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rest_verification_whose_caller_left_while_it_started_is_stopped() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, _, backup) = backed_up(&cfg, &m, "vleft", 100).await;
    let release = std::env::temp_dir().join(common::unique("vleft_release"));
    let point = format!("verify.started@{}", release.display());
    let server = process::Proc::start(&cfg, "vleft-state", "", Some(&point)).await;
    let holder = common::TestServer::start(&cfg).await;
    let let_go = writer_held_for(&holder.ctx, &backup, Duration::from_secs(4)).await;
    let url = format!(
        "http://127.0.0.1:{}/api/v1/verify?backup_name={backup}",
        server.port
    );
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "1", &url])
            .output()
            .unwrap()
    });
    assert_eq!(out.status.code(), Some(28), "curl gave up (timed out)");
    let_go.await.unwrap();
    let running = "milvus_backup_jobs_running{kind=\"verify\"}";
    let ended = "milvus_backup_jobs_total{kind=\"verify\",state=\"cancelled\"}";
    eventually(
        "the verification started, then stopped",
        Duration::from_secs(30),
        || async { metric(server.port, ended) == 1 && metric(server.port, running) == 0 },
    )
    .await;
    std::fs::write(&release, b"").unwrap();
    let _ = std::fs::remove_file(&release);
    server.finish();
    common::data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// Holds `backup`'s writer lease by hand (as a takeover marking a job holds
/// it) and lets it go after `time`; the task that lets it go.
async fn writer_held_for(
    ctx: &milvus_backup::context::Context,
    backup: &str,
    time: Duration,
) -> tokio::task::JoinHandle<()> {
    let writer = milvus_backup::jobs::holds::writer(backup);
    let held = ctx
        .leases()
        .acquire(&writer, "a-takeover", "mark completed")
        .await
        .unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(time).await;
        held.release().await;
    })
}
