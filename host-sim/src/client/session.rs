//! Everything a host client needs before it talks to the MP, checked up front: the validated
//! configuration, the identity (self-signed in mixed mode, the provisioned PKI certificate in
//! native mode) with its signer bound to the site's hash, the state directory, and one connector
//! for either transport.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Result};
use mpagent_core::config::{AgentConfig, ConfigError, SignatureHash, SiteGeneration, SiteMode};
use mpagent_core::io::Connector;
use mpagent_core::sign::{SignatureScheme, SiteHashSigner};
use tokio::io::{AsyncRead, AsyncWrite};

use super::state::{self, ClientSigner, Identity, KeyKind, StateDir};
use super::tls::{self, NativeConfigError, NativeIdentity, TlsConnector};
use super::transport::{unix_now, TcpConnector, TimedConnection};
use super::ClientOptions;

/// A byte stream: plain TCP or TLS over TCP.
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

/// The core's `Connector` for whichever transport the site mode needs.
pub enum AnyConnector {
    /// Mixed mode: plain TCP.
    Tcp(TcpConnector),
    /// Native mode: TLS with the client certificate.
    Tls(Box<TlsConnector>),
}

impl Connector for AnyConnector {
    type Error = std::io::Error;
    type Connection<'c> = AnyConnection;

    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error> {
        match self {
            AnyConnector::Tcp(c) => {
                let stream = c.connect_stream().await?;
                Ok(TimedConnection::new(
                    Box::new(stream) as Box<dyn AsyncStream>,
                    super::transport::DEFAULT_IO_TIMEOUT,
                    super::transport::DEFAULT_EXCHANGE_TIMEOUT,
                ))
            }
            AnyConnector::Tls(c) => {
                let conn = c.connect_tls().await?;
                Ok(TimedConnection::new(
                    Box::new(conn) as Box<dyn AsyncStream>,
                    c.io_timeout,
                    c.exchange_timeout,
                ))
            }
        }
    }
}

impl AnyConnector {
    /// The TLS failure of the latest connection, if it failed for a TLS reason (native mode).
    pub fn last_tls_error(&self) -> Option<tls::TlsError> {
        match self {
            AnyConnector::Tcp(_) => None,
            AnyConnector::Tls(c) => c.last_error(),
        }
    }
}

/// A connection of either kind, with deadlines on every operation.
pub type AnyConnection = TimedConnection<Box<dyn AsyncStream>>;

/// The site's hash does not suit the client's key: refused at start-up, before any connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--hash sha1 (SHA-1 signatures without HashAlgorithm, the ConfigMgr 2007 form) needs an RSA \
     key, but the client's key is {}; use --key rsa2048 (a new identity) or --hash sha256",
    key.name()
)]
pub struct SignatureHashError {
    /// The core's refusal ([`ConfigError::Sha1NeedsRsa`]).
    pub error: ConfigError,
    /// The key the client has (or would make).
    pub key: KeyKind,
}

/// A session's key and certificate; the key signs with the site's hash.
#[derive(Debug)]
pub struct SessionIdentity {
    /// The signing key, bound to [`ClientOptions::signature_hash`].
    pub signer: SiteHashSigner<ClientSigner>,
    /// Its certificate (DER).
    pub cert_der: Vec<u8>,
    /// Whether this run created it (never in native mode).
    pub created: bool,
}

/// A prepared client.
pub struct Session {
    /// The options it was made from.
    pub opts: ClientOptions,
    /// The FQDN in use.
    pub fqdn: String,
    /// Key (bound to the site's hash) and certificate.
    pub identity: SessionIdentity,
    /// Where state lives.
    pub state_dir: StateDir,
    /// The certificate file (the provisioned one in native mode).
    pub cert_path: PathBuf,
}

impl Session {
    /// Validate the options, load or create the identity, and set up the transport (returned
    /// beside the session so both can be borrowed at once). Everything is checked before
    /// anything goes on the wire.
    pub fn open(opts: &ClientOptions) -> Result<(Session, AnyConnector)> {
        let fqdn = opts
            .fqdn
            .clone()
            .unwrap_or_else(|| format!("{}.local", opts.name));
        check_mode(opts)?;
        let mp = validate_config(opts, &fqdn)?.mp;
        let native = match &opts.pki {
            Some(files) => Some((
                tls::load_native_identity(files, unix_now())?,
                tls::TlsLabels::of(files),
            )),
            None => None,
        };
        let state_dir = StateDir::open_locked(&opts.state_dir)?;
        let tcp = TcpConnector {
            host: mp.host.to_string(),
            port: mp.port,
            connect_timeout: Duration::from_secs(10),
        };
        let (identity, cert_path, connector) = match native {
            None => {
                anyhow::ensure!(
                    !state_dir.path().join(tls::NATIVE_CERT_FILE).exists(),
                    "state dir {} belongs to a native-mode identity ({} is there); use another \
                     directory for mixed mode",
                    state_dir.path().display(),
                    tls::NATIVE_CERT_FILE
                );
                // A new identity of a kind the hash refuses is not made at all.
                if let (false, Some(hash)) = (
                    state_dir.path().join(state::KEY_FILE).exists(),
                    opts.signature_hash,
                ) {
                    check_hash(hash, opts.key)?;
                }
                let identity =
                    state_dir.load_or_create_identity_with(&opts.name, unix_now(), opts.key)?;
                let path = state_dir.path().join(state::CERT_FILE);
                (identity, path, AnyConnector::Tcp(tcp))
            }
            Some((
                NativeIdentity {
                    signer,
                    cert_der,
                    chain,
                    key,
                    ca,
                    crls,
                },
                labels,
            )) => {
                tls::bind_registration(&state_dir, &cert_der)?;
                let config = tls::client_config(&ca, &crls, chain, key, labels)?;
                let connector = TlsConnector::new(tcp, config)?;
                let identity = Identity {
                    signer,
                    cert_der,
                    created: false,
                };
                let path = opts
                    .pki
                    .as_ref()
                    .map(|p| p.cert.clone())
                    .unwrap_or_default();
                (identity, path, AnyConnector::Tls(Box::new(connector)))
            }
        };
        let Identity {
            signer,
            cert_der,
            created,
        } = identity;
        let hash = signature_hash(opts.site_generation, opts.signature_hash, signer.kind());
        let identity = SessionIdentity {
            signer: site_hash(signer, hash)?,
            cert_der,
            created,
        };
        let session = Session {
            opts: opts.clone(),
            fqdn,
            identity,
            state_dir,
            cert_path,
        };
        Ok((session, connector))
    }

