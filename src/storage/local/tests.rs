use super::*;
use std::sync::Arc;

/// Compare-and-swap increments from 8 writers, each with a store of its
/// own on one directory (as processes would be): every increment a writer
/// was told it made is in the counter, and no lock file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_writes_from_several_stores_lose_no_update() {
    let root = std::env::temp_dir().join(format!("mb-cas-{}", uuid::Uuid::new_v4().simple()));
    LocalDir::new(&root).ensure_bucket(true).await.unwrap();
    let key = "_leases/counter";
    LocalDir::new(&root)
        .write(key, Bytes::from_static(b"0"))
        .await
        .unwrap();
    let writers = (0..8).map(|_| {
        let store = LocalDir::new(&root);
        tokio::spawn(async move {
            let mut made = 0u32;
            for _ in 0..25 {
                let (data, tag) = store.read_versioned(key).await.unwrap().unwrap();
                let n: u32 = std::str::from_utf8(&data).unwrap().parse().unwrap();
                let next = Bytes::from((n + 1).to_string());
                if let CondPut::Written(_) = store.put_if_match(key, next, &tag).await.unwrap() {
                    made += 1;
                }
            }
            made
        })
    });
    let made: u32 = futures::future::join_all(writers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    let last = LocalDir::new(&root).read(key).await.unwrap();
    assert_eq!(std::str::from_utf8(&last).unwrap(), made.to_string());
    assert!(made > 0);
    let left: Vec<_> = std::fs::read_dir(root.join("_leases"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("counter")],
        "no lock file left"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn behaves_like_a_bucket() {
    let root = std::env::temp_dir().join(format!("mb-local-{}", uuid::Uuid::new_v4().simple()));
    let s = LocalDir::new(&root);
    s.ensure_bucket(true).await.unwrap();
    s.write("b1/meta/x.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    s.write("b10/meta/x.json", Bytes::from_static(b"[]"))
        .await
        .unwrap();
    let (n, body) = (Bytes::from_static(b"0123456789"), 10);
    s.put_stream(
        "b1/binlogs/a/1",
        body,
        Box::pin(futures::stream::iter([Ok(n)])),
    )
    .await
    .unwrap();
    assert_eq!(s.head("b1/binlogs/a/1").await.unwrap(), Some(10));
    let keys: Vec<String> = s
        .list("b1/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["b1/binlogs/a/1", "b1/meta/x.json"]);
    assert_eq!(s.list_dirs("").await.unwrap(), ["b1/", "b10/"]);
    s.delete(&keys).await.unwrap();
    assert_eq!(s.list_dirs("").await.unwrap(), ["b10/"]);
    assert!(matches!(
        s.read("b1/meta/x.json").await,
        Err(Error::NotFound { .. })
    ));
    assert!(s.path("../etc/passwd").is_err());
    std::fs::remove_dir_all(root).unwrap();
}

/// Every write, conditional ones included, works on a name of 255 bytes
/// (a disk's limit): before, the temporary and lock files beside it
/// added the name to theirs and were too long.
#[tokio::test]
async fn names_up_to_a_disks_limit_are_written() {
    let root = std::env::temp_dir().join(format!("mb-local-{}", uuid::Uuid::new_v4().simple()));
    let s = LocalDir::new(&root);
    let key = format!("_leases/target/{}", "n".repeat(255));
    let CondPut::Written(etag) = s
        .put_if_absent(&key, Bytes::from_static(b"1"))
        .await
        .unwrap()
    else {
        panic!("created");
    };
    assert!(matches!(
        s.put_if_absent(&key, Bytes::from_static(b"2"))
            .await
            .unwrap(),
        CondPut::Conflict
    ));
    assert!(matches!(
        s.put_if_match(&key, Bytes::from_static(b"3"), &etag)
            .await
            .unwrap(),
        CondPut::Written(_)
    ));
    s.write(&key, Bytes::from_static(b"4")).await.unwrap();
    assert_eq!(&s.read(&key).await.unwrap()[..], b"4");
    let listed: Vec<String> = s
        .list("_leases/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, [key], "no temporary or lock file is listed");
    std::fs::remove_dir_all(root).unwrap();
}

/// A delete and a create of a key wait for a compare-and-swap in flight on it
/// (its lock held, as by another process between its read and its write):
/// before, a delete landing there was undone by the swap's write, and a
/// create was overwritten by it (two processes then held one lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_or_a_create_waits_for_a_compare_and_swap_on_its_key() {
    let root = std::env::temp_dir().join(format!("mb-cas-{}", uuid::Uuid::new_v4().simple()));
    let s = Arc::new(LocalDir::new(&root));
    let key = "_leases/backup/b1";
    s.write(key, Bytes::from_static(b"A")).await.unwrap();
    let path = s.path(key).unwrap();
    let swap_in_flight = || try_lock(&lock_beside(&path)).unwrap().expect("lock taken");
    let swap_done = |held: std::fs::File| {
        std::fs::remove_file(lock_beside(&path)).unwrap();
        drop(held);
    };
    let settle = std::time::Duration::from_millis(300);

    let held = swap_in_flight();
    let deleting = tokio::spawn({
        let s = s.clone();
        async move { s.delete(&[key.to_string()]).await }
    });
    tokio::time::sleep(settle).await;
    assert!(path.exists(), "the delete waits for the swap");
    swap_done(held);
    deleting.await.unwrap().unwrap();
    assert!(!path.exists(), "then deletes");

    // The delete left no empty folder: the swap's process makes it again.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let held = swap_in_flight();
    let creating = tokio::spawn({
        let s = s.clone();
        async move { s.put_if_absent(key, Bytes::from_static(b"B")).await }
    });
    tokio::time::sleep(settle).await;
    assert!(!path.exists(), "the create waits for the swap");
    swap_done(held);
    assert!(matches!(
        creating.await.unwrap().unwrap(),
        CondPut::Written(_)
    ));
    assert_eq!(&s.read(key).await.unwrap()[..], b"B");
    std::fs::remove_dir_all(&root).unwrap();
}

/// A streamed write dropped before its source ends (its job cancelled)
/// leaves no temporary file and no directory it made (it left both before).
#[tokio::test]
async fn a_write_dropped_mid_way_leaves_nothing() {
    let root = std::env::temp_dir().join(format!("mb-drop-{}", uuid::Uuid::new_v4().simple()));
    let store = Arc::new(LocalDir::new(&root));
    store.ensure_bucket(true).await.unwrap();
    let body: crate::storage::ByteStream = Box::pin(
        futures::stream::iter([Ok(Bytes::from_static(b"first chunk"))])
            .chain(futures::stream::pending()),
    );
    let writing = {
        let store = store.clone();
        tokio::spawn(async move { store.put_stream("b/binlogs/1/2", 100, body).await })
    };
    let dir = root.join("b/binlogs/1");
    for _ in 0..100 {
        let written = std::fs::read_dir(&dir)
            .map(|d| d.flatten().any(|e| e.metadata().is_ok_and(|m| m.len() > 0)))
            .unwrap_or(false);
        if written {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(dir.exists(), "the write began");
    writing.abort();
    let _ = writing.await;
    assert!(
        !root.join("b").exists(),
        "left: {:?}",
        std::fs::read_dir(&dir).ok()
    );
    std::fs::remove_dir_all(&root).unwrap();
}
