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
//! **Transport**: [`TlsConnector`] implements the core's `io::Connector`: TCP, then an OpenSSL
//! handshake bounded by the connect timeout (TLS 1.2 at least, 1.3 when the MP has it),
//! presenting the certificate (and any chain in the certificate file) and verifying the MP's
//! chain against `--ca` (signatures, validity, the serverAuth usage when the certificate lists
//! usages, and with `--crl` revocation of every certificate in it) and its name against the
//! `--mp` host (DNS name or IP address SAN). The TLS stream goes to the core through
//! `embedded-io-adapters` inside the same [`TimedConnection`] deadlines as plain TCP.
//!
//! **An MP that asks for the certificate after the request** (IIS' default binding): the
//! connector allows the MP's renegotiation on TLS 1.2 and offers post-handshake authentication
//! on TLS 1.3, and presents the certificate then. Both happen inside the read of the reply.
//! OpenSSL rather than rustls for this: rustls does neither (see [`crate::ossl`]).
//!
//! **Errors**: the core sees only an `io::ErrorKind`; the cause is a [`TlsError`] sentence,
//! kept as the io error's inner error and in [`TlsConnector::last_error`] for the caller's
//! report (an unknown CA, a name mismatch, a certificate not yet or no longer valid, one
//! revoked or not for servers, or our certificate refused with the MP's alert).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::identity::{cert_has_eku, cert_spki_der, cert_validity, EKU_SMS_SIGNING};
use mpagent_core::io::Connector;
use mpagent_core::sign::P256Signer;
use mpagent_core::time::UnixTime;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::net::TcpStream;

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
    /// CRLs the MP's chain is checked against (each of its CAs must have one there); `None`: no
    /// revocation check.
    pub crl: Option<PathBuf>,
}

impl PkiFiles {
    /// The three files, without a CRL.
    pub fn new(cert: PathBuf, key: PathBuf, ca: PathBuf) -> Self {
        PkiFiles {
            cert,
            key,
            ca,
            crl: None,
        }
    }
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
    /// CRLs for the MP's chain (empty: none checked).
    pub crls: Vec<CertificateRevocationListDer<'static>>,
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
        .map_err(|e| unreadable(&files.cert, format!("not an X.509 certificate ({e})")))?;
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
        .map_err(|e| unreadable(&files.cert, format!("unreadable extensions ({e})")))?
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
        .map_err(|e| unreadable(&files.cert, format!("no public key ({e})")))?;
    if key_spki != cert_spki {
        return Err(NativeConfigError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        });
    }
    let ca = pki::read_certs(&files.ca).map_err(|e| unreadable(&files.ca, format!("{e:#}")))?;
    let crls = match &files.crl {
        Some(p) => pki::read_crls(p).map_err(|e| unreadable(p, format!("{e:#}")))?,
        None => Vec::new(),
    };
    Ok(NativeIdentity {
        signer,
        cert_der,
        chain,
        key,
        ca,
        crls,
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

/// What the error sentences call the files: the options and paths they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsLabels {
    /// The `--ca` file.
    pub ca: String,
    /// The `--cert` file.
    pub cert: String,
    /// The `--crl` file, if any.
    pub crl: Option<String>,
}

impl TlsLabels {
    /// The labels of `files`.
    pub fn of(files: &PkiFiles) -> Self {
        TlsLabels {
            ca: files.ca.display().to_string(),
            cert: files.cert.display().to_string(),
            crl: files.crl.as_ref().map(|p| p.display().to_string()),
        }
    }
}

/// A TLS failure with the MP, as a person can act on it (see the module docs). `mp` is the
/// `https://host:port` the client connected to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The MP's chain does not lead to a CA of `--ca`.
    #[error(
        "the MP's certificate ({subject}) at --mp {mp} is not issued by a CA in --ca {ca} \
         ({detail}); give --ca the CA certificate that issued the MP's certificate"
    )]
    UnknownCa {
        mp: String,
        ca: String,
        subject: String,
        detail: String,
    },
    /// The MP's certificate names another host.
    #[error(
        "the MP's certificate ({subject}) does not name the host {host} of --mp {mp}; use the \
         name (or address) its certificate carries in --mp"
    )]
    NameMismatch {
        mp: String,
        host: String,
        subject: String,
    },
    /// A certificate of the MP's chain has expired.
    #[error(
        "the MP's certificate ({subject}) at --mp {mp} has expired: valid until {not_after}, \
         now is {now}"
    )]
    Expired {
        mp: String,
        subject: String,
        not_after: String,
        now: String,
    },
    /// A certificate of the MP's chain is not valid yet.
    #[error(
        "the MP's certificate ({subject}) at --mp {mp} is not valid yet: valid from \
         {not_before}, now is {now}"
    )]
    NotYetValid {
        mp: String,
        subject: String,
        not_before: String,
        now: String,
    },
    /// A certificate of the MP's chain is listed in `--crl`.
    #[error(
        "the MP's certificate ({subject}) at --mp {mp} is revoked: --crl {crl} lists its \
         serial number {serial}"
    )]
    Revoked {
        mp: String,
        subject: String,
        serial: String,
        crl: String,
    },
    /// `--crl` has no current CRL of one of the MP's CAs.
    #[error(
        "the MP's certificate ({subject}) at --mp {mp} cannot be checked for revocation: \
         --crl {crl} {detail}"
    )]
    CrlUnusable {
        mp: String,
        subject: String,
        crl: String,
        detail: String,
    },
    /// The MP's certificate is not for TLS servers.
    #[error(
        "the MP's certificate ({subject}) at --mp {mp} is not for TLS servers: its extended \
         key usages lack serverAuth (1.3.6.1.5.5.7.3.1)"
    )]
    NotServerAuth { mp: String, subject: String },
    /// The MP did not accept our client certificate.
    #[error(
        "the MP at --mp {mp} did not accept our certificate --cert {cert}: it answered the \
         TLS alert {alert} ({alert_name}){during}"
    )]
    ClientCertRefused {
        mp: String,
        cert: String,
        alert: u8,
        alert_name: &'static str,
        /// Empty when it refused in the handshake; else when (an MP that verifies the certificate
        /// after the handshake or asks for it after the request).
        during: &'static str,
    },
    /// Any other TLS failure.
    #[error("TLS with the MP at --mp {mp} failed: {detail}")]
    Other { mp: String, detail: String },
}

