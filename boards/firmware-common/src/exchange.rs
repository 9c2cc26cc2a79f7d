//! The boards' side of the core's agent driver (`mpagent_core::io::driver`): the heartbeat
//! naming this device's address and MAC, the registration state saved with the identity in
//! flash, policy bodies into the board's [`PolicyBodies`], refused messages logged, events as
//! defmt lines; a new key and self-signed certificate when the site answers CertificateReset
//! ([`BoardHost::with_new_identity`]: made between steps, saved in place of the old identity
//! only once the site registered it); and [`step`], one driver step bounded by [`EXCHANGE_DEADLINE`]
//! (`embassy_time::with_timeout`) so that a dead or stalled MP costs one deadline, never the boot.

use defmt::{error, info, warn};
use embassy_time::{with_timeout, Duration};
use mpagent_core::agent::lifecycle::ReportKind;
#[cfg(not(feature = "native"))]
use mpagent_core::agent::registration::SigningIdentity;
use mpagent_core::agent::registration::{RegistrationEvent, RegistrationState};
use mpagent_core::config::AgentConfig;
use mpagent_core::io::driver::{DriverError, Event, Host, Persist, Step};
use mpagent_core::io::{Clock, Connector, SendError};
use mpagent_core::sink::{Emit, Overflow, Sink};
use mpagent_core::store::embedded_storage::nor_flash::NorFlash;
use mpagent_core::store::{MessageMeta, Store};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::report::{BasicDiscovery, Report, ReportIdentity};
#[cfg(not(feature = "native"))]
use rand_core::CryptoRngCore;

use crate::identity;
use crate::key::DeviceSigner;
use crate::text::{ip_text, mac_text};

/// Bound on one driver step (one exchange: connect, send, reply). A connector's own socket
/// timeout only catches silence; this catches an MP that keeps trickling bytes.
pub const EXCHANGE_DEADLINE: Duration = Duration::from_secs(20);
/// Policy assignments handled per poll (more are left for a later poll).
pub const MAX_ASSIGNMENTS: usize = 4;

/// Where a board keeps the policy bodies it fetches (files, RAM, flash…).
pub trait PolicyBodies {
    /// A body starts arriving; `false` if it cannot be kept now.
    fn start(&mut self) -> bool;
    /// Its next bytes.
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow>;
    /// The body ended: keep it (`keep`: whole and matching its hash) or throw it away. Answers
    /// whether it was kept.
    fn finish(&mut self, len: usize, keep: bool) -> bool;
    /// Whether policy `id` at `version` is kept already (then it is not fetched again).
    fn applied(&mut self, _id: &str, _version: &str) -> bool {
        false
    }
}

/// This device's addresses, named in its heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// IPv4 address.
    pub ip: [u8; 4],
    /// MAC address.
    pub mac: [u8; 6],
}

/// Streams a body into the board's [`PolicyBodies`].
struct BodySink<'b, B: PolicyBodies> {
    bodies: &'b mut B,
    started: bool,
}

impl<B: PolicyBodies> Sink for BodySink<'_, B> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        if !self.started {
            return Err(Overflow);
        }
        self.bodies.write(bytes)
    }
}

/// What a boot saw, for its exit code and its last log line.
#[derive(Debug, Default, Clone, Copy, defmt::Format)]
pub struct BoardReport {
    /// An exchange failed or ran past its deadline: what is left stays queued.
    pub stopped: bool,
    /// Policy bodies applied.
    pub policies: u32,
}

/// Room for the new identity a CertificateReset asks for: its key and self-signed certificate
/// (a static, beside the identity the device booted with, which stays in use and stored until
/// the site has registered the new one).
#[cfg(not(feature = "native"))]
pub struct NewIdentity {
    signer: Option<DeviceSigner>,
    cert: [u8; crate::key::MAX_DEVICE_CERT],
    cert_len: usize,
}

