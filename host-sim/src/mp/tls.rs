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
//!
//! **TLS versions and an IIS-like binding** ([`TlsVersion`], [`TlsConfig::client_cert_after_request`],
//! `mp serve --tls-version 1.2|1.3|any --client-cert-after-request`): by default IIS asks for the
//! client certificate only once it has read the request, by renegotiation on TLS 1.2 and by
//! post-handshake authentication on TLS 1.3. rustls can do neither, so that server is OpenSSL
//! ([`OpensslServer`]): the handshake asks for no certificate, the request is read, then the
//! server sends a HelloRequest (1.2; no session resumption in it) or a CertificateRequest (1.3),
//! and the request is handled once the certificate has been verified like in the handshake
//! (chain to the client CAs, validity, clientAuth usage, CRLs). A client that cannot present it
//! then is logged as a refusal and the connection closed unanswered, as IIS does. The version
//! alone does not need OpenSSL: rustls serves 1.2 or 1.3 only when asked to.
//!
//! [`handler::handle_ccm_post_from`]: super::handler::handle_ccm_post_from

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use openssl::ssl::{
    SslContext, SslContextBuilder, SslMethod, SslOptions, SslSessionCacheMode, SslVerifyMode,
    SslVersion,
};
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
    /// The TLS versions served.
    pub version: TlsVersion,
    /// Ask for the client certificate only after the request has been read (an OpenSSL server:
    /// see the module docs).
    pub client_cert_after_request: bool,
}

/// The TLS versions an MP serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsVersion {
    /// TLS 1.2 only (Windows Server 2016 and 2019 have no 1.3).
    #[value(name = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[value(name = "1.3")]
    Tls13,
    /// TLS 1.2 and 1.3.
    #[default]
    Any,
}

impl Clone for TlsConfig {
    fn clone(&self) -> Self {
        TlsConfig {
            server_cert_chain: self.server_cert_chain.clone(),
            server_key: self.server_key.clone_key(),
            client_ca: self.client_ca.clone(),
            crls: self.crls.clone(),
            version: self.version,
            client_cert_after_request: self.client_cert_after_request,
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
            .field("version", &self.version)
            .field("client_cert_after_request", &self.client_cert_after_request)
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
            version: TlsVersion::Any,
            client_cert_after_request: false,
        })
    }

    /// The same with `version` served.
    pub fn with_version(mut self, version: TlsVersion) -> Self {
        self.version = version;
        self
    }

    /// The same asking for the client certificate after the request (OpenSSL).
    pub fn asking_after_request(mut self) -> Self {
        self.client_cert_after_request = true;
        self
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
        let versions: &[&rustls::SupportedProtocolVersion] = match self.version {
            TlsVersion::Tls12 => &[&rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
            TlsVersion::Any => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .context("TLS protocol versions")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.server_cert_chain.clone(), self.server_key.clone_key())
            .map_err(|e| anyhow!("server certificate and key: {e}"))?;
        Ok(Arc::new(config))
    }
}

/// The OpenSSL server (see the module docs): its context, and whether the client certificate
/// is asked for after the request.
pub struct OpensslServer {
    /// The context every connection's `Ssl` is made from.
    pub context: SslContext,
    /// Ask after the request (else in the handshake).
    pub after_request: bool,
}

