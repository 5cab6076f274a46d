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
