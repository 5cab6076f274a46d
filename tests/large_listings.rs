//! Listings of large prefixes on the real S3 of the test environment (moto):
//! a prefix whose first listing took more than one page is listed again as
//! ranges, in parallel. Every listing, before and after objects are added
//! and removed around the split points, names exactly what is there, in
//! order, once.

mod common;

use bytes::Bytes;
use futures::StreamExt;
use milvus_backup::storage::{ObjectStore, S3Bucket};

/// Writes `keys` (empty objects), 32 at once.
async fn put_all(store: &S3Bucket, keys: &[String]) {
    futures::stream::iter(keys)
        .map(|k| store.write(k, Bytes::new()))
        .buffer_unordered(32)
        .for_each(|r| async { r.unwrap() })
        .await;
}

/// Asserts `got` equals `want`, naming the first difference (not both lists).
fn same(what: &str, got: &[String], want: &[String]) {
    let diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got.len() == want.len() && diff.is_none(),
        "{what}: {} listed, {} there; first difference at {diff:?}: {:?} vs {:?}",
        got.len(),
        want.len(),
        diff.and_then(|i| got.get(i)),
        diff.and_then(|i| want.get(i)),
    );
}

/// The keys under `prefix` and the folders right under it, as listed.
async fn listed(store: &S3Bucket, prefix: &str) -> (Vec<String>, Vec<String>) {
    let keys = store.list(prefix).await.unwrap();
    let dirs = store.list_dirs(prefix).await.unwrap();
    (keys.into_iter().map(|o| o.key).collect(), dirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_prefixes_listed_in_ranges_name_every_item_once() {
    let cfg = common::config();
    let store = S3Bucket::new(&cfg.minio.backup_bucket().unwrap()).unwrap();
    store.ensure_bucket(true).await.unwrap();
    let prefix = format!("{}/", common::unique("large_listing"));
    // 2,300 folders of one object each: three pages, so two split points.
    let mut keys: Vec<String> = (0..2300).map(|i| format!("{prefix}d{i:05}/x")).collect();
    put_all(&store, &keys).await;
    keys.sort();
    let dirs = |keys: &[String]| -> Vec<String> {
        keys.iter()
            .map(|k| k[..k.rfind('/').unwrap() + 1].to_string())
            .collect()
    };

    // The first listing pages through; the second uses its split points.
    for round in ["first (paged)", "second (in ranges)"] {
        let (k, d) = listed(&store, &prefix).await;
        same(&format!("{round}: keys"), &k, &keys);
        same(&format!("{round}: folders"), &d, &dirs(&keys));
    }

    // Changes around the split points (every 1,000th item): items right
    // before, at and after them, added and removed. Ranges stay exact.
    let added: Vec<String> = [
        "d00999/y",
        "d00999a/x",
        "d01000/z",
        "d01998b/x",
        "d01999-/x",
        "d99999/x",
    ]
    .iter()
    .map(|k| format!("{prefix}{k}"))
    .collect();
    put_all(&store, &added).await;
    let removed = [format!("{prefix}d00999/x"), format!("{prefix}d02000/x")];
    store.delete(&removed).await.unwrap();
    keys.extend(added);
    keys.retain(|k| !removed.contains(k));
    keys.sort();
    let mut expected_dirs = dirs(&keys);
    expected_dirs.dedup();
    for round in ["after the changes", "again"] {
        let (k, d) = listed(&store, &prefix).await;
        same(&format!("{round}: keys"), &k, &keys);
        same(&format!("{round}: folders"), &d, &expected_dirs);
    }
    assert_eq!(store.delete_under(&prefix).await.unwrap(), keys.len());
}