impl TlsConfig {
    /// The OpenSSL server: certificate, key, client CAs (with CRLs), versions, and the
    /// certificate asked for in the handshake or after the request.
    pub fn openssl_server(&self) -> Result<OpensslServer> {
        let mut b = SslContextBuilder::new(SslMethod::tls_server())?;
        let (min, max) = match self.version {
            TlsVersion::Tls12 => (SslVersion::TLS1_2, SslVersion::TLS1_2),
            TlsVersion::Tls13 => (SslVersion::TLS1_3, SslVersion::TLS1_3),
            TlsVersion::Any => (SslVersion::TLS1_2, SslVersion::TLS1_3),
        };
        b.set_min_proto_version(Some(min))?;
        b.set_max_proto_version(Some(max))?;
        let chain = crate::ossl::x509s(&self.server_cert_chain, "server")?;
        let (leaf, rest) = chain
            .split_first()
            .ok_or_else(|| anyhow!("the server certificate file holds no certificate"))?;
        b.set_certificate(leaf)?;
        for c in rest {
            b.add_extra_chain_cert(c.clone())?;
        }
        let key = crate::ossl::pkey(&self.server_key)?;
        b.set_private_key(&key)?;
        b.check_private_key()
            .map_err(|e| anyhow!("server certificate and key: {e}"))?;
        let cas = crate::ossl::x509s(&self.client_ca, "client CA")?;
        for ca in &cas {
            b.add_client_ca(ca)?;
        }
        b.set_cert_store(crate::ossl::store(&cas, &self.crls, "client CA")?);
        // A renegotiation is a full handshake with a certificate request, never a resumption.
        b.set_options(SslOptions::NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
        b.set_session_cache_mode(SslSessionCacheMode::OFF);
        b.set_session_id_context(b"mpagent-mp")?;
        b.set_verify(if self.client_cert_after_request {
            SslVerifyMode::NONE
        } else {
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
        });
        Ok(OpensslServer {
            context: b.build(),
            after_request: self.client_cert_after_request,
        })
    }
}

/// Why OpenSSL refused a handshake: the certificate check's verdict when there was one.
pub fn openssl_failure(e: &openssl::ssl::Error, ssl: &openssl::ssl::SslRef) -> String {
    let verdict = ssl.verify_result();
    if verdict.as_raw() != 0 {
        format!("client certificate refused: {}", verdict.error_string())
    } else {
        match e.ssl_error() {
            Some(stack) => stack.to_string(),
            None => e.to_string(),
        }
    }
}

/// Asks the client for its certificate on an established connection (after the request):
/// renegotiation on TLS 1.2, post-handshake authentication on TLS 1.3; returns it (DER) once
/// verified, or why not.
pub async fn request_client_cert(
    stream: &mut tokio_openssl::SslStream<tokio::net::TcpStream>,
) -> std::result::Result<Vec<u8>, String> {
    use std::pin::Pin;
    use std::task::Poll;
    let tls13 = stream.ssl().version2() == Some(SslVersion::TLS1_3);
    crate::ossl::set_verify_mode(
        stream.ssl(),
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
    );
    let asked = if tls13 {
        crate::ossl::verify_client_post_handshake(stream.ssl())
    } else {
        crate::ossl::renegotiate(stream.ssl())
    };
    let how = if tls13 {
        "post-handshake authentication (TLS 1.3)"
    } else {
        "renegotiation (TLS 1.2)"
    };
    asked.map_err(|e| format!("asking for the client certificate by {how}: {e}"))?;
    Pin::new(&mut *stream)
        .do_handshake()
        .await
        .map_err(|e| format!("{how} failed: {}", openssl_failure(&e, stream.ssl())))?;
    std::future::poll_fn(|cx| {
        let mut byte = [0u8; 1];
        let peeked = Pin::new(&mut *stream).poll_peek(cx, &mut byte);
        if let Poll::Ready(Err(e)) = &peeked {
            return Poll::Ready(Err(format!(
                "{how} failed: {}",
                openssl_failure(e, stream.ssl())
            )));
        }
        let ssl = stream.ssl();
        if ssl.is_init_finished() && !crate::ossl::renegotiate_pending(ssl) {
            if let Some(cert) = ssl.peer_certificate() {
                return Poll::Ready(cert.to_der().map_err(|e| e.to_string()));
            }
        }
        match peeked {
            Poll::Ready(Ok(0)) => Poll::Ready(Err(format!(
                "the client closed the connection instead of answering the {how}"
            ))),
            Poll::Ready(Ok(_)) => Poll::Ready(Err(format!(
                "the client sent data instead of answering the {how}"
            ))),
            _ => Poll::Pending,
        }
    })
    .await
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
