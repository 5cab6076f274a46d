//! Test certificates (a CA, a server certificate for `localhost` and
//! 127.0.0.1, client certificates from that CA and from a stranger CA) and a
//! TLS-terminating TCP proxy, to put TLS in front of the real Milvus and S3
//! the way a sidecar or load balancer does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

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
    milvus_backup::tls::server_config(&milvus_backup::config::ServerTlsConfig {
        cert_path: pki.path("server.pem"),
        key_path: pki.path("server.key"),
        client_ca_path: if require_client_certs {
            pki.path("ca.pem")
        } else {
            String::new()
        },
    })
    .unwrap()
}

/// Terminates TLS on 127.0.0.1 and forwards the plain bytes to `upstream`.
pub async fn tls_proxy(upstream: SocketAddr, config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}