    /// The core's configuration, borrowing this session's strings.
    pub fn config(&self) -> Result<AgentConfig<'_>> {
        validate_config(&self.opts, &self.fqdn)
    }
}

/// The mode against the certificate files (the URL's scheme is `AgentConfig::new`'s to check).
fn check_mode(opts: &ClientOptions) -> Result<(), NativeConfigError> {
    match (opts.mode, &opts.pki) {
        (SiteMode::Native, None) => Err(NativeConfigError::NoCertificate),
        (SiteMode::Mixed, Some(_)) => Err(NativeConfigError::CertificateInMixedMode),
        _ => Ok(()),
    }
}

/// The hash a key of `key` signs with: the one asked for, else the site generation's default
/// for that key (shared by the client and the ISV proxy).
pub fn signature_hash(
    generation: SiteGeneration,
    asked: Option<SignatureHash>,
    key: KeyKind,
) -> SignatureHash {
    asked.unwrap_or_else(|| generation.default_signature_hash(scheme_of(key)))
}

fn scheme_of(key: KeyKind) -> SignatureScheme {
    match key {
        KeyKind::P256 => SignatureScheme::EcdsaP256Sha256,
        KeyKind::Rsa2048 => SignatureScheme::RsaPkcs1Sha256,
    }
}

/// The one place a client's signer is bound to the site's hash (docs/protocol.md §4, §6).
fn site_hash(
    signer: ClientSigner,
    hash: SignatureHash,
) -> Result<SiteHashSigner<ClientSigner>, SignatureHashError> {
    let key = signer.kind();
    SiteHashSigner::new(signer, hash).map_err(|error| SignatureHashError { error, key })
}

/// [`site_hash`]'s check for a key not made yet.
fn check_hash(hash: SignatureHash, key: KeyKind) -> Result<(), SignatureHashError> {
    hash.check(scheme_of(key))
        .map_err(|error| SignatureHashError { error, key })
}

/// A command-line option with a value its rule refuses: printed as the option, the rule and
/// the value, so the user can fix it without reading code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option} {value:?}: {rule}")]
pub struct OptionError {
    /// The option, as typed (`--site-code`).
    pub option: &'static str,
    /// What a good value looks like.
    pub rule: &'static str,
    /// What was given.
    pub value: String,
}

/// The rule of `--name`: a NetBIOS name (what the site's DDR and the proxy accept).
const NAME_RULE: &str = "must be a NetBIOS name: 1-15 letters, digits or '-'";

fn validate_config<'a>(opts: &'a ClientOptions, fqdn: &'a str) -> Result<AgentConfig<'a>> {
    if !crate::proxy::protocol::valid_name(&opts.name) {
        return Err(OptionError {
            option: "--name",
            rule: NAME_RULE,
            value: opts.name.clone(),
        }
        .into());
    }
    AgentConfig::new(&opts.site_code, opts.mode, &opts.mp_url, &opts.name, fqdn)
        .map(|c| c.with_site_generation(opts.site_generation))
        .map_err(|e| match e {
            ConfigError::SchemeDoesNotMatchMode if opts.mode == SiteMode::Native => {
                anyhow::Error::from(NativeConfigError::NativeNeedsHttps {
                    url: opts.mp_url.clone(),
                })
            }
            ConfigError::SchemeDoesNotMatchMode => {
                anyhow::Error::from(NativeConfigError::MixedNeedsHttp {
                    url: opts.mp_url.clone(),
                })
            }
            ConfigError::InvalidSiteCode => OptionError {
                option: "--site-code",
                rule: "must be exactly three letters or digits (e.g. PS1)",
                value: opts.site_code.clone(),
            }
            .into(),
            ConfigError::InvalidMpUrl => OptionError {
                option: "--mp",
                rule: "must be http://HOST[:PORT] (mixed mode) or https://HOST[:PORT] (native \
                       mode), nothing after the port",
                value: opts.mp_url.clone(),
            }
            .into(),
            ConfigError::InvalidHostName => OptionError {
                option: if opts.fqdn.is_some() {
                    "--fqdn"
                } else {
                    "--name"
                },
                rule: "must be 1-255 letters, digits, '-', '.' or '_'",
                value: fqdn.to_string(),
            }
            .into(),
            e => anyhow!("invalid configuration: {e}"),
        })
}
