//! Server-side copies of large objects in parts (UploadPartCopy), against the
//! real S3 server of the test environment: the copy is byte-for-byte equal,
//! was made in parts (its ETag says how many), and a small object still goes
//! by one CopyObject.

mod common;

use bytes::Bytes;
use milvus_backup::storage::{ObjectStore, S3Bucket, Source};
use rand::{RngCore, SeedableRng};

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_are_copied_in_parts_and_equal() {
    let cfg = common::config();
    let bucket = S3Bucket::new(&cfg.minio.milvus_bucket().unwrap())
        .unwrap()
        .with_multipart_copy(8 * MIB, 5 * MIB);
    let prefix = common::unique("multipart");
    let mut data = vec![0u8; (12 * MIB + 12345) as usize];
    rand::rngs::StdRng::seed_from_u64(3).fill_bytes(&mut data);
    let data = Bytes::from(data);
    let (src, dst) = (
        format!("{prefix}/big.bin"),
        format!("{prefix}/big-copy.bin"),
    );
    bucket.write(&src, data.clone()).await.unwrap();

    let etag = bucket
        .copy_in(Source::new(bucket.bucket(), &src, data.len() as u64), &dst)
        .await
        .unwrap()
        .expect("an ETag");
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "three parts: {etag}"
    );
    assert_eq!(bucket.read(&dst).await.unwrap(), data, "the copy differs");

    let small = format!("{prefix}/small.bin");
    bucket
        .write(&small, Bytes::from_static(b"tiny"))
        .await
        .unwrap();
    let etag = bucket
        .copy_in(
            Source::new(bucket.bucket(), &small, 4),
            &format!("{small}.copy"),
        )
        .await
        .unwrap()
        .expect("an ETag");
    assert!(!etag.contains('-'), "one CopyObject: {etag}");

    let keys: Vec<String> = bucket
        .list(&prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys.len(), 4);
    bucket.delete(&keys).await.unwrap();
}

/// A stream larger than the threshold is written in parts (UploadPart; one
/// PutObject stops at 5 GiB): equal byte for byte, whatever the chunks it
/// came in. A stream shorter than its size fails naming the object and
/// leaves neither an object nor an upload behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_streams_are_written_in_parts_and_equal() {
    let cfg = common::config();
    let bucket = S3Bucket::new(&cfg.minio.milvus_bucket().unwrap())
        .unwrap()
        .with_multipart_copy(8 * MIB, 5 * MIB);
    let prefix = common::unique("multipart_stream");
    let mut data = vec![0u8; (40 * MIB + 777) as usize];
    rand::rngs::StdRng::seed_from_u64(5).fill_bytes(&mut data);
    let data = Bytes::from(data);
    // Chunks of odd sizes, as a GET's body comes.
    let chunks = |data: Bytes| {
        let pieces: Vec<_> = (0..data.len())
            .step_by(3 * MIB as usize + 1)
            .map(|at| Ok(data.slice(at..(at + 3 * MIB as usize + 1).min(data.len()))))
            .collect();
        Box::pin(futures::stream::iter(pieces)) as milvus_backup::storage::ByteStream
    };
    let key = format!("{prefix}/streamed.bin");
    let etag = bucket
        .put_stream(&key, data.len() as u64, chunks(data.clone()))
        .await
        .unwrap();
    assert_eq!(etag, None, "a multipart ETag is not taken for an MD5");
    assert_eq!(bucket.read(&key).await.unwrap(), data, "the object differs");

    let short = format!("{prefix}/short.bin");
    let err = bucket
        .put_stream(&short, data.len() as u64 + 1, chunks(data.clone()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("short.bin"), "{err}");
    assert_eq!(bucket.head(&short).await.unwrap(), None, "no object");
    assert!(
        bucket.incomplete_uploads(&prefix).await.unwrap().is_empty(),
        "the upload was aborted"
    );
    bucket.delete(&[key]).await.unwrap();
}

/// A backup whose large binlogs were copied server-side in parts has no
/// CRC32C for them (their ETag is a multipart one): VerifyBackup decodes
/// those as Milvus would instead, so a flipped byte in one is DATA_LOSS
/// naming it (it passed unchecked before). Against the real Milvus 2.3.5.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_copied_in_parts_are_verified_by_decoding() {
    use common::data::{self, Spec};
    use common::flows;
    let mut cfg = common::config();
    cfg.minio.multipart_copy_threshold_mib = 1;
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("parts_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..60_000, 12).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let name = common::unique("parts_b");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    let store = server.ctx.catalog.store().clone();
    let folder = format!("backup/{name}/");
    let manifest: serde_json::Value = serde_json::from_slice(
        &store
            .read(&format!("{folder}meta/checksums.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    let in_parts = manifest["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["etag"].as_str().is_some_and(|e| e.contains('-')))
        .count();
    assert!(in_parts > 0, "no object was copied in parts: {manifest}");
    flows::assert_verifies(&mut client, &name, "copied in parts").await;

    let damaged = data::flip_largest_object(store.as_ref(), &folder, "binlogs/insert_log/").await;
    let stream = flows::verify_stream(&mut client, &name).await;
    let err = flows::last_message(stream)
        .await
        .expect_err("a damaged backup verified");
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    assert!(
        err.message()
            .contains(&format!("{damaged} (does not decode")),
        "{damaged} not named in: {}",
        err.message()
    );

    store.delete_under(&folder).await.unwrap();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
