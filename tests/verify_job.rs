//! VerifyBackup is a job of the one runner, on the real Milvus 2.3.5 and S3:
//! it is counted in the job metrics like every kind, and a verification that
//! loses its hold on the backup (another process may then delete it) stops
//! ABORTED instead of reading what a delete removes as damage.

mod common;

use std::time::Duration;

use common::flows::{self, eventually};
use common::process;
use common::restores::backed_up;
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
