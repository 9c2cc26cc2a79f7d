//! Native mode on the host (docs/protocol.md §1, §7): the administrator's CA-issued certificate and
//! key instead of a self-signed identity, checked at start-up, and HTTPS with that certificate as
//! the TLS client certificate.
//!
//! **Start-up validation** ([`load_native_identity`]), each a [`NativeConfigError`] before
//! anything goes on the wire: no certificate given, a certificate not yet valid or expired, one
//! without the SMS signing EKU (`1.3.6.1.4.1.311.101.2`), a key that is not the certificate's,
//! unreadable files. (The URL's scheme against the mode is checked by the core's
//! `AgentConfig::new`; [`super::register`] words that error for people.)
//!
//! **The provisioned files are referenced, not copied**: the key stays where the administrator
//! put it, with its permissions, and a renewal is just new files. The state directory keeps only
//! the registration and, in [`NATIVE_CERT_FILE`], a copy of the (public) certificate that
//! registration belongs to: when the provisioned certificate changes, the old SMSID's
//! registration is dropped and the device registers anew ([`bind_registration`]), since the MP
//! knows the SMSID by its certificate.
//!
//! **Transport**: [`TlsConnector`] implements the core's `io::Connector`: TCP, then a rustls
//! (0.23, ring) handshake bounded by the connect timeout, presenting the certificate (and any
//! chain in the certificate file) and verifying the MP's certificate against the configured CA
//! and the MP's host name; the TLS stream goes to the core through `embedded-io-adapters`
//! inside the same [`TimedConnection`] deadlines as plain TCP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::identity::{cert_has_eku, cert_spki_der, cert_validity, EKU_SMS_SIGNING};
use mpagent_core::io::Connector;
use mpagent_core::sign::P256Signer;
use mpagent_core::time::UnixTime;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::state::{write_atomic, ClientSigner, StateDir};
use super::transport::{
    TcpConnector, TimedConnection, DEFAULT_EXCHANGE_TIMEOUT, DEFAULT_IO_TIMEOUT,
};
use crate::mp::util::utc_timestamp_at;
use crate::pki;

/// In the state directory: the certificate the stored registration was made with (native mode).
pub const NATIVE_CERT_FILE: &str = "native-cert.der";

/// The administrator's files for native mode (each DER or PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiFiles {
    /// The device's CA-issued certificate (PEM may add the intermediate CAs after it).
    pub cert: PathBuf,
    /// Its private key: PKCS#8 (P-256 or RSA-2048) or SEC1 (P-256).
    pub key: PathBuf,
    /// The CA(s) the MP's server certificate must chain to.
    pub ca: PathBuf,
}

/// A native-mode configuration refused at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NativeConfigError {
    /// Native mode without certificate files.
    #[error(
        "native mode needs the CA-issued certificate, its key and the CA certificate \
         (--cert, --key, --ca); none were given"
    )]
    NoCertificate,
    /// Certificate files in mixed mode (which makes its own self-signed identity).
    #[error(
        "certificate files were given, but the site mode is mixed (self-signed certificate over \
         HTTP); use --mode native with an https:// MP"
    )]
    CertificateInMixedMode,
    /// Native mode with an `http://` MP.
    #[error("native mode speaks HTTPS: the MP URL must start with https://, not {url:?}")]
    NativeNeedsHttps { url: String },
    /// Mixed mode with an `https://` MP.
    #[error(
        "mixed mode speaks plain HTTP: the MP URL must start with http://, not {url:?} \
         (for HTTPS use --mode native with a CA-issued certificate)"
    )]
    MixedNeedsHttp { url: String },
    /// A file could not be read or is not what it should be.
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    /// The certificate's validity has not begun.
    #[error("{path}: the certificate is not valid yet: valid from {not_before}, now is {now}")]
    NotYetValid {
        path: PathBuf,
        not_before: String,
        now: String,
    },
    /// The certificate has expired.
    #[error("{path}: the certificate has expired: valid until {not_after}, now is {now}")]
    Expired {
        path: PathBuf,
        not_after: String,
        now: String,
    },
    /// The certificate does not allow SMS signing.
    #[error(
        "{path}: the certificate lacks the SMS signing extended key usage \
         (1.3.6.1.4.1.311.101.2): the MP would not accept messages signed with it"
    )]
    NoSigningEku { path: PathBuf },
    /// The key is not the certificate's.
    #[error("{key} is not the private key of the certificate {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

