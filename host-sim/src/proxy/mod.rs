//! The ISV proxy (docs/protocol.md §4, §5 [profile], §7): it registers itself with the MP
//! (AgentType 4, after the administrator imported its certificate), then speaks for constrained
//! devices that have no crypto of their own. Devices talk to it over our compact protocol
//! ([`protocol`], `docs/proxy-protocol.md`); for each device the proxy makes and keeps a
//! certificate, registers it (AgentType 8, `<Signature SMSID="GUID:{proxy}">`, signed with the
//! proxy's key), keeps the device ↔ SMSID mapping in its registry ([`registry`]), and turns the
//! device's data into MP messages signed with the proxy's key that name the device's SMSID
//! (`MessageSigner::proxy`).
//!
//! Everything MP-facing is the core's: the proxy's own registration runs `io::register`, and
//! every device runs the core's `Driver` with its Agent signing through the proxy
//! (`Driver::through_proxy`, [`server`], the device's side in `device`): registration and
//! re-confirmation, its queue (`queue`), delivery and policy requests.
//!
//! The proxy's key is P-256 or RSA-2048 ([`ProxyOptions::key`]; device keys follow it), signs
//! with the site's hash ([`ProxyOptions::signature_hash`]), and in native mode is the
//! administrator's CA-issued certificate, with TLS to the MP ([`ProxyLink`]).
//!
//! State directory layout:
//! ```text
//! DIR/key.pk8, DIR/cert.der      the proxy's identity (made on first run; export-cert)
//! DIR/registration               the proxy's own registration (`registered GUID:…`)
//! DIR/devices.db                 the device registry (SQLite, WAL): per device its key and
//!                                certificate (made by the proxy), name and registration,
//!                                and the queue of a device whose messages wait for the MP
//! ```
//! The identity files are written atomically (`client::state::write_atomic`); the registry
//! commits durably (`synchronous=FULL`) before a device is answered.

pub mod cli;
pub mod client;
pub mod demo;
mod device;
pub mod device_key;
pub mod protocol;
mod queue;
pub mod registry;
pub mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use mpagent_core::agent::registration::{Registrar, RegistrationState, SigningIdentity};
use mpagent_core::config::{AgentConfig, ConfigError, SignatureHash, SiteGeneration, SiteMode};
use mpagent_core::guid::Smsid;
use mpagent_core::io::{self, AttemptFailure, RegisterError, RegisterOptions};
use mpagent_core::sign::SiteHashSigner;
use mpagent_core::wire::registration::AgentType;

use crate::client::session::AnyConnector;
use crate::client::state::{write_atomic, ClientSigner, KeyKind, StateDir};
use crate::client::tls::{self, NativeConfigError, NativeIdentity, PkiFiles, TlsConnector};
use crate::client::transport::{unix_now, SystemClock, TcpConnector};

pub use server::{start, ProxyHandle};

/// The proxy's default NetBIOS name (also its certificate's CN).
pub const DEFAULT_NAME: &str = "MPX-PROXY";

/// How a proxy is configured (there is no auto-discovery: MP, site mode and code are given).
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// `http://host:port` of the MP (mixed mode) or `https://host:port` (native mode).
    pub mp_url: String,
    /// Site code.
    pub site_code: String,
    /// The proxy's state directory.
    pub state_dir: PathBuf,
    /// The proxy's NetBIOS name (and certificate CN).
    pub name: String,
    /// Consecutive failed attempts of the proxy's own registration before giving up (a refusal
    /// is permanent, so 1 is the sensible default).
    pub max_failures: u32,
    /// Mixed mode: the key of a new proxy identity (an existing one keeps its key). The keys the
    /// proxy makes for its devices are of the proxy's own kind, in either mode.
    pub key: KeyKind,
    /// Mixed (HTTP, self-signed identity in the state directory) or native (HTTPS, [`Self::pki`]).
    pub mode: SiteMode,
    /// Native mode: the proxy's CA-issued certificate, its key and the CA (`pki issue --kind
    /// proxy`), checked at start-up exactly as a native client's are.
    pub pki: Option<PkiFiles>,
    /// The site's generation: how it numbers registration status and takes confirmations (for
    /// the proxy and its devices), and the hash [`Self::signature_hash`] defaults to.
    pub site_generation: SiteGeneration,
    /// The hash the site expects (SHA-1 without `HashAlgorithm` for ConfigMgr 2007-style sites;
    /// RSA keys only). It applies to everything the proxy signs, for itself and its devices.
    /// `None`: the generation's default for the proxy's key.
    pub signature_hash: Option<SignatureHash>,
    /// Threads serving devices (each its own runtime; devices are served concurrently on all).
    pub workers: usize,
}

