//! Test certificates (a CA, a server certificate for `localhost` and
//! 127.0.0.1, client certificates from that CA and from a stranger CA) and a
//! TLS-terminating TCP proxy, to put TLS in front of the real Milvus and S3
//! the way a sidecar or load balancer does (it keeps the handshake failures
//! it saw); and raw TLS and TCP probes that show exactly how a server
//! refuses a client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// PEM files in a directory of their own.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// Generates everything into a fresh directory under `target/`.
    pub fn generate(name: &str) -> Self {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = new_ca("milvus-backup test CA");
        let stranger = new_ca("somebody else's CA");
        leaf(&dir, "server", &ca, ExtendedKeyUsagePurpose::ServerAuth);
        leaf(&dir, "client", &ca, ExtendedKeyUsagePurpose::ClientAuth);
        leaf(
            &dir,
            "stranger",
            &stranger,
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Self { dir }
    }

    /// The path of `file` (`ca.pem`, `server.pem`, `server.key`, `client.pem`, ...).
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    /// The bytes of `file`.
    pub fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(file)).unwrap()
    }
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    dir: &Path,
    name: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    usage: ExtendedKeyUsagePurpose,
) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// A TLS server configuration from the PKI's server certificate; with
/// `require_client_certs`, clients need a certificate from the test CA.
pub fn server_config(pki: &Pki, require_client_certs: bool) -> Arc<rustls::ServerConfig> {
    let client_ca = if require_client_certs {
        pki.path("ca.pem")
    } else {
        String::new()
    };
    milvus_backup::tls::server_config(&pki.path("server.pem"), &pki.path("server.key"), &client_ca)
        .unwrap()
}

/// A TLS-terminating proxy: its address, and the handshake failures it saw.
pub struct TlsProxy {
    pub addr: SocketAddr,
    pub failures: Arc<Mutex<Vec<String>>>,
}

impl TlsProxy {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Terminates TLS on 127.0.0.1 and forwards the plain bytes to `upstream`.
pub async fn tls_proxy(upstream: SocketAddr, config: Arc<rustls::ServerConfig>) -> TlsProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = failures.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(stream).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        seen.lock().unwrap().push(format!("{e} / {e:?}"));
                        return;
                    }
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    TlsProxy { addr, failures }
}

/// A TLS client configuration trusting `ca_pem`, presenting the certificate
/// and key `identity` (PEM) if given.
pub fn client_config(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert)
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    }
}

/// Connects to `addr` as `localhost` with `config` and reads what the server
/// sends first: how it refuses the client, as the error with its sources
/// (`Ok` with the bytes if it does not refuse). Unlike a client with a
/// protocol on top, nothing races the alert here.
pub async fn tls_refusal(addr: SocketAddr, config: rustls::ClientConfig) -> Result<String, String> {
    let chain = |e: std::io::Error| {
        let inner = e
            .get_ref()
            .map(|i| format!(" <- {i} / {i:?}"))
            .unwrap_or_default();
        format!("{e} / {e:?}{inner}")
    };
    let tcp = TcpStream::connect(addr).await.map_err(chain)?;
    let connector = TlsConnector::from(Arc::new(config));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {}", chain(e)))?;
    // The server speaks first only to refuse: a TLS 1.3 client's handshake
    // ends before the server has checked its certificate. Nothing is sent,
    // so that the server's hang-up is not a reset that could beat its alert.
    let mut buf = vec![0u8; 1024];
    match tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf)).await {
        Err(_) => Ok("accepted: no refusal within 3 s".into()),
        Ok(Ok(n)) => Ok(format!(
            "read {n} bytes: {:?}",
            String::from_utf8_lossy(&buf[..n])
        )),
        Ok(Err(e)) => Err(format!("read: {}", chain(e))),
    }
}

/// Speaks plain HTTP/2 (its connection preface) to `addr` and returns the
/// bytes the server answers with before it closes the connection.
pub async fn plain_answer(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    Ok(out)
}
