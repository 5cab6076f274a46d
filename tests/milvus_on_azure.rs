//! Milvus 2.3.5 itself on Azure Blob Storage (Azurite), and its backups in
//! another container of the same account: every binlog is copied
//! server-side (Copy Blob, seen in Azurite's request log), restore stages
//! server-side too, and the rows come back equal. This binary restarts the
//! test environment's Milvus on Azurite, and puts it back on S3 when it ends
//! (also when it fails), so it holds one test only.

mod common;
#[path = "common/figures.rs"]
mod figures;

use common::data::{self, Spec};
use common::flows;
use milvus_backup::config::Secret;

/// Puts Milvus back on S3 when dropped.
struct BackOnS3;

impl Drop for BackOnS3 {
    fn drop(&mut self) {
        common::restart_milvus_on("s3");
    }
}

/// The Copy Blob requests Azurite has logged into `container` (its debug log
/// names the operation and the URL on separate lines of one request id).
fn copies_into(log: &std::path::Path, container: &str) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let id = |l: &str| l.split_whitespace().nth(1).unwrap_or_default().to_string();
    let copies: std::collections::HashSet<String> = text
        .lines()
        .filter(|l| l.contains("Operation=Blob_StartCopyFromURL"))
        .map(id)
        .collect();
    text.lines()
        .filter(|l| l.contains("RequestURL=") && l.contains(&format!("/{container}/")))
        .filter(|l| copies.contains(&id(l)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn milvus_on_azure_backs_up_and_restores_server_side() {
    common::restart_milvus_on("azure");
    let _back = BackOnS3;
    let (blob_endpoint, azurite_log) = common::azurite();

    let mut cfg = common::config();
    cfg.minio.storage_type = "azure".into();
    cfg.minio.address = blob_endpoint;
    cfg.minio.access_key_id = common::AZURITE_ACCOUNT.into();
    cfg.minio.secret_access_key = Secret::new(common::AZURITE_KEY);
    // Backups in another container of the same account.
    cfg.minio.backup_bucket_name = format!("backups-{}", uuid::Uuid::new_v4().simple());

    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("on_azure"));
    let rows = data::populated(&m, &spec, 300, 100, 41).await;

    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let name = common::unique("azure_same_account");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    let backups = server.ctx.catalog.store();
    let binlogs = backups
        .list(&format!("backup/{name}/binlogs/"))
        .await
        .unwrap();
    assert!(!binlogs.is_empty());
    let copied = copies_into(&azurite_log, &cfg.minio.backup_bucket_name);
    assert!(
        copied >= binlogs.len(),
        "each of the {} binlogs copied server-side; Azurite logged {copied} Copy Blob into the \
         backup container",
        binlogs.len()
    );

    flows::assert_verifies(&mut client, &name, "milvus on azure").await;
    flows::restore(&mut client, flows::restore_loaded_request(&name, "_r")).await;
    let restored = data::rows(&m, &spec, &spec.db, &format!("{}_r", spec.name), &[]).await;
    data::assert_rows_equal("milvus on azure", &rows, &restored);
    figures::publish(
        "milvus_on_azure",
        &[format!(
            "Milvus 2.3.5 on Azurite: {} binlogs backed up by Copy Blob into another container \
             of the account ({copied} copies logged), restored server-side, {} rows equal",
            binlogs.len(),
            restored.len()
        )],
    );
    server.handle.stop().await.unwrap();
}
