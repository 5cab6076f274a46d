//! Where backups live: another bucket on Milvus's endpoint (server-side copy),
//! another S3 endpoint with other credentials (streaming copy, then a staging
//! copy in Milvus's bucket at restore, removed afterwards), a local directory;
//! DeleteBackup removes one backup and only it. Against the real Milvus 2.3.5
//! and the two S3 servers of the test environment.

mod common;

use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use milvus_backup::api::proto as pb;
use milvus_backup::config::{Config, Secret};
use milvus_backup::storage::{ObjectStore, S3Bucket};
use tonic::Code;

/// A small loaded collection and its rows.
async fn source(
    m: &milvus_backup::milvus::MilvusClient,
    prefix: &str,
) -> (Spec, Vec<milvus_backup::milvus::rows::Row>) {
    let spec = Spec::new(&common::unique(prefix));
    let rows = data::populated(m, &spec, 150, 50, 21).await;
    (spec, rows)
}

/// Backs up, restores with `_r`, compares, and checks no staging copy is left
/// in Milvus's bucket. Returns the backup name.
async fn round_trip(cfg: &Config, prefix: &str) -> String {
    let m = common::milvus(cfg);
    let server = common::TestServer::start(cfg).await;
    let mut client = server.client().await;
    let (spec, rows) = source(&m, prefix).await;
    let name = common::unique(prefix);
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    let job = flows::restore(&mut client, flows::restore_loaded_request(&name, "_r")).await;
    let restored = data::rows(&m, &spec, &spec.db, &format!("{}_r", spec.name), &[]).await;
    data::assert_rows_equal(prefix, &rows, &restored);
    let staging = format!("restore-temp-{}/", job.id);
    let milvus_bucket = S3Bucket::new(&cfg.minio.milvus_bucket().unwrap()).unwrap();
    assert!(
        milvus_bucket.list(&staging).await.unwrap().is_empty(),
        "staging copy left in {staging}"
    );
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &format!("{}_r", spec.name)).await;
    server.handle.stop().await.unwrap();
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_bucket_on_milvus_endpoint() {
    let mut cfg = common::config();
    cfg.minio.backup_bucket_name = format!("backups-{}", uuid::Uuid::new_v4().simple());
    let name = round_trip(&cfg, "other_bucket").await;
    let backups = S3Bucket::new(&cfg.minio.backup_bucket().unwrap()).unwrap();
    assert!(
        backups
            .head(&format!("backup/{name}/meta/full_meta.json"))
            .await
            .unwrap()
            .is_some()
    );
    let own = S3Bucket::new(&cfg.minio.milvus_bucket().unwrap()).unwrap();
    assert!(
        own.list(&format!("backup/{name}/"))
            .await
            .unwrap()
            .is_empty(),
        "backup written to Milvus's bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_endpoint_with_other_credentials() {
    let mut cfg = common::config();
    let (host, port) = common::second_s3();
    cfg.minio.backup_address = host;
    cfg.minio.backup_port = port;
    cfg.minio.backup_access_key_id = "offsite-key".into();
    cfg.minio.backup_secret_access_key = Secret::new("offsite-secret");
    cfg.minio.backup_bucket_name = "offsite".into();
    cfg.minio.backup_root_path = "milvus/backups".into();
    let name = round_trip(&cfg, "other_endpoint").await;
    let offsite = S3Bucket::new(&cfg.minio.backup_bucket().unwrap()).unwrap();
    let objects = offsite
        .list(&format!("milvus/backups/{name}/"))
        .await
        .unwrap();
    assert!(
        objects
            .iter()
            .any(|o| o.key.ends_with("meta/full_meta.json"))
    );
    assert!(
        objects
            .iter()
            .any(|o| o.key.contains("/binlogs/insert_log/"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_directory() {
    let mut cfg = common::config();
    let dir = std::env::temp_dir().join(common::unique("milvus-backups"));
    // Any case is `local` (checked the same way at load): "LOCAL" once sent
    // backups to S3 under the directory's path.
    cfg.minio.backup_storage_type = "LOCAL".into();
    cfg.minio.backup_root_path = dir.display().to_string();
    let name = round_trip(&cfg, "local_dir").await;
    assert!(dir.join(&name).join("meta/full_meta.json").is_file());
    assert!(dir.join(&name).join("binlogs/insert_log").is_dir());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Milvus takes collection names up to 255 characters (the Go tool's 128
/// is for backup names): such a collection is backed up to a local
/// directory and restored under another 250-character name, rows equal.
/// The restore's target lease (`{db}.{name}`, 258 bytes) would be a file
/// name longer than a disk allows; before, the names were refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collection_names_up_to_milvuss_limit_on_a_local_directory() {
    let mut cfg = common::config();
    let dir = std::env::temp_dir().join(common::unique("long-names"));
    cfg.minio.backup_storage_type = "local".into();
    cfg.minio.backup_root_path = dir.display().to_string();
    let m = common::milvus(&cfg);
    let long = |prefix: &str| {
        let mut n = common::unique(prefix);
        n.push_str(&"x".repeat(250 - n.len()));
        n
    };
    let spec = Spec::new(&long("long_src"));
    let target = long("long_dst");
    let rows = data::populated(&m, &spec, 150, 50, 23).await;
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let name = common::unique("long_names");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    let backup = flows::get_backup(&mut client, &name).await;
    assert_eq!(backup.collections[0].collection_name, spec.name);
    let request = pb::RestoreRequest {
        collection_renames: [(spec.name.clone(), target.clone())].into(),
        ..flows::restore_loaded_request(&name, "")
    };
    flows::restore(&mut client, request).await;
    let restored = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    data::assert_rows_equal("long names", &rows, &restored);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
    server.handle.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An incremental backup whose request id is no file name (`a/../x`, 256
/// bytes) holds its base on a local directory and reuses its objects.
/// Before, the reader's lease was named by the id: refused on the disk, so
/// the base was "not reused" and every object copied, said only in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_ids_that_are_no_file_name_still_reuse_on_a_local_directory() {
    let mut cfg = common::config();
    let dir = std::env::temp_dir().join(common::unique("odd-ids"));
    cfg.minio.backup_storage_type = "local".into();
    cfg.minio.backup_root_path = dir.display().to_string();
    let m = common::milvus(&cfg);
    let (spec, _) = source(&m, "odd_ids").await;
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let base = common::unique("odd_base");
    flows::backup_collections(&mut client, &base, &[&spec.name]).await;
    for (tag, request_id) in [
        ("dots", format!("{}/../x", common::unique("a"))),
        (
            "long",
            format!("{}{}", common::unique("r"), "r".repeat(240)),
        ),
    ] {
        let name = common::unique(&format!("odd_{tag}"));
        let made = flows::backup(
            &mut client,
            pb::CreateBackupRequest {
                incremental: Some(true),
                request_id,
                ..flows::backup_request(&name, &[&spec.name])
            },
        )
        .await;
        assert_eq!(made.based_on, vec![base.clone()], "{tag}: {made:?}");
    }
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    server.handle.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A backup on a local directory whose folder holds a temporary file left
/// by a write that died (a server killed mid-copy): DeleteBackup removes
/// it with the rest, and the name can be used again. Before, the file kept
/// its folders: the name stayed taken for good (listed as a backup, a
/// CreateBackup of it ALREADY_EXISTS), and no delete could clear it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_writers_temporary_file_does_not_keep_a_deleted_name() {
    let mut cfg = common::config();
    let dir = std::env::temp_dir().join(common::unique("dead-writer"));
    cfg.minio.backup_storage_type = "local".into();
    cfg.minio.backup_root_path = dir.display().to_string();
    let m = common::milvus(&cfg);
    let (spec, _) = source(&m, "dead_writer").await;
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let name = common::unique("dead_writer_b");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    let binlogs = dir.join(&name).join("binlogs/insert_log");
    assert!(binlogs.is_dir());
    std::fs::write(binlogs.join(".tmp-0123456789abcdef"), b"half a binlog").unwrap();
    flows::delete_eventually(&client, &name, "the backup is deleted").await;
    let folder = dir.join(&name);
    flows::eventually("its folder is gone", Duration::from_secs(30), || {
        let gone = !folder.exists();
        async move { gone }
    })
    .await;
    assert_eq!(flows::listed_state(&mut client, &name).await, None);
    // The name can be used again.
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    server.handle.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_backup_removes_that_backup_only() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let (spec, _) = source(&m, "delete_src").await;
    let base = common::unique("del");
    let (b1, b10) = (format!("{base}_b1"), format!("{base}_b10"));
    for b in [&b1, &b10] {
        flows::backup_collections(&mut client, b, &[&spec.name]).await;
    }
    let store = server.ctx.catalog.store().clone();
    let b10_before = store.list(&format!("backup/{b10}/")).await.unwrap();
    assert!(!b10_before.is_empty());

    let resp = client
        .delete_backup(pb::DeleteBackupRequest {
            name: b1.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.objects_deleted > 5, "{resp:?}");
    assert!(
        store
            .list(&format!("backup/{b1}/"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.list(&format!("backup/{b10}/")).await.unwrap(),
        b10_before,
        "the neighbour changed"
    );
    let err = client
        .get_backup(pb::GetBackupRequest {
            name: b1.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(flows::get_backup(&mut client, &b10).await.name, b10);

    let err = client
        .delete_backup(pb::DeleteBackupRequest {
            name: b1.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = client
        .delete_backup(pb::DeleteBackupRequest {
            name: "../x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    server.handle.stop().await.unwrap();
}

/// A missing object is NOT_FOUND on S3 (as on the other backends), never a
/// storage fault to retry; an If-Match write on it is a conflict, not a
/// fault, so a lease renewal on a removed lease object stops at once; so is
/// one with an empty tag (not sent: moto would write unconditionally).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_s3_object_is_not_found_and_a_conditional_write_on_it_conflicts() {
    let cfg = common::config();
    let store = S3Bucket::new(&cfg.minio.backup_bucket().unwrap()).unwrap();
    let key = format!("backup/{}/absent", common::unique("missing"));
    let err = match store.get_stream(&key).await {
        Ok(_) => panic!("{key} does not exist"),
        Err(e) => e,
    };
    assert!(
        matches!(err, milvus_backup::error::Error::NotFound { .. }),
        "{err:?}"
    );
    // A stale tag; an empty one (a store that gave no ETag) is no condition
    // to moto: it is never sent.
    for tag in ["\"00000000000000000000000000000000\"", ""] {
        let put = store
            .put_if_match(&key, bytes::Bytes::from_static(b"{}"), tag)
            .await
            .unwrap();
        assert!(
            matches!(put, milvus_backup::storage::CondPut::Conflict),
            "{tag:?}: {put:?}"
        );
        assert_eq!(
            store.head(&key).await.unwrap(),
            None,
            "{tag:?}: nothing written"
        );
    }
    // The start-up probe, with its If-Match on a removed object, passes here.
    let ctx = milvus_backup::context::Context::from_config(&cfg).unwrap();
    assert!(ctx.leases().probe_conditional_writes().await.unwrap());
}
