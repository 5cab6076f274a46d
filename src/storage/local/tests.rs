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

/// Listings of a folder while others write there (plain writes, creates,
/// compare-and-swaps and deletes, whose temporary and lock files come and
/// go) all succeed and name no temporary or lock file, as the listings of
/// `_jobs/...` and `_leases/...` run while other jobs write there. Before,
/// an entry gone between the directory's read and its look at the entry
/// (a temporary file renamed into place, a lock file removed) failed the
/// whole listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_while_others_write_beside_never_fail() {
    let root = std::env::temp_dir().join(format!("mb-walk-{}", uuid::Uuid::new_v4().simple()));
    let s = Arc::new(LocalDir::new(&root));
    s.ensure_bucket(true).await.unwrap();
    let prefix = "_jobs/backup/";
    let writers = 4;
    // Kept throughout: the folder never empties (a delete would remove it).
    for w in 0..writers {
        s.write(&format!("{prefix}kept-{w}"), Bytes::from_static(b"k"))
            .await
            .unwrap();
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let writing: Vec<_> = (0..writers)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut ops = 0u64;
                while std::time::Instant::now() < until {
                    // Five keys a writer, each met by all four kinds of write.
                    let key = format!("{prefix}w{w}-{}", ops % 5);
                    let data = Bytes::from(format!("{w}:{ops}"));
                    match ops % 4 {
                        0 => s.write(&key, data).await.unwrap(),
                        1 => {
                            s.put_if_absent(&key, data).await.unwrap();
                        }
                        2 => {
                            if let Some((_, tag)) = s.read_versioned(&key).await.unwrap() {
                                s.put_if_match(&key, data, &tag).await.unwrap();
                            }
                        }
                        _ => s.delete(&[key]).await.unwrap(),
                    }
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    let listing: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut listings = 0u64;
                while std::time::Instant::now() < until {
                    let listed = s.list(prefix).await.unwrap_or_else(|e| {
                        panic!("listing {listings} failed while others wrote beside: {e}")
                    });
                    for o in &listed {
                        assert!(!o.key.contains(".tmp-"), "listed: {}", o.key);
                    }
                    for w in 0..writers {
                        let kept = format!("{prefix}kept-{w}");
                        assert!(
                            listed.iter().any(|o| o.key == kept),
                            "{kept} not in {listed:?}"
                        );
                    }
                    listings += 1;
                }
                listings
            })
        })
        .collect();
    let ops: u64 = futures::future::join_all(writing)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    let listings: u64 = futures::future::join_all(listing)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert!(
        ops >= 100 && listings >= 10,
        "too few to race: {ops} writes, {listings} listings"
    );
    // Once the writes ended: every object listed, no temporary or lock file left.
    let mut on_disk: Vec<String> = std::fs::read_dir(root.join("_jobs/backup"))
        .unwrap()
        .map(|e| format!("{prefix}{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    on_disk.sort();
    let listed: Vec<String> = s
        .list(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, on_disk);
    std::fs::remove_dir_all(&root).unwrap();
}
