//! Helpers of the incremental-backup tests: backups of one `hello_milvus`
//! collection, their restore checked row for row, and deletes.

use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::milvus::MilvusClient;
use tonic::transport::Channel;

use super::{flows, hello};

/// The fields compared after a restore.
pub const FIELDS: &[&str] = &["pk", "random", "var", "embeddings"];

/// A backup of `coll`, full or incremental, waited for.
pub async fn backup(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
    coll: &str,
    incremental: bool,
) -> pb::Backup {
    flows::backup(
        client,
        pb::CreateBackupRequest {
            incremental: Some(incremental),
            ..flows::backup_request(name, &[coll])
        },
    )
    .await
}

/// An incremental backup of `coll`, waited for.
pub async fn backup_in(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
    coll: &str,
) -> pb::Backup {
    backup(client, name, coll, true).await
}

/// Restores `backup` under a suffix and asserts its rows equal `expected`.
pub async fn assert_restores(
    client: &mut BackupServiceClient<Channel>,
    m: &MilvusClient,
    backup: &str,
    coll: &str,
    expected: &[milvus_backup::milvus::rows::Row],
) {
    let suffix = "_incr_check";
    let target = format!("{coll}{suffix}");
    hello::drop_if_exists(m, "default", &target).await;
    flows::restore(client, flows::restore_loaded_request(backup, suffix)).await;
    let got = hello::rows(m, "default", &target, "pk >= 0", FIELDS).await;
    hello::assert_rows_equal(expected, &got);
    hello::drop_if_exists(m, "default", &target).await;
}

/// DeleteBackup of `name`, which must succeed.
pub async fn delete(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
) -> pb::DeleteBackupResponse {
    try_delete(client, name).await.expect("DeleteBackup")
}

/// DeleteBackup of `name`, waited for.
pub async fn try_delete(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
) -> Result<pb::DeleteBackupResponse, tonic::Status> {
    client
        .delete_backup(pb::DeleteBackupRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}
