//! TLS everywhere, against the real Milvus 2.3.5 and S3 of the test environment:
//! - our server over TLS and over mutual TLS (gRPC with tonic, REST with curl):
//!   a trusted client gets in; plain text, an untrusting client, a client
//!   without a certificate and a client with a stranger's certificate do not;
//! - Milvus behind a TLS terminator that demands client certificates
//!   (`milvus.tlsMode: 2`) and S3 behind a TLS terminator (`minio.useSSL` with
//!   `minio.caCertPath`): a backup and a restore through both, rows equal;
//! - a Milvus or S3 certificate we do not trust fails with a clear error.
//!
//! Every refusal is asserted to be the TLS failure it should be (the
//! certificate error or the alert, from the error's whole source chain), so
//! that a closed port or any other failure does not pass for one.

mod common;

use std::net::SocketAddr;

use common::hello;
use common::tls::{
    Pki, TlsProxy, client_config, plain_answer, server_config, tls_proxy, tls_refusal,
};
use milvus_backup::api::Server;
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::config::Config;
use milvus_backup::context::Context;
use milvus_backup::engine::Engine;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const FIELDS: &[&str] = &["pk", "random", "var", "embeddings"];
/// What a client with a certificate from another CA gets from mutual TLS.
const WANT_STRANGER: &str = "AlertReceived(UnknownCA)";
/// What a TLS terminator gets from our client when it does not trust its certificate.
const WANT_PROXY_UNTRUSTED: &str = "AlertReceived(UnknownCA)";

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

/// An error and its sources, each shown with Display and Debug.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{err} / {err:?}");
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(&format!(" <- {e} / {e:?}"));
        next = e.source();
    }
    out
}

/// ListBackups through `client`, as a yes/no of "the call went through";
/// the failure with its whole source chain.
async fn call_goes_through(
    client: Result<BackupServiceClient<Channel>, tonic::transport::Error>,
) -> Result<(), String> {
    let mut client = client.map_err(|e| format!("connect: {}", chain(&e)))?;
    client
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .map(|_| ())
        .map_err(|s| format!("call: {s:?}: {}", chain(&s)))
}

/// Asserts that `what` did not get through, and not because the port is closed.
fn assert_not_through(what: &str, result: Result<(), String>) {
    let err = result.expect_err(what);
    assert!(
        !err.contains("ConnectionRefused") && !err.contains("Connection refused"),
        "{what}: the connection was refused, not the TLS: {err}"
    );
}

/// Asserts that `what` was refused with the TLS failure `want` (a text of
/// the error chain), not by a closed port or anything else.
fn assert_refused(what: &str, result: Result<impl std::fmt::Debug, String>, want: &str) {
    let err = match result {
        Ok(v) => panic!("{what}: must be refused, got through: {v:?}"),
        Err(e) => e,
    };
    assert!(
        !err.contains("ConnectionRefused") && !err.contains("Connection refused"),
        "{what}: the connection was refused, not the TLS: {err}"
    );
    assert!(err.contains(want), "{what}: expected {want:?} in: {err}");
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
    assert_not_through("plain text on the TLS port", call_goes_through(plain).await);
    // What the port answers plain HTTP/2 with: a TLS alert record, then it hangs up.
    let answer = plain_answer(addr)
        .await
        .expect("the port accepts the connection");
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "plain text gets a TLS alert record: {answer:?}"
    );
    let untrusting =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.read("stranger.pem")));
    assert_refused(
        "a client that does not trust the server's CA",
        call_goes_through(tls_client(addr, untrusting).await).await,
        "InvalidCertificate(UnknownIssuer)",
    );
    assert_eq!(
        curl(addr, &["--cacert".into(), pki.path("ca.pem")]).unwrap(),
        "200"
    );
    assert_refused(
        "curl without the CA",
        curl(addr, &[]),
        "SSL certificate problem: unable to get local issuer certificate",
    );
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
    assert_not_through(
        "no client certificate",
        call_goes_through(tls_client(addr, trusted.clone()).await).await,
    );
    assert_not_through(
        "a stranger's client certificate",
        call_goes_through(tls_client(addr, trusted.identity(stranger_id)).await).await,
    );
    let ca_pem = pki.read("ca.pem");
    assert_refused(
        "no client certificate (TLS alone)",
        tls_refusal(addr, client_config(&ca_pem, None)).await,
        "AlertReceived(CertificateRequired)",
    );
    let (cert, key) = (pki.read("stranger.pem"), pki.read("stranger.key"));
    assert_refused(
        "a stranger's client certificate (TLS alone)",
        tls_refusal(addr, client_config(&ca_pem, Some((&cert, &key)))).await,
        WANT_STRANGER,
    );
    let (cert, key) = (pki.read("client.pem"), pki.read("client.key"));
    let through = tls_refusal(addr, client_config(&ca_pem, Some((&cert, &key)))).await;
    assert!(
        through.as_ref().is_ok_and(|r| r.starts_with("accepted")),
        "the probe itself gets through with the right certificate: {through:?}"
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
    // curl may see the hang-up before the alert: the alerts are asserted above.
    assert_not_through(
        "curl without a client certificate",
        curl(addr, &["--cacert".into(), pki.path("ca.pem")]).map(|_| ()),
    );
    assert_not_through(
        "curl with a stranger's certificate",
        curl(
            addr,
            &[
                "--cacert".into(),
                pki.path("ca.pem"),
                "--cert".into(),
                pki.path("stranger.pem"),
                "--key".into(),
                pki.path("stranger.key"),
            ],
        )
        .map(|_| ()),
    );
    server.stop().await.unwrap();
}

