//! Faults: through proxies that answer every 20th S3 request (5%) with 503
//! SlowDown, drop every 20th connection unanswered (another 5%), and cut
//! every 25th PutObject request body and every 25th GetObject response body
//! partway (GetObjects while a backup copies, see
//! `CUT_GET_EVERY_WHILE_READING`), backups (server-side and streaming)
//! verify and restores end with equal rows. Each proxy of each run is counted
//! on its own, and each must have injected every kind. When Milvus goes away
//! mid-job the job fails naming Milvus's address, and a new job succeeds once
//! it is back. Against the real Milvus 2.3.5 and S3 servers.

mod common;
#[path = "common/figures.rs"]
mod figures;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use common::data::{self, Spec};
use common::faults::{Counts, FaultProxy, Rates};
use common::flows;
use milvus_backup::api::proto as pb;
use milvus_backup::storage::ObjectStore;

async fn collection(
    m: &milvus_backup::milvus::MilvusClient,
) -> (Spec, Vec<milvus_backup::milvus::rows::Row>) {
    let spec = Spec::new(&common::unique("faults_src"));
    data::create(m, &spec).await;
    for i in 0..4 {
        data::insert(m, &spec, "", i * 150..(i + 1) * 150, 111).await;
        data::flush(m, &spec.db, &spec.name).await;
    }
    data::delete(m, &spec, "pk in [3, 300]").await;
    data::index(m, &spec.db, &spec.name).await;
    data::load(m, &spec.db, &spec.name).await;
    let rows = data::rows(m, &spec, &spec.db, &spec.name, &[]).await;
    (spec, rows)
}

const RATES: Rates = Rates {
    error_503_every: 20,
    reset_every: 20,
    cut_get_every: 25,
    cut_put_every: 25,
};

/// GetObject bodies are cut while a backup copies, and while it is verified
/// and restored: each of those reads is retried whole.
const CUT_GET_EVERY_WHILE_READING: u64 = RATES.cut_get_every;

/// Asserts that `proxy` injected 503s and resets (and with `mid_body`, cut
/// both a response and a request body); its counts.
fn injected(run: &str, proxy: &str, p: &FaultProxy, mid_body: bool) -> Counts {
    let c = p.counts.now();
    assert!(
        c.errors_503 > 0 && c.resets > 0,
        "{run}, {proxy}: both 503s and resets must be injected: {c}"
    );
    if mid_body {
        assert!(
            c.cut_responses > 0 && c.cut_requests > 0,
            "{run}, {proxy}: response and request bodies must be cut: {c}"
        );
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_errors_resets_and_cut_bodies_are_survived() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, source) = collection(&m).await;
    let s3: SocketAddr = format!("{}:{}", cfg.minio.address, cfg.minio.port)
        .parse()
        .unwrap();
    let (host_b, port_b) = common::second_s3();
    let s3b: SocketAddr = format!("{host_b}:{port_b}").parse().unwrap();

    let mut lines = Vec::new();
    for (run, streaming) in [("server-side", false), ("streaming", true)] {
        // Fresh proxies: each run is counted on its own.
        let proxy = common::faults::start(s3, RATES).await;
        let proxy_b = common::faults::start(s3b, RATES).await;
        let mut c = cfg.clone();
        c.minio.port = proxy.addr.port();
        if streaming {
            c.minio.backup_address = "127.0.0.1".into();
            c.minio.backup_port = proxy_b.addr.port();
            c.minio.backup_bucket_name = "faulty-offsite".into();
            milvus_backup::storage::S3Bucket::new(&{
                let mut direct = c.clone();
                direct.minio.backup_port = port_b;
                direct.minio.backup_bucket().unwrap()
            })
            .unwrap()
            .ensure_bucket(true)
            .await
            .unwrap();
        }
        let server = common::TestServer::start(&c).await;
        let mut client = server.client().await;
        let name = common::unique("faulty");
        flows::backup_collections(&mut client, &name, &[&spec.name]).await;
        let copied = proxy.counts.now();
        if streaming {
            // The copies read Milvus's bucket and write the backup storage.
            assert!(
                copied.cut_responses > 0,
                "{run}: the copies' GetObject bodies must be cut: {copied}"
            );
            let written = proxy_b.counts.now();
            assert!(
                written.cut_requests > 0,
                "{run}: the copies' PutObject bodies must be cut: {written}"
            );
        }
        for p in [&proxy, &proxy_b] {
            p.cut_get_every(CUT_GET_EVERY_WHILE_READING);
        }

        // The backup verifies despite the faults.
        flows::assert_verifies(&mut client, &name, run).await;
        let suffix = format!("_{}", run.replace('-', "_"));
        flows::restore(&mut client, flows::restore_loaded_request(&name, &suffix)).await;
        let target = format!("{}{suffix}", spec.name);
        let restored = data::rows(&m, &spec, &spec.db, &target, &[]).await;
        data::assert_rows_equal(run, &source, &restored);
        data::drop_if_exists(&m, &spec.db, &target).await;
        client
            .delete_backup(pb::DeleteBackupRequest {
                name,
                ..Default::default()
            })
            .await
            .expect("delete despite the faults");
        server.handle.stop().await.unwrap();

        if streaming {
            // Milvus's bucket: the backup reads it (bodies cut), the restore
            // stages the binlogs into it (bodies cut).
            let a = injected(run, "Milvus's bucket", &proxy, true);
            // The backup storage: the backup writes it (bodies cut); verify
            // and the restore read it.
            let b = injected(run, "backup storage", &proxy_b, false);
            assert!(b.cut_requests > 0, "{run}: {b}");
            lines.push(format!("{run}, proxy to Milvus's bucket: {a}"));
            lines.push(format!("{run}, proxy to the backup storage: {b}"));
        } else {
            // Both buckets through one proxy: the copies are CopyObjects.
            let a = injected(run, "the one S3", &proxy, false);
            assert_eq!(proxy_b.counts.now(), Counts::default(), "unused");
            lines.push(format!("{run}, proxy to the one S3: {a}"));
        }
    }
    figures::publish("faults", &lines);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn milvus_going_away_fails_the_job_clearly() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, source) = collection(&m).await;
    let milvus: SocketAddr = format!("{}:{}", cfg.milvus.address, cfg.milvus.port)
        .parse()
        .unwrap();
    let (proxy, up) = common::faults::switchable_proxy(milvus).await;
    let mut via_proxy = cfg.clone();
    via_proxy.milvus.port = proxy.port();
    let server = common::TestServer::start(&via_proxy).await;
    let mut client = server.client().await;
    let name = common::unique("fine");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;

    // Milvus goes away right after the restore started.
    let mut stream = client
        .restore(flows::restore_request(&name, "_gone"))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap();
    up.store(false, Ordering::SeqCst);
    let job = flows::last_restore(stream).await;
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    assert!(
        job.error_message.contains("unavailable")
            && job.error_message.contains(&proxy.port().to_string()),
        "{}",
        job.error_message
    );

    // Back again: a new job succeeds.
    up.store(true, Ordering::SeqCst);
    data::drop_after_imports(&m, &spec.db, &format!("{}_gone", spec.name)).await;
    flows::restore(&mut client, flows::restore_loaded_request(&name, "_back")).await;
    let restored = data::rows(&m, &spec, &spec.db, &format!("{}_back", spec.name), &[]).await;
    data::assert_rows_equal("after Milvus came back", &source, &restored);
    for c in [spec.name.clone(), format!("{}_back", spec.name)] {
        data::drop_if_exists(&m, &spec.db, &c).await;
    }
    server.handle.stop().await.unwrap();
}
