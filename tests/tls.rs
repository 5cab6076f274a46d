//! TLS everywhere, against the real Milvus 2.3.5 and S3 of the test environment:
//! - our server over TLS and over mutual TLS (gRPC with tonic, REST with curl):
//!   a trusted client gets in; plain text, an untrusting client, a client
//!   without a certificate and a client with a stranger's certificate do not;
//! - Milvus behind a TLS terminator that demands client certificates
//!   (`milvus.tlsMode: 2`) and S3 behind a TLS terminator (`minio.useSSL` with
//!   `minio.caCertPath`): a backup and a restore through both, rows equal;
//! - a Milvus or S3 certificate we do not trust fails with a clear error.

mod common;

use std::net::SocketAddr;

use common::hello;
use common::tls::{Pki, server_config, tls_proxy};
use milvus_backup::api::Server;
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::config::Config;
use milvus_backup::context::Context;
use milvus_backup::engine::Engine;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const FIELDS: &[&str] = &["pk", "random", "var", "embeddings"];

/// A gRPC client of `https://localhost:{port}` with the given TLS settings.
async fn tls_client(
    addr: SocketAddr,
    tls: ClientTlsConfig,
) -> Result<BackupServiceClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("https://localhost:{}", addr.port()))?
        .tls_config(tls.domain_name("localhost"))?
        .connect()
        .await?;
    Ok(BackupServiceClient::new(channel))
}

/// ListBackups through `client`, as a yes/no of "the call went through".
async fn call_goes_through(
    client: Result<BackupServiceClient<Channel>, tonic::transport::Error>,
) -> Result<(), String> {
    let mut client = client.map_err(|e| format!("connect: {e:?}"))?;
    client
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .map(|_| ())
        .map_err(|s| format!("call: {s:?}"))
}

/// `curl` over https to the Go tool's list endpoint; the HTTP code, or the curl failure.
fn curl(addr: SocketAddr, args: &[String]) -> Result<String, String> {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .args(args)
        .arg(format!("https://localhost:{}/api/v1/list", addr.port()))
        .output()
        .expect("curl runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_speaks_tls_and_checks_client_certificates() {
    let cfg = common::config();
    let pki = Pki::generate("server-tls");
    let ca = Certificate::from_pem(pki.read("ca.pem"));
    let client_id = Identity::from_pem(pki.read("client.pem"), pki.read("client.key"));
    let stranger_id = Identity::from_pem(pki.read("stranger.pem"), pki.read("stranger.key"));
    let engine = Engine::new(Context::from_config(&cfg).unwrap());

    // One-way TLS.
    let server = Server::new(engine.clone())
        .tls(server_config(&pki, false))
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = server.addr;
    let trusted = ClientTlsConfig::new().ca_certificate(ca.clone());
    call_goes_through(tls_client(addr, trusted.clone()).await)
        .await
        .expect("a client that trusts the CA gets in");
    let plain = async {
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{}", addr.port()))?
            .connect()
            .await?;
        Ok(BackupServiceClient::new(channel))
    }
    .await;
    assert!(
        call_goes_through(plain).await.is_err(),
        "plain text must not be served on a TLS port"
    );
    let untrusting =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.read("stranger.pem")));
    assert!(
        call_goes_through(tls_client(addr, untrusting).await)
            .await
            .is_err()
    );
    assert_eq!(
        curl(addr, &["--cacert".into(), pki.path("ca.pem")]).unwrap(),
        "200"
    );
    let err = curl(addr, &[]).unwrap_err();
    assert!(err.contains("certificate"), "curl without the CA: {err}");
    server.stop().await.unwrap();

    // Mutual TLS.
    let server = Server::new(engine)
        .tls(server_config(&pki, true))
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = server.addr;
    call_goes_through(tls_client(addr, trusted.clone().identity(client_id)).await)
        .await
        .expect("a client with a certificate from the CA gets in");
    let without = call_goes_through(tls_client(addr, trusted.clone()).await).await;
    assert!(without.is_err(), "no client certificate must be refused");
    let stranger = call_goes_through(tls_client(addr, trusted.identity(stranger_id)).await).await;
    assert!(
        stranger.is_err(),
        "a stranger's certificate must be refused"
    );
    let ok = curl(
        addr,
        &[
            "--cacert".into(),
            pki.path("ca.pem"),
            "--cert".into(),
            pki.path("client.pem"),
            "--key".into(),
            pki.path("client.key"),
        ],
    );
    assert_eq!(ok.unwrap(), "200");
    assert!(curl(addr, &["--cacert".into(), pki.path("ca.pem")]).is_err());
    server.stop().await.unwrap();
}

