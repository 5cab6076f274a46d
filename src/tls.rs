//! TLS material: PEM files read once at start, with errors that name the file,
//! and the server's rustls configuration (optionally requiring client certificates).

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The crypto provider everywhere (ring: no C toolchain or cmake needed).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM file whole (for APIs that take PEM bytes), naming it on failure.
pub fn read_pem(what: &str, path: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::invalid(format!("cannot read {what} {path:?}: {e}")))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(Error::invalid(format!("{what} {path:?} is not a PEM file")));
    }
    Ok(bytes)
}

/// Every certificate in a PEM file; at least one.
pub fn certificates(what: &str, path: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |e: String| Error::invalid(format!("{what} {path:?}: {e}"));
    let certs = CertificateDer::pem_file_iter(Path::new(path))
        .map_err(|e| bad(e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(what: &str, path: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(Path::new(path))
        .map_err(|e| Error::invalid(format!("{what} {path:?}: {e}")))
}

/// The server's TLS configuration, advertising HTTP/2 and HTTP/1.1 by ALPN
/// (gRPC clients need `h2`). With `client_ca_path`, clients must present a
/// certificate signed by that CA.
pub fn server_config(
    cert_path: &str,
    key_path: &str,
    client_ca_path: &str,
) -> Result<Arc<ServerConfig>> {
    let certs = certificates("security.tls.certPath", cert_path)?;
    let key = private_key("security.tls.keyPath", key_path)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS: {e}")))?;
    let builder = if client_ca_path.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for ca in certificates("security.tls.clientCaPath", client_ca_path)? {
            roots.add(ca).map_err(|e| {
                Error::invalid(format!(
                    "security.tls.clientCaPath {:?}: {e}",
                    client_ca_path
                ))
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| {
                Error::invalid(format!(
                    "security.tls.clientCaPath {:?}: {e}",
                    client_ca_path
                ))
            })?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        Error::invalid(format!(
            "security.tls: certificate {:?} and key {:?} do not make a pair: {e}",
            cert_path, key_path
        ))
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
