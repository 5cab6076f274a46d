//! SIGTERM to the `milvus-backup` binary while a backup runs, against the real
//! Milvus 2.3.5 and S3 of the test environment (copies are slowed with
//! `backup.rateLimitMiBps` so the job is surely running):
//! - health turns NOT_SERVING and new jobs get UNAVAILABLE at once;
//! - a job that finishes within `backup.shutdownGraceSeconds` completes (its
//!   watcher sees SUCCEEDED), then the server exits 0, and after a restart the
//!   backup is listed and its record says SUCCEEDED (held at
//!   `backup.described@PATH` until the refusals above were seen);
//! - a job still running when the grace period ends is left running for
//!   another server (or this one, restarted) to resume: its watcher's stream
//!   ends cleanly, its objects are kept, and the restarted server resumes it
//!   to SUCCEEDED under the same id.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{self, ServerProcess};
use common::{flows, hello};
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::storage::{ObjectStore, S3Bucket};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A config for the test environment with its own state directory, a copy
/// rate limit (MiB/s) and a shutdown grace period (seconds).
fn write_config(cfg: &milvus_backup::config::Config, dir: &Path, rate: f64, grace: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("backup.yaml");
    let backup = format!(
        "  stateDir: {}\n  rateLimitMiBps: {rate}\n  shutdownGraceSeconds: {grace}\n",
        dir.join("state").display()
    );
    process::write_config(cfg, &path, &backup);
    path
}

async fn start(config: &Path) -> (ServerProcess, u16, BackupServiceClient<Channel>) {
    process::start_server(config, Stdio::piped()).await
}

/// The names ListBackups streams as complete (SUCCEEDED).
async fn listed(client: &mut BackupServiceClient<Channel>) -> Vec<String> {
    flows::listed(client)
        .await
        .into_iter()
        .filter(|b| b.state == pb::JobState::Succeeded as i32)
        .map(|b| b.name)
        .collect()
}

/// Restarts the server on `config`: the process, a client, backup `name` as
/// GetBackup reports it, and the names listed as complete.
async fn after_restart(
    config: &Path,
    name: &str,
) -> (
    ServerProcess,
    BackupServiceClient<Channel>,
    pb::Backup,
    Vec<String>,
) {
    let (child, _, mut client) = start(config).await;
    let got = flows::get_backup(&mut client, name).await;
    let list = listed(&mut client).await;
    (child, client, got, list)
}