/// A checked native-mode identity.
pub struct NativeIdentity {
    /// Signs registration and messages.
    pub signer: ClientSigner,
    /// The device certificate (the chain's first), DER: what registration sends as `<Signing>`.
    pub cert_der: Vec<u8>,
    /// The certificate file's chain, for the TLS handshake.
    pub chain: Vec<CertificateDer<'static>>,
    /// The key, for the TLS handshake.
    pub key: PrivateKeyDer<'static>,
    /// Trust anchors for the MP's certificate.
    pub ca: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for NativeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeIdentity")
            .field("signer", &self.signer)
            .field("cert_der", &self.cert_der.len())
            .field("chain", &self.chain.len())
            .field("ca", &self.ca.len())
            .finish_non_exhaustive()
    }
}

fn unreadable(path: &Path, reason: impl std::fmt::Display) -> NativeConfigError {
    NativeConfigError::Unreadable {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn time(t: UnixTime) -> String {
    utc_timestamp_at(t.0)
}

/// The signer of a private key from [`pki::read_private_key`].
fn signer_of(key: &PrivateKeyDer<'_>, path: &Path) -> Result<ClientSigner, NativeConfigError> {
    match key {
        PrivateKeyDer::Pkcs8(k) => ClientSigner::from_pkcs8_der(k.secret_pkcs8_der())
            .map_err(|e| unreadable(path, format!("{e:#}"))),
        PrivateKeyDer::Sec1(k) => p256::SecretKey::from_sec1_der(k.secret_sec1_der())
            .map_err(|e| unreadable(path, format!("not a P-256 EC private key: {e}")))
            .and_then(|sk| {
                super::state::host_p256(P256Signer::new(sk.into()))
                    .map(ClientSigner::P256)
                    .map_err(|e| unreadable(path, format!("{e:#}")))
            }),
        PrivateKeyDer::Pkcs1(_) => Err(unreadable(
            path,
            "PKCS#1 RSA keys are not read; convert with `openssl pkcs8 -topk8 -nocrypt`",
        )),
        _ => Err(unreadable(path, "unsupported private key format")),
    }
}

/// Read and check the provisioned files at `now` (see the module docs).
pub fn load_native_identity(
    files: &PkiFiles,
    now: UnixTime,
) -> Result<NativeIdentity, NativeConfigError> {
    let chain =
        pki::read_certs(&files.cert).map_err(|e| unreadable(&files.cert, format!("{e:#}")))?;
    let cert_der = chain[0].to_vec();
    let (not_before, not_after) = cert_validity(&cert_der)
        .map_err(|e| unreadable(&files.cert, format!("not an X.509 certificate ({e:?})")))?;
    if now < not_before {
        return Err(NativeConfigError::NotYetValid {
            path: files.cert.clone(),
            not_before: time(not_before),
            now: time(now),
        });
    }
    if now > not_after {
        return Err(NativeConfigError::Expired {
            path: files.cert.clone(),
            not_after: time(not_after),
            now: time(now),
        });
    }
    if !cert_has_eku(&cert_der, &EKU_SMS_SIGNING)
        .map_err(|e| unreadable(&files.cert, format!("unreadable extensions ({e:?})")))?
    {
        return Err(NativeConfigError::NoSigningEku {
            path: files.cert.clone(),
        });
    }
    let key =
        pki::read_private_key(&files.key).map_err(|e| unreadable(&files.key, format!("{e:#}")))?;
    let signer = signer_of(&key, &files.key)?;
    let key_spki = signer
        .spki_der()
        .map_err(|e| unreadable(&files.key, format!("{e:#}")))?;
    let cert_spki = cert_spki_der(&cert_der)
        .map_err(|e| unreadable(&files.cert, format!("no public key ({e:?})")))?;
    if key_spki != cert_spki {
        return Err(NativeConfigError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        });
    }
    let ca = pki::read_certs(&files.ca).map_err(|e| unreadable(&files.ca, format!("{e:#}")))?;
    Ok(NativeIdentity {
        signer,
        cert_der,
        chain,
        key,
        ca,
    })
}

/// Ties the stored registration to `cert_der`: if the state directory's registration was made
/// with another certificate (or with none recorded), it is reset to unregistered first.
/// Returns whether it was reset.
pub fn bind_registration(state: &StateDir, cert_der: &[u8]) -> Result<bool> {
    let path = state.path().join(NATIVE_CERT_FILE);
    let recorded = match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(anyhow!("reading {}: {e}", path.display())),
    };
    if recorded.as_deref() == Some(cert_der) {
        return Ok(false);
    }
    let reset = state.registration()? != RegistrationState::Unregistered;
    if reset {
        tracing::info!(
            "{}: the provisioned certificate is not the one the stored registration was made \
             with; registering anew",
            state.path().display()
        );
        // Registration first: a crash in between leaves "unregistered" with the old record,
        // which the next run resets again (a no-op) and then records.
        state.save_registration(RegistrationState::Unregistered)?;
    }
    write_atomic(&path, cert_der)?;
    Ok(reset)
}

