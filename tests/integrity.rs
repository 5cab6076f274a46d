//! Backups carry checksums, and damage is found: VerifyBackup (gRPC, CLI and
//! REST) re-reads a real backup after one object had a byte flipped, one was
//! truncated and one deleted, and names each with DATA_LOSS; a restore of the
//! damaged backup is refused before anything is created. Against the real
//! Milvus 2.3.5 and S3.

mod common;

use bytes::Bytes;
use common::data::{self, Spec};
use common::flows;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flipped_truncated_and_deleted_objects_are_found() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let spec = Spec::new(&common::unique("integrity"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..300, 81).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::insert(&m, &spec, "", 300..400, 81).await;
    data::delete(&m, &spec, "pk in [1, 2]").await;
    let name = common::unique("integrity");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;

    // A sound backup verifies.
    let stream = flows::verify_stream(&mut client, &name).await;
    let last = flows::last_message(stream)
        .await
        .expect("a sound backup verifies")
        .unwrap();
    assert!(
        last.objects_total > 10 && last.objects_done == last.objects_total,
        "{last:?}"
    );
    assert!(last.damaged.is_empty());

    // Damage three objects.
    let store = server.ctx.catalog.store().clone();
    let prefix = format!("backup/{name}/");
    let objects = store.list(&format!("{prefix}binlogs/")).await.unwrap();
    let (flip, cut, gone) = (&objects[0], &objects[1], &objects[2]);
    let mut bytes = store.read(&flip.key).await.unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    store.write(&flip.key, Bytes::from(bytes)).await.unwrap();
    let bytes = store.read(&cut.key).await.unwrap();
    store
        .write(&cut.key, bytes.slice(..bytes.len() - 7))
        .await
        .unwrap();
    store.delete(std::slice::from_ref(&gone.key)).await.unwrap();
    // And one added, as a restore's proof refuses (VerifyBackup passed it before).
    let added = format!("{}.added", flip.key);
    store
        .write(&added, Bytes::from_static(b"added"))
        .await
        .unwrap();
    let rel = |k: &str| k[prefix.len()..].to_string();

    let stream = flows::verify_stream(&mut client, &name).await;
    let err = flows::last_message(stream)
        .await
        .expect_err("a damaged backup verified");
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    for (key, what) in [
        (rel(&flip.key), "altered"),
        (rel(&cut.key), "truncated"),
        (rel(&gone.key), "missing"),
        (rel(&added), "not in the backup's checksums"),
    ] {
        assert!(
            err.message().contains(&format!("{key} ({what}")),
            "{key} {what} not named in: {}",
            err.message()
        );
    }

    // The CLI and REST say the same.
    let config = std::env::temp_dir().join(format!("{}.yaml", common::unique("integrity-cfg")));
    std::fs::write(
        &config,
        format!(
            "milvus:\n  address: {}\n  port: {}\nminio:\n  address: {}\n  port: {}\n  bucketName: {}\n  rootPath: {}\n  backupBucketName: {}\n",
            cfg.milvus.address, cfg.milvus.port, cfg.minio.address, cfg.minio.port, cfg.minio.bucket_name, cfg.minio.root_path, cfg.minio.bucket_name
        ),
    )
    .unwrap();
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
            .arg("--config")
            .arg(&config)
            .args(["verify", "-n", &name])
            .output()
            .unwrap()
    });
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&rel(&gone.key)));
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new("curl")
            .args([
                "-sS",
                &format!(
                    "http://{}/api/v1/verify?backup_name={name}",
                    server.handle.addr
                ),
            ])
            .output()
            .unwrap()
    });
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["code"], 3, "{json}");
    assert!(
        json["msg"].as_str().unwrap().contains(&rel(&cut.key)),
        "{} not named in {json}",
        rel(&cut.key)
    );

    // A restore checks presence and sizes first, and creates nothing.
    let err = client
        .restore(flows::restore_request(&name, "_r"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(
        err.message().contains(&rel(&cut.key)) && err.message().contains(&rel(&gone.key)),
        "{}",
        err.message()
    );
    assert!(
        !m.has_collection(&spec.db, &format!("{}_r", spec.name))
            .await
            .unwrap()
    );

    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    let _ = std::fs::remove_file(config);
    server.handle.stop().await.unwrap();
}

/// A backup whose meta lists no delete logs for a segment whose folder holds
/// some (the meta edited by hand: every segment's `deltalogs` emptied) is
/// refused DATA_LOSS naming the delete log, and nothing is made in Milvus.
/// A partition's delete-log folder is imported only when its meta lists
/// delete logs: on the code before, the restore succeeded and the rows
/// deleted before the backup came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_logs_the_meta_does_not_list_are_refused_before_milvus_is_touched() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let spec = Spec::new(&common::unique("unlisted"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..200, 83).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::delete(&m, &spec, "pk in [3, 4, 5]").await;
    let name = common::unique("unlisted");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    // An incremental backup reusing every object of it, delete logs too.
    let later = common::unique("unlisted_later");
    let incremental = pb::CreateBackupRequest {
        incremental: Some(true),
        ..flows::backup_request(&later, &[&spec.name])
    };
    flows::backup(&mut client, incremental).await;

    let store = server.ctx.catalog.store().clone();
    let prefix = format!("backup/{name}/");
    let deltas = store
        .list(&format!("{prefix}binlogs/delta_log/"))
        .await
        .unwrap();
    assert!(!deltas.is_empty(), "the backup holds delete logs");
    let key = format!("{prefix}meta/full_meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&store.read(&key).await.unwrap()).unwrap();
    for part in meta["collection_backups"][0]["partition_backups"]
        .as_array_mut()
        .unwrap()
    {
        for seg in part["segment_backups"].as_array_mut().unwrap() {
            seg["deltalogs"] = serde_json::json!([]);
        }
    }
    let body = Bytes::from(serde_json::to_vec(&meta).unwrap());
    store.write(&key, body).await.unwrap();

    let delta = &deltas[0].key[prefix.len()..];
    // The meta of this backup is wrong, not the object: the backup reusing
    // it is not named as damaged (it was, on the code before).
    let named = |message: &str| {
        message.contains(delta)
            && message.contains("a delete log of segment")
            && !message.contains("also referenced by")
    };
    // VerifyBackup says so too (it passed on the code before).
    refused_by_verify_and_restore(&mut client, &m, &spec, &name, named).await;

    // Its commit point no longer JSON: GetBackup is DATA_LOSS, and
    // DeleteBackup removes the damaged backup (refused DATA_LOSS on the code
    // before, the folder left).
    store
        .write(&key, Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    // With its checksums not JSON either, what it reuses is unknown: the
    // delete is refused before it changes anything.
    let checksums = format!("{prefix}meta/checksums.json");
    let sound = store.read(&checksums).await.unwrap();
    store
        .write(&checksums, Bytes::from_static(b"[not json"))
        .await
        .unwrap();
    let delete = pb::DeleteBackupRequest {
        name: name.clone(),
        ..Default::default()
    };
    let err = client.delete_backup(delete).await.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(store.head(&key).await.unwrap().is_some(), "nothing changed");
    store.write(&checksums, sound).await.unwrap();
    let get = pb::GetBackupRequest {
        name: name.clone(),
        ..Default::default()
    };
    let err = client.get_backup(get).await.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    common::incr::delete(&mut client, &later).await;
    let delete = pb::DeleteBackupRequest {
        name: name.clone(),
        ..Default::default()
    };
    client.delete_backup(delete).await.expect("deleted");
    assert!(store.list(&prefix).await.unwrap().is_empty());

    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    server.handle.stop().await.unwrap();
}

/// A verification that finds hundreds of objects gone (a base folder
/// removed by hand) answers DATA_LOSS, its message cut to a size every gRPC
/// client takes and saying so, while its last streamed report names every
/// damaged object. (Before, the whole list went into the status trailer,
/// over the client's 16 KiB of headers: the client saw a protocol error,
/// never DATA_LOSS.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verification_naming_hundreds_of_damaged_objects_answers_data_loss() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    // Sixteen partitions of every type: a segment of each, over 200 binlogs.
    let mut spec = Spec::new(&common::unique("integrity_many"));
    spec.partition_key = Some(16);
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..400, 83).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let name = common::unique("integrity_many");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;

    let store = server.ctx.catalog.store().clone();
    let gone: Vec<String> = store
        .list(&format!("backup/{name}/binlogs/"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let listed: usize = gone.iter().map(|k| k.len() + " (missing); ".len()).sum();
    assert!(
        listed > 16 * 1024,
        "{} objects make a list of {listed} bytes, not over a client's 16 KiB of headers",
        gone.len()
    );
    store.delete(&gone).await.unwrap();

    // The generated Python client (gRPC C-core, 8 KiB of metadata) gets DATA_LOSS.
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".it-env/pyclient/bin/python");
    assert!(
        python.exists(),
        "the Python client venv is missing: run scripts/test.sh (ensure_python_client)"
    );
    let script = "import sys, grpc\n\
        from milvus_backup_client import connect, pb\n\
        try:\n    \
            for _ in connect(sys.argv[1]).VerifyBackup(pb.VerifyBackupRequest(name=sys.argv[2])): pass\n    \
            print('OK')\n\
        except grpc.RpcError as e:\n    \
            print(e.code().name, e.details()[:300])\n";
    let out = std::process::Command::new(python)
        .args(["-c", script, &server.handle.addr.to_string(), &name])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("DATA_LOSS") && said.contains("is damaged"),
        "the Python client: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut stream = flows::verify_stream(&mut client, &name).await;
    let mut last = None;
    let err = loop {
        match stream.message().await {
            Ok(Some(report)) => last = Some(report),
            Ok(None) => panic!("the damaged backup verified: {last:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(
        err.message().len() < 4096
            && err
                .message()
                .contains(&format!("is damaged: {} of", gone.len()))
            && err.message().contains("[cut at"),
        "{}",
        err.message()
    );
    let last = last.expect("a report before the end");
    assert_eq!(last.damaged.len(), gone.len(), "every damaged object named");

    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// Damage in backup A is named whatever another backup holds: with backup
/// C's checksums unreadable (not JSON), A's verification still answers
/// DATA_LOSS naming A's flipped object, and says C could not be read. (Before,
/// the read of C, made only to name the backups that also reference A's
/// damaged object, failed the whole verification, naming C and not A's
/// damage.) On a backup root of its own: C is unreadable to every delete on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damage_is_named_while_another_backups_checksums_cannot_be_read() {
    let mut cfg = common::config();
    cfg.minio.backup_root_path = common::unique("integrity_root");
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let spec = Spec::new(&common::unique("integrity_other"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..200, 84).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let a = common::unique("integrity_a");
    let c = common::unique("integrity_c");
    flows::backup_collections(&mut client, &a, &[&spec.name]).await;
    flows::backup_collections(&mut client, &c, &[&spec.name]).await;

    let store = server.ctx.catalog.store().clone();
    let root = &cfg.minio.backup_root_path;
    let prefix = format!("{root}/{a}/");
    let objects = store.list(&format!("{prefix}binlogs/")).await.unwrap();
    let flip = &objects[0];
    let mut bytes = store.read(&flip.key).await.unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    store.write(&flip.key, Bytes::from(bytes)).await.unwrap();
    let checksums = format!("{root}/{c}/meta/checksums.json");
    assert!(
        store.head(&checksums).await.unwrap().is_some(),
        "{checksums}"
    );
    store
        .write(&checksums, Bytes::from_static(b"{"))
        .await
        .unwrap();
    let flipped = &flip.key[prefix.len()..];

    let stream = flows::verify_stream(&mut client, &a).await;
    let err = flows::last_message(stream).await.expect_err("verified");
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(
        err.message().contains(&format!("{flipped} (altered"))
            && err.message().contains(&format!("{c:?}"))
            && err.message().contains("could not be read"),
        "{}",
        err.message()
    );
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new("curl")
            .args([
                "-sS",
                &format!(
                    "http://{}/api/v1/verify?backup_name={a}",
                    server.handle.addr
                ),
            ])
            .output()
            .unwrap()
    });
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["msg"].as_str().unwrap().contains(flipped),
        "{flipped} not named in {json}"
    );
    store.delete(&[checksums]).await.unwrap();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A meta that names another partition than its objects' (its
/// `partition_id` edited by hand, one digit off) is damage: VerifyBackup
/// answers DATA_LOSS naming the segment's empty insert-log folder, and a
/// restore is refused before anything is created. (Before, both checked
/// only the objects under the folders the meta names: none, so the backup
/// verified, and Milvus would have been asked to import an empty folder
/// for p1.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_meta_naming_another_partition_than_its_objects_is_damage() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let spec = Spec::new(&common::unique("integrity_part"));
    data::create(&m, &spec).await;
    data::create_partition(&m, &spec, "p1").await;
    data::insert(&m, &spec, "", 0..100, 85).await;
    data::insert(&m, &spec, "p1", 100..200, 85).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let name = common::unique("integrity_part");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;

    let store = server.ctx.catalog.store().clone();
    let key = format!("backup/{name}/meta/full_meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&store.read(&key).await.unwrap()).unwrap();
    let parts = meta["collection_backups"][0]["partition_backups"]
        .as_array_mut()
        .unwrap();
    let p1 = parts
        .iter_mut()
        .find(|p| p["partition_name"] == "p1")
        .expect("p1 backed up");
    let other = p1["partition_id"].as_i64().unwrap() + 1;
    p1["partition_id"] = other.into();
    let segments = p1["segment_backups"].as_array_mut().unwrap();
    assert!(!segments.is_empty(), "p1 has segments");
    for s in segments {
        s["partition_id"] = other.into();
    }
    store
        .write(&key, Bytes::from(serde_json::to_vec(&meta).unwrap()))
        .await
        .unwrap();
    // A server that never read the meta before.
    let fresh = common::TestServer::start(&cfg).await;
    let mut client = fresh.client().await;
    let named = |message: &str| {
        message.contains("no insert log of segment") && message.contains(&format!("/{other}/"))
    };
    refused_by_verify_and_restore(&mut client, &m, &spec, &name, named).await;
    common::incr::delete(&mut client, &name).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A delete reads every checksums file it decides by before it changes
/// anything: with backup C's checksums not JSON, DeleteBackup of an
/// unrelated backup A is refused DATA_LOSS naming C, and A stays complete
/// and restorable; a delete of C itself is refused the same way, C left as
/// it was. (Before, each delete removed its backup's commit point first,
/// then failed: A was left unlisted and half-deleted, and so was C, for
/// good.) On a backup root of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_changes_nothing_while_another_backups_checksums_cannot_be_read() {
    let mut cfg = common::config();
    cfg.minio.backup_root_path = common::unique("integrity_delroot");
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let spec = Spec::new(&common::unique("integrity_del"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..120, 87).await;
    let a = common::unique("integrity_del_a");
    let c = common::unique("integrity_del_c");
    flows::backup_collections(&mut client, &a, &[&spec.name]).await;
    flows::backup_collections(&mut client, &c, &[&spec.name]).await;
    let store = server.ctx.catalog.store().clone();
    let root = &cfg.minio.backup_root_path;
    let checksums = format!("{root}/{c}/meta/checksums.json");
    let sound = store.read(&checksums).await.unwrap();
    store
        .write(&checksums, Bytes::from_static(b"{"))
        .await
        .unwrap();

    for (name, damaged) in [(&a, &c), (&c, &c)] {
        let err = common::incr::try_delete(&mut client, name)
            .await
            .expect_err("the delete is refused");
        assert_eq!(err.code(), Code::DataLoss, "{name}: {err:?}");
        assert!(err.message().contains(damaged.as_str()), "{name}: {err:?}");
        let commit = format!("{root}/{name}/meta/full_meta.json");
        assert!(
            store.head(&commit).await.unwrap().is_some(),
            "{name}: its commit point stays"
        );
        assert!(
            server.ctx.catalog.is_complete(name).await.unwrap(),
            "{name}: still complete"
        );
    }
    // Once repaired, both delete.
    store.write(&checksums, sound).await.unwrap();
    for name in [&a, &c] {
        common::incr::delete(&mut client, name).await;
        let left = store.list(&format!("{root}/{name}/")).await.unwrap();
        assert!(left.is_empty(), "{name}: {left:?}");
    }
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// VerifyBackup of backup `name` answers DATA_LOSS, and a restore of it is
/// refused at the call or its job fails DATA_LOSS, as a damaged object is,
/// with nothing created; each message satisfies `named`.
async fn refused_by_verify_and_restore(
    client: &mut milvus_backup::api::proto::backup_service_client::BackupServiceClient<
        tonic::transport::Channel,
    >,
    m: &milvus_backup::milvus::MilvusClient,
    spec: &Spec,
    name: &str,
    named: impl Fn(&str) -> bool,
) {
    let stream = flows::verify_stream(client, name).await;
    let err = flows::last_message(stream).await.expect_err("verified");
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(named(err.message()), "{err:?}");
    let outcome = match client.restore(flows::restore_request(name, "_r")).await {
        Err(e) => (format!("{:?}", e.code()), e.message().to_string()),
        Ok(stream) => {
            let job = flows::last_restore(stream.into_inner()).await;
            assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
            (job.error_kind, job.error_message)
        }
    };
    assert!(
        outcome.0 == "DataLoss" || outcome.0 == "data_loss",
        "{outcome:?}"
    );
    assert!(named(&outcome.1), "{outcome:?}");
    let restored = format!("{}_r", spec.name);
    assert!(!m.has_collection(&spec.db, &restored).await.unwrap());
}
