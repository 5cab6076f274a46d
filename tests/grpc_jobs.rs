//! Jobs outlive their callers: a dropped CreateBackup stream does not stop the
//! backup, and WatchRestore from a second client sees the same job, also after
//! it ended. Against the real Milvus 2.3.5 and S3 of the test environment.

mod common;

use common::flows::{self, drain};
use common::hello;
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use tonic::transport::Channel;

/// WatchBackup of `name`, read to its end.
async fn watch_backup(
    mut client: BackupServiceClient<Channel>,
    name: &str,
) -> Vec<pb::WatchBackupResponse> {
    let stream = client
        .watch_backup(pb::WatchBackupRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner();
    drain(stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_create_stream_does_not_stop_the_backup() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let coll = common::unique("dropped_stream");
    hello::create(&m, &coll, 2000, 2, 11).await;

    let name = common::unique("dropped");
    let mut stream = server
        .client()
        .await
        .create_backup(pb::CreateBackupRequest {
            backup_name: name.clone(),
            collection_names: vec![coll.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap().backup.unwrap();
    assert_ne!(
        first.state,
        pb::JobState::Succeeded as i32,
        "first snapshot is already final"
    );
    drop(stream); // the caller goes away halfway

    let watched = watch_backup(server.client().await, &name).await;
    let last = watched.last().unwrap().backup.clone().unwrap();
    assert_eq!(last.state, pb::JobState::Succeeded as i32, "{last:?}");
    assert_eq!(last.id, first.id);
    assert_eq!(last.collections[0].row_count, 2000);

    let got = flows::get_backup(&mut server.client().await, &name).await;
    assert_eq!(got.state, pb::JobState::Succeeded as i32);
    assert_eq!(got.collections[0].collection_name, coll);

    // A new server (as after a restart) still lists and returns it from storage.
    server.handle.stop().await.unwrap();
    let again = common::TestServer::start(&cfg).await;
    let listed = flows::listed(&mut again.client().await).await;
    let found = listed
        .iter()
        .find(|b| b.name == name)
        .expect("backup listed after restart");
    assert_eq!(found.state, pb::JobState::Succeeded as i32);
    assert_eq!(found.collections[0].row_count, 2000);
    let watched = watch_backup(again.client().await, &name).await;
    assert_eq!(
        watched.len(),
        1,
        "a finished backup is one terminal snapshot"
    );
    hello::drop_if_exists(&m, "default", &coll).await;
    again.handle.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_restore_from_a_second_client_sees_the_same_job() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let coll = common::unique("watch_restore");
    hello::create(&m, &coll, 1500, 3, 13).await;
    let name = common::unique("watched");
    let backup = server
        .client()
        .await
        .create_backup(flows::backup_request(&name, &[&coll]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        flows::last_backup(backup).await.state,
        pb::JobState::Succeeded as i32
    );

    let mut first_client = server.client().await;
    let mut stream = first_client
        .restore(pb::RestoreRequest {
            backup_name: name.clone(),
            collection_suffix: "_copy".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap().restore.unwrap();
    let id = first.id.clone();

    let mut second_client = server.client().await;
    let watcher = tokio::spawn(async move {
        drain(
            second_client
                .watch_restore(pb::WatchRestoreRequest { id })
                .await
                .unwrap()
                .into_inner(),
        )
        .await
    });
    let mut from_first: Vec<pb::RestoreJob> = vec![first.clone()];
    from_first.extend(drain(stream).await.into_iter().filter_map(|r| r.restore));
    let from_second: Vec<pb::RestoreJob> = watcher
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.restore)
        .collect();

    let (a, b) = (from_first.last().unwrap(), from_second.last().unwrap());
    assert_eq!(a.state, pb::JobState::Succeeded as i32, "{a:?}");
    assert_eq!(a, b, "both clients end on the same snapshot");
    assert_eq!(a.collections[0].imported_rows, 1500);

    // After the end: one terminal snapshot, and GetRestore returns it.
    let late = drain(
        server
            .client()
            .await
            .watch_restore(pb::WatchRestoreRequest {
                id: first.id.clone(),
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].restore.as_ref().unwrap(), a);
    let got = flows::get_restore(&mut server.client().await, &first.id).await;
    assert_eq!(&got, a);

    hello::drop_if_exists(&m, "default", &coll).await;
    hello::drop_if_exists(&m, "default", &format!("{coll}_copy")).await;
    server.handle.stop().await.unwrap();
}