fn sigterm(child: &ServerProcess) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the process to exit; returns whether it exited 0, and its log.
async fn wait_exit(mut child: ServerProcess, within: Duration) -> (bool, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(out) = child.try_exited() {
            return (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a backup of `coll` and returns its stream once the job is RUNNING.
async fn running_backup(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
    coll: &str,
) -> tonic::Streaming<pb::CreateBackupResponse> {
    let mut stream = client
        .create_backup(flows::backup_request(name, &[coll]))
        .await
        .unwrap()
        .into_inner();
    loop {
        let msg = stream.message().await.unwrap().expect("a snapshot");
        let b = msg.backup.unwrap();
        if b.state == pb::JobState::Running as i32 && b.progress.unwrap().files_total > 0 {
            return stream;
        }
        assert!(
            b.state < pb::JobState::Succeeded as i32,
            "ended early: {b:?}"
        );
    }
}

/// The refusals a stopping server gives: NOT_SERVING, then UNAVAILABLE for a new job.
async fn assert_refuses_new_work(port: u16, client: &mut BackupServiceClient<Channel>, coll: &str) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == ServingStatus::NotServing as i32 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health still {status} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = client
        .create_backup(pb::CreateBackupRequest {
            backup_name: common::unique("too_late"),
            collection_names: vec![coll.into()],
            ..Default::default()
        })
        .await
        .expect_err("a new job during shutdown must be refused");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("shutting down"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_a_running_backup_finish_and_refuses_new_ones() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let coll = common::unique("sigterm_src");
    hello::create(&m, &coll, 3000, 3, 5).await;
    let dir = std::env::temp_dir().join(common::unique("sigterm-finish"));
    // About 200 KB of binlogs at 0.06 MiB/s: a few seconds of copying.
    let config = write_config(&cfg, &dir, 0.06, 120);

    // The backup is held once described (its copies run on) until `go`
    // exists: it cannot end before the refusals are seen, however slow they are.
    let go = dir.join("go");
    let failpoint = format!("backup.described@{}", go.display());
    let (child, port, mut client) = process::start_server_with(
        &config,
        Stdio::piped(),
        &[("MILVUS_BACKUP_FAILPOINTS", failpoint.as_str())],
    )
    .await;
    let name = common::unique("sigterm_ok");
    let stream = running_backup(&mut client, &name, &coll).await;
    sigterm(&child);
    assert_refuses_new_work(port, &mut client, &coll).await;
    std::fs::write(&go, b"").unwrap();

    let last = flows::last_backup(stream).await;
    assert_eq!(last.state, pb::JobState::Succeeded as i32, "{last:?}");
    let (clean, log) = wait_exit(child, Duration::from_secs(60)).await;
    assert!(clean, "exit status not 0; log:\n{log}");
    assert!(log.contains("waiting for running jobs to finish"), "{log}");

    let (child, mut client, got, list) = after_restart(&config, &name).await;
    assert_eq!(got.state, pb::JobState::Succeeded as i32, "{got:?}");
    assert!(list.contains(&name), "{name} not listed");
    client
        .delete_backup(pb::DeleteBackupRequest {
            name,
            ..Default::default()
        })
        .await
        .unwrap();
    sigterm(&child);
    assert!(wait_exit(child, Duration::from_secs(30)).await.0);
    hello::drop_if_exists(&m, "default", &coll).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backup still running when the grace period ends is not cancelled: it is
/// left running in the shared records with its objects kept (a synchronous
/// REST create's caller is answered 503 saying it is resumed, not 500 as
/// before), and the
/// restarted server resumes it under the same id to SUCCEEDED (another
/// replica would, as `replicas.rs` shows for a killed owner). On a backup
/// root of its own, so that no other test's server takes it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_outliving_the_grace_period_is_left_to_be_resumed() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let store = S3Bucket::new(&cfg.minio.backup_bucket().unwrap()).unwrap();
    let coll = common::unique("sigterm_slow");
    hello::create(&m, &coll, 3000, 3, 6).await;
    let dir = std::env::temp_dir().join(common::unique("sigterm-grace"));
    let root = common::unique("sigterm_root");
    // Minutes of copying, one second of grace, a 3 s lease TTL.
    let rooted = |rate: f64| {
        let config = write_config(&cfg, &dir, rate, 1);
        let yaml = std::fs::read_to_string(&config)
            .unwrap()
            .replace(
                "backupRootPath: backup\n",
                &format!("backupRootPath: {root}\n"),
            )
            .replace(
                "  shutdownGraceSeconds: 1\n",
                "  shutdownGraceSeconds: 1\n  leaseTtlSeconds: 3\n",
            );
        std::fs::write(&config, yaml).unwrap();
        config
    };
    let config = rooted(0.002);

    let (child, port, mut client) = start(&config).await;
    let name = common::unique("sigterm_cut");
    let stream = running_backup(&mut client, &name, &coll).await;
    // A synchronous REST create of a second backup, running at the stop.
    let second = common::unique("sigterm_rest");
    let url = format!("http://127.0.0.1:{port}/api/v1/create");
    let body = format!(r#"{{"backup_name": "{second}", "collection_names": ["{coll}"]}}"#);
    let rest = std::thread::spawn(move || common::curl::post_json(&url, &body));
    flows::eventually("the REST backup runs", Duration::from_secs(60), || {
        let (mut c, second) = (client.clone(), second.clone());
        async move {
            let got = c
                .get_backup(pb::GetBackupRequest {
                    name: second,
                    ..Default::default()
                })
                .await;
            got.is_ok_and(|b| {
                b.into_inner()
                    .backup
                    .is_some_and(|b| b.state == pb::JobState::Running as i32)
            })
        }
    })
    .await;
    sigterm(&child);
    assert_refuses_new_work(port, &mut client, &coll).await;
    // Its caller is told to follow it elsewhere: 503, not 500.
    let (status, answer) = tokio::task::block_in_place(|| rest.join().unwrap());
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer.to_string().contains("still running") && answer.to_string().contains("resumes it"),
        "{answer}"
    );
    // The watcher's stream ends cleanly, the job still running.
    let last = flows::last_snapshot(stream)
        .await
        .expect("the watcher's stream ends cleanly")
        .expect("the watcher sees the job's last snapshot");
    assert_eq!(last.state, pb::JobState::Running as i32, "{last:?}");
    let (clean, log) = wait_exit(child, Duration::from_secs(60)).await;
    assert!(clean, "exit status not 0; log:\n{log}");
    assert!(
        log.contains("left running for another server to resume"),
        "{log}"
    );
    let kept = store.list(&format!("{root}/{name}/")).await.unwrap();
    assert!(
        !kept.is_empty(),
        "the copied objects are kept for the resume"
    );

    // Restarted (and faster): the job is resumed, not redone.
    let config = rooted(1.0);
    let (child, _, mut client) = start(&config).await;
    let end = flows::watch_backup_to_end(&mut client, &name, Duration::from_secs(120)).await;
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    assert_eq!(end.id, last.id, "the same job, resumed");
    assert!(
        listed(&mut client).await.contains(&name),
        "{name} not listed"
    );
    flows::assert_verifies(&mut client, &name, "resumed after a graceful stop").await;
    let rest_end = flows::watch_backup_to_end(&mut client, &second, Duration::from_secs(120)).await;
    assert_eq!(
        rest_end.state,
        pb::JobState::Succeeded as i32,
        "{rest_end:?}"
    );
    for name in [name, second] {
        client
            .delete_backup(pb::DeleteBackupRequest {
                name,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    sigterm(&child);
    assert!(wait_exit(child, Duration::from_secs(30)).await.0);
    hello::drop_if_exists(&m, "default", &coll).await;
    let _ = std::fs::remove_dir_all(&dir);
}
