//! The host client: the same no_std core driven over std networking, with its identity and
//! registration state kept in a directory. Mixed mode (the default): a self-signed identity made
//! on first run, plain HTTP. Native mode ([`tls`]): the administrator's CA-issued certificate
//! and key, checked at start-up, and HTTPS with that certificate.

pub mod flash_file;
pub mod run;
pub mod session;
pub mod site_check;
pub mod state;
pub mod tls;
pub mod transport;

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use mpagent_core::agent::registration::{Registrar, RegistrationState, SigningIdentity};
use mpagent_core::config::{SignatureHash, SiteGeneration, SiteMode};
use mpagent_core::io::{self, Progress, RegisterOptions};
use mpagent_core::wire::registration::AgentType;

use self::session::Session;
pub use self::session::SignatureHashError;
pub use self::state::KeyKind;
pub use self::tls::{NativeConfigError, PkiFiles};
use self::transport::SystemClock;

/// Size of the one buffer the core streams requests through and reads replies into. A host has
/// the RAM, so it is large enough for every request but a big inventory to go out in one
/// emission pass (the core re-emits once per window; boards use 4 KiB, see docs/performance.md).
pub const EXCHANGE_BUFFER: usize = 64 * 1024;

/// The discovery data of a heartbeat sent from the host (client, fleet, ISV proxy): the
/// profile's client version and platform ID, no domain, no MAC addresses.
pub fn host_discovery<'a>(
    fqdn: &'a str,
    ip_addresses: &'a [&'a str],
) -> mpagent_core::wire::report::BasicDiscovery<'a> {
    mpagent_core::wire::report::BasicDiscovery {
        fqdn,
        client_version: mpagent_core::profile::REPORT_CLIENT_VERSION,
        platform_id: mpagent_core::profile::DISCOVERY_PLATFORM_ID,
        domain: None,
        ip_addresses,
        mac_addresses: &[],
    }
}

/// How a host client is configured.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `http://host:port` of the MP (mixed mode) or `https://host:port` (native mode).
    pub mp_url: String,
    /// Site code.
    pub site_code: String,
    /// Where identity and state live.
    pub state_dir: PathBuf,
    /// NetBIOS name (also the certificate's CN).
    pub name: String,
    /// FQDN; `{name}.local` when absent.
    pub fqdn: Option<String>,
    /// Keep confirming until approved instead of returning when pending.
    pub wait_for_approval: bool,
    /// Consecutive failures before giving up.
    pub max_failures: u32,
    /// Kind of key made for a new identity (an existing identity keeps its key). Mixed mode only.
    pub key: KeyKind,
    /// Mixed (HTTP, self-signed identity in the state directory) or native (HTTPS, [`Self::pki`]).
    pub mode: SiteMode,
    /// Native mode: the provisioned certificate, key and CA ([`tls`]).
    pub pki: Option<PkiFiles>,
    /// The site's generation (`--site-generation`): how it numbers registration status, names
    /// report attachments and takes confirmations, and the hash [`Self::signature_hash`]
    /// defaults to.
    pub site_generation: SiteGeneration,
    /// The hash the site expects in every signature: SHA-256 with `HashAlgorithm`, or SHA-1
    /// without it (ConfigMgr 2007-style sites; RSA keys only, else refused at start-up with
    /// [`session::SignatureHashError`]). `None`: the generation's default for the client's key
    /// ([`SiteGeneration::default_signature_hash`]: SHA-1 for RSA on 2007 sites, else SHA-256).
    pub signature_hash: Option<SignatureHash>,
}

impl ClientOptions {
    /// Mixed-mode options with the defaults of `client register`: P-256, a current site (so
    /// SHA-256), return when pending, four failures.
    pub fn mixed(mp_url: &str, site_code: &str, state_dir: PathBuf, name: &str) -> Self {
        ClientOptions {
            mp_url: mp_url.into(),
            site_code: site_code.into(),
            state_dir,
            name: name.into(),
            fqdn: None,
            wait_for_approval: false,
            max_failures: 4,
            key: KeyKind::P256,
            mode: SiteMode::Mixed,
            pki: None,
            site_generation: SiteGeneration::Current,
            signature_hash: None,
        }
    }

    /// Native-mode options with the provisioned `pki` files, otherwise as [`Self::mixed`].
    pub fn native(
        mp_url: &str,
        site_code: &str,
        state_dir: PathBuf,
        name: &str,
        pki: PkiFiles,
    ) -> Self {
        ClientOptions {
            mode: SiteMode::Native,
            pki: Some(pki),
            ..Self::mixed(mp_url, site_code, state_dir, name)
        }
    }
}

/// What `register` achieved.
#[derive(Debug, Clone)]
pub struct RegisterOutcome {
    /// The final registration state.
    pub state: RegistrationState,
    /// Whether this run created the identity (never in native mode).
    pub identity_created: bool,
    /// The certificate file (the provisioned one in native mode).
    pub cert_path: PathBuf,
}

/// Register (or confirm) with the MP, creating the identity on first run.
pub async fn register(
    opts: &ClientOptions,
    observer: &mut dyn FnMut(&Progress),
) -> Result<RegisterOutcome> {
    let (session, mut connector) = Session::open(opts)?;
    let config = session.config()?;
    site_check::check_site(
        &mut connector,
        config.mp.host,
        config.mp.port,
        &opts.site_code,
        &opts.mp_url,
    )
    .await?;
    let (identity, state_dir) = (&session.identity, &session.state_dir);
    let signing = SigningIdentity {
        signer: &identity.signer,
        cert_der: &identity.cert_der,
    };
    // Proposing our own SMSID, as real clients do (docs/protocol.md §4): handed back, it needs no
    // confirmation.
    // A stored registration is confirmed with the site rather than taken on trust: `register`
    // says whether the device is registered *now* (its certificate revoked, the site's record
    // deleted or the MP unreachable all show as a failure, not as a stale success).
    let start = match state_dir.registration()? {
        RegistrationState::Registered(id) => RegistrationState::Pending(id),
        other => other,
    };
    let mut registrar = Registrar::new(start).with_proposed_smsid(
        mpagent_core::agent::registration::proposed_smsid(&identity.cert_der),
    );
    let mut buf = vec![0u8; EXCHANGE_BUFFER];
    let options = RegisterOptions {
        return_when_pending: !opts.wait_for_approval,
        max_failures: opts.max_failures,
    };
    let mut save_error = None;
    let mut observe = |p: &Progress| {
        // Only confirmed outcomes are persisted (an SMSID a reply merely named is not).
        if let Progress::Event(ev) = p {
            if let Some(s) = ev.persist() {
                if let Err(e) = state_dir.save_registration(s) {
                    save_error = Some(e);
                }
            }
        }
        observer(p);
    };
    let result = io::register(
        &mut connector,
        &mut SystemClock,
        &config,
        &signing,
        AgentType::Client,
        &mut registrar,
        &mut rand_core::OsRng,
        &mut buf,
        options,
        &mut observe,
    )
    .await;
    if let Some(e) = save_error {
        return Err(e).context("persisting the registration state");
    }
    let state = result.map_err(|e| match connector.last_tls_error() {
        // The core saw only the io error's kind; the TLS layer knows the cause.
        Some(t) => anyhow::Error::new(t).context(format!("registration failed: {e}")),
        None => anyhow!("registration failed: {e}"),
    })?;
    state_dir.save_registration(state)?;
    Ok(RegisterOutcome {
        state,
        identity_created: identity.created,
        cert_path: session.cert_path.clone(),
    })
}