/// The test environment's configuration, but reaching Milvus and S3 through
/// TLS terminators: Milvus with mutual TLS, S3 with one-way TLS.
async fn config_behind_tls(pki: &Pki) -> Config {
    let mut cfg = common::config();
    let milvus_plain: SocketAddr = format!("127.0.0.1:{}", cfg.milvus.port).parse().unwrap();
    let s3_plain: SocketAddr = format!("127.0.0.1:{}", cfg.minio.port).parse().unwrap();
    let milvus_tls = tls_proxy(milvus_plain, server_config(pki, true)).await;
    // The S3 server behind speaks HTTP/1.1 only: offer just that by ALPN.
    let mut s3_config = (*server_config(pki, false)).clone();
    s3_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let s3_tls = tls_proxy(s3_plain, std::sync::Arc::new(s3_config)).await;
    cfg.milvus.address = "localhost".into();
    cfg.milvus.port = milvus_tls.port();
    cfg.milvus.tls_mode = 2;
    cfg.milvus.ca_cert_path = pki.path("ca.pem");
    cfg.milvus.mtls_cert_path = pki.path("client.pem");
    cfg.milvus.mtls_key_path = pki.path("client.key");
    cfg.minio.address = "localhost".into();
    cfg.minio.port = s3_tls.port();
    cfg.minio.use_ssl = true;
    cfg.minio.ca_cert_path = pki.path("ca.pem");
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_and_restore_reach_milvus_and_s3_over_tls() {
    let plain_cfg = common::config();
    let m = common::milvus(&plain_cfg);
    let pki = Pki::generate("client-tls");
    let cfg = config_behind_tls(&pki).await;

    let coll = common::unique("tls_src");
    let copy = format!("{coll}_copy");
    hello::create(&m, &coll, 1200, 2, 21).await;
    let source = hello::rows(&m, "default", &coll, "pk >= 0", FIELDS).await;

    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let check = client
        .check(pb::CheckRequest::default())
        .await
        .expect("Check over TLS")
        .into_inner();
    assert!(check.milvus_version.starts_with("v2.3"), "{check:?}");

    let name = common::unique("tls_backup");
    common::flows::backup_collections(&mut client, &name, &[&coll]).await;
    common::flows::restore(
        &mut client,
        pb::RestoreRequest {
            backup_name: name.clone(),
            collection_renames: [(coll.clone(), copy.clone())].into(),
            ..Default::default()
        },
    )
    .await;
    hello::index_and_load(&m, &copy).await;
    let restored = hello::rows(&m, "default", &copy, "pk >= 0", FIELDS).await;
    hello::assert_rows_equal(&source, &restored);
    assert_eq!(restored.len(), 1200);

    client
        .delete_backup(pb::DeleteBackupRequest { name })
        .await
        .unwrap();
    common::data::drop_after_imports(&m, "default", &copy).await;
    hello::drop_if_exists(&m, "default", &coll).await;
}

/// Check through a server on `cfg` fails with UNAVAILABLE; the status.
async fn check_fails(cfg: &Config) -> tonic::Status {
    let server = common::TestServer::start(cfg).await;
    let err = server
        .client
        .clone()
        .check(pb::CheckRequest::default())
        .await
        .expect_err("an untrusted or missing certificate must fail");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn untrusted_milvus_or_s3_certificates_fail_clearly() {
    let pki = Pki::generate("untrusted-tls");
    let cfg = config_behind_tls(&pki).await;

    // Milvus: our CA is not given, so the system's roots are used and refuse it.
    let mut no_ca = cfg.clone();
    no_ca.milvus.ca_cert_path.clear();
    no_ca.milvus.tls_mode = 1;
    let err = check_fails(&no_ca).await;
    assert!(err.message().contains("milvus"), "{err:?}");

    // Milvus: TLS, but no client certificate where one is demanded.
    let mut no_identity = cfg.clone();
    no_identity.milvus.tls_mode = 1;
    check_fails(&no_identity).await;

    // S3: the CA is not given.
    let mut no_s3_ca = cfg.clone();
    no_s3_ca.minio.ca_cert_path.clear();
    let err = check_fails(&no_s3_ca).await;
    assert!(err.message().contains("object store"), "{err:?}");

    // A CA file that cannot be read is refused when the client is built, naming it.
    let mut bad = cfg;
    bad.minio.ca_cert_path = pki.path("server.key").replace("server.key", "missing.pem");
    let err = Context::from_config(&bad).unwrap_err().to_string();
    assert!(
        err.contains("minio.caCertPath") && err.contains("missing.pem"),
        "{err}"
    );
}
