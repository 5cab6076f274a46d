//! Backups carry checksums, and damage is found: VerifyBackup (gRPC, CLI and
//! REST) re-reads a real backup after one object had a byte flipped, one was
//! truncated and one deleted, and names each with DATA_LOSS; a restore of the
//! damaged backup is refused before anything is created. Against the real
//! Milvus 2.3.5 and S3.

mod common;

use bytes::Bytes;
use common::data::{self, Spec};
use common::flows;
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
    assert!(json["msg"].as_str().unwrap().contains(&rel(&cut.key)));

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
