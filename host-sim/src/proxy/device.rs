//! One proxied device's side of the core's driver ([`DeviceHost`]): what its `Driver` reports
//! while a frame runs it, the registration state and the new identity it asks to keep (written
//! to the registry between steps, before anything else goes on the wire), and what the device is
//! answered.
//!
//! The Agent's rules reach proxied devices through it: a device the site forgot re-confirms
//! and registers afresh with its queue resent under the new SMSID, a CertificateReset makes the
//! device a new key and certificate (of the proxy's key kind, `device_key`), and messages
//! the MP cannot take now stay queued.

use mpagent_core::agent::lifecycle::{Agent, ReportKind, Schedule};
use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::guid::Guid;
use mpagent_core::identity::CertParams;
use mpagent_core::io::driver::{Event, Host, Persist};
use mpagent_core::io::{AttemptFailure, PolicyRequestError, SendError};
use mpagent_core::profile;
use mpagent_core::sink::{Emit, Overflow, Sink};
use mpagent_core::store::embedded_storage::nor_flash::NorFlash;
use mpagent_core::store::{MessageMeta, Store};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::registration::RequestType;
use mpagent_core::wire::report::ReportIdentity;

use super::device_key::{self, DeviceIdentity};
use crate::client::state::KeyKind;

/// The Agent a proxied device starts with: reports come only from the device's frames, policy
/// is requested only when the device asks (`POLICY_REQUEST`), and the online status is the
/// device's own to send. A stored registration is confirmed with the site first.
pub fn new_agent(stored: RegistrationState, queued: u32, now: UnixTime) -> Agent {
    let schedule = Schedule {
        heartbeat_secs: 0,
        inventory_secs: 0,
        // Non-zero so that a poll the device asks for runs; the next is never due by itself.
        policy_secs: u64::MAX,
        rejection_recheck_secs: profile::REJECTION_RECHECK_SECS,
    };
    let mut agent = Agent::new(stored, schedule, queued, now);
    agent.skip_online_status();
    agent.set_next_policy(UnixTime(u64::MAX));
    agent
}

/// What the policy request of a `POLICY_REQUEST` came to.
pub enum PolicyAnswer {
    /// The assignments (`PolicyID`, `PolicyVersion`), as many as the compact protocol carries.
    Assignments,
    /// An empty reply: nothing assigned yet.
    Empty,
    /// The request failed.
    Failed(PolicyRequestError),
}

/// Where the registry writes wait until the step that asked for them is over.
#[derive(Default)]
pub struct Writes {
    /// The registration state to keep.
    pub registration: Option<RegistrationState>,
    /// The new identity, registered under this state, to keep in place of the old one.
    pub new_identity: Option<(DeviceIdentity, RegistrationState)>,
}

/// The device's host while one frame drives its Agent.
pub struct DeviceHost<'d> {
    id: &'d str,
    name: &'d str,
    key: KeyKind,
    /// Made after a CertificateReset; moves to [`Writes::new_identity`] once registered.
    made: Option<DeviceIdentity>,
    /// Its certificate, kept after the identity moved to the writes (the driver still asks).
    made_cert: Option<Vec<u8>>,
    /// Registry writes to do before the next step.
    pub writes: Writes,
    /// Messages the MP took in this frame.
    pub delivered: Vec<Guid>,
    /// Messages the site refused under a confirmed registration, with why.
    pub refused: Vec<(Guid, SendError)>,
    /// The last failure on the way, as a sentence; `unreachable` when the MP could not be
    /// reached at all (then waiting through backoffs in the frame helps nobody).
    pub last_failure: Option<String>,
    /// See [`Self::last_failure`].
    pub unreachable: bool,
    registration_failed: bool,
    sending_registration: bool,
    /// The site refused a registration (not a confirmation) in this frame: the Agent's
    /// re-confirm-then-register-afresh path is spent, and its next try is a backoff away.
    pub registration_refused: bool,
    /// The policy request's assignments.
    pub policies: Vec<(String, String)>,
    /// How the policy request went, once it ran.
    pub policy: Option<PolicyAnswer>,
    /// How many assignments the compact protocol carries.
    max_policies: usize,
    discard: Discard,
}

struct Discard;

impl Sink for Discard {
    fn write(&mut self, _: &[u8]) -> Result<(), Overflow> {
        Ok(())
    }
}

impl<'d> DeviceHost<'d> {
    /// The host of device `id` named `name`, whose keys are of `key`'s kind.
    pub fn new(id: &'d str, name: &'d str, key: KeyKind, max_policies: usize) -> Self {
        Self {
            id,
            name,
            key,
            made: None,
            made_cert: None,
            writes: Writes::default(),
            delivered: Vec::new(),
            refused: Vec::new(),
            last_failure: None,
            unreachable: false,
            registration_failed: false,
            sending_registration: false,
            registration_refused: false,
            policies: Vec::new(),
            policy: None,
            max_policies,
            discard: Discard,
        }
    }