/// Default [`ProxyOptions::workers`]: one per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

impl ProxyOptions {
    /// Mixed-mode options with the defaults of `proxy serve`: P-256, one attempt.
    pub fn new(mp_url: &str, site_code: &str, state_dir: PathBuf) -> Self {
        ProxyOptions {
            mp_url: mp_url.into(),
            site_code: site_code.into(),
            state_dir,
            name: DEFAULT_NAME.into(),
            max_failures: 1,
            key: KeyKind::P256,
            mode: SiteMode::Mixed,
            pki: None,
            site_generation: SiteGeneration::Current,
            signature_hash: None,
            workers: default_workers(),
        }
    }

    /// Native-mode options with the provisioned `pki` files, otherwise as [`Self::new`].
    pub fn native(mp_url: &str, site_code: &str, state_dir: PathBuf, pki: PkiFiles) -> Self {
        ProxyOptions {
            mode: SiteMode::Native,
            pki: Some(pki),
            ..Self::new(mp_url, site_code, state_dir)
        }
    }

    /// The hash a key of `key` signs with ([`crate::client::session::signature_hash`]).
    pub fn hash_for(&self, key: KeyKind) -> SignatureHash {
        crate::client::session::signature_hash(self.site_generation, self.signature_hash, key)
    }

    /// The FQDN the proxy reports.
    pub fn fqdn(&self) -> String {
        format!("{}.local", self.name)
    }

    /// The core's configuration for a sender named `name`/`fqdn` (the proxy or a device). A
    /// scheme that does not fit the mode is the same [`NativeConfigError`] a client reports.
    pub fn config<'a>(&'a self, name: &'a str, fqdn: &'a str) -> Result<AgentConfig<'a>> {
        AgentConfig::new(&self.site_code, self.mode, &self.mp_url, name, fqdn)
            .map(|c| c.with_site_generation(self.site_generation))
            .map_err(|e| {
                let url = self.mp_url.clone();
                match (e, self.mode) {
                    (ConfigError::SchemeDoesNotMatchMode, SiteMode::Native) => {
                        NativeConfigError::NativeNeedsHttps { url }.into()
                    }
                    (ConfigError::SchemeDoesNotMatchMode, SiteMode::Mixed) => {
                        NativeConfigError::MixedNeedsHttp { url }.into()
                    }
                    (e, _) => anyhow!("invalid proxy configuration ({url}): {e}"),
                }
            })
    }
}

/// The proxy's identity and its way to the MP, checked before anything goes on the wire.
pub struct ProxyLink {
    /// The proxy's key (self-signed identity kept in the state directory in mixed mode, the
    /// provisioned one in native mode), signing with the site's hash.
    pub signer: SiteHashSigner<ClientSigner>,
    /// The proxy's certificate (DER).
    pub cert_der: Vec<u8>,
    tcp: TcpConnector,
    tls: Option<TlsConnector>,
    /// Holds the state directory's lock while the proxy runs.
    _state: std::sync::Arc<StateDir>,
}

