//! The one driver of the [`Agent`]: it carries out each action over the caller's transport,
//! clock, store and RNG, and feeds the outcome back. Boards, the host client and the ISV proxy
//! run this loop; what differs between them (where reports come from, where policy bodies and
//! refused messages go, how the registration state is persisted, what is logged) is the
//! caller's [`Host`].
//!
//! One [`Driver::step`] is one action: at most one exchange with the MP, so a caller that bounds
//! each step in time (boards: `embassy_time::with_timeout`) bounds every exchange. A step cut
//! short leaves the agent as it was; [`Driver::on_deadline`] then counts it as a failure.

use core::pin::pin;

use rand_core::RngCore;
use sha2::{Digest, Sha256};

use super::{
    attempt, fetch_policy_body, out_of_line, request_policy, send_message, AttemptFailure,
};
use super::{Clock, Connector, FetchError, PolicyRequestError, SendError};
use crate::agent::lifecycle::{Action, Agent, Failure, PolicyOutcome, Queued, Refusal, ReportKind};
use crate::agent::messages::{
    attachment_name, request_assignments, sign_message, travels_attached, PolicyBodyRequest,
    PolicyGetError,
};
use crate::agent::outbound::{Post, PostParams};
use crate::agent::registration::{
    build_proxy_client_request, build_request, proposed_smsid, MessageIds, RegistrationEvent,
    RegistrationState, SigningIdentity,
};
use crate::agent::signed::{MessageParams, MessageSigner, SignedMessage, SignedMessageError};
use crate::agent::smsid_rewrite::SmsidRewrite;
use crate::config::AgentConfig;
use crate::guid::{Guid, Smsid};
use crate::sign::SignError;
use crate::sink::{Emit, Overflow, Sink};
use crate::store::embedded_storage::nor_flash::{NorFlash, NorFlashError};
use crate::store::{BodyFault, Endpoint, MessageMeta, Store, StoreError};
use crate::time::UnixTime;
use crate::wire::clientauth::ClientIdSignature;
use crate::wire::header::{endpoint, ReplyMode};
use crate::wire::policy::{PolicyAssignment, ServerCookie};
use crate::wire::registration::{AgentType, BuildError, RequestType};
use crate::wire::report::ReportIdentity;
use crate::wire::report_framing::AttachedReport;
use crate::wire::state_message::StateMessage;
use crate::wire::status::StatusMessage;

/// Longest policy ID, version and body location a poll keeps.
pub const MAX_POLICY_ID: usize = 96;
/// See [`MAX_POLICY_ID`].
pub const MAX_POLICY_VERSION: usize = 32;
/// See [`MAX_POLICY_ID`].
pub const MAX_POLICY_LOCATION: usize = crate::agent::messages::MAX_POLICY_PATH + 64;
/// State message acknowledging an applied policy: topic type 402 (policy), state 1 (applied).
const POLICY_TOPIC_TYPE: u32 = 402;
const POLICY_STATE_APPLIED: u32 = 1;
/// Bytes of the scratch buffer the store writes records through.
const STORE_SCRATCH: usize = 256;

/// One policy assignment, copied out of the reply (which lives in the exchange buffer that the
/// body fetches reuse).
#[derive(Debug, Clone, Default)]
pub struct PolicySlot {
    /// `PolicyID`.
    pub id: heapless::String<MAX_POLICY_ID>,
    /// `PolicyVersion`.
    pub version: heapless::String<MAX_POLICY_VERSION>,
    /// The body location, unescaped.
    pub location: heapless::String<MAX_POLICY_LOCATION>,
    /// SHA-256 the body must have, when the assignment names one.
    pub hash: Option<[u8; 32]>,
}

impl PolicySlot {
    /// An empty slot (for statics).
    pub const EMPTY: Self = Self {
        id: heapless::String::new(),
        version: heapless::String::new(),
        location: heapless::String::new(),
        hash: None,
    };
}

/// The caller's buffers (statics on boards: too large for a task's future).
pub struct Buffers<'b> {
    /// Requests stream through it and replies land in it.
    pub exchange: &'b mut [u8],
    /// Decodes a policy reply: 3/2 of `exchange` ([`crate::wire::policy::policy_reply_scratch_len`]).
    pub policy_scratch: &'b mut [u8],
    /// A poll's assignments; more than fit are left for a later poll.
    pub policies: &'b mut [PolicySlot],
}

/// What the driver tells its host while it works.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'e> {
    /// A registration request is going out.
    RegistrationSending {
        /// Registration or confirmation.
        request_type: RequestType,
        /// Its message ID.
        message_id: Guid,
    },
    /// The registration request failed on the way or was refused.
    RegistrationFailed(AttemptFailure),
    /// The registration moved.
    Registration(RegistrationEvent),
    /// The site asked for a new key and certificate and the host made them: they are
    /// registered next, and the stored identity stays until they are.
    NewIdentityMade,
    /// The site asked for a new key and certificate and the host cannot make them (a
    /// provisioned certificate): the agent asks the site again after a backoff.
    NewIdentityUnavailable,
    /// The site knows the new identity and the host stored it in place of the old one.
    NewIdentityStored,
    /// A report was queued (`superseded`: an unsent older one of its kind was withdrawn).
    Queued {
        /// Which report.
        kind: ReportKind,
        /// Its message ID.
        message_id: Guid,
        /// Whether it replaced an unsent older one.
        superseded: bool,
        /// Messages queued now.
        queued: u32,
    },
    /// A report was not made: the queue had no room (the unsent one of its kind, if any,
    /// stands for it; see [`crate::agent::lifecycle::Counts`]).
    NoRoom(ReportKind),
    /// A queued message reached the MP.
    Delivered {
        /// Its endpoint.
        endpoint: Endpoint,
        /// Its message ID.
        message_id: Guid,
    },
    /// Delivery failed; the message stays queued.
    DeliveryFailed {
        /// The failure.
        error: SendError,
        /// What happens next.
        next: Refusal,
    },
    /// The site confirmed the registration and still refused this message: it was handed to
    /// [`Host::file_refused`] and left the queue.
    Refused {
        /// Its endpoint.
        endpoint: Endpoint,
        /// Its message ID.
        message_id: Guid,
        /// The refusal.
        error: SendError,
    },
    /// The policy request was answered with this many assignments.
    PolicyAssignments(usize),
    /// The policy request was answered with an empty body.
    PolicyEmpty,
    /// The policy request failed.
    PolicyFailed(PolicyRequestError),
    /// A policy body arrived, matched its hash and was kept.
    PolicyApplied {
        /// `PolicyID`.
        id: &'e str,
        /// `PolicyVersion`.
        version: &'e str,
        /// Body bytes.
        bytes: usize,
    },
    /// A policy body did not match its assignment's `PolicyHash`: not applied, not acknowledged.
    PolicyHashMismatch {
        /// `PolicyID`.
        id: &'e str,
        /// The hash the assignment named.
        expected: [u8; 32],
        /// The hash of what arrived.
        got: [u8; 32],
    },
    /// A policy body could not be fetched (tried again at the next poll).
    PolicyFetchFailed {
        /// `PolicyID`.
        id: &'e str,
        /// Why.
        error: FetchError,
    },
}