#[cfg(not(feature = "native"))]
impl NewIdentity {
    /// Empty room.
    pub const fn new() -> Self {
        Self {
            signer: None,
            cert: [0; crate::key::MAX_DEVICE_CERT],
            cert_len: 0,
        }
    }

    fn identity(&self) -> Option<(&DeviceSigner, &[u8])> {
        let signer = self.signer.as_ref()?;
        Some((signer, self.cert.get(..self.cert_len)?))
    }
}

#[cfg(not(feature = "native"))]
impl Default for NewIdentity {
    fn default() -> Self {
        Self::new()
    }
}

/// What a board that makes new identities lends its host.
#[cfg(not(feature = "native"))]
struct Renewal<'a> {
    room: &'a mut NewIdentity,
    rng: &'a mut dyn CryptoRngCore,
    /// The new identity is stored: it is the device's identity now.
    stored: bool,
}

/// The board's [`Host`].
pub struct BoardHost<'a, B: PolicyBodies> {
    config: &'a AgentConfig<'a>,
    signer: &'a DeviceSigner,
    cert_der: &'a [u8],
    saved: RegistrationState,
    addresses: Addresses,
    body: BodySink<'a, B>,
    #[cfg(not(feature = "native"))]
    renewal: Option<Renewal<'a>>,
    /// What this boot saw.
    pub report: BoardReport,
}

impl<'a, B: PolicyBodies> BoardHost<'a, B> {
    /// The host of a device whose identity (`signer`, `cert_der`) was stored with `saved`.
    pub fn new(
        config: &'a AgentConfig<'a>,
        signer: &'a DeviceSigner,
        cert_der: &'a [u8],
        saved: RegistrationState,
        addresses: Addresses,
        bodies: &'a mut B,
    ) -> Self {
        Self {
            config,
            signer,
            cert_der,
            saved,
            addresses,
            body: BodySink {
                bodies,
                started: false,
            },
            #[cfg(not(feature = "native"))]
            renewal: None,
            report: BoardReport::default(),
        }
    }

    /// Answer a CertificateReset with a new key (from `rng`) and self-signed certificate, made
    /// in `room` between driver steps (key generation and the certificate build then sit on
    /// the stack without a step under them). Without this the host cannot, and the agent backs
    /// off. Native builds cannot: their certificate is the one the site's CA issued.
    ///
    /// One new identity per boot: a second CertificateReset after the first new identity was
    /// stored is answered "cannot" (the identity this boot started with is gone from RAM), and
    /// the next boot, which starts with the new one, makes the next.
    #[cfg(not(feature = "native"))]
    pub fn with_new_identity(
        mut self,
        room: &'a mut NewIdentity,
        rng: &'a mut dyn CryptoRngCore,
    ) -> Self {
        self.renewal = Some(Renewal {
            room,
            rng,
            stored: false,
        });
        self
    }

    /// The identity that is stored now: the new one once it was stored, else the boot's.
    fn stored_identity(&self) -> (&DeviceSigner, &[u8]) {
        #[cfg(not(feature = "native"))]
        if let Some(renewal) = self.renewal.as_ref().filter(|r| r.stored) {
            if let Some(found) = renewal.room.identity() {
                return found;
            }
        }
        (self.signer, self.cert_der)
    }
}

/// A new key and self-signed certificate named `name` into `room`; whether they were made.
#[cfg(not(feature = "native"))]
#[inline(never)]
fn make_identity(
    room: &mut NewIdentity,
    mut rng: &mut dyn CryptoRngCore,
    name: &str,
    now: UnixTime,
) -> bool {
    use mpagent_core::identity::CertParams;
    room.signer = None;
    room.cert_len = 0;
    let started = embassy_time::Instant::now();
    // The key is written in place, into the room (an RSA key is ~3.3 KB).
    let signer = match crate::key::generate(&mut room.signer, &mut rng) {
        Ok(signer) => signer,
        Err(e) => {
            error!("generating a new key failed: {}", e);
            return false;
        }
    };
    let params = CertParams::self_signed_now(name, now, &mut rng);
    match crate::key::build_cert(&params, signer, &mut room.cert) {
        Ok(len) => {
            room.cert_len = len;
            info!(
                "new identity made: {} key, {=usize}-byte certificate, in {=u64} ms",
                crate::key::KIND,
                len,
                started.elapsed().as_millis()
            );
            true
        }
        Err(e) => {
            error!("building the new certificate failed: {}", e);
            room.signer = None;
            false
        }
    }
}