/// The test environment's configuration, but reaching Milvus and S3 through
/// TLS terminators: Milvus with mutual TLS, S3 with one-way TLS.
async fn config_behind_tls(pki: &Pki) -> (Config, TlsProxy, TlsProxy) {
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
    (cfg, milvus_tls, s3_tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_and_restore_reach_milvus_and_s3_over_tls() {
    let plain_cfg = common::config();
    let m = common::milvus(&plain_cfg);
    let pki = Pki::generate("client-tls");
    let (cfg, _milvus_tls, _s3_tls) = config_behind_tls(&pki).await;

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
        .delete_backup(pb::DeleteBackupRequest {
            name,
            ..Default::default()
        })
        .await
        .unwrap();
    common::data::drop_after_imports(&m, "default", &copy).await;
    hello::drop_if_exists(&m, "default", &coll).await;
}

/// Check through a server on `cfg` fails with UNAVAILABLE naming `service`;
/// the message.
async fn check_fails(cfg: &Config, what: &str, service: &str) -> String {
    let server = common::TestServer::start(cfg).await;
    let err = server
        .client
        .clone()
        .check(pb::CheckRequest::default())
        .await
        .expect_err("an untrusted or missing certificate must fail");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{what}: {err:?}");
    assert!(err.message().contains(service), "{what}: {err:?}");
    err.message().to_string()
}

/// The handshake failures `proxy` saw since the last call (a late one of
/// the case before may be among them).
fn proxy_failures(proxy: &TlsProxy) -> Vec<String> {
    std::mem::take(&mut *proxy.failures.lock().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn untrusted_milvus_or_s3_certificates_fail_clearly() {
    let pki = Pki::generate("untrusted-tls");
    let (cfg, milvus_tls, s3_tls) = config_behind_tls(&pki).await;

    // Milvus: our CA is not given, so the system's roots are used and refuse it.
    let mut no_ca = cfg.clone();
    no_ca.milvus.ca_cert_path.clear();
    no_ca.milvus.tls_mode = 1;
    let what = "Milvus's certificate without our CA";
    let msg = check_fails(&no_ca, what, "milvus").await;
    assert_refused(
        what,
        Err::<(), _>(msg),
        "invalid peer certificate: UnknownIssuer",
    );
    let seen = proxy_failures(&milvus_tls);
    assert!(
        seen.iter().any(|f| f.contains(WANT_PROXY_UNTRUSTED)),
        "{what}: the proxy saw {seen:?}"
    );

    // Milvus: TLS, but no client certificate where one is demanded.
    let mut no_identity = cfg.clone();
    no_identity.milvus.tls_mode = 1;
    // The client sees its connection closed; the proxy in front of Milvus
    // says why.
    let what = "Milvus demands a client certificate";
    let msg = check_fails(&no_identity, what, "milvus").await;
    assert_refused(what, Err::<(), _>(msg), "GetVersion");
    let seen = proxy_failures(&milvus_tls);
    assert!(
        seen.iter().any(|f| f.contains("peer sent no certificates")),
        "{what}: the proxy saw {seen:?}"
    );

    // S3: the CA is not given.
    let mut no_s3_ca = cfg.clone();
    no_s3_ca.minio.ca_cert_path.clear();
    let what = "S3's certificate without our CA";
    let msg = check_fails(&no_s3_ca, what, "object store").await;
    assert_refused(
        what,
        Err::<(), _>(msg),
        "invalid peer certificate: UnknownIssuer",
    );
    let seen = proxy_failures(&s3_tls);
    assert!(
        seen.iter().any(|f| f.contains(WANT_PROXY_UNTRUSTED)),
        "{what}: the proxy saw {seen:?}"
    );

    // A CA file that cannot be read is refused when the client is built, naming it.
    let mut bad = cfg;
    bad.minio.ca_cert_path = pki.path("server.key").replace("server.key", "missing.pem");
    let err = Context::from_config(&bad).unwrap_err().to_string();
    assert!(
        err.contains("minio.caCertPath") && err.contains("missing.pem"),
        "{err}"
    );
}