/// What the driver needs of the device it runs on.
pub trait Host<F: NorFlash> {
    /// Make the report `kind` ([`ReportKind::Heartbeat`] or [`ReportKind::Inventory`]; the
    /// online status the driver makes itself) for `identity` at `now`, and hand it to `queue`
    /// exactly once. A device without such data may hand nothing: the report is then skipped.
    fn report(
        &mut self,
        kind: ReportKind,
        identity: ReportIdentity<'_>,
        now: UnixTime,
        queue: &mut dyn FnMut(&dyn Emit),
    );
    /// Persist the registration state (boards keep it with the identity in `store`).
    fn persist(&mut self, store: &mut Store<F>, state: RegistrationState) -> Result<(), Persist>;
    /// A message the site refused under a confirmed registration: keep it where a person can
    /// find it (a file, a log line). It leaves the queue only once this answered `Ok`.
    fn file_refused(
        &mut self,
        meta: &MessageMeta,
        body: &dyn Emit,
        error: SendError,
    ) -> Result<(), Persist>;
    /// Whether policy `id` at `version` is applied already (then it is not fetched again).
    fn policy_applied(&mut self, id: &str, version: &str) -> bool;
    /// Where the next policy body streams to, from its first byte.
    fn policy_body(&mut self) -> &mut dyn Sink;
    /// The body streamed into [`Host::policy_body`] is whole and matched its hash (`keep`):
    /// keep it as `id` at `version`; or it is not (`!keep`): throw it away. Answers whether it
    /// was kept.
    fn policy_done(&mut self, id: &str, version: &str, len: usize, keep: bool) -> bool;
    /// Something happened (logs, progress for people).
    fn event(&mut self, event: &Event<'_>);
    /// The site asked for a new key and certificate (registration Status CertificateReset):
    /// make them and hold them beside the stored identity, which stays until
    /// [`Host::store_new_identity`]. From then on every request is signed with
    /// [`Host::new_identity`]. Answers `false` when this device cannot (a provisioned
    /// certificate that only an administrator replaces); the default cannot.
    fn make_new_identity(&mut self, now: UnixTime) -> bool {
        let _ = now;
        false
    }
    /// Whether [`Host::make_new_identity`] runs between steps rather than inside the step that
    /// got the CertificateReset: the step then only records it ([`Driver::new_identity_due`]),
    /// and [`Driver::make_due_new_identity`] (called by [`Driver::run`], [`Driver::run_until_idle`]
    /// or the caller's own loop) makes it, so that key generation and the certificate build
    /// sit on the stack without a step's frame under them. The default: inside the step.
    fn makes_new_identity_between_steps(&self) -> bool {
        false
    }
    /// The identity [`Host::make_new_identity`] made, if any.
    fn new_identity(&self) -> Option<SigningIdentity<'_>> {
        None
    }
    /// The certificate of the identity [`Host::make_new_identity`] made, if any. A device an ISV
    /// proxy signs for ([`Driver::through_proxy`]) is known by its certificate alone: its host
    /// answers this and may answer `None` to [`Host::new_identity`].
    fn new_certificate(&self) -> Option<&[u8]> {
        self.new_identity().map(|i| i.cert_der)
    }
    /// The site knows the new identity (it answered with an SMSID for it): keep it with
    /// `state` in one save that replaces the old identity, so that a power cut at any point
    /// leaves the one or the other, whole.
    fn store_new_identity(
        &mut self,
        store: &mut Store<F>,
        state: RegistrationState,
    ) -> Result<(), Persist> {
        self.persist(store, state)
    }
}

/// Which identity signs: the one the device started with, or the new one its host made after
/// a CertificateReset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdentityInUse {
    Started,
    /// Made, and registered and stored once `stored`.
    New {
        stored: bool,
    },
}

/// The identity that signs now ([`IdentityInUse`]). A host that made a new identity and then
/// lost it would break its own contract; the device's own identity is the only one left then.
/// Through an ISV proxy the proxy's identity (`started`) signs whatever the device's is.
fn signing_identity<'s, F: NorFlash, H: Host<F>>(
    started: SigningIdentity<'s>,
    host: &'s H,
    in_use: IdentityInUse,
    proxied: bool,
) -> SigningIdentity<'s> {
    match in_use {
        _ if proxied => started,
        IdentityInUse::Started => started,
        IdentityInUse::New { .. } => host.new_identity().unwrap_or(started),
    }
}

/// The certificate the site knows the device by: its identity's, or through an ISV proxy the
/// device's own; after a CertificateReset the new one the host made.
fn registered_cert<'s, F: NorFlash, H: Host<F>>(
    started: SigningIdentity<'s>,
    proxy: Option<ThroughProxy<'s>>,
    host: &'s H,
    in_use: IdentityInUse,
) -> &'s [u8] {
    let started = match proxy {
        Some(p) => p.device_cert_der,
        None => started.cert_der,
    };
    match in_use {
        IdentityInUse::Started => started,
        IdentityInUse::New { .. } => host.new_certificate().unwrap_or(started),
    }
}

