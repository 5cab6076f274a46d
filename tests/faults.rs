//! Faults: through a proxy that answers 5% of S3 requests with 503 SlowDown
//! and drops 5% of connections, backups (server-side and streaming) and
//! restores still succeed with equal data; when Milvus goes away mid-job the
//! job fails naming Milvus's address, and a new job succeeds once it is back.
//! Against the real Milvus 2.3.5 and S3 servers.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::data::{self, Spec};
use common::flows;
use milvus_backup::api::proto as pb;
use tokio::net::{TcpListener, TcpStream};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_errors_and_resets_are_survived() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, source) = collection(&m).await;
    let s3: SocketAddr = format!("{}:{}", cfg.minio.address, cfg.minio.port)
        .parse()
        .unwrap();
    let (host_b, port_b) = common::second_s3();
    let s3b: SocketAddr = format!("{host_b}:{port_b}").parse().unwrap();
    let proxy = common::faults::start(s3, 0.05, 0.05, 7).await;
    let proxy_b = common::faults::start(s3b, 0.05, 0.05, 8).await;

    let mut same = cfg.clone();
    same.minio.port = proxy.addr.port();
    let mut other = same.clone();
    other.minio.backup_address = "127.0.0.1".into();
    other.minio.backup_port = proxy_b.addr.port();
    other.minio.backup_bucket_name = "faulty-offsite".into();
    for (label, c) in [("server-side", same), ("streaming", other)] {
        let server = common::TestServer::start(&c).await;
        let mut client = server.client().await;
        let name = common::unique("faulty");
        flows::backup_collections(&mut client, &name, &[&spec.name]).await;
        let mut v = client
            .verify_backup(pb::VerifyBackupRequest { name: name.clone() })
            .await
            .unwrap()
            .into_inner();
        while v
            .message()
            .await
            .expect("the backup verifies despite the faults")
            .is_some()
        {}
        let suffix = format!("_{}", label.replace('-', "_"));
        flows::restore(
            &mut client,
            pb::RestoreRequest {
                backup_name: name,
                collection_suffix: suffix.clone(),
                restore_index: true,
                load: true,
                ..Default::default()
            },
        )
        .await;
        let target = format!("{}{suffix}", spec.name);
        let restored = data::rows(&m, &spec, &spec.db, &target, &[]).await;
        data::assert_rows_equal(label, &source, &restored);
        data::drop_if_exists(&m, &spec.db, &target).await;
        server.handle.stop().await.unwrap();
    }
    let injected = |p: &common::faults::FaultProxy| {
        (
            p.counts.errors_503.load(Ordering::Relaxed),
            p.counts.resets.load(Ordering::Relaxed),
            p.counts.forwarded.load(Ordering::Relaxed),
        )
    };
    let (e1, r1, f1) = injected(&proxy);
    let (e2, r2, f2) = injected(&proxy_b);
    println!(
        "faults injected and survived: {} x 503, {} resets, over {} forwarded requests",
        e1 + e2,
        r1 + r2,
        f1 + f2
    );
    assert!(
        e1 + e2 > 0 && r1 + r2 > 0,
        "no fault was injected: {e1}/{r1} {e2}/{r2}"
    );
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A TCP proxy to Milvus that can be switched off (every connection refused
/// and cut) and on again: Milvus "going away" from our server's view.
async fn switchable_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let up = Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let flag = flag.clone();
            tokio::spawn(async move {
                if !flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut ri, mut wi) = inbound.split();
                let (mut ro, mut wo) = outbound.split();
                let watch = async {
                    while flag.load(Ordering::SeqCst) {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                };
                tokio::select! {
                    _ = tokio::io::copy(&mut ri, &mut wo) => {}
                    _ = tokio::io::copy(&mut ro, &mut wi) => {}
                    _ = watch => {}
                }
            });
        }
    });
    (addr, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn milvus_going_away_fails_the_job_clearly() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, source) = collection(&m).await;
    let milvus: SocketAddr = format!("{}:{}", cfg.milvus.address, cfg.milvus.port)
        .parse()
        .unwrap();
    let (proxy, up) = switchable_proxy(milvus).await;
    let mut via_proxy = cfg.clone();
    via_proxy.milvus.port = proxy.port();
    let server = common::TestServer::start(&via_proxy).await;
    let mut client = server.client().await;
    let name = common::unique("fine");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;

    // Milvus goes away right after the restore started.
    let mut stream = client
        .restore(pb::RestoreRequest {
            backup_name: name.clone(),
            collection_suffix: "_gone".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap();
    up.store(false, Ordering::SeqCst);
    let mut last = None;
    while let Some(msg) = stream.message().await.unwrap() {
        last = msg.restore;
    }
    let job = last.unwrap();
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
    flows::restore(
        &mut client,
        pb::RestoreRequest {
            backup_name: name,
            collection_suffix: "_back".into(),
            restore_index: true,
            load: true,
            ..Default::default()
        },
    )
    .await;
    let restored = data::rows(&m, &spec, &spec.db, &format!("{}_back", spec.name), &[]).await;
    data::assert_rows_equal("after Milvus came back", &source, &restored);
    for c in [spec.name.clone(), format!("{}_back", spec.name)] {
        data::drop_if_exists(&m, &spec.db, &c).await;
    }
    server.handle.stop().await.unwrap();
}
