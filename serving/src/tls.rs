//! HTTPS and gRPC over TLS: a rustls server configuration from PEM files, with ring as the crypto provider.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The protocol HTTP listeners negotiate (ALPN).
pub const HTTP1: &[u8] = b"http/1.1";
/// The protocol gRPC listeners negotiate (ALPN): gRPC clients require `h2`.
pub const HTTP2: &[u8] = b"h2";

/// A TLS acceptor for the certificate chain and private key in these PEM files, negotiating
/// `protocol` (ALPN).
pub fn acceptor(certificate: &Path, key: &Path, protocol: &[u8]) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .with_context(|| format!("reading TLS certificate {}", certificate.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("TLS certificate {}: not valid PEM", certificate.display()))?;
    if chain.is_empty() {
        bail!("TLS certificate {}: no CERTIFICATE block found", certificate.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("TLS key {}: no readable private key (PKCS#8, PKCS#1 or SEC1 PEM)", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS key does not match the certificate, or is of an unsupported kind")?;
    config.alpn_protocols = vec![protocol.to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
