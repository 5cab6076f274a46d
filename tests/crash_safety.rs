//! SIGKILL the server at many points of a backup and of a restore, restart it
//! on the same job records, and check: no interrupted backup is listed as
//! complete (and a complete one verifies), every interrupted job reports
//! FAILED "interrupted", its partial objects or created collections are gone,
//! and nothing that existed before is lost. The real binary, the real Milvus
//! 2.3.5 and S3.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::data::{self, Spec};
use common::process;
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::milvus::MilvusApi;
use milvus_backup::storage::{ObjectStore, S3Bucket};
use tonic::transport::Channel;

struct Proc {
    child: Child,
    port: u16,
}

fn write_config(cfg: &milvus_backup::config::Config, state: &Path) -> PathBuf {
    let path = state.with_extension("yaml");
    process::write_config(cfg, &path, &format!("  stateDir: {}\n", state.display()));
    path
}

async fn start(config: &Path) -> (Proc, BackupServiceClient<Channel>) {
    let (child, port, client) = process::start_server(config, Stdio::null()).await;
    (Proc { child, port }, client)
}

fn kill9(p: &mut Proc) {
    Command::new("kill")
        .args(["-KILL", &p.child.id().to_string()])
        .status()
        .unwrap();
    let _ = p.child.wait();
    let _ = p.port;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_jobs_are_failed_interrupted_and_leave_nothing_half_done() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let state = std::env::temp_dir().join(common::unique("crash-state"));
    let config = write_config(&cfg, &state);
    let store = S3Bucket::new(&cfg.minio.backup_bucket()).unwrap();
    let spec = Spec::new(&common::unique("crash_src"));
    data::create(&m, &spec).await;
    for i in 0..4 {
        data::insert(&m, &spec, "", i * 200..(i + 1) * 200, 101).await;
        data::flush(&m, &spec.db, &spec.name).await;
    }
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let source = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    assert_eq!(source.len(), 800);

    let (mut proc, mut client) = start(&config).await;
    let (mut survived, mut interrupted, mut completed) = (0, 0, 0);

    // Backups killed after 0 ms .. 1.5 s.
    for (i, delay) in [0u64, 100, 300, 600, 1000, 1500].into_iter().enumerate() {
        let name = format!("{}_{i}", common::unique("killed"));
        let mut stream = client
            .create_backup(pb::CreateBackupRequest {
                backup_name: name.clone(),
                collection_names: vec![spec.name.clone()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        stream.message().await.unwrap();
        tokio::time::sleep(Duration::from_millis(delay)).await;
        kill9(&mut proc);
        (proc, client) = start(&config).await;

        let got = client
            .get_backup(pb::GetBackupRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await;
        let listed = {
            let mut s = client
                .list_backups(pb::ListBackupsRequest::default())
                .await
                .unwrap()
                .into_inner();
            let mut found = None;
            while let Some(msg) = s.message().await.unwrap() {
                let b = msg.backup.unwrap();
                if b.name == name {
                    found = Some(b);
                }
            }
            found
        };
        match got.map(|r| r.into_inner().backup.unwrap()) {
            Ok(b) if b.state == pb::JobState::Succeeded as i32 => {
                // Complete before the kill: it must be sound.
                let mut v = client
                    .verify_backup(pb::VerifyBackupRequest { name: name.clone() })
                    .await
                    .unwrap()
                    .into_inner();
                while v
                    .message()
                    .await
                    .expect("a complete backup verifies")
                    .is_some()
                {}
                completed += 1;
            }
            Ok(b) => {
                assert_eq!(
                    b.state,
                    pb::JobState::Failed as i32,
                    "kill point {delay} ms: {b:?}"
                );
                assert!(b.error_message.contains("interrupted"), "{b:?}");
                assert!(
                    listed.is_none_or(|l| l.state != pb::JobState::Succeeded as i32),
                    "an interrupted backup is listed as complete"
                );
                assert!(
                    store
                        .list(&format!("backup/{name}/"))
                        .await
                        .unwrap()
                        .is_empty(),
                    "partial objects left at {delay} ms"
                );
                interrupted += 1;
            }
            Err(e) => panic!("kill point {delay} ms: the job is forgotten: {e:?}"),
        }
        survived += 1;
    }

    // Restores killed after 0 ms .. 3 s.
    let base = common::unique("crash_base");
    let mut s = client
        .create_backup(pb::CreateBackupRequest {
            backup_name: base.clone(),
            collection_names: vec![spec.name.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while s.message().await.unwrap().is_some() {}
    for (i, delay) in [0u64, 200, 700, 1500, 3000].into_iter().enumerate() {
        let suffix = format!("_k{i}");
        let target = format!("{}{suffix}", spec.name);
        let mut stream = client
            .restore(pb::RestoreRequest {
                backup_name: base.clone(),
                collection_suffix: suffix.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let id = stream.message().await.unwrap().unwrap().restore.unwrap().id;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        kill9(&mut proc);
        (proc, client) = start(&config).await;
        let job = client
            .get_restore(pb::GetRestoreRequest { id: id.clone() })
            .await
            .expect("the restore is remembered")
            .into_inner()
            .restore
            .unwrap();
        if job.state == pb::JobState::Succeeded as i32 {
            data::index(&m, &spec.db, &target).await;
            data::load(&m, &spec.db, &target).await;
            let rows = data::rows(&m, &spec, &spec.db, &target, &[]).await;
            data::assert_rows_equal(&target, &source, &rows);
            completed += 1;
        } else {
            assert_eq!(
                job.state,
                pb::JobState::Failed as i32,
                "kill point {delay} ms: {job:?}"
            );
            assert!(job.error_message.contains("interrupted"), "{job:?}");
            // Dropped in the background after the restart (after its imports end).
            let deadline = Instant::now() + Duration::from_secs(120);
            while m.has_collection(&spec.db, &target).await.unwrap() {
                assert!(
                    Instant::now() < deadline,
                    "a half-restored {target} is left at {delay} ms"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            interrupted += 1;
        }
        data::drop_if_exists(&m, &spec.db, &target).await;
        survived += 1;
    }

    // Nothing that existed before is lost.
    let after = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    data::assert_rows_equal("source after the kills", &source, &after);
    let mut v = client
        .verify_backup(pb::VerifyBackupRequest { name: base })
        .await
        .unwrap()
        .into_inner();
    while v
        .message()
        .await
        .expect("the base backup is intact")
        .is_some()
    {}
    println!(
        "kill points survived: {survived} ({interrupted} interrupted and cleaned up, {completed} completed before the kill)"
    );
    assert_eq!(survived, 11);
    assert!(
        interrupted >= 4,
        "too few kills landed mid-job: {interrupted}"
    );

    kill9(&mut proc);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_file(&config);
}
