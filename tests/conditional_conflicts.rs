//! AWS S3 answers a conditional write that raced another conditional write to
//! the same key 409 ConditionalRequestConflict, and advises to send it again:
//! it wrote nothing and says nothing about the condition. moto never answers
//! so, so a proxy in front of the real S3 of the test environment answers the
//! first conditional writes of one key 409 without forwarding them; the
//! writes after them reach moto. Against the real Milvus 2.3.5 and S3.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use common::process;
use milvus_backup::api::proto as pb;
use milvus_backup::jobs::Leases;

/// A lease whose renewals are answered 409 twice is still held, by its job:
/// the renewal is sent again. On the code before, the 409 was taken for
/// another holder's write and the lease was given up at its first renewal
/// (its job stopped ABORTED).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_renewal_answered_409_is_sent_again() {
    let mut cfg = common::config();
    let s3 = format!("{}:{}", cfg.minio.address, cfg.minio.port);
    let proxy = common::faults::start(s3.parse().unwrap(), Default::default()).await;
    cfg.minio.port = proxy.addr.port();
    let ctx = milvus_backup::context::Context::from_config(&cfg).unwrap();
    ctx.catalog.store().ensure_bucket(true).await.unwrap();
    let name = format!("backup/{}", common::unique("c409"));
    // A 3 s lease is renewed each second.
    let leases = Leases::new(
        ctx.catalog.store().clone(),
        "backup",
        Duration::from_secs(3),
    );
    let lease = leases.acquire(&name, "job-409", "create").await.unwrap();

    proxy.conflict_conditional_puts_for(&format!("/_leases/{name}"), 2);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        proxy.counts.conflicts_409.load(Ordering::Relaxed),
        2,
        "both 409s were answered to renewals"
    );
    assert!(
        !lease.lost().is_cancelled(),
        "a renewal answered 409 is not a lost lease"
    );
    lease.fence().check().expect("the lease still holds");
    assert_eq!(leases.holder(&name).await.unwrap().unwrap().job, "job-409");
    lease.release().await;
    assert!(leases.holder(&name).await.unwrap().is_none());
}

/// The commit point of a backup (`meta/full_meta.json`, written only if
/// absent) answered 409 twice: the backup ends SUCCEEDED, and verifies. On
/// the code before, the 409 was taken for another job's commit point and the
/// backup ended FAILED ("completed by another").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_point_answered_409_is_sent_again() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("c409_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..200, 23).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let s3 = format!("{}:{}", cfg.minio.address, cfg.minio.port);
    let proxy = common::faults::start(s3.parse().unwrap(), Default::default()).await;
    proxy.conflict_conditional_puts_for("/meta/full_meta.json", 2);
    let (state, config) = process::config_with(&cfg, "c409", "");
    process::route_s3_through(&cfg, &config, proxy.addr.port());
    process::root_backups_at(&config, &common::unique("c409_root"));
    let server = process::Proc::on(state, config, None).await;
    let mut client = server.client.clone();
    let name = common::unique("c409");
    let backup = flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    assert_eq!(backup.state, pb::JobState::Succeeded as i32, "{backup:?}");
    assert_eq!(proxy.counts.conflicts_409.load(Ordering::Relaxed), 2);
    flows::assert_verifies(
        &mut client,
        &name,
        "the backup whose commit point was answered 409",
    )
    .await;

    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
