//! The boards' side of the core's agent driver (`mpagent_core::io::driver`): the heartbeat
//! naming this device's address and MAC, the registration state saved with the identity in
//! flash, policy bodies into the board's [`PolicyBodies`], refused messages logged, events as
//! defmt lines; and [`step`], one driver step bounded by [`EXCHANGE_DEADLINE`]
//! (`embassy_time::with_timeout`) so that a dead or stalled MP costs one deadline, never the boot.

use defmt::{error, info, warn};
use embassy_time::{with_timeout, Duration};
use mpagent_core::agent::lifecycle::ReportKind;
use mpagent_core::agent::registration::{RegistrationEvent, RegistrationState};
use mpagent_core::config::AgentConfig;
use mpagent_core::io::driver::{DriverError, Event, Host, Persist, Step};
use mpagent_core::io::{Clock, Connector, SendError};
use mpagent_core::sink::{Emit, Overflow, Sink};
use mpagent_core::store::embedded_storage::nor_flash::NorFlash;
use mpagent_core::store::{MessageMeta, Store};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::report::{BasicDiscovery, Report, ReportIdentity};

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

/// The board's [`Host`].
pub struct BoardHost<'a, B: PolicyBodies> {
    config: &'a AgentConfig<'a>,
    signer: &'a DeviceSigner,
    cert_der: &'a [u8],
    saved: RegistrationState,
    addresses: Addresses,
    body: BodySink<'a, B>,
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
            report: BoardReport::default(),
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
        match identity::save(store, self.signer, self.cert_der, state) {
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