/// An ISV proxy signs every request of the device ([`Driver::through_proxy`]): registrations as
/// AgentType 8 naming the proxy, messages with `ProxySMSID` (docs/protocol.md §4).
#[derive(Clone, Copy)]
pub struct ThroughProxy<'a> {
    /// The proxy's own SMSID (it holds it before acting for any device).
    pub proxy_smsid: Smsid,
    /// The device's certificate (DER): what the site registers and knows the device by.
    pub device_cert_der: &'a [u8],
}

/// Persisting the registration state failed (the host logged why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Persist;

impl core::fmt::Display for Persist {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the host could not keep what it was given (its log says why)")
    }
}

impl core::error::Error for Persist {}

/// A step could not be carried out, for a reason that retrying later will not fix by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DriverError<E> {
    /// The store failed (flash error, corrupt record).
    Store(StoreError<E>),
    /// The registration state, or a refused message, could not be kept.
    Persist,
    /// A registration request could not be built or signed.
    Build(BuildError),
    /// A message could not be signed.
    Sign(SignedMessageError),
    /// The `ClientIDSignature` could not be made.
    ClientId(SignError),
    /// A queued message could not be read back from flash.
    QueueRead(BodyFault),
    /// A policy body request could not be built.
    PolicyGet(PolicyGetError),
}

impl<E> From<StoreError<E>> for DriverError<E> {
    fn from(e: StoreError<E>) -> Self {
        Self::Store(e)
    }
}

impl<E: NorFlashError> core::fmt::Display for DriverError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Store(e) => write!(f, "the queue store failed: {e}"),
            Self::Persist => {
                f.write_str("the registration state or a refused message could not be saved")
            }
            Self::Build(e) => write!(f, "the registration request could not be built: {e}"),
            Self::Sign(e) => write!(f, "a message could not be signed: {e}"),
            Self::ClientId(e) => write!(f, "the client ID signature could not be made: {e}"),
            Self::QueueRead(e) => write!(f, "a queued message could not be read back: {e}"),
            Self::PolicyGet(e) => write!(f, "a policy body request could not be built: {e}"),
        }
    }
}

impl<E: NorFlashError> core::error::Error for DriverError<E> {}

/// What one [`Driver::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Step {
    /// Carried out this action.
    Did(Action),
    /// Nothing to do before this time.
    Idle(UnixTime),
}

/// Who the agent is and where it talks.
pub struct Device<'a> {
    /// Site, MP and names.
    pub config: &'a AgentConfig<'a>,
    /// Key and certificate: every request is signed with it.
    pub identity: SigningIdentity<'a>,
    /// AgentType of the registration.
    pub agent_type: AgentType,
}

/// What a driver holds beyond its [`Agent`]: which identity signs (the one made after a
/// CertificateReset, until it is registered and stored), the registration's message ID that a
/// confirmation repeats, and the policy `ServerCookie`. A caller that builds a driver per piece
/// of work (an ISV proxy, per device frame) hands it on with [`Driver::carried`] and
/// [`Driver::carry_on`], keeping its host's new identity alongside.
#[derive(Debug, Clone)]
pub struct Carried {
    identity_in_use: IdentityInUse,
    registration_ids: MessageIds,
    server_cookie: ServerCookie,
}

/// The agent with everything it runs on.
pub struct Driver<'a, C: Connector, K: Clock, F: NorFlash, H: Host<F>> {
    /// The lifecycle.
    pub agent: Agent,
    /// Who it is.
    pub device: Device<'a>,
    /// Set when an ISV proxy signs for the device ([`Driver::through_proxy`]).
    proxy: Option<ThroughProxy<'a>>,
    /// Connections to the MP.
    pub connector: &'a mut C,
    /// Time.
    pub clock: &'a mut K,
    /// The queue (and, on boards, the identity).
    pub store: &'a mut Store<F>,
    /// Message IDs.
    pub rng: &'a mut dyn RngCore,
    /// Buffers.
    pub buffers: Buffers<'a>,
    /// The device's side.
    pub host: &'a mut H,
    client_id: Option<ClientIdSignature>,
    in_flight: Option<Action>,
    identity_in_use: IdentityInUse,
    registration_ids: MessageIds,
    /// A CertificateReset waits for [`Driver::make_due_new_identity`].
    new_identity_due: bool,
    /// The last policy reply's `ServerCookie`, echoed by the next policy request (not kept
    /// across restarts: the first request after one sends it empty, as a new client does).
    server_cookie: ServerCookie,
}

