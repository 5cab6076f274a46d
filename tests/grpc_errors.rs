//! Every refused request gets the right status, names the bad value, and
//! writes nothing. Against the real Milvus 2.3.5 and S3 of the test environment.
//!
//! One table of cases (a request, the status code it gets, a value its message
//! names) per server, run by `assert_refused`.

mod common;

use common::{flows, hello};
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::config::Config;
use milvus_backup::milvus::MilvusApi;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A request the server must refuse.
#[derive(Debug)]
enum Req {
    Create(pb::CreateBackupRequest),
    Restore(pb::RestoreRequest),
    GetBackup(&'static str),
    WatchBackup(&'static str),
    GetRestore(&'static str),
    WatchRestore(&'static str),
    Check,
    ListBackups,
}

/// CreateBackup of `name` with `collections`.
fn create(name: &str, collections: &[&str]) -> Req {
    Req::Create(flows::backup_request(name, collections))
}

/// A restore of backup `name` with the default options.
fn restore_of(name: &str) -> pb::RestoreRequest {
    pb::RestoreRequest {
        backup_name: name.into(),
        ..Default::default()
    }
}

/// A case: the request, the code it gets, and what its message must contain.
type Case = (Req, Code, String);

fn case(req: Req, code: Code, mentions: &str) -> Case {
    (req, code, mentions.to_string())
}

/// The status `req` is refused with: CreateBackup may refuse at the call or
/// in its stream, the others at the call.
async fn refusal(client: &mut BackupServiceClient<Channel>, req: Req) -> Status {
    let refused = match req {
        Req::Create(r) => {
            let stream = client.create_backup(r).await;
            match stream {
                Ok(s) => flows::last_message(s.into_inner()).await.err(),
                Err(s) => Some(s),
            }
        }
        Req::Restore(r) => client.restore(r).await.err(),
        Req::GetBackup(name) => client
            .get_backup(pb::GetBackupRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .err(),
        Req::WatchBackup(name) => client
            .watch_backup(pb::WatchBackupRequest { name: name.into() })
            .await
            .err(),
        Req::GetRestore(id) => client
            .get_restore(pb::GetRestoreRequest { id: id.into() })
            .await
            .err(),
        Req::WatchRestore(id) => client
            .watch_restore(pb::WatchRestoreRequest { id: id.into() })
            .await
            .err(),
        Req::Check => client.check(pb::CheckRequest {}).await.err(),
        Req::ListBackups => client
            .list_backups(pb::ListBackupsRequest::default())
            .await
            .err(),
    };
    refused.expect("the request was accepted")
}

/// Runs every case: its code, and its message names the value. `after` runs
/// after each case with the name a refused CreateBackup asked for.
async fn assert_refused<F, Fut>(
    client: &mut BackupServiceClient<Channel>,
    cases: Vec<Case>,
    mut after: F,
) where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for (req, code, mentions) in cases {
        let what = format!("{req:?}");
        let created = match &req {
            Req::Create(r) => Some(r.backup_name.clone()),
            _ => None,
        };
        let s = refusal(client, req).await;
        assert_eq!(s.code(), code, "{what}: {s:?}");
        assert!(
            s.message().contains(&mentions),
            "{what}: {:?} should mention {mentions:?}",
            s.message()
        );
        after(created).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_refused_and_write_nothing() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let store = server.ctx.catalog.store().clone();

    // A real backup, whose name is then taken, of a collection that exists.
    let coll = common::unique("errors_src");
    hello::create(&m, &coll, 300, 1, 17).await;
    let taken = common::unique("taken");
    flows::backup_collections(&mut client, &taken, &[&coll]).await;
    let objects_before = store.list(&format!("backup/{taken}/")).await.unwrap();

    // Bad names: INVALID_ARGUMENT naming the value (its first 20 characters).
    let mut cases: Vec<Case> = ["../x", "a b", "1abc", "x-y", "é", &"n".repeat(129)]
        .into_iter()
        .map(|bad| {
            let shown: String = bad.chars().take(20).collect();
            case(create(bad, &[]), Code::InvalidArgument, &shown)
        })
        .collect();
    let (ok, nf) = (common::unique("ok"), common::unique("nf"));
    let no_such_db = pb::CreateBackupRequest {
        backup_name: nf.clone(),
        database_names: vec!["no_such_db_x1".into()],
        ..Default::default()
    };
    let conflicting = pb::RestoreRequest {
        drop_existing_collections: true,
        skip_create_collection: true,
        ..restore_of(&taken)
    };
    let bad_suffix = pb::RestoreRequest {
        collection_suffix: "/../x".into(),
        ..restore_of(&taken)
    };
    let not_in_backup = pb::RestoreRequest {
        collection_names: vec!["not_in_backup_x1".into()],
        collection_suffix: "_r".into(),
        ..restore_of(&taken)
    };
    // Milvus 2.3 loads no collection without a vector index: asked to load
    // without restore_index, the restore is refused before any import.
    let load_unindexed = pb::RestoreRequest {
        load: true,
        collection_suffix: "_l".into(),
        ..restore_of(&taken)
    };
    let nsb = "no_such_backup_x1";
    cases.extend([
        // Blank names (the code only) and a collection name that is not one.
        case(create("", &[]), Code::InvalidArgument, ""),
        case(create(" ", &[]), Code::InvalidArgument, ""),
        case(
            create(&ok, &["db.with.dots"]),
            Code::InvalidArgument,
            "db.with.dots",
        ),
        // Unknown collection, database, backup and restore job: NOT_FOUND.
        case(
            create(&nf, &["no_such_collection_x1"]),
            Code::NotFound,
            "no_such_collection_x1",
        ),
        case(Req::Create(no_such_db), Code::NotFound, "no_such_db_x1"),
        case(Req::Restore(restore_of(nsb)), Code::NotFound, nsb),
        case(Req::GetBackup(nsb), Code::NotFound, nsb),
        case(Req::WatchBackup(nsb), Code::NotFound, nsb),
        case(
            Req::WatchRestore("no-such-job"),
            Code::NotFound,
            "no-such-job",
        ),
        case(
            Req::GetRestore("no-such-job"),
            Code::NotFound,
            "no-such-job",
        ),
        // An empty id names no job: refused as REST refuses it.
        case(
            Req::GetRestore(""),
            Code::InvalidArgument,
            "empty restore id",
        ),
        case(
            Req::WatchRestore(""),
            Code::InvalidArgument,
            "empty restore id",
        ),
        // The name is taken; restoring onto the existing collection is refused.
        case(create(&taken, &[&coll]), Code::AlreadyExists, &taken),
        case(
            Req::Restore(restore_of(&taken)),
            Code::FailedPrecondition,
            &coll,
        ),
        // Conflicting options, a bad suffix, and a collection the backup lacks.
        case(
            Req::Restore(conflicting),
            Code::InvalidArgument,
            "skip_create_collection",
        ),
        case(Req::Restore(bad_suffix), Code::InvalidArgument, "/../x"),
        case(
            Req::Restore(not_in_backup),
            Code::NotFound,
            "not_in_backup_x1",
        ),
        case(
            Req::Restore(load_unindexed),
            Code::FailedPrecondition,
            "ask for restore_index",
        ),
    ]);

    // A refused CreateBackup writes nothing under its name.
    assert_refused(&mut client, cases, |name| {
        let store = store.clone();
        let taken = taken.clone();
        async move {
            let Some(name) = name.filter(|n| !n.trim().is_empty() && *n != taken) else {
                return;
            };
            let written = store.list(&format!("backup/{name}/")).await.unwrap();
            assert!(written.is_empty(), "objects written for {name:?}");
        }
    })
    .await;

    // Nothing was touched: the taken backup, the existing collection, and no
    // collection was created for the collection the backup lacks.
    assert_eq!(
        store.list(&format!("backup/{taken}/")).await.unwrap(),
        objects_before,
        "the existing backup changed"
    );
    let rows = hello::rows(&m, "default", &coll, "pk >= 0", &["pk"]).await;
    assert_eq!(rows.len(), 300, "the existing collection was touched");
    for suffix in ["_r", "_l"] {
        let made = format!("{coll}{suffix}");
        assert!(!m.has_collection("default", &made).await.unwrap(), "{made}");
    }

    hello::drop_if_exists(&m, "default", &coll).await;
    server.handle.stop().await.unwrap();
}

/// A server on `cfg`, whose Milvus or S3 is at port 1: each request is
/// UNAVAILABLE, naming the address.
async fn assert_unavailable(cfg: Config, reqs: Vec<Req>) {
    let server = common::TestServer::start(&cfg).await;
    let cases = reqs
        .into_iter()
        .map(|req| case(req, Code::Unavailable, "127.0.0.1:1"))
        .collect();
    assert_refused(&mut server.client().await, cases, |_| async {}).await;
    server.handle.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_milvus_is_unavailable_and_named() {
    let mut cfg = common::config();
    cfg.milvus.port = 1;
    let down = common::unique("down");
    assert_unavailable(cfg, vec![create(&down, &["c"]), Req::Check]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_s3_is_unavailable_and_named() {
    let mut cfg = common::config();
    cfg.minio.port = 1;
    let down = common::unique("down");
    assert_unavailable(cfg, vec![create(&down, &[]), Req::ListBackups]).await;
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
