//! The host client: the same no_std core driven over std networking, with its identity and
//! registration state kept in a directory.

pub mod state;
pub mod transport;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use mpagent_core::agent::registration::{
    Registrar, RegistrationEvent, RegistrationState, SigningIdentity,
};
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::io::{self, Progress, RegisterOptions};
use mpagent_core::wire::registration::AgentType;

use self::state::StateDir;
use self::transport::{unix_now, SystemClock, TcpConnector};

/// Size of the one buffer the core streams requests through and reads replies into.
pub const EXCHANGE_BUFFER: usize = 4096;

/// How a host client is configured.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `http://host:port` of the MP.
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
}

/// What `register` achieved.
#[derive(Debug, Clone)]
pub struct RegisterOutcome {
    /// The final registration state.
    pub state: RegistrationState,
    /// Whether this run created the identity.
    pub identity_created: bool,
    /// The certificate file.
    pub cert_path: PathBuf,
}

/// Register (or confirm) with the MP, creating the identity on first run.
pub async fn register(
    opts: &ClientOptions,
    observer: &mut dyn FnMut(&Progress),
) -> Result<RegisterOutcome> {
    let fqdn = opts
        .fqdn
        .clone()
        .unwrap_or_else(|| format!("{}.local", opts.name));
    let config = AgentConfig::new(
        &opts.site_code,
        SiteMode::Mixed,
        &opts.mp_url,
        &opts.name,
        &fqdn,
    )
    .map_err(|e| anyhow!("invalid configuration: {e:?}"))?;
    let state_dir = StateDir::open(&opts.state_dir)?;
    let identity = state_dir.load_or_create_identity(&opts.name, unix_now())?;
    let signing = SigningIdentity {
        signer: &identity.signer,
        cert_der: &identity.cert_der,
    };
    let mut registrar = Registrar::new(state_dir.registration()?);
    let mut connector = TcpConnector {
        host: config.mp.host.to_string(),
        port: config.mp.port,
        connect_timeout: Duration::from_secs(10),
    };
    let mut buf = vec![0u8; EXCHANGE_BUFFER];
    let options = RegisterOptions {
        return_when_pending: !opts.wait_for_approval,
        max_failures: opts.max_failures,
    };
    let mut save_error = None;
    let mut observe = |p: &Progress| {
        if let Progress::Event(ev) = p {
            let state = match ev {
                RegistrationEvent::Registered(id) => Some(RegistrationState::Registered(*id)),
                RegistrationEvent::PendingApproval(id, _) => Some(RegistrationState::Pending(*id)),
                RegistrationEvent::Rejected => Some(RegistrationState::Rejected),
                RegistrationEvent::RetryAt(_) => None,
            };
            if let Some(s) = state {
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
    let state = result.map_err(|e| anyhow!("registration failed: {e:?}"))?;
    state_dir.save_registration(state)?;
    Ok(RegisterOutcome {
        state,
        identity_created: identity.created,
        cert_path: state_dir.path().join(state::CERT_FILE),
    })
}