impl<'a, C: Connector, K: Clock, F: NorFlash, H: Host<F>> Driver<'a, C, K, F, H> {
    /// A driver for `agent`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        agent: Agent,
        device: Device<'a>,
        connector: &'a mut C,
        clock: &'a mut K,
        store: &'a mut Store<F>,
        rng: &'a mut dyn RngCore,
        buffers: Buffers<'a>,
        host: &'a mut H,
    ) -> Self {
        let mut agent = agent;
        agent.set_site_generation(device.config.site_generation);
        // An ISV proxy's own SMSID comes from the certificate import: it proposes none.
        if device.agent_type != AgentType::IsvProxy {
            agent.propose_smsid(crate::agent::registration::proposed_smsid(
                device.identity.cert_der,
            ));
        }
        Self {
            agent,
            device,
            proxy: None,
            connector,
            clock,
            store,
            rng,
            buffers,
            host,
            client_id: None,
            in_flight: None,
            identity_in_use: IdentityInUse::Started,
            registration_ids: MessageIds::default(),
            new_identity_due: false,
            server_cookie: ServerCookie::new(),
        }
    }

    /// The device is an ISV proxy's client (AgentType 8, docs/protocol.md §4): the proxy signs
    /// every request for it. [`Device::identity`] is then the proxy's key and certificate, and
    /// `proxy` names the proxy's SMSID and the device's certificate, which is what registers
    /// (and proposes the SMSID). After a CertificateReset the host's
    /// [`Host::new_certificate`] replaces the device's certificate; the proxy's key signs on.
    pub fn through_proxy(mut self, proxy: ThroughProxy<'a>) -> Self {
        self.agent
            .propose_smsid(proposed_smsid(proxy.device_cert_der));
        self.proxy = Some(proxy);
        self
    }

    /// What this driver holds beyond its Agent, for the next driver of the same device.
    pub fn carried(&self) -> Carried {
        Carried {
            identity_in_use: self.identity_in_use,
            registration_ids: self.registration_ids,
            server_cookie: self.server_cookie.clone(),
        }
    }

    /// Carry on from the driver that made `carried` (with the same host state: a new identity
    /// it made must still be [`Host::new_identity`] / [`Host::new_certificate`]).
    pub fn carry_on(mut self, carried: Carried) -> Self {
        self.identity_in_use = carried.identity_in_use;
        self.registration_ids = carried.registration_ids;
        self.server_cookie = carried.server_cookie;
        self
    }

    /// Run forever: step, and sleep while there is nothing to do. Returns only on an error
    /// that retrying will not fix.
    pub async fn run(&mut self) -> DriverError<F::Error> {
        loop {
            let step = self.step().await;
            self.make_due_new_identity();
            match step {
                Ok(Step::Idle(t)) => self.clock.sleep_until(t).await,
                Ok(Step::Did(_)) => {}
                Err(e) => return e,
            }
        }
    }

    /// Step until there is nothing to do now (one pass of an appliance that wakes, reports and
    /// sleeps); returns when the agent next has something to do.
    pub async fn run_until_idle(&mut self) -> Result<UnixTime, DriverError<F::Error>> {
        loop {
            let step = self.step().await?;
            if self.make_due_new_identity() {
                continue;
            }
            if let Step::Idle(t) = step {
                return Ok(t);
            }
        }
    }

    /// Whether the site answered CertificateReset and the new identity waits to be made by
    /// [`Driver::make_due_new_identity`] (hosts that make it between steps:
    /// [`Host::makes_new_identity_between_steps`]).
    pub fn new_identity_due(&self) -> bool {
        self.new_identity_due
    }

    /// Make the new identity a CertificateReset asked for, if one is due (see
    /// [`Driver::new_identity_due`]): the host makes key and certificate here, outside any
    /// step, and the next step registers them. Answers whether one was due.
    #[inline(never)]
    pub fn make_due_new_identity(&mut self) -> bool {
        if !core::mem::take(&mut self.new_identity_due) {
            return false;
        }
        let now = self.clock.now();
        self.make_new_identity(now);
        true
    }

    /// The step in flight was cut short by the caller's deadline: count it as a failure on the
    /// way (the MP stalled), so the agent backs off instead of asking again at once.
    pub fn on_deadline(&mut self) {
        let now = self.clock.now();
        match self.in_flight.take() {
            Some(Action::Register(..)) => {
                let event = self.agent.on_registration_failure(now, false);
                self.host.event(&Event::Registration(event));
            }
            Some(Action::Deliver(_)) => {
                self.agent.on_delivery_failed(now, Failure::Retryable);
            }
            Some(Action::PollPolicy(_)) => {
                self.agent
                    .on_policy(now, PolicyOutcome::Failed(Failure::Retryable));
            }
            Some(Action::Queue { .. }) | Some(Action::Sleep(_)) | None => {}
        }
    }

    /// Carry out the agent's next action.
    pub async fn step(&mut self) -> Result<Step, DriverError<F::Error>> {
        let now = self.clock.now();
        // The action is kept in `in_flight` only: a copy held across the awaits below would
        // sit in every step's future (the agent context boards budget).
        let action = self.agent.poll(now);
        self.in_flight = Some(action);
        match action {
            Action::Sleep(t) => {
                self.in_flight = None;
                return Ok(Step::Idle(t));
            }
            // Each exchange is polled in a frame of its own: the step's frame then holds none
            // of their locals under the signing chain that each of them runs.
            Action::Register(kind, smsid) => {
                out_of_line(pin!(self.register(kind, smsid, now))).await?
            }
            Action::Queue {
                kind,
                smsid,
                supersedes,
            } => self.queue(kind, smsid, supersedes, now)?,
            Action::Deliver(smsid) => out_of_line(pin!(self.deliver(smsid))).await?,
            Action::PollPolicy(smsid) => out_of_line(pin!(self.poll_policy(smsid))).await?,
        }
        // Only `on_deadline` empties it, and it cannot run while this step holds the driver.
        Ok(match self.in_flight.take() {
            Some(done) => Step::Did(done),
            None => Step::Idle(now),
        })
    }

    async fn register(
        &mut self,
        kind: RequestType,
        smsid: Option<Smsid>,
        now: UnixTime,
    ) -> Result<(), DriverError<F::Error>> {
        let config = self.device.config;
        let message_id = self.registration_ids.next(
            config.site_generation.confirmation_form(),
            kind,
            Guid::random(self.rng),
        );
        self.host.event(&Event::RegistrationSending {
            request_type: kind,
            message_id,
        });
        let proxied = self.proxy.is_some();
        let identity = signing_identity(
            self.device.identity,
            &*self.host,
            self.identity_in_use,
            proxied,
        );
        let request = match self.proxy {
            Some(p) => build_proxy_client_request(
                config,
                &identity,
                p.proxy_smsid,
                registered_cert(
                    self.device.identity,
                    self.proxy,
                    &*self.host,
                    self.identity_in_use,
                ),
                kind,
                smsid,
                now,
            ),
            None => build_request(config, &identity, self.device.agent_type, kind, smsid, now),
        }
        .map_err(DriverError::Build)?;
        let params = PostParams {
            endpoint: endpoint::CLIENT_REGISTRATION,
            reply_mode: ReplyMode::Sync,
            source_id: None,
            message_id,
            now,
            hooks: None,
        };
        let post = Post::new(config, params, &request)
            .map_err(|_| DriverError::Build(BuildError::Overflow))?;
        let outcome =
            out_of_line(pin!(attempt(self.connector, &post, self.buffers.exchange))).await;
        let now = self.clock.now();
        let event = match outcome {
            Ok(reply) => {
                let event = self.agent.on_registration_reply(now, &reply);
                if matches!(event, RegistrationEvent::Discarded(..)) {
                    self.host
                        .event(&Event::RegistrationFailed(AttemptFailure::Unconfirmed));
                }
                event
            }
            Err(failure) => {
                self.host.event(&Event::RegistrationFailed(failure));
                self.agent
                    .on_registration_failure(now, failure.is_refusal())
            }
        };
        if let Some(state) = event.persist() {
            self.keep_registration(state)?;
        }
        if let RegistrationEvent::Registered(id) = event {
            if self.client_id.as_ref().is_some_and(|c| c.smsid() != id) {
                self.client_id = None;
            }
        }
        self.host.event(&Event::Registration(event));
        if let RegistrationEvent::CertificateReset(_) = event {
            if self.host.makes_new_identity_between_steps() {
                self.new_identity_due = true;
            } else {
                self.make_new_identity(now);
            }
        }
        Ok(())
    }

    /// Persist `state`; while a new identity waits to be stored, a state that names an SMSID
    /// for it (the site knows it now) is stored with it, in place of the old identity. Any
    /// other state leaves the old identity stored: a restart then asks the site about it.
    fn keep_registration(&mut self, state: RegistrationState) -> Result<(), DriverError<F::Error>> {
        let known = matches!(
            state,
            RegistrationState::Registered(_) | RegistrationState::Pending(_)
        );
        if self.identity_in_use == (IdentityInUse::New { stored: false }) && known {
            self.host
                .store_new_identity(self.store, state)
                .map_err(|_| DriverError::Persist)?;
            self.identity_in_use = IdentityInUse::New { stored: true };
            self.host.event(&Event::NewIdentityStored);
            return Ok(());
        }
        self.host
            .persist(self.store, state)
            .map_err(|_| DriverError::Persist)
    }

    /// The site answered CertificateReset: have the host make a new key and certificate and
    /// register them at once; without them the registrar's backoff stands.
    fn make_new_identity(&mut self, now: UnixTime) {
        if !self.host.make_new_identity(now) {
            self.host.event(&Event::NewIdentityUnavailable);
            return;
        }
        self.identity_in_use = IdentityInUse::New { stored: false };
        self.client_id = None;
        let fallback = proposed_smsid(registered_cert(
            self.device.identity,
            self.proxy,
            &*self.host,
            self.identity_in_use,
        ));
        self.agent.begin_new_identity(fallback);
        self.host.event(&Event::NewIdentityMade);
    }

    // Out of line: its record scratch and report builders stay out of the step's poll frame,
    // which sits under every signing chain.
    #[inline(never)]
    fn queue(
        &mut self,
        kind: ReportKind,
        smsid: Smsid,
        supersedes: Option<crate::store::QueuedMessage>,
        now: UnixTime,
    ) -> Result<(), DriverError<F::Error>> {
        let meta = MessageMeta {
            message_id: Guid::random(self.rng),
            endpoint: kind.endpoint(),
            reply_mode: ReplyMode::Async,
            sent_time: now,
            source_id: Some(smsid),
        };
        let identity = ReportIdentity::new(smsid, self.device.config.netbios_name);
        let mut result: Option<Result<crate::store::QueuedMessage, StoreError<F::Error>>> = None;
        {
            let store = &mut *self.store;
            let mut put = |body: &dyn Emit| {
                if result.is_none() {
                    let mut scratch = [0u8; STORE_SCRATCH];
                    result = Some(store.enqueue_tracked(&meta, body, &mut scratch));
                }
            };
            match kind {
                ReportKind::OnlineStatus => {
                    let status = StatusMessage {
                        message_type: crate::profile::ONLINE_STATUS_TYPE,
                        smsid,
                        machine_name: self.device.config.netbios_name,
                        site_code: self.device.config.site_code,
                        time: now.to_datetime(),
                        properties: &[
                            ("Component", crate::profile::AGENT_IDENTITY),
                            ("Version", crate::profile::AGENT_VERSION),
                        ],
                        qualifiers: &[],
                    };
                    put(&status);
                }
                ReportKind::Heartbeat | ReportKind::Inventory => {
                    self.host.report(kind, identity, now, &mut put);
                }
            }
        }
        let outcome = match result {
            Some(Ok(record)) => {
                let superseded = match supersedes {
                    Some(old) => self.store.withdraw(&old)?,
                    None => false,
                };
                Queued::Stored { record, superseded }
            }
            Some(Err(StoreError::QueueFull)) => Queued::NoRoom,
            Some(Err(e)) => return Err(e.into()),
            // The host had nothing to report: the schedule moves on.
            None => Queued::Nothing,
        };
        self.agent.on_queued(now, kind, outcome, self.store.len());
        match outcome {
            Queued::Stored { superseded, .. } => self.host.event(&Event::Queued {
                kind,
                message_id: meta.message_id,
                superseded,
                queued: self.store.len(),
            }),
            Queued::NoRoom => self.host.event(&Event::NoRoom(kind)),
            Queued::Nothing => {}
        }
        Ok(())
    }

    async fn deliver(&mut self, smsid: Smsid) -> Result<(), DriverError<F::Error>> {
        let Some(msg) = self.store.peek()? else {
            self.agent.set_queued(0);
            return Ok(());
        };
        let meta = msg.meta;
        let identity = signing_identity(
            self.device.identity,
            &*self.host,
            self.identity_in_use,
            self.proxy.is_some(),
        );
        let client_id = cached_client_id(&mut self.client_id, identity.signer, smsid)?;
        let signer = message_signer(identity, client_id, self.proxy);
        // SentTime is restamped (the MP checks a window; the header is not signed); the message
        // ID stays the original one so that a retry is recognised.
        let params = MessageParams {
            endpoint: meta.endpoint.name(),
            reply_mode: meta.reply_mode,
            message_id: meta.message_id,
            now: self.clock.now(),
        };
        let outcome = {
            let body = self.store.body(&msg);
            // A report queued under an SMSID the site has since replaced goes out under the
            // new one.
            let rewritten;
            let emit: &dyn Emit = match meta.source_id {
                Some(old) if old != smsid => {
                    rewritten = SmsidRewrite::new(&body, old, smsid);
                    &rewritten
                }
                _ => &body,
            };
            // Discovery and inventory go as body + attachment (docs/protocol.md §5); the rest as one body.
            let framed = if travels_attached(meta.endpoint) {
                Some(
                    AttachedReport::new(emit)
                        .map_err(|_| DriverError::Sign(SignedMessageError::Body))?,
                )
            } else {
                None
            };
            let signed = match &framed {
                Some(report) => SignedMessage::new_attached(
                    self.device.config,
                    &signer,
                    params,
                    report,
                    attachment_name(
                        self.device.config.site_generation.attachment_naming(),
                        meta.endpoint,
                        meta.message_id,
                    ),
                ),
                None => SignedMessage::new(self.device.config, &signer, params, emit),
            }
            .map_err(DriverError::Sign)?;
            let result = out_of_line(pin!(send_message(
                self.connector,
                &signed,
                self.buffers.exchange
            )))
            .await;
            if let Some(fault) = body.fault() {
                return Err(DriverError::QueueRead(fault));
            }
            result
        };
        let now = self.clock.now();
        match outcome {
            Ok(()) => {
                self.store.pop(&msg)?;
                self.agent.on_delivered(now, &msg, self.store.len());
                self.host.event(&Event::Delivered {
                    endpoint: meta.endpoint,
                    message_id: meta.message_id,
                });
            }
            Err(error) => {
                let failure = if error.is_retryable() {
                    Failure::Retryable
                } else {
                    Failure::Refused
                };
                let next = self.agent.on_delivery_failed(now, failure);
                if next == Refusal::RefusedForGood {
                    {
                        let body = self.store.body(&msg);
                        self.host
                            .file_refused(&meta, &body, error)
                            .map_err(|_| DriverError::Persist)?;
                    }
                    self.store.pop(&msg)?;
                    self.agent.on_filed(&msg, self.store.len());
                    self.host.event(&Event::Refused {
                        endpoint: meta.endpoint,
                        message_id: meta.message_id,
                        error,
                    });
                } else {
                    self.host.event(&Event::DeliveryFailed { error, next });
                }
            }
        }
        Ok(())
    }

    async fn poll_policy(&mut self, smsid: Smsid) -> Result<(), DriverError<F::Error>> {
        let config = self.device.config;
        let now = self.clock.now();
        let mut kept = 0usize;
        // The request and its signature are gone before the body fetches below: what an await
        // point holds stays in the step's future.
        let answer = {
            let identity = signing_identity(
                self.device.identity,
                &*self.host,
                self.identity_in_use,
                self.proxy.is_some(),
            );
            let client_id = cached_client_id(&mut self.client_id, identity.signer, smsid)?;
            let signer = message_signer(identity, client_id, self.proxy);
            let request = request_assignments(config, smsid, self.server_cookie.as_str());
            let signed = sign_message(config, &signer, &request, Guid::random(self.rng), now)
                .map_err(DriverError::Sign)?;
            let slots = &mut *self.buffers.policies;
            // The request echoes the stored cookie while the reply's arrives: two values.
            let mut next_cookie = ServerCookie::new();
            let mut keep = |a: &PolicyAssignment<'_>| {
                let Some(slot) = slots.get_mut(kept) else {
                    return;
                };
                let Ok(hash) = a.sha256() else {
                    warn!("a policy assignment with a malformed PolicyHash was skipped");
                    return;
                };
                if copy_text(&a.policy_id, &mut slot.id)
                    && copy_text(&a.policy_version, &mut slot.version)
                    && copy_text(&a.location, &mut slot.location)
                {
                    slot.hash = hash;
                    kept += 1;
                } else {
                    warn!("a policy assignment too long to keep was skipped");
                }
            };
            // Bound, not the block's value: the pinned future must go before the request does.
            let answer = out_of_line(pin!(request_policy(
                self.connector,
                &signed,
                self.buffers.exchange,
                self.buffers.policy_scratch,
                &mut next_cookie,
                &mut keep,
            )))
            .await;
            answer.map(|n| (n, next_cookie))
        };
        let now = self.clock.now();
        let outcome = match answer {
            Ok((n, cookie)) => {
                self.server_cookie = cookie;
                self.host.event(&Event::PolicyAssignments(n));
                PolicyOutcome::Done
            }
            Err(PolicyRequestError::EmptyReply) => {
                self.host.event(&Event::PolicyEmpty);
                PolicyOutcome::Empty
            }
            Err(e) => {
                self.host.event(&Event::PolicyFailed(e));
                match e {
                    PolicyRequestError::Send(s) if s.is_retryable() => {
                        PolicyOutcome::Failed(Failure::Retryable)
                    }
                    PolicyRequestError::Send(_) => PolicyOutcome::Failed(Failure::Refused),
                    // A reply we cannot use is not a refusal: nothing applied, asked again
                    // at the next poll.
                    _ => PolicyOutcome::Done,
                }
            }
        };
        self.agent.on_policy(now, outcome);
        if outcome != PolicyOutcome::Done {
            return Ok(());
        }
        for i in 0..kept {
            out_of_line(pin!(self.fetch_one(i, smsid))).await?;
        }
        Ok(())
    }

    async fn fetch_one(&mut self, i: usize, smsid: Smsid) -> Result<(), DriverError<F::Error>> {
        let Some(slot) = self.buffers.policies.get(i) else {
            return Ok(());
        };
        if self.host.policy_applied(&slot.id, &slot.version) {
            return Ok(());
        }
        let identity = signing_identity(
            self.device.identity,
            &*self.host,
            self.identity_in_use,
            self.proxy.is_some(),
        );
        let request = policy_body_request(
            self.device.config,
            identity.signer,
            smsid,
            &slot.location,
            self.clock.now(),
        )?;
        let mut check = HashingSink {
            inner: self.host.policy_body(),
            hash: Sha256::new(),
        };
        let fetched = out_of_line(pin!(fetch_policy_body(
            self.connector,
            &request,
            self.buffers.exchange,
            &mut check
        )))
        .await;
        let got: [u8; 32] = check.hash.finalize().into();
        self.fetched(i, smsid, fetched, got)
    }

    /// What a body fetch came to: kept and acknowledged, or refused. Out of line: the
    /// acknowledgement's builders and record scratch stay out of the fetch's poll frame.
    #[inline(never)]
    fn fetched(
        &mut self,
        i: usize,
        smsid: Smsid,
        fetched: Result<usize, FetchError>,
        got: [u8; 32],
    ) -> Result<(), DriverError<F::Error>> {
        let Some(slot) = self.buffers.policies.get(i) else {
            return Ok(());
        };
        let len = match fetched {
            Ok(len) => len,
            Err(error) => {
                self.host.policy_done(&slot.id, &slot.version, 0, false);
                self.host.event(&Event::PolicyFetchFailed {
                    id: &slot.id,
                    error,
                });
                return Ok(());
            }
        };
        if let Some(expected) = slot.hash.filter(|h| *h != got) {
            self.host.policy_done(&slot.id, &slot.version, len, false);
            self.host.event(&Event::PolicyHashMismatch {
                id: &slot.id,
                expected,
                got,
            });
            return Ok(());
        }
        if !self.host.policy_done(&slot.id, &slot.version, len, true) {
            return Ok(());
        }
        self.host.event(&Event::PolicyApplied {
            id: &slot.id,
            version: &slot.version,
            bytes: len,
        });
        // Acknowledged with a state message, queued so that it survives an outage.
        // The topic names the policy and the version applied: `{id}.{version}`.
        let mut topic: heapless::String<{ MAX_POLICY_ID + 1 + MAX_POLICY_VERSION }> =
            heapless::String::new();
        let named = topic.push_str(&slot.id).is_ok()
            && topic.push('.').is_ok()
            && topic.push_str(&slot.version).is_ok();
        if !named {
            topic.clear();
        }
        match self.enqueue_state(smsid, &topic, POLICY_TOPIC_TYPE, POLICY_STATE_APPLIED) {
            Ok(()) => {}
            Err(StoreError::QueueFull) => {
                warn!("queue full: a policy acknowledgement was not made")
            }
            Err(e) => return Err(e.into()),
        }
        self.agent.set_queued(self.store.len());
        Ok(())
    }

    /// Queue a state message: `state` of `topic` (of `topic_type`), e.g. the outcome of a
    /// firmware update, delivered in order with the other reports and kept through an outage.
    /// It names the device by its SMSID, so it needs one the site gave (registered or pending).
    pub fn queue_state_message(
        &mut self,
        topic: &str,
        topic_type: u32,
        state: u32,
    ) -> Result<(), StateMessageError<F::Error>> {
        let smsid = self.agent.smsid().ok_or(StateMessageError::NotRegistered)?;
        if topic.len() > MAX_STATE_TOPIC {
            return Err(StateMessageError::TopicTooLong { len: topic.len() });
        }
        self.enqueue_state(smsid, topic, topic_type, state)
            .map_err(StateMessageError::Store)?;
        self.agent.set_queued(self.store.len());
        Ok(())
    }

    /// Queue a report the caller made outside the agent's schedule (an ISV proxy's device sends
    /// its heartbeat, inventory, status and state messages when it chooses), to be delivered in
    /// order with the rest and kept through an outage. `body` names the device by
    /// [`Agent::smsid`]; a registration afresh sends it under the SMSID the site then gives.
    ///
    /// The queue's rules hold as for scheduled reports: a heartbeat supersedes an unsent older
    /// heartbeat and a full inventory an unsent older one; when the queue has no room the unsent
    /// one of the kind stands for the new one ([`ReportQueued::UnsentStandsFor`]), and anything
    /// else is refused with [`QueueReportError::NoRoom`] (counted in
    /// [`crate::agent::lifecycle::Counts::no_room`]).
    pub fn queue_report(
        &mut self,
        report: CallerReport,
        body: &dyn Emit,
    ) -> Result<ReportQueued, QueueReportError<F::Error>> {
        let smsid = self.agent.smsid().ok_or(QueueReportError::NotRegistered)?;
        let now = self.clock.now();
        let meta = MessageMeta {
            message_id: Guid::random(self.rng),
            endpoint: report.endpoint(),
            reply_mode: ReplyMode::Async,
            sent_time: now,
            source_id: Some(smsid),
        };
        let mut scratch = [0u8; STORE_SCRATCH];
        let stored = self.store.enqueue_tracked(&meta, body, &mut scratch);
        let Some(kind) = report.superseding_kind() else {
            return match stored {
                Ok(_) => {
                    self.agent.on_queued_message(self.store.len());
                    Ok(ReportQueued::Stored {
                        message_id: meta.message_id,
                        superseded: false,
                    })
                }
                Err(StoreError::QueueFull) => {
                    self.agent.on_no_room(report.endpoint().name());
                    Err(QueueReportError::NoRoom)
                }
                Err(e) => Err(QueueReportError::Store(e)),
            };
        };
        let outcome = match stored {
            Ok(record) => {
                let superseded = match self.agent.unsent(kind) {
                    Some(old) => self.store.withdraw(&old).map_err(QueueReportError::Store)?,
                    None => false,
                };
                Queued::Stored { record, superseded }
            }
            Err(StoreError::QueueFull) => Queued::NoRoom,
            Err(e) => return Err(QueueReportError::Store(e)),
        };
        let stands_in = self.agent.unsent(kind).is_some();
        self.agent.on_queued(now, kind, outcome, self.store.len());
        match outcome {
            Queued::Stored { superseded, .. } => Ok(ReportQueued::Stored {
                message_id: meta.message_id,
                superseded,
            }),
            _ if stands_in => Ok(ReportQueued::UnsentStandsFor),
            _ => Err(QueueReportError::NoRoom),
        }
    }

    fn enqueue_state(
        &mut self,
        smsid: Smsid,
        topic: &str,
        topic_type: u32,
        state: u32,
    ) -> Result<(), StoreError<F::Error>> {
        let now = self.clock.now();
        let identity = ReportIdentity::new(smsid, self.device.config.netbios_name);
        let message = StateMessage::new(identity, now.to_datetime(), topic, topic_type, 0, state);
        let meta = MessageMeta {
            message_id: Guid::random(self.rng),
            endpoint: Endpoint::Relay,
            reply_mode: ReplyMode::Async,
            sent_time: now,
            source_id: Some(smsid),
        };
        let mut scratch = [0u8; STORE_SCRATCH];
        self.store.enqueue(&meta, &message, &mut scratch)
    }
}