/// The rustls client configuration: the MP verified against `ca`, `chain` + `key` presented.
pub fn client_config(
    ca: &[CertificateDer<'static>],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for (i, c) in ca.iter().enumerate() {
        roots
            .add(c.clone())
            .map_err(|e| anyhow!("CA certificate {}: {e}", i + 1))?;
    }
    let config = ClientConfig::builder_with_provider(crate::mp::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| anyhow!("client certificate and key: {e}"))?;
    Ok(Arc::new(config))
}

/// The core's `Connector` over TLS (see the module docs).
#[derive(Clone)]
pub struct TlsConnector {
    /// Where to connect and the connect timeout (which also bounds the handshake).
    pub tcp: TcpConnector,
    /// The name the MP's certificate must carry (a DNS name or an IP address).
    pub server_name: ServerName<'static>,
    /// The TLS client configuration ([`client_config`]).
    pub config: Arc<ClientConfig>,
    /// A read, write or flush that makes no progress for this long fails with `TimedOut`.
    pub io_timeout: Duration,
    /// All I/O of one exchange must be done this long after the handshake.
    pub exchange_timeout: Duration,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("tcp", &self.tcp)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector to `tcp`'s host (also the name verified) with the default deadlines.
    pub fn new(tcp: TcpConnector, config: Arc<ClientConfig>) -> Result<Self> {
        let server_name = ServerName::try_from(tcp.host.clone()).map_err(|e| {
            anyhow!(
                "{:?} cannot be verified as a TLS server name: {e}",
                tcp.host
            )
        })?;
        Ok(TlsConnector {
            tcp,
            server_name,
            config,
            io_timeout: DEFAULT_IO_TIMEOUT,
            exchange_timeout: DEFAULT_EXCHANGE_TIMEOUT,
        })
    }
}

impl Connector for TlsConnector {
    type Error = std::io::Error;
    type Connection<'c> = TimedConnection<TlsStream<TcpStream>>;

    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error> {
        let tls = self.connect_tls().await?;
        Ok(TimedConnection::new(
            tls,
            self.io_timeout,
            self.exchange_timeout,
        ))
    }
}

impl TlsConnector {
    /// TCP connect and TLS handshake, both within the connect timeout; no I/O deadlines yet.
    pub async fn connect_tls(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp.connect_stream().await?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let tls = tokio::time::timeout(
            self.tcp.connect_timeout,
            connector.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
        Ok(tls)
    }
}