impl<F: NorFlash, B: PolicyBodies> Host<F> for BoardHost<'_, B>
where
    F::Error: defmt::Format,
{
    fn report(
        &mut self,
        kind: ReportKind,
        identity: ReportIdentity<'_>,
        now: UnixTime,
        queue: &mut dyn FnMut(&dyn Emit),
    ) {
        // Boards report discovery data only; their schedules ask for no inventory.
        if kind != ReportKind::Heartbeat {
            return;
        }
        let ip = ip_text(self.addresses.ip);
        let mac = mac_text(self.addresses.mac);
        let discovery = BasicDiscovery {
            fqdn: self.config.fqdn,
            client_version: mpagent_core::profile::REPORT_CLIENT_VERSION,
            platform_id: mpagent_core::profile::DISCOVERY_PLATFORM_ID,
            domain: None,
            ip_addresses: &[ip.as_str()],
            mac_addresses: &[mac.as_str()],
        };
        queue(&Report::discovery(identity, now.to_datetime(), &discovery));
    }

    fn persist(&mut self, store: &mut Store<F>, state: RegistrationState) -> Result<(), Persist> {
        if state == self.saved {
            return Ok(());
        }
        let (signer, cert_der) = self.stored_identity();
        match identity::save(store, signer, cert_der, state) {
            Ok(()) => {
                self.saved = state;
                Ok(())
            }
            Err(e) => {
                error!("saving the registration state failed: {}", e);
                Err(Persist)
            }
        }
    }

    #[cfg(not(feature = "native"))]
    fn makes_new_identity_between_steps(&self) -> bool {
        self.renewal.is_some()
    }

    #[cfg(not(feature = "native"))]
    fn make_new_identity(&mut self, now: UnixTime) -> bool {
        let name = self.config.netbios_name;
        match self.renewal.as_mut() {
            Some(renewal) if !renewal.stored => make_identity(renewal.room, renewal.rng, name, now),
            Some(_) => {
                warn!("a second new identity is made on the next boot, not in this one");
                false
            }
            None => false,
        }
    }

    #[cfg(not(feature = "native"))]
    fn new_identity(&self) -> Option<SigningIdentity<'_>> {
        let (signer, cert_der) = self.renewal.as_ref()?.room.identity()?;
        Some(SigningIdentity { signer, cert_der })
    }

    #[cfg(not(feature = "native"))]
    fn store_new_identity(
        &mut self,
        store: &mut Store<F>,
        state: RegistrationState,
    ) -> Result<(), Persist> {
        let Some(renewal) = self.renewal.as_mut() else {
            return self.persist(store, state);
        };
        let Some((signer, cert_der)) = renewal.room.identity() else {
            return Err(Persist);
        };
        match identity::save(store, signer, cert_der, state) {
            Ok(()) => {
                renewal.stored = true;
                self.saved = state;
                info!("new identity stored in place of the old one: {}", state);
                Ok(())
            }
            Err(e) => {
                error!("saving the new identity failed (the old one stays): {}", e);
                Err(Persist)
            }
        }
    }

    fn file_refused(
        &mut self,
        meta: &MessageMeta,
        _body: &dyn Emit,
        error: SendError,
    ) -> Result<(), Persist> {
        // A board has nowhere to keep it: the log says which message and why.
        error!(
            "MP refused {=str} {} for good ({}): removed from the queue",
            meta.endpoint.name(),
            meta.message_id,
            error
        );
        Ok(())
    }

    fn policy_applied(&mut self, id: &str, version: &str) -> bool {
        self.body.bodies.applied(id, version)
    }

    fn policy_body(&mut self) -> &mut dyn Sink {
        self.body.started = self.body.bodies.start();
        &mut self.body
    }

    fn policy_done(&mut self, _id: &str, _version: &str, len: usize, keep: bool) -> bool {
        let started = core::mem::replace(&mut self.body.started, false);
        let kept = self.body.bodies.finish(len, keep && started);
        if kept {
            self.report.policies = self.report.policies.saturating_add(1);
        }
        kept
    }

    fn event(&mut self, event: &Event<'_>) {
        match *event {
            Event::RegistrationSending { message_id, .. } => {
                info!("registration request {}", message_id)
            }
            Event::RegistrationFailed(f) => warn!("registration attempt failed: {}", f),
            Event::Registration(RegistrationEvent::Registered(id)) => info!("registered {}", id),
            Event::Registration(RegistrationEvent::PendingApproval(id, _)) => {
                info!("pending approval {}", id)
            }
            Event::Registration(e) => info!("registration: {}", e),
            Event::NewIdentityMade => info!("registering the new key and certificate"),
            Event::NewIdentityUnavailable => warn!(
                "the site asked for a new key and certificate: none made, asking again after a backoff"
            ),
            Event::NewIdentityStored => info!("the site registered the new identity"),
            Event::Queued {
                kind,
                message_id,
                queued,
                ..
            } => info!(
                "queued {=str} {} ({} waiting)",
                kind.name(),
                message_id,
                queued
            ),
            Event::NoRoom(kind) => warn!("queue full: {=str} not made", kind.name()),
            Event::Delivered {
                endpoint,
                message_id,
            } => info!("delivered {=str} {}", endpoint.name(), message_id),
            Event::DeliveryFailed { error, .. } => {
                self.report.stopped = true;
                warn!("delivery stopped ({})", error)
            }
            Event::Refused { .. } => {}
            Event::PolicyAssignments(n) => info!("policy: {=usize} assignments", n),
            Event::PolicyEmpty => info!("policy: nothing assigned (empty reply)"),
            Event::PolicyFailed(e) => {
                self.report.stopped = true;
                warn!("policy request failed: {}", e)
            }
            Event::PolicyApplied { id, version, bytes } => {
                info!(
                    "policy {=str}.{=str} applied: {=usize} bytes",
                    id, version, bytes
                )
            }
            Event::PolicyHashMismatch { id, .. } => {
                error!(
                    "policy {=str} refused: its body does not match its hash",
                    id
                )
            }
            Event::PolicyFetchFailed { id, error } => {
                self.report.stopped = true;
                warn!("policy {=str}: {}", id, error)
            }
            _ => {}
        }
    }
}

/// The board's driver.
pub type BoardDriver<'a, C, K, F, B> =
    mpagent_core::io::driver::Driver<'a, C, K, F, BoardHost<'a, B>>;

/// How a bounded step ended.
#[derive(Debug, Clone, Copy, defmt::Format)]
pub enum Bounded {
    /// The step ran to its end.
    Step(Step),
    /// The step ran past [`EXCHANGE_DEADLINE`]: counted as a failure on the way (the agent backs
    /// off).
    CutShort,
}

/// One driver step under [`EXCHANGE_DEADLINE`].
pub async fn step<C: Connector, K: Clock, F: NorFlash, B: PolicyBodies>(
    driver: &mut BoardDriver<'_, C, K, F, B>,
) -> Result<Bounded, DriverError<F::Error>>
where
    F::Error: defmt::Format,
{
    match with_timeout(EXCHANGE_DEADLINE, driver.step()).await {
        Ok(result) => result.map(Bounded::Step),
        Err(_) => {
            warn!("delivery stopped: deadline; {} queued", driver.store.len());
            driver.host.report.stopped = true;
            driver.on_deadline();
            Ok(Bounded::CutShort)
        }
    }
}