/// What a report queued with [`Driver::queue_report`] is: where it goes and what it supersedes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CallerReport {
    /// A heartbeat discovery record (`MP_DdrEndpoint`): supersedes an unsent older one.
    Heartbeat,
    /// A full hardware inventory (`MP_HinvEndpoint`): supersedes an unsent older one.
    FullInventory,
    /// A status message (`StatusReceiver`).
    Status,
    /// A state message (the relay endpoint).
    State,
}

impl CallerReport {
    /// The endpoint it goes to.
    pub fn endpoint(self) -> Endpoint {
        match self {
            Self::Heartbeat => Endpoint::Ddr,
            Self::FullInventory => Endpoint::Hinv,
            Self::Status => Endpoint::Status,
            Self::State => Endpoint::Relay,
        }
    }

    /// The scheduled kind whose unsent report it supersedes, if any.
    fn superseding_kind(self) -> Option<ReportKind> {
        match self {
            Self::Heartbeat => Some(ReportKind::Heartbeat),
            Self::FullInventory => Some(ReportKind::Inventory),
            Self::Status | Self::State => None,
        }
    }
}

/// A report [`Driver::queue_report`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReportQueued {
    /// Queued under this message ID; `superseded`: an unsent older one of its kind was withdrawn.
    Stored {
        /// Its message ID (the MP's message ID once delivered).
        message_id: Guid,
        /// Whether it replaced an unsent older report of its kind.
        superseded: bool,
    },
    /// The queue had no room and an unsent report of the kind is queued: that one stands for
    /// this one (counted as superseded).
    UnsentStandsFor,
}

