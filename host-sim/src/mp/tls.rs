//! Native mode (docs/protocol.md §1): HTTPS with client certificates required.
//!
//! With a [`TlsConfig`], [`MpServer::start_tls`](super::MpServer::start_tls) wraps every accepted
//! socket in rustls (0.23, `ring` provider; TLS 1.3 and 1.2): the server presents its
//! certificate, and every client must present a certificate that chains to one of the configured
//! CAs, is within its validity and carries the clientAuth usage (rustls' `WebPkiClientVerifier`).
//! With CRLs, certificates they list are refused too, and so is a client certificate whose CA
//! published no CRL among them (the SDK's `MPAPI_SECURITY_FLAG_ENABLE_CRL_CHECKING`; rustls'
//! default "unknown status is an error"). A CRL past its nextUpdate is still used.
//!
//! The presented (end-entity) certificate then travels with each request to the handler, which
//! requires the message signer to be that certificate ([`handler::handle_ccm_post_from`]): a
//! registration's `<Signing>` certificate (or, for AgentType 8, the ISV proxy's imported one) and
//! the signer of every later message must be the certificate of the TLS client. Failed handshakes
//! are logged as refusals with their reason, like every other refusal. A client that speaks
//! plain HTTP to this port is answered a plain-text 403 saying so (the first byte of a TLS
//! connection is 0x16) rather than left to guess from a failed handshake.
//!
//! [`handler::handle_ccm_post_from`]: super::handler::handle_ccm_post_from

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::pki;

/// What native mode needs: the server's certificate chain and key, the CAs client certificates
/// must chain to, and optionally CRLs.
pub struct TlsConfig {
    /// The server certificate first, then any intermediates.
    pub server_cert_chain: Vec<CertificateDer<'static>>,
    /// The server's private key.
    pub server_key: PrivateKeyDer<'static>,
    /// Trust anchors for client certificates.
    pub client_ca: Vec<CertificateDer<'static>>,
    /// Certificate revocation lists; empty: no revocation checking.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

impl Clone for TlsConfig {
    fn clone(&self) -> Self {
        TlsConfig {
            server_cert_chain: self.server_cert_chain.clone(),
            server_key: self.server_key.clone_key(),
            client_ca: self.client_ca.clone(),
            crls: self.crls.clone(),
        }
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_cert_chain", &self.server_cert_chain.len())
            .field("server_key", &"<redacted>")
            .field("client_ca", &self.client_ca.len())
            .field("crls", &self.crls.len())
            .finish()
    }
}

/// The crypto provider of every TLS configuration here (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// Read the files (each DER or PEM; the certificate file may hold a chain, the CA file
    /// several CAs, the CRL file several CRLs).
    pub fn from_files(
        server_cert: &Path,
        server_key: &Path,
        client_ca: &Path,
        crl: Option<&Path>,
    ) -> Result<TlsConfig> {
        Ok(TlsConfig {
            server_cert_chain: pki::read_certs(server_cert)?,
            server_key: pki::read_private_key(server_key)?,
            client_ca: pki::read_certs(client_ca)?,
            crls: crl.map(pki::read_crls).transpose()?.unwrap_or_default(),
        })
    }

    /// The rustls server configuration: client certificates required and verified.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let mut roots = RootCertStore::empty();
        for (i, ca) in self.client_ca.iter().enumerate() {
            roots
                .add(ca.clone())
                .map_err(|e| anyhow!("client CA certificate {}: {e}", i + 1))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .with_crls(self.crls.iter().cloned())
            .build()
            .map_err(|e| anyhow!("client certificate verifier: {e}"))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.server_cert_chain.clone(), self.server_key.clone_key())
            .map_err(|e| anyhow!("server certificate and key: {e}"))?;
        Ok(Arc::new(config))
    }
}

/// Native mode's rule for every signed request: the certificate whose key signed it must be the
/// TLS client certificate presented on the connection. `presented` is `None` over plain HTTP
/// (mixed mode), where there is nothing to compare. `signer` says whose certificate
/// `signer_der` is, for the refusal's reason.
pub fn check_presented_cert(
    presented: Option<&[u8]>,
    signer_der: &[u8],
    signer: &str,
) -> Result<(), super::rejection::Rejection> {
    match presented {
        Some(p) if p != signer_der => Err(super::rejection::Rejection::new(format!(
            "native mode: the request is signed with {signer}, which is not the TLS client \
             certificate presented on this connection"
        ))),
        _ => Ok(()),
    }
}
