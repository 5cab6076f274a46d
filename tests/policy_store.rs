//! What the policy store costs the storage: every replica reads every run
//! record of every policy every few seconds, so a record already read is
//! not read again while its ETag is the same. Against the real S3 of the
//! test environment, its requests counted by a proxy.

mod common;

use std::sync::atomic::Ordering;

use common::faults::Rates;
use milvus_backup::model::{Policy, PolicyInput};
use milvus_backup::policy::{PolicyStore, RunRecord};

/// A policy of every collection, once a year.
fn yearly(name: &str) -> Policy {
    Policy::parse(PolicyInput {
        name: name.to_string(),
        schedule: "0 0 1 1 *".into(),
        all_collections: true,
        ..Default::default()
    })
    .unwrap()
}

fn record(slot_ms: i64) -> RunRecord {
    common::runs::succeeded(slot_ms, &format!("b_{slot_ms}"))
}

/// 60 run records: the first look reads them all; the next is one LIST;
/// after one record is rewritten, a LIST and that one GET. The records
/// read are the records written, each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_records_unchanged_since_read_are_not_read_again() {
    let mut cfg = common::config();
    let s3 = format!("{}:{}", cfg.minio.address, cfg.minio.port)
        .parse()
        .unwrap();
    let proxy = common::faults::start(s3, Rates::default()).await;
    cfg.minio.address = "127.0.0.1".into();
    cfg.minio.port = proxy.addr.port();
    let root = common::unique("runs_root");
    let store = PolicyStore::new(common::process::rooted_bucket(&cfg), &root);
    let name = common::unique("runs_p");
    let policy = yearly(&name);
    store.create(&policy, None).await.unwrap();
    let mut written: Vec<RunRecord> = (1..=60).map(|i| record(i * 1000)).collect();
    for r in &written {
        assert!(store.start_run(&name, r).await.unwrap());
    }
    let requests = || proxy.counts.forwarded.load(Ordering::Relaxed);
    let look = |expected: Vec<RunRecord>| {
        let store = store.clone();
        let name = name.clone();
        async move {
            let before = requests();
            let read = store.runs(&name).await.unwrap();
            assert_eq!(read, expected);
            requests() - before
        }
    };

    let cold = look(written.clone()).await;
    assert!(cold >= 61, "a LIST and 60 GETs: {cold}");
    let warm = look(written.clone()).await;
    assert_eq!(warm, 1, "one LIST");
    written[7].deleted = true;
    store.save_run(&name, &written[7]).await.unwrap();
    let changed = look(written.clone()).await;
    assert_eq!(changed, 2, "a LIST and the changed record");
    // Another store (another replica) reads them all once.
    let other = PolicyStore::new(common::process::rooted_bucket(&cfg), &root);
    assert_eq!(other.runs(&name).await.unwrap(), written);

    store.delete(&name).await.unwrap();
}

/// Run records left under a policy's name after the policy was deleted (a
/// delete cut short after the definition went, as the code before could
/// leave; a run saving its record late) are removed when a policy of the
/// name is created: the new policy does not take their backups for its own
/// (on the code before, it listed them as its runs, and its retention
/// would decide over their backups).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_policy_does_not_take_a_deleted_ones_run_records() {
    let cfg = common::config();
    let root = common::unique("runs_left_root");
    let store = PolicyStore::new(common::process::rooted_bucket(&cfg), &root);
    let name = common::unique("runs_left");
    let policy = yearly(&name);
    store.create(&policy, None).await.unwrap();
    assert!(store.start_run(&name, &record(1000)).await.unwrap());
    store.delete(&name).await.unwrap();
    assert!(store.runs(&name).await.unwrap().is_empty());
    // A record written after the delete, as a late run's would be.
    assert!(store.start_run(&name, &record(2000)).await.unwrap());
    store.create(&policy, None).await.unwrap();
    assert_eq!(store.runs(&name).await.unwrap(), Vec::<RunRecord>::new());
    store.delete(&name).await.unwrap();
}