/// A report could not be queued ([`Driver::queue_report`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum QueueReportError<E> {
    /// The site has given no SMSID yet to name the device by.
    NotRegistered,
    /// The queue has no room for it and nothing queued stands for it (delivered messages make
    /// room).
    NoRoom,
    /// The store failed.
    Store(StoreError<E>),
}

impl<E: NorFlashError> core::fmt::Display for QueueReportError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotRegistered => {
                f.write_str("a report needs the SMSID the site gives at registration: none yet")
            }
            Self::NoRoom => f.write_str(
                "the queue has no room for the report until queued messages are delivered",
            ),
            Self::Store(e) => write!(f, "the report could not be queued: {e}"),
        }
    }
}

impl<E: NorFlashError> core::error::Error for QueueReportError<E> {}

/// Longest topic [`Driver::queue_state_message`] takes (a policy acknowledgement's
/// `{id}.{version}` fits).
pub const MAX_STATE_TOPIC: usize = MAX_POLICY_ID + 1 + MAX_POLICY_VERSION;

/// A state message could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StateMessageError<E> {
    /// The site has given no SMSID yet to name the device by.
    NotRegistered,
    /// The topic is longer than [`MAX_STATE_TOPIC`] bytes.
    TopicTooLong {
        /// Its length.
        len: usize,
    },
    /// The queue refused it (full: delivered reports make room) or failed.
    Store(StoreError<E>),
}

