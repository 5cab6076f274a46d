//! A server-side copy in parts cut short by a cancel (its future dropped, as
//! a cancelled job dropped its work before, or stopped by its token, as a
//! cancelled job's copies in flight now are) aborts its multipart upload,
//! against the real S3 server of the test environment. The copy is held
//! after it began its upload by the failpoint `storage.copy_in_parts`, until
//! a file appears, which this test binary (one test, a process of its own)
//! sets for itself.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use milvus_backup::storage::{ObjectStore, S3Bucket, Source};

const MIB: u64 = 1024 * 1024;

/// Polls `bucket`'s incomplete uploads under `prefix` until `done` says so.
async fn uploads_until(
    bucket: &S3Bucket,
    prefix: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let uploads = bucket.incomplete_uploads(prefix).await.unwrap();
        if done(&uploads) || Instant::now() > deadline {
            return uploads;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Before, the upload stayed, its parts billed until a lifecycle rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_copy_dropped_or_stopped_midway_leaves_no_upload() {
    let release = std::env::temp_dir().join(common::unique("copy_in_parts_release"));
    let failpoint = format!("storage.copy_in_parts@{}", release.display());
    // SAFETY: set before any other thread of this test binary reads it.
    unsafe { std::env::set_var("MILVUS_BACKUP_FAILPOINTS", failpoint) };
    let cfg = common::config();
    let bucket = S3Bucket::new(&cfg.minio.milvus_bucket().unwrap())
        .unwrap()
        .with_multipart_copy(8 * MIB, 5 * MIB);
    let prefix = common::unique("multipart_cancel");
    let (src, dst) = (
        format!("{prefix}/big.bin"),
        format!("{prefix}/big-copy.bin"),
    );
    let size = 12 * MIB;
    bucket
        .write(&src, Bytes::from(vec![7u8; size as usize]))
        .await
        .unwrap();

    let copy = tokio::spawn({
        let (bucket, src, dst) = (bucket.clone(), src.clone(), dst.clone());
        async move {
            let name = bucket.bucket().to_string();
            bucket.copy_in(Source::new(&name, &src, size), &dst).await
        }
    });
    let begun = uploads_until(&bucket, &prefix, |u| !u.is_empty()).await;
    assert_eq!(
        begun,
        std::slice::from_ref(&dst),
        "the copy began its upload and is held"
    );
    copy.abort();
    assert!(copy.await.unwrap_err().is_cancelled());
    let left = uploads_until(&bucket, &prefix, |u| u.is_empty()).await;
    assert!(
        left.is_empty(),
        "the dropped copy's upload is aborted: {left:?}"
    );
    assert_eq!(bucket.head(&dst).await.unwrap(), None, "no copy was made");

    // Stopped by its token while held, then let go: it sends no part, aborts
    // its upload and ends cancelled, without the object.
    let stop = tokio_util::sync::CancellationToken::new();
    let copy = tokio::spawn({
        let (bucket, src, dst, stop) = (bucket.clone(), src.clone(), dst.clone(), stop.clone());
        async move {
            let name = bucket.bucket().to_string();
            let from = Source::new(&name, &src, size).until(&stop);
            bucket.copy_in(from, &dst).await
        }
    });
    let begun = uploads_until(&bucket, &prefix, |u| !u.is_empty()).await;
    assert_eq!(begun, std::slice::from_ref(&dst), "the second copy is held");
    stop.cancel();
    std::fs::write(&release, b"").unwrap();
    let err = copy
        .await
        .unwrap()
        .expect_err("a stopped copy makes nothing");
    assert!(
        matches!(err, milvus_backup::Error::Cancelled(_)),
        "stopped: {err:?}"
    );
    let left = uploads_until(&bucket, &prefix, |u| u.is_empty()).await;
    assert!(
        left.is_empty(),
        "the stopped copy's upload is aborted: {left:?}"
    );
    assert_eq!(bucket.head(&dst).await.unwrap(), None, "no copy was made");
    let _ = std::fs::remove_file(&release);
    bucket.delete(&[src]).await.unwrap();
}