/// The OpenSSL client configuration ([`client_config`]).
pub struct ClientConfig {
    connector: SslConnector,
    labels: TlsLabels,
}

/// The client configuration: the MP verified against `ca` (and `crls`), `chain` + `key`
/// presented, in the handshake or when the MP asks later (see the module docs). `labels` name
/// the files in errors.
pub fn client_config(
    ca: &[CertificateDer<'static>],
    crls: &[CertificateRevocationListDer<'static>],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    labels: TlsLabels,
) -> Result<Arc<ClientConfig>> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    let cas = crate::ossl::x509s(ca, "CA")?;
    b.set_cert_store(crate::ossl::store(&cas, crls, "CA")?);
    let chain = crate::ossl::x509s(&chain, "client")?;
    let (leaf, rest) = chain
        .split_first()
        .ok_or_else(|| anyhow!("the client certificate file holds no certificate"))?;
    b.set_certificate(leaf)
        .map_err(|e| anyhow!("client certificate: {e}"))?;
    for c in rest {
        b.add_extra_chain_cert(c.clone())?;
    }
    let pkey = crate::ossl::pkey(&key)?;
    b.set_private_key(&pkey)?;
    b.check_private_key()
        .map_err(|e| anyhow!("client certificate and key: {e}"))?;
    Ok(Arc::new(ClientConfig {
        connector: b.build(),
        labels,
    }))
}

/// The core's `Connector` over TLS (see the module docs).
#[derive(Clone)]
pub struct TlsConnector {
    /// Where to connect and the connect timeout (which also bounds the handshake).
    pub tcp: TcpConnector,
    /// The TLS client configuration ([`client_config`]).
    pub config: Arc<ClientConfig>,
    /// A read, write or flush that makes no progress for this long fails with `TimedOut`.
    pub io_timeout: Duration,
    /// All I/O of one exchange must be done this long after the handshake.
    pub exchange_timeout: Duration,
    last_error: Arc<Mutex<Option<TlsError>>>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("tcp", &self.tcp)
            .field("labels", &self.config.labels)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector to `tcp`'s host (also the name verified) with the default deadlines.
    pub fn new(tcp: TcpConnector, config: Arc<ClientConfig>) -> Result<Self> {
        anyhow::ensure!(
            !tcp.host.is_empty(),
            "the MP's host name is empty: it cannot be verified as a TLS server name"
        );
        Ok(TlsConnector {
            tcp,
            config,
            io_timeout: DEFAULT_IO_TIMEOUT,
            exchange_timeout: DEFAULT_EXCHANGE_TIMEOUT,
            last_error: Arc::default(),
        })
    }

    /// The TLS failure of the latest connection, if it failed for a TLS reason (the core only
    /// sees the io error's kind).
    pub fn last_error(&self) -> Option<TlsError> {
        lock(&self.last_error).clone()
    }

    fn mp(&self) -> String {
        if self.tcp.host.contains(':') {
            format!("https://[{}]:{}", self.tcp.host, self.tcp.port)
        } else {
            format!("https://{}:{}", self.tcp.host, self.tcp.port)
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connector for TlsConnector {
    type Error = std::io::Error;
    type Connection<'c> = TimedConnection<ClientTlsStream>;

    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error> {
        let tls = self.connect_tls().await?;
        Ok(TimedConnection::new(
            tls,
            self.io_timeout,
            self.exchange_timeout,
        ))
    }
}

/// What the verify callback saw of the first certificate that failed.
#[derive(Debug, Clone, Default)]
struct Failed {
    code: i32,
    text: String,
    /// The MP's (end-entity) certificate.
    subject: String,
    /// The certificate that failed, when not the MP's own (a CA of its chain).
    failed_subject: Option<String>,
    serial: String,
    not_before: String,
    not_after: String,
}

/// Where a connection's failure is classified and recorded.
struct Classifier {
    mp: String,
    host: String,
    labels: TlsLabels,
    failed: Arc<Mutex<Option<Failed>>>,
    last: Arc<Mutex<Option<TlsError>>>,
}

fn subject_of(c: &openssl::x509::X509Ref) -> String {
    let parts: Vec<String> = c
        .subject_name()
        .entries()
        .filter_map(|e| {
            let key = e.object().nid().short_name().ok()?;
            let v = e.data().to_string().ok()?;
            Some(format!("{key}={v}"))
        })
        .collect();
    if parts.is_empty() {
        "no subject".into()
    } else {
        parts.join(", ")
    }
}

impl Classifier {
    /// The sentence for a failed handshake or I/O: `after_request` when it happened on the
    /// established connection (an MP verifying the certificate after a TLS 1.3 handshake, or
    /// asking for it after the request).
    fn classify(&self, e: &openssl::ssl::Error, after_request: bool) -> TlsError {
        let mp = self.mp.clone();
        let failed = lock(&self.failed).clone();
        if let Some(f) = failed {
            let subject = f.subject.clone();
            // Validity and revocation of a CA of the chain: its dates and serial are the CA's.
            let whose = match &f.failed_subject {
                Some(ca) => format!("{subject}, its CA {ca}"),
                None => subject.clone(),
            };
            let text = match &f.failed_subject {
                Some(ca) => format!("{}: {ca}", f.text),
                None => f.text.clone(),
            };
            let now = time(super::transport::unix_now());
            // X509_V_ERR_* codes (openssl/x509_vfy.h).
            return match f.code {
                2 | 7 | 18 | 19 | 20 | 21 | 24 | 30 => TlsError::UnknownCa {
                    mp,
                    ca: self.labels.ca.clone(),
                    subject,
                    detail: text,
                },
                62 | 64 => TlsError::NameMismatch {
                    mp,
                    host: self.host.clone(),
                    subject,
                },
                9 => TlsError::NotYetValid {
                    mp,
                    subject: whose.clone(),
                    not_before: f.not_before,
                    now,
                },
                10 => TlsError::Expired {
                    mp,
                    subject: whose.clone(),
                    not_after: f.not_after,
                    now,
                },
                23 => TlsError::Revoked {
                    mp,
                    subject: whose.clone(),
                    serial: f.serial,
                    crl: self.labels.crl.clone().unwrap_or_default(),
                },
                3 | 11 | 12 => TlsError::CrlUnusable {
                    mp,
                    subject,
                    crl: self.labels.crl.clone().unwrap_or_default(),
                    detail: match f.code {
                        3 => "has no CRL of its issuer".to_string(),
                        11 => "holds a CRL that is not valid yet".to_string(),
                        _ => "holds only an expired CRL of its issuer".to_string(),
                    },
                },
                26 => TlsError::NotServerAuth { mp, subject },
                _ => TlsError::Other {
                    mp,
                    detail: format!("the MP's certificate ({subject}): {text}"),
                },
            };
        }
        if let Some(alert) = e.ssl_error().and_then(crate::ossl::received_alert) {
            if matches!(alert, 40..=49 | 116) {
                return TlsError::ClientCertRefused {
                    mp,
                    cert: self.labels.cert.clone(),
                    alert,
                    alert_name: crate::ossl::alert_name(alert),
                    during: if after_request {
                        " after our request was sent"
                    } else {
                        ""
                    },
                };
            }
        }
        TlsError::Other {
            mp,
            detail: e.to_string(),
        }
    }

    fn record(&self, e: &openssl::ssl::Error, after_request: bool) -> std::io::Error {
        let t = self.classify(e, after_request);
        tracing::warn!("{t}");
        *lock(&self.last) = Some(t.clone());
        std::io::Error::new(std::io::ErrorKind::InvalidData, t)
    }
}

impl TlsConnector {
    /// TCP connect and TLS handshake, both within the connect timeout; no I/O deadlines yet.
    pub async fn connect_tls(&self) -> std::io::Result<ClientTlsStream> {
        *lock(&self.last_error) = None;
        let tcp = self.tcp.connect_stream().await?;
        let failed: Arc<Mutex<Option<Failed>>> = Arc::default();
        let classifier = Arc::new(Classifier {
            mp: self.mp(),
            host: self.tcp.host.clone(),
            labels: self.config.labels.clone(),
            failed: failed.clone(),
            last: self.last_error.clone(),
        });
        let other = |e: openssl::error::ErrorStack| {
            std::io::Error::other(format!("setting up TLS to {}: {e}", classifier.mp))
        };
        let mut ssl = self
            .config
            .connector
            .configure()
            .map_err(other)?
            .into_ssl(&self.tcp.host)
            .map_err(other)?;
        crate::ossl::set_post_handshake_auth(&mut ssl, true);
        ssl.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
            if !ok {
                let mut f = lock(&failed);
                if f.is_none() {
                    let cert = ctx.current_cert();
                    let leaf = ctx
                        .chain()
                        .and_then(|c| c.iter().next())
                        .map(subject_of)
                        .or_else(|| cert.map(subject_of))
                        .unwrap_or_default();
                    let failed_subject = (ctx.error_depth() > 0)
                        .then(|| cert.map(subject_of))
                        .flatten();
                    *f = Some(Failed {
                        code: ctx.error().as_raw(),
                        text: ctx.error().error_string().to_string(),
                        subject: leaf,
                        failed_subject,
                        serial: cert
                            .and_then(|c| c.serial_number().to_bn().ok())
                            .and_then(|b| b.to_hex_str().ok())
                            .map(|h| h.to_string())
                            .unwrap_or_default(),
                        not_before: cert.map(|c| c.not_before().to_string()).unwrap_or_default(),
                        not_after: cert.map(|c| c.not_after().to_string()).unwrap_or_default(),
                    });
                }
            }
            ok
        });
        let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(other)?;
        let handshake = tokio::time::timeout(
            self.tcp.connect_timeout,
            std::pin::Pin::new(&mut stream).connect(),
        )
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })?;
        if let Err(e) = handshake {
            return Err(classifier.record(&e, false));
        }
        Ok(ClientTlsStream {
            inner: stream,
            classifier,
        })
    }
}

/// A TLS connection to the MP whose failures are [`TlsError`]s (see the module docs).
pub struct ClientTlsStream {
    inner: tokio_openssl::SslStream<TcpStream>,
    classifier: Arc<Classifier>,
}

impl ClientTlsStream {
    /// The TLS session (version, cipher, peer certificate).
    pub fn ssl(&self) -> &openssl::ssl::SslRef {
        self.inner.ssl()
    }

    fn map(&self, e: std::io::Error) -> std::io::Error {
        let ssl_error = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<openssl::ssl::Error>());
        match ssl_error {
            Some(s) if s.ssl_error().is_some() => self.classifier.record(s, true),
            _ => e,
        }
    }
}

impl tokio::io::AsyncRead for ClientTlsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        r.map_err(|e| self.map(e))
    }
}

impl tokio::io::AsyncWrite for ClientTlsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        r.map_err(|e| self.map(e))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        r.map_err(|e| self.map(e))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