impl<E: NorFlashError> core::fmt::Display for StateMessageError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotRegistered => f.write_str(
                "a state message needs the SMSID the site gives at registration: none yet",
            ),
            Self::TopicTooLong { len } => write!(
                f,
                "a state message topic is at most {MAX_STATE_TOPIC} bytes, this one {len}"
            ),
            Self::Store(e) => write!(f, "the state message could not be queued: {e}"),
        }
    }
}

impl<E: NorFlashError> core::error::Error for StateMessageError<E> {}

/// The signed request for a policy body. Out of line: it signs, and the request it builds is
/// larger than the frame the signing chain would otherwise run under.
#[inline(never)]
fn policy_body_request<'c, E>(
    config: &AgentConfig<'c>,
    signer: &dyn crate::sign::Signer,
    smsid: Smsid,
    location: &str,
    now: UnixTime,
) -> Result<PolicyBodyRequest<'c>, DriverError<E>> {
    PolicyBodyRequest::new(config, signer, smsid, location, now).map_err(DriverError::PolicyGet)
}

/// Who signs a message: the device itself, or the ISV proxy for it (`ProxySMSID`).
fn message_signer<'s>(
    identity: SigningIdentity<'s>,
    client_id: &'s ClientIdSignature,
    proxy: Option<ThroughProxy<'_>>,
) -> MessageSigner<'s> {
    match proxy {
        Some(p) => MessageSigner::proxy(identity, client_id, p.proxy_smsid),
        None => MessageSigner::client(identity, client_id),
    }
}

