//! Server-side copies of large objects in parts (UploadPartCopy), against the
//! real S3 server of the test environment: the copy is byte-for-byte equal,
//! was made in parts (its ETag says how many), a small object still goes
//! by one CopyObject, and a source of another size than planned is copied
//! neither way.

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

/// A server-side copy whose source is not of the size planned (changed since
/// it was listed or proven, or truncated) fails DATA_LOSS naming the source
/// and both sizes, and leaves no object at the destination and the source
/// as it was: by one CopyObject (which copies the whole source) and in parts
/// (which copy the planned ranges only: planned one byte short, they made an
/// object of the planned size), planned one byte short and one byte long.
/// On the code before, each was reported copied. Planned at its size, the
/// copy is made both ways, equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_not_of_its_planned_size_is_not_copied() {
    use milvus_backup::storage::{Copier, CopyTask};
    use std::sync::Arc;
    use tokio_util::task::TaskTracker;

    let mut cfg = common::config();
    cfg.minio.backup_bucket_name = format!("copies-{}", uuid::Uuid::new_v4().simple());
    let src: Arc<dyn ObjectStore> =
        Arc::new(S3Bucket::new(&cfg.minio.milvus_bucket().unwrap()).unwrap());
    let copies = S3Bucket::new(&cfg.minio.backup_bucket().unwrap()).unwrap();
    copies.ensure_bucket(true).await.unwrap();
    assert_eq!(
        copies.endpoint_identity(),
        src.endpoint_identity(),
        "one endpoint: the copies are server-side"
    );
    let whole = copies.clone().with_multipart_copy(u64::MAX, 5 * MIB);
    let in_parts = copies.clone().with_multipart_copy(0, 5 * MIB);

    let prefix = common::unique("sized");
    let data = Bytes::from(vec![5u8; 1000]);
    let n = data.len() as u64;
    let key = format!("{prefix}/binlog");
    src.write(&key, data.clone()).await.unwrap();
    let copier = Copier::new(4);
    let mut made = Vec::new();
    for (how, dst) in [("one CopyObject", whole), ("in parts", in_parts)] {
        let dst: Arc<dyn ObjectStore> = Arc::new(dst);
        let dst_key = |planned: u64| format!("{prefix}/{}-{planned}", how.replace(' ', "_"));
        for planned in [n - 1, n + 1] {
            let task = CopyTask {
                src_key: key.clone(),
                dst_key: dst_key(planned),
                size: planned,
                owner: 0,
            };
            let err = copier
                .copy_all(&src, &dst, vec![task], &TaskTracker::new(), |_, _| {
                    panic!("{how}: a copy of {planned} bytes planned was reported made")
                })
                .await
                .expect_err("a source of another size than planned is not copied");
            let msg = err.to_string();
            assert!(
                matches!(err, milvus_backup::Error::DataLoss(_)),
                "{how}, {planned} planned: {err:?}"
            );
            assert!(
                msg.contains(&key)
                    && msg.contains(&format!("{n} bytes"))
                    && msg.contains(&format!("the {planned} planned")),
                "{how}: names the source and both sizes: {msg}"
            );
            assert_eq!(
                dst.head(&dst_key(planned)).await.unwrap(),
                None,
                "{how}, {planned} planned: no object left"
            );
        }
        let task = CopyTask {
            src_key: key.clone(),
            dst_key: dst_key(n),
            size: n,
            owner: 0,
        };
        let reported = std::sync::Mutex::new(Vec::new());
        copier
            .copy_all(&src, &dst, vec![task], &TaskTracker::new(), |t, _| {
                reported.lock().unwrap().push(t.dst_key.clone())
            })
            .await
            .unwrap();
        assert_eq!(reported.into_inner().unwrap(), [dst_key(n)], "{how}");
        assert_eq!(dst.read(&dst_key(n)).await.unwrap(), data, "{how}: equal");
        made.push(dst_key(n));
    }
    assert_eq!(src.read(&key).await.unwrap(), data, "the source untouched");
    assert!(
        copies.incomplete_uploads(&prefix).await.unwrap().is_empty(),
        "no upload left"
    );
    let left: Vec<String> = copies
        .list(&prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    made.sort();
    assert_eq!(left, made, "only the copies of the planned size");
    copies.delete(&made).await.unwrap();
    src.delete(&[key]).await.unwrap();
}
