//! Backup and restore through the gRPC API, asserting the job succeeded.

use std::time::{Duration, Instant};

use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use tonic::transport::Channel;

/// Runs a backup to its end; panics unless it succeeded.
pub async fn backup(
    client: &mut BackupServiceClient<Channel>,
    req: pb::CreateBackupRequest,
) -> pb::Backup {
    let mut stream = client
        .create_backup(req)
        .await
        .expect("CreateBackup accepted")
        .into_inner();
    let mut last = None;
    while let Some(msg) = stream.message().await.unwrap() {
        last = msg.backup;
    }
    let last = last.expect("a snapshot");
    assert_eq!(
        last.state,
        pb::JobState::Succeeded as i32,
        "backup failed: {last:?}"
    );
    last
}

/// Backs up the named collections (`coll` or `db.coll`).
pub async fn backup_collections(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
    collections: &[&str],
) -> pb::Backup {
    backup(
        client,
        pb::CreateBackupRequest {
            backup_name: name.into(),
            collection_names: collections.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        },
    )
    .await
}

/// Runs a restore to its end and returns the last snapshot (any state).
pub async fn restore_job(
    client: &mut BackupServiceClient<Channel>,
    req: pb::RestoreRequest,
) -> pb::RestoreJob {
    let mut stream = client
        .restore(req)
        .await
        .expect("Restore accepted")
        .into_inner();
    let mut last = None;
    while let Some(msg) = stream.message().await.unwrap() {
        last = msg.restore;
    }
    last.expect("a snapshot")
}

/// Runs a restore to its end; panics unless it succeeded.
pub async fn restore(
    client: &mut BackupServiceClient<Channel>,
    req: pb::RestoreRequest,
) -> pb::RestoreJob {
    let job = restore_job(client, req).await;
    assert_eq!(
        job.state,
        pb::JobState::Succeeded as i32,
        "restore failed: {job:?}"
    );
    job
}

/// GetBackup by name; panics unless the server answers with a backup.
pub async fn get_backup(client: &mut BackupServiceClient<Channel>, name: &str) -> pb::Backup {
    client
        .get_backup(pb::GetBackupRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .expect("GetBackup")
        .into_inner()
        .backup
        .expect("a backup")
}

/// Waits until `check` holds, polling; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The state ListBackups gives backup `name`, if it lists it.
pub async fn listed_state(client: &mut BackupServiceClient<Channel>, name: &str) -> Option<i32> {
    let mut s = client
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut found = None;
    while let Some(msg) = s.message().await.unwrap() {
        let b = msg.backup.unwrap();
        if b.name == name {
            found = Some(b.state);
        }
    }
    found
}

pub async fn get_restore(client: &mut BackupServiceClient<Channel>, id: &str) -> pb::RestoreJob {
    client
        .get_restore(pb::GetRestoreRequest { id: id.into() })
        .await
        .expect("the restore is remembered")
        .into_inner()
        .restore
        .unwrap()
}