/// The cached `ClientIDSignature` for `smsid`, made first if the cache holds none or another
/// SMSID's. Lent rather than copied: it is as large as the longest signature.
// Out of line: it may sign, and its frame then sits under the signing chain.
#[inline(never)]
fn cached_client_id<'c, E>(
    cache: &'c mut Option<ClientIdSignature>,
    signer: &dyn crate::sign::Signer,
    smsid: Smsid,
) -> Result<&'c ClientIdSignature, DriverError<E>> {
    if cache.as_ref().map(ClientIdSignature::smsid) != Some(smsid) {
        *cache = Some(ClientIdSignature::compute(signer, smsid).map_err(DriverError::ClientId)?);
    }
    cache
        .as_ref()
        .ok_or(DriverError::ClientId(SignError::Crypto))
}

fn copy_text<const N: usize>(
    t: &crate::wire::xml_reader::XmlText<'_>,
    out: &mut heapless::String<N>,
) -> bool {
    let mut buf = [0u8; MAX_POLICY_LOCATION];
    out.clear();
    match t.unescape_into(&mut buf) {
        Ok(s) => out.push_str(s).is_ok(),
        Err(_) => false,
    }
}

/// Passes a policy body on and hashes it on the way.
struct HashingSink<'s> {
    inner: &'s mut dyn Sink,
    hash: Sha256,
}

impl Sink for HashingSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.hash.update(bytes);
        self.inner.write(bytes)
    }
}

#[cfg(test)]
mod tests;