impl ProxyLink {
    /// Validate `opts` and load the identity: in mixed mode made on first run (with a
    /// `opts.key` key); in native mode the provisioned files, refused at start-up for the same
    /// reasons as a native client's ([`NativeConfigError`]), the TLS client set up with them.
    pub fn open(opts: &ProxyOptions) -> Result<ProxyLink> {
        anyhow::ensure!(
            protocol::valid_name(&opts.name),
            "proxy name {:?} must be 1-15 letters, digits or '-'",
            opts.name
        );
        match (opts.mode, &opts.pki) {
            (SiteMode::Native, None) => return Err(NativeConfigError::NoCertificate.into()),
            (SiteMode::Mixed, Some(_)) => {
                return Err(NativeConfigError::CertificateInMixedMode.into())
            }
            _ => {}
        }
        let fqdn = opts.fqdn();
        let mp = opts.config(&opts.name, &fqdn)?.mp;
        let tcp = TcpConnector {
            host: mp.host.to_string(),
            port: mp.port,
            connect_timeout: Duration::from_secs(10),
        };
        let state_dir = StateDir::open_locked(&opts.state_dir)?;
        let Some(files) = &opts.pki else {
            anyhow::ensure!(
                !state_dir.path().join(tls::NATIVE_CERT_FILE).exists(),
                "state dir {} belongs to a native-mode proxy ({} is there); use another \
                 directory for mixed mode",
                state_dir.path().display(),
                tls::NATIVE_CERT_FILE
            );
            let identity =
                state_dir.load_or_create_identity_with(&opts.name, unix_now(), opts.key)?;
            let hash = opts.hash_for(identity.signer.kind());
            return Ok(ProxyLink {
                signer: site_hash(identity.signer, hash)?,
                cert_der: identity.cert_der,
                tcp,
                tls: None,
                _state: std::sync::Arc::new(state_dir),
            });
        };
        let NativeIdentity {
            signer,
            cert_der,
            chain,
            key,
            ca,
            crls,
        } = tls::load_native_identity(files, unix_now())?;
        // A new certificate is a new proxy to the site: its old registration does not carry over.
        tls::bind_registration(&state_dir, &cert_der)?;
        let tls = TlsConnector::new(
            tcp.clone(),
            tls::client_config(&ca, &crls, chain, key, tls::TlsLabels::of(files))?,
        )?;
        let hash = opts.hash_for(signer.kind());
        Ok(ProxyLink {
            signer: site_hash(signer, hash)?,
            cert_der,
            tcp,
            tls: Some(tls),
            _state: std::sync::Arc::new(state_dir),
        })
    }

    /// A connector to the MP (TLS with the proxy's certificate in native mode).
    pub fn connector(&self) -> AnyConnector {
        match &self.tls {
            Some(t) => AnyConnector::Tls(Box::new(t.clone())),
            None => AnyConnector::Tcp(self.tcp.clone()),
        }
    }

    /// The proxy's key and certificate, as the core's drivers take them.
    pub fn signing(&self) -> SigningIdentity<'_> {
        SigningIdentity {
            signer: &self.signer,
            cert_der: &self.cert_der,
        }
    }
}

fn site_hash(signer: ClientSigner, hash: SignatureHash) -> Result<SiteHashSigner<ClientSigner>> {
    SiteHashSigner::new(signer, hash).map_err(|e| match e {
        ConfigError::Sha1NeedsRsa => {
            anyhow!("SHA-1 signatures (no HashAlgorithm) need an RSA key; the proxy's key is P-256")
        }
        e => anyhow!("{e}"),
    })
}

/// What `export-cert` did.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Whether this run created the proxy's identity.
    pub created: bool,
    /// The DER file written.
    pub der: PathBuf,
    /// The PEM file written beside it.
    pub pem: PathBuf,
    /// The certificate.
    pub cert_der: Vec<u8>,
}

/// `proxy export-cert`: the proxy's certificate as DER at `out` and PEM beside it (`.pem`),
/// creating a P-256 identity on first run.
pub fn export_cert(state_dir: &Path, out: &Path, name: &str) -> Result<Exported> {
    export_cert_with(state_dir, out, name, KeyKind::P256)
}

/// [`export_cert`] with a `key` key for a new identity (an existing one keeps its key).
pub fn export_cert_with(
    state_dir: &Path,
    out: &Path,
    name: &str,
    key: KeyKind,
) -> Result<Exported> {
    anyhow::ensure!(
        protocol::valid_name(name),
        "proxy name {name:?} must be 1-15 letters, digits or '-'"
    );
    let identity =
        StateDir::open_locked(state_dir)?.load_or_create_identity_with(name, unix_now(), key)?;
    let pem_path = out.with_extension("pem");
    anyhow::ensure!(
        pem_path != out,
        "--out {} must not end in .pem (the PEM copy goes beside it)",
        out.display()
    );
    write_atomic(out, &identity.cert_der).with_context(|| format!("writing {}", out.display()))?;
    write_atomic(&pem_path, to_pem(&identity.cert_der).as_bytes())
        .with_context(|| format!("writing {}", pem_path.display()))?;
    Ok(Exported {
        created: identity.created,
        der: out.to_path_buf(),
        pem: pem_path,
        cert_der: identity.cert_der,
    })
}