    /// Go on with a new identity an earlier frame made and did not get registered.
    pub fn with_made(mut self, made: Option<DeviceIdentity>) -> Self {
        self.made_cert = made.as_ref().map(|m| m.cert_der.clone());
        self.made = made;
        self
    }

    /// The new identity still waiting to be registered, for the device's next frame.
    pub fn take_made(&mut self) -> Option<DeviceIdentity> {
        self.made.take()
    }

    fn failed(&mut self, text: String, unreachable: bool) {
        self.last_failure = Some(text);
        self.unreachable = unreachable;
    }
}

impl<F: NorFlash> Host<F> for DeviceHost<'_> {
    fn report(
        &mut self,
        _kind: ReportKind,
        _identity: ReportIdentity<'_>,
        _now: UnixTime,
        _queue: &mut dyn FnMut(&dyn Emit),
    ) {
        // Nothing is scheduled: the device's frames bring its reports.
    }

    fn persist(&mut self, _store: &mut Store<F>, state: RegistrationState) -> Result<(), Persist> {
        self.writes.registration = Some(state);
        Ok(())
    }

    fn file_refused(
        &mut self,
        meta: &MessageMeta,
        _body: &dyn Emit,
        error: SendError,
    ) -> Result<(), Persist> {
        tracing::warn!(
            "device {}: the site refused message {} ({}) under a confirmed registration: {}",
            self.id,
            String::from_utf8_lossy(&meta.message_id.to_braced()),
            meta.endpoint.name(),
            crate::human::send_error(&error)
        );
        self.refused.push((meta.message_id, error));
        Ok(())
    }

    /// The proxy relays the assignment list and fetches no bodies: each one counts as applied.
    fn policy_applied(&mut self, id: &str, version: &str) -> bool {
        if self.policies.len() < self.max_policies {
            self.policies.push((id.to_string(), version.to_string()));
        }
        true
    }

    fn policy_body(&mut self) -> &mut dyn Sink {
        &mut self.discard
    }

    fn policy_done(&mut self, _: &str, _: &str, _: usize, _: bool) -> bool {
        false
    }

    fn event(&mut self, event: &Event<'_>) {
        tracing::debug!("device {}: {}", self.id, crate::human::driver_event(event));
        match *event {
            Event::RegistrationSending { request_type, .. } => {
                self.registration_failed = false;
                self.sending_registration = request_type == RequestType::Registration;
            }
            Event::RegistrationFailed(f) => {
                self.registration_failed = true;
                self.registration_refused |= self.sending_registration && f.is_refusal();
                match f {
                    AttemptFailure::Transport(_) => {
                        self.failed(format!("the MP is unreachable: {f}"), true)
                    }
                    _ => self.failed(format!("registration failed: {f}"), false),
                }
            }
            Event::Registration(ev) => {
                if !self.registration_failed {
                    self.unreachable = false;
                }
                tracing::info!(
                    "device {} ({}): {}",
                    self.id,
                    self.name,
                    crate::human::registration(&ev)
                );
            }
            Event::Delivered { message_id, .. } => {
                self.delivered.push(message_id);
                self.unreachable = false;
            }
            Event::DeliveryFailed { error, .. } => match error {
                SendError::Transport(_) => {
                    self.failed(format!("the MP is unreachable: {error}"), true)
                }
                _ => self.failed(crate::human::send_error(&error), false),
            },
            Event::PolicyAssignments(_) => {
                self.unreachable = false;
                self.policy = Some(PolicyAnswer::Assignments);
            }
            Event::PolicyEmpty => {
                self.unreachable = false;
                self.policy = Some(PolicyAnswer::Empty);
            }
            Event::PolicyFailed(e) => {
                match e {
                    PolicyRequestError::Send(SendError::Transport(_)) => {
                        self.failed(format!("the MP is unreachable: {e}"), true)
                    }
                    _ => self.failed(format!("the policy request failed: {e}"), false),
                }
                self.policy = Some(PolicyAnswer::Failed(e));
            }
            _ => {}
        }
    }

    fn make_new_identity(&mut self, now: UnixTime) -> bool {
        let params = CertParams::self_signed_now(self.name, now, &mut rand_core::OsRng);
        match device_key::make(self.key, &params) {
            Ok(made) => {
                tracing::info!(
                    "device {}: the site asked for a new certificate; made one",
                    self.id
                );
                self.made_cert = Some(made.cert_der.clone());
                self.made = Some(made);
                true
            }
            Err(e) => {
                tracing::error!(
                    "device {}: making a new key and certificate: {e:#}",
                    self.id
                );
                false
            }
        }
    }

    fn new_certificate(&self) -> Option<&[u8]> {
        self.made_cert.as_deref()
    }

    fn store_new_identity(
        &mut self,
        _store: &mut Store<F>,
        state: RegistrationState,
    ) -> Result<(), Persist> {
        let made = self.made.take().ok_or(Persist)?;
        self.writes.new_identity = Some((made, state));
        Ok(())
    }
}
