//! Every refused request gets the right status, names the bad value, and
//! writes nothing. Against the real Milvus 2.3.5 and S3 of the test environment.

mod common;

use common::hello;
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::milvus::MilvusApi;
use tonic::transport::Channel;
use tonic::{Code, Status};

async fn create(
    client: &mut BackupServiceClient<Channel>,
    req: pb::CreateBackupRequest,
) -> Result<Vec<pb::Backup>, Status> {
    let mut stream = client.create_backup(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.message().await? {
        out.extend(msg.backup);
    }
    Ok(out)
}

async fn restore_status(
    client: &mut BackupServiceClient<Channel>,
    req: pb::RestoreRequest,
) -> Status {
    match client.restore(req).await {
        Ok(_) => panic!("restore was accepted"),
        Err(s) => s,
    }
}

fn assert_status(s: &Status, code: Code, mentions: &str) {
    assert_eq!(s.code(), code, "{s:?}");
    assert!(
        s.message().contains(mentions),
        "{:?} should mention {mentions:?}",
        s.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_refused_and_write_nothing() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let store = server.ctx.catalog.store().clone();
    let nothing_under = |name: String| {
        let store = store.clone();
        async move {
            assert!(
                store
                    .list(&format!("backup/{name}/"))
                    .await
                    .unwrap()
                    .is_empty(),
                "objects written for {name:?}"
            );
        }
    };

    // Bad names: INVALID_ARGUMENT naming the value.
    for bad in ["../x", "a b", "1abc", "x-y", "é", &"n".repeat(129)] {
        let err = create(
            &mut client,
            pb::CreateBackupRequest {
                backup_name: bad.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        let shown: String = bad.chars().take(20).collect();
        assert_status(&err, Code::InvalidArgument, &shown);
        nothing_under(bad.to_string()).await;
    }
    for bad in ["", " "] {
        let err = create(
            &mut client,
            pb::CreateBackupRequest {
                backup_name: bad.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
    }
    let err = create(
        &mut client,
        pb::CreateBackupRequest {
            backup_name: common::unique("ok"),
            collection_names: vec!["db.with.dots".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::InvalidArgument, "db.with.dots");

    // Unknown collection and database: NOT_FOUND, nothing written.
    let name = common::unique("nf");
    let err = create(
        &mut client,
        pb::CreateBackupRequest {
            backup_name: name.clone(),
            collection_names: vec!["no_such_collection_x1".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::NotFound, "no_such_collection_x1");
    nothing_under(name.clone()).await;
    let err = create(
        &mut client,
        pb::CreateBackupRequest {
            backup_name: name.clone(),
            database_names: vec!["no_such_db_x1".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::NotFound, "no_such_db_x1");
    nothing_under(name.clone()).await;

    // Unknown backup and restore job: NOT_FOUND.
    let err = restore_status(
        &mut client,
        pb::RestoreRequest {
            backup_name: "no_such_backup_x1".into(),
            ..Default::default()
        },
    )
    .await;
    assert_status(&err, Code::NotFound, "no_such_backup_x1");
    let err = client
        .get_backup(pb::GetBackupRequest {
            name: "no_such_backup_x1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "no_such_backup_x1");
    let err = client
        .watch_backup(pb::WatchBackupRequest {
            name: "no_such_backup_x1".into(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "no_such_backup_x1");
    let err = client
        .watch_restore(pb::WatchRestoreRequest {
            id: "no-such-job".into(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "no-such-job");
    let err = client
        .get_restore(pb::GetRestoreRequest {
            id: "no-such-job".into(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "no-such-job");

    // A real backup, then: the name is taken, and restoring onto the existing
    // collection is refused without touching it.
    let coll = common::unique("errors_src");
    hello::create(&m, &coll, 300, 1, 17).await;
    let taken = common::unique("taken");
    let done = create(
        &mut client,
        pb::CreateBackupRequest {
            backup_name: taken.clone(),
            collection_names: vec![coll.clone()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(done.last().unwrap().state, pb::JobState::Succeeded as i32);
    let objects_before = store.list(&format!("backup/{taken}/")).await.unwrap();
    let err = create(
        &mut client,
        pb::CreateBackupRequest {
            backup_name: taken.clone(),
            collection_names: vec![coll.clone()],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::AlreadyExists, &taken);
    assert_eq!(
        store.list(&format!("backup/{taken}/")).await.unwrap(),
        objects_before,
        "the existing backup changed"
    );

    let err = restore_status(
        &mut client,
        pb::RestoreRequest {
            backup_name: taken.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_status(&err, Code::FailedPrecondition, &coll);
    let rows = hello::rows(&m, "default", &coll, "pk >= 0", &["pk"]).await;
    assert_eq!(rows.len(), 300, "the existing collection was touched");

    // Conflicting options, a bad suffix, and a collection the backup lacks.
    let err = restore_status(
        &mut client,
        pb::RestoreRequest {
            backup_name: taken.clone(),
            drop_existing_collections: true,
            skip_create_collection: true,
            ..Default::default()
        },
    )
    .await;
    assert_status(&err, Code::InvalidArgument, "skip_create_collection");
    let err = restore_status(
        &mut client,
        pb::RestoreRequest {
            backup_name: taken.clone(),
            collection_suffix: "/../x".into(),
            ..Default::default()
        },
    )
    .await;
    assert_status(&err, Code::InvalidArgument, "/../x");
    let err = restore_status(
        &mut client,
        pb::RestoreRequest {
            backup_name: taken.clone(),
            collection_names: vec!["not_in_backup_x1".into()],
            collection_suffix: "_r".into(),
            ..Default::default()
        },
    )
    .await;
    assert_status(&err, Code::NotFound, "not_in_backup_x1");
    assert!(
        !m.has_collection("default", &format!("{coll}_r"))
            .await
            .unwrap()
    );

    hello::drop_if_exists(&m, "default", &coll).await;
    server.handle.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_milvus_is_unavailable_and_named() {
    let mut cfg = common::config();
    cfg.milvus.port = 1;
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let err = create(
        &mut client,
        pb::CreateBackupRequest {
            backup_name: common::unique("down"),
            collection_names: vec!["c".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::Unavailable, "127.0.0.1:1");
    let err = client.check(pb::CheckRequest {}).await.unwrap_err();
    assert_status(&err, Code::Unavailable, "127.0.0.1:1");
    server.handle.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_s3_is_unavailable_and_named() {
    let mut cfg = common::config();
    cfg.minio.port = 1;
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let err = create(
        &mut client,
        pb::CreateBackupRequest {
            backup_name: common::unique("down"),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::Unavailable, "127.0.0.1:1");
    let err = client
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .unwrap_err();
    assert_status(&err, Code::Unavailable, "127.0.0.1:1");
    server.handle.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_real_environment() {
    let cfg = common::config();
    let server = common::TestServer::start(&cfg).await;
    let report = server
        .client()
        .await
        .check(pb::CheckRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(report.milvus_version.starts_with("v2.3"), "{report:?}");
    assert!(
        report.milvus_storage.contains(&cfg.minio.bucket_name),
        "{report:?}"
    );
    server.handle.stop().await.unwrap();
}