/// A DER certificate as PEM.
pub fn to_pem(der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Register the proxy itself (AgentType 4, signed with its key) unless its state already holds
/// its SMSID; returns the SMSID. A refusal is reported with what the administrator must do.
pub async fn register_self(opts: &ProxyOptions, link: &ProxyLink) -> Result<Smsid> {
    let state_dir = StateDir::open(&opts.state_dir)?;
    let fqdn = opts.fqdn();
    let config = opts.config(&opts.name, &fqdn)?;
    let mut registrar = Registrar::new(state_dir.registration()?);
    let signing = link.signing();
    let mut connector = link.connector();
    let mut buf = vec![0u8; crate::client::EXCHANGE_BUFFER];
    let result = io::register(
        &mut connector,
        &mut SystemClock,
        &config,
        &signing,
        AgentType::IsvProxy,
        &mut registrar,
        &mut rand_core::OsRng,
        &mut buf,
        RegisterOptions {
            return_when_pending: true,
            max_failures: opts.max_failures.max(1),
        },
        &mut |_| {},
    )
    .await;
    let state = match result {
        Ok(s) => s,
        Err(RegisterError::GaveUp(AttemptFailure::Status(403))) => {
            let how = match &opts.pki {
                // Native mode: the CA-issued certificate is what the administrator imports.
                Some(files) => format!(
                    "import {} with `mpagent-sim mp import-cert --db SITE.db {}`",
                    files.cert.display(),
                    files.cert.display()
                ),
                None => format!(
                    "export it with `mpagent-sim proxy export-cert --state {} --out proxy.cer` \
                     and import it with `mpagent-sim mp import-cert --db SITE.db proxy.cer`",
                    opts.state_dir.display()
                ),
            };
            bail!(
                "the MP refused the proxy's registration (HTTP 403): the site accepts an ISV \
                 proxy only once the administrator has imported its certificate — {how} (see \
                 `mpagent-sim mp rejections` for the MP's reason)"
            )
        }
        Err(e) => match connector.last_tls_error() {
            Some(t) => {
                return Err(
                    anyhow::Error::new(t).context(format!("the proxy's registration failed: {e}"))
                )
            }
            None => bail!("the proxy's registration failed: {e}"),
        },
    };
    state_dir.save_registration(state)?;
    match state {
        RegistrationState::Registered(id) => Ok(id),
        RegistrationState::Pending(id) => bail!(
            "the proxy's registration {id} is pending approval; it acts for no client until approved"
        ),
        RegistrationState::Rejected(_) => bail!("the site rejected the proxy's registration"),
        RegistrationState::Unregistered => bail!("the proxy is not registered"),
    }
}

/// The device ↔ SMSID mapping kept in the state directory's registry, by device ID (an old
/// per-device layout is imported first, see [`registry`]).
pub fn client_mapping(state_dir: &Path) -> Result<Vec<(String, RegistrationState)>> {
    registry::Registry::open(state_dir)?.all()
}

/// Where the proxy listens.
pub fn parse_listen(addr: &str) -> Result<SocketAddr> {
    parse_addr("--listen", addr)
}

/// `value` of `option` as IP:port, or an error naming the option, the rule and the value.
pub fn parse_addr(option: &str, value: &str) -> Result<SocketAddr> {
    value.parse().map_err(|_| {
        anyhow!(
            "{option} {value:?}: must be IP:PORT (e.g. 127.0.0.1:7070; names are not looked up)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_matches_a_known_encoding() {
        assert_eq!(
            to_pem(b"Man"),
            "-----BEGIN CERTIFICATE-----\nTWFu\n-----END CERTIFICATE-----\n"
        );
        assert!(to_pem(b"Ma").contains("\nTWE=\n"));
        assert!(to_pem(b"M").contains("\nTQ==\n"));
        let long = to_pem(&[0u8; 100]);
        assert!(long.lines().all(|l| l.len() <= 64));
    }

    #[test]
    fn export_creates_once_and_writes_der_and_pem() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("proxy.cer");
        let a = export_cert(&dir.path().join("state"), &out, "PROXY-1").unwrap();
        assert!(a.created);
        assert_eq!(std::fs::read(&out).unwrap(), a.cert_der);
        let pem = std::fs::read_to_string(dir.path().join("proxy.pem")).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        let b = export_cert(&dir.path().join("state"), &out, "PROXY-1").unwrap();
        assert!(!b.created);
        assert_eq!(a.cert_der, b.cert_der);
        assert!(export_cert(&dir.path().join("state"), &out, "bad name").is_err());
        assert!(export_cert(&dir.path().join("state"), &dir.path().join("x.pem"), "P").is_err());
    }
}
