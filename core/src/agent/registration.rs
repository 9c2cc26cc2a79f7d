//! Registration life cycle (docs/protocol.md §4): register, confirm the SMSID the reply named
//! before keeping it, wait for approval with confirmations, retry with exponential backoff on
//! status 2 or transport trouble, and believe a rejection only when repeated (then re-ask much
//! later). Pure: time comes in.
//!
//! The site's reply is unsigned, so no single reply is trusted with a lasting decision: an SMSID
//! is kept only once a signed `RequestType="Confirmation"` naming it is answered with that same
//! SMSID (the site checks it against our certificate); a pending SMSID whose confirmations are
//! refused is dropped for a fresh registration; a rejection must come twice in a row.

use crate::config::{AgentConfig, SiteGeneration};
use crate::guid::{Guid, Smsid};
use crate::profile;
use crate::sign::Signer;
use crate::time::UnixTime;
use crate::wire::registration::{
    AgentType, BuildError, ConfirmationForm, RegistrationData, RegistrationRequest, RequestType,
};
use crate::wire::reply::{RegistrationResponse, RegistrationStatus, StatusNumbering};

/// Where the appliance stands with the site: what is persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RegistrationState {
    /// No SMSID yet.
    Unregistered,
    /// SMSID issued and confirmed, approval pending: no policy or inventory until approved.
    Pending(Smsid),
    /// Registered and approved.
    Registered(Smsid),
    /// The site refused the registration (status 3, twice in a row) at this time. The agent
    /// registers again [`profile::REJECTION_RECHECK_SECS`] later (or at once after
    /// [`Registrar::reset`]).
    Rejected(UnixTime),
}

/// What the caller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RegistrarAction {
    /// Send a request of this type (with the SMSID for confirmations).
    Send(RequestType, Option<Smsid>),
    /// Nothing to do before this time.
    WaitUntil(UnixTime),
    /// Registered: use this SMSID from now on.
    Done(Smsid),
    /// Rejected by the site; ask again at this time.
    Rejected(UnixTime),
}

/// What a reply (or failure) changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RegistrationEvent {
    /// A registration reply (status 0 or 1) named this SMSID; a confirmation checks it next.
    /// Nothing to persist yet.
    Issued(Smsid),
    /// Status 0, confirmed.
    Registered(Smsid),
    /// Status 1, confirmed: approval pending; confirm again at the given time.
    PendingApproval(Smsid, UnixTime),
    /// Status 2, an unusable reply or a transport failure: try again at the given time.
    RetryAt(UnixTime),
    /// The site did not confirm the SMSID a registration reply named (a corrupted or forged
    /// reply): it is dropped, never persisted; register again at the given time.
    Discarded(Smsid, UnixTime),
    /// The site refused confirmations of this pending SMSID
    /// [`profile::CONFIRMATION_REFUSALS_BEFORE_REREGISTER`] times: it is dropped (persist
    /// `Unregistered`) and the agent registers afresh at the given time.
    Abandoned(Smsid, UnixTime),
    /// A first status 3: not believed yet, asked again at the given time.
    RejectedOnce(UnixTime),
    /// Status 3 again: rejected at this time (persist it).
    Rejected(UnixTime),
    /// The site asked the client to reset (current sites' Status 2): the SMSID is dropped
    /// (persist `Unregistered`) and the agent registers afresh at the given time.
    Reset(UnixTime),
    /// The site says the certificate conflicts with another client's (current sites' Status 4):
    /// a new key and certificate must be made before registering again; asked again at the
    /// given time meanwhile.
    CertificateReset(UnixTime),
}

impl core::fmt::Display for RegistrationState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unregistered => f.write_str("not registered"),
            Self::Pending(id) => write!(f, "{id}, pending approval"),
            Self::Registered(id) => write!(f, "registered as {id}"),
            Self::Rejected(at) => write!(f, "rejected by the site at {at}"),
        }
    }
}

impl core::fmt::Display for RegistrationEvent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Issued(id) => write!(f, "the site named {id}; confirming it"),
            Self::Registered(id) => write!(f, "registered as {id}"),
            Self::PendingApproval(id, t) => write!(f, "{id} pending approval; asking again at {t}"),
            Self::RetryAt(t) => write!(f, "trying again at {t}"),
            Self::Discarded(id, t) => {
                write!(
                    f,
                    "the site did not confirm {id}: dropped; registering again at {t}"
                )
            }
            Self::Abandoned(id, t) => {
                write!(
                    f,
                    "the site no longer knows {id}: registering afresh at {t}"
                )
            }
            Self::RejectedOnce(t) => write!(f, "rejected once; asking again at {t}"),
            Self::Rejected(t) => write!(f, "rejected by the site at {t}"),
            Self::Reset(t) => write!(f, "the site asked for a reset: registering afresh at {t}"),
            Self::CertificateReset(t) => write!(
                f,
                "the site needs a new certificate for this client; asking again at {t}"
            ),
        }
    }
}

impl RegistrationEvent {
    /// The state to persist after this event, if it changed what is persisted.
    pub fn persist(&self) -> Option<RegistrationState> {
        match *self {
            Self::Registered(id) => Some(RegistrationState::Registered(id)),
            Self::PendingApproval(id, _) => Some(RegistrationState::Pending(id)),
            Self::Abandoned(..) | Self::Reset(_) => Some(RegistrationState::Unregistered),
            Self::Rejected(at) => Some(RegistrationState::Rejected(at)),
            Self::Issued(_)
            | Self::RetryAt(_)
            | Self::Discarded(..)
            | Self::RejectedOnce(_)
            | Self::CertificateReset(_) => None,
        }
    }
}

/// The registration state machine.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Registrar {
    state: RegistrationState,
    /// An SMSID a registration reply named, awaiting its confirmation (never persisted).
    candidate: Option<Smsid>,
    failures: u32,
    /// Consecutive refused confirmations of the `Pending` SMSID.
    refusals: u32,
    /// Consecutive status-3 replies not yet believed.
    rejections: u32,
    next_attempt: UnixTime,
    /// How long a believed rejection stands before the agent asks again.
    rejection_recheck_secs: u64,
    /// The SMSID this agent proposes in its registrations ([`proposed_smsid`]).
    proposed: Option<Smsid>,
    /// How the site numbers `Status` (from its generation).
    numbering: StatusNumbering,
}

impl Registrar {
    /// Start from a persisted state (`Unregistered` on first run). A `Registered` SMSID loaded
    /// from storage may be started as `Pending` to have the site confirm it again.
    pub fn new(state: RegistrationState) -> Self {
        Self {
            state,
            candidate: None,
            failures: 0,
            refusals: 0,
            rejections: 0,
            next_attempt: UnixTime(0),
            rejection_recheck_secs: profile::REJECTION_RECHECK_SECS,
            proposed: None,
            numbering: StatusNumbering::default(),
        }
    }

    /// Read `Status` as a site of `generation` numbers it (current sites by default). The
    /// runners ([`crate::io::register_as`], [`crate::io::driver::Driver`]) apply the
    /// configuration's [`AgentConfig::site_generation`], so a caller sets it there.
    pub fn with_site_generation(mut self, generation: SiteGeneration) -> Self {
        self.numbering = generation.status_numbering();
        self
    }

    /// Propose `smsid` in every registration (`Data/@SMSID`), as real clients do (docs/protocol.md §4): a
    /// reply that hands back exactly this SMSID is final without a confirmation, since a
    /// corrupted or forged reply cannot name it by chance.
    pub fn with_proposed_smsid(mut self, smsid: Smsid) -> Self {
        self.proposed = Some(smsid);
        self
    }

    /// The SMSID proposed in registrations, if any.
    pub fn proposed(&self) -> Option<Smsid> {
        self.proposed
    }

    /// Re-ask a believed rejection after `secs` instead of
    /// [`profile::REJECTION_RECHECK_SECS`] (at least one second).
    pub fn with_rejection_recheck(mut self, secs: u64) -> Self {
        self.rejection_recheck_secs = secs.max(1);
        self
    }

    /// When a believed rejection is asked again, if the site rejected this agent.
    pub fn rejection_recheck_at(&self) -> Option<UnixTime> {
        match self.state {
            RegistrationState::Rejected(at) => Some(at.plus(self.rejection_recheck_secs)),
            _ => None,
        }
    }

    /// Ask again at once: a believed rejection is forgotten (an administrator approved the
    /// device since), a backoff or approval wait is cut short. A registered agent is unchanged.
    pub fn retry_now(&mut self) {
        if let RegistrationState::Rejected(_) = self.state {
            self.reset();
        } else {
            self.next_attempt = UnixTime(0);
        }
    }

    /// The current state (persist it after every event that [`RegistrationEvent::persist`]s).
    pub fn state(&self) -> RegistrationState {
        self.state
    }

    /// The SMSID awaiting confirmation, if any.
    pub fn candidate(&self) -> Option<Smsid> {
        self.candidate
    }

    /// Consecutive failed attempts.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Pending approval with nothing in doubt: no SMSID awaiting confirmation, no refused
    /// confirmation and no unbelieved rejection. Only then may a caller leave the wait to later.
    pub fn waiting_for_approval(&self) -> bool {
        matches!(self.state, RegistrationState::Pending(_))
            && self.candidate.is_none()
            && self.refusals == 0
            && self.rejections == 0
    }

    /// Forget a rejection and start over.
    pub fn reset(&mut self) {
        let (proposed, numbering) = (self.proposed, self.numbering);
        *self = Self::new(RegistrationState::Unregistered)
            .with_rejection_recheck(self.rejection_recheck_secs);
        self.numbering = numbering;
        self.proposed = proposed;
    }

    /// The next action at time `now`.
    pub fn poll(&self, now: UnixTime) -> RegistrarAction {
        if let RegistrationState::Rejected(at) = self.state {
            // A clock that went back behind the stamp cannot date it: ask again (one request).
            let recheck = at.plus(self.rejection_recheck_secs);
            if now < recheck && now >= at {
                return RegistrarAction::Rejected(recheck);
            }
        }
        match (self.state, self.candidate) {
            (RegistrationState::Registered(id), _) => RegistrarAction::Done(id),
            _ if now < self.next_attempt => RegistrarAction::WaitUntil(self.next_attempt),
            (_, Some(id)) | (RegistrationState::Pending(id), None) => {
                RegistrarAction::Send(RequestType::Confirmation, Some(id))
            }
            (RegistrationState::Unregistered | RegistrationState::Rejected(_), None) => {
                RegistrarAction::Send(RequestType::Registration, self.proposed)
            }
        }
    }

    /// A `ClientRegistrationResponse` arrived (to the request [`Self::poll`] asked for).
    pub fn on_response(
        &mut self,
        now: UnixTime,
        reply: &RegistrationResponse,
    ) -> RegistrationEvent {
        let status = reply.status_in(self.numbering);
        match status {
            // A current site's Error is "blocked, or the message was incorrect": believed and
            // kept like a rejection (re-asked after the recheck interval), not retried at once.
            RegistrationStatus::Rejected | RegistrationStatus::Error => {
                return self.on_rejection(now)
            }
            RegistrationStatus::Reset => {
                self.reset();
                self.next_attempt = now.plus(profile::RETRY_BACKOFF_FIRST_SECS);
                return RegistrationEvent::Reset(self.next_attempt);
            }
            RegistrationStatus::CertificateReset => {
                self.candidate = None;
                self.failures = self.failures.saturating_add(1);
                self.next_attempt = now.plus(profile::RETRY_BACKOFF_MAX_SECS);
                return RegistrationEvent::CertificateReset(self.next_attempt);
            }
            _ => {}
        }
        self.rejections = 0;
        // Which SMSID the request named: the candidate, the pending one, or none (a registration).
        let asked = match (self.candidate, self.state) {
            (Some(id), _) | (None, RegistrationState::Pending(id)) => Some(id),
            _ => None,
        };
        let confirmed = match (status, reply.smsid, asked) {
            (RegistrationStatus::Registered | RegistrationStatus::Pending, Some(id), _) => id,
            // Real MPs may answer a confirmation without an SMSID: it is the one asked about
            // (docs/protocol.md §4).
            (RegistrationStatus::Registered | RegistrationStatus::Pending, None, Some(id)) => id,
            // Status 2, unknown statuses, and a registration answered 0/1 without an SMSID.
            _ => return self.on_failure(now),
        };
        match asked {
            // The site took the SMSID we proposed: final (real clients do not confirm it).
            None if self.proposed == Some(confirmed) => {
                self.candidate = None;
                self.failures = 0;
                self.refusals = 0;
                if status == RegistrationStatus::Registered {
                    self.state = RegistrationState::Registered(confirmed);
                    RegistrationEvent::Registered(confirmed)
                } else {
                    self.state = RegistrationState::Pending(confirmed);
                    self.next_attempt = now.plus(profile::PENDING_RECHECK_SECS);
                    RegistrationEvent::PendingApproval(confirmed, self.next_attempt)
                }
            }
            None => {
                // A registration reply: check it with a confirmation at once.
                self.candidate = Some(confirmed);
                self.next_attempt = now;
                RegistrationEvent::Issued(confirmed)
            }
            // The confirmation named another SMSID than we asked about: not an agreement.
            Some(id) if id != confirmed => self.on_disagreement(now),
            Some(id) => {
                self.candidate = None;
                self.failures = 0;
                self.refusals = 0;
                if status == RegistrationStatus::Registered {
                    self.state = RegistrationState::Registered(id);
                    RegistrationEvent::Registered(id)
                } else {
                    self.state = RegistrationState::Pending(id);
                    self.next_attempt = now.plus(profile::PENDING_RECHECK_SECS);
                    RegistrationEvent::PendingApproval(id, self.next_attempt)
                }
            }
        }
    }

    /// The attempt failed (transport, HTTP status, empty or malformed reply): back off. An SMSID
    /// awaiting confirmation is dropped.
    pub fn on_failure(&mut self, now: UnixTime) -> RegistrationEvent {
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = now.plus(backoff(self.failures));
        match self.candidate.take() {
            Some(id) => RegistrationEvent::Discarded(id, self.next_attempt),
            None => RegistrationEvent::RetryAt(self.next_attempt),
        }
    }

    /// The site refused the request (HTTP 4xx, or a 200 with an empty body: docs/protocol.md §4): for a
    /// confirmation of the `Pending` SMSID this says the site does not know it. After
    /// [`profile::CONFIRMATION_REFUSALS_BEFORE_REREGISTER`] such refusals in a row the SMSID is
    /// dropped and the agent registers afresh. Refusals of that SMSID do not count as failures
    /// (they end in a fresh registration, which does), so a caller's give-up bound cannot keep
    /// a persisted pending SMSID stuck. Anything else is an [`Self::on_failure`].
    pub fn on_refusal(&mut self, now: UnixTime) -> RegistrationEvent {
        match (self.state, self.candidate) {
            (RegistrationState::Pending(id), None) => {
                self.refusals = self.refusals.saturating_add(1);
                if self.refusals >= profile::CONFIRMATION_REFUSALS_BEFORE_REREGISTER {
                    self.state = RegistrationState::Unregistered;
                    self.refusals = 0;
                    self.next_attempt = now.plus(profile::RETRY_BACKOFF_FIRST_SECS);
                    RegistrationEvent::Abandoned(id, self.next_attempt)
                } else {
                    self.next_attempt = now.plus(backoff(self.refusals));
                    RegistrationEvent::RetryAt(self.next_attempt)
                }
            }
            _ => self.on_failure(now),
        }
    }

    /// A confirmation was answered with another SMSID than it named.
    fn on_disagreement(&mut self, now: UnixTime) -> RegistrationEvent {
        if self.candidate.is_some() {
            self.on_failure(now)
        } else {
            self.on_refusal(now)
        }
    }

    /// Status 3: believed (and persisted) only when it comes again right after.
    fn on_rejection(&mut self, now: UnixTime) -> RegistrationEvent {
        self.candidate = None;
        self.rejections = self.rejections.saturating_add(1);
        if self.rejections >= profile::REJECTIONS_TO_BELIEVE {
            self.state = RegistrationState::Rejected(now);
            self.rejections = 0;
            self.refusals = 0;
            self.failures = 0;
            RegistrationEvent::Rejected(now)
        } else {
            self.next_attempt = now.plus(profile::REJECTION_SECOND_ASK_SECS);
            RegistrationEvent::RejectedOnce(self.next_attempt)
        }
    }
}

/// The SMSID an agent with certificate `cert_der` proposes: a version-4-shaped GUID from the
/// certificate's SHA-256, so it is made once per identity, needs no storage of its own, and a
/// new certificate (a new identity) proposes a new one.
pub fn proposed_smsid(cert_der: &[u8]) -> Smsid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(cert_der);
    let mut b = [0u8; 16];
    for (d, s) in b.iter_mut().zip(digest.iter()) {
        *d = *s;
    }
    if let Some(v) = b.get_mut(6) {
        *v = (*v & 0x0F) | 0x40;
    }
    if let Some(v) = b.get_mut(8) {
        *v = (*v & 0x3F) | 0x80;
    }
    Smsid(crate::guid::Guid(b))
}

/// Exponential backoff after `n` (≥ 1) failures, capped.
pub(crate) fn backoff(n: u32) -> u64 {
    let shift = n.saturating_sub(1).min(16);
    profile::RETRY_BACKOFF_FIRST_SECS
        .saturating_mul(1u64 << shift)
        .min(profile::RETRY_BACKOFF_MAX_SECS)
}

/// The message IDs of one registrant's registration requests (docs/protocol.md §4): every registration
/// gets a fresh one; a confirmation in the current form goes under the ID of the registration
/// it follows, as the real client's does; one in the 2007 form, or one with no registration
/// before it since start (a stored SMSID), gets a fresh one.
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MessageIds {
    registration: Option<Guid>,
}

impl MessageIds {
    /// The ID of the next request of `request_type`; `fresh` is a new random ID.
    pub fn next(&mut self, form: ConfirmationForm, request_type: RequestType, fresh: Guid) -> Guid {
        match (request_type, form, self.registration) {
            (RequestType::Registration, _, _) => {
                self.registration = Some(fresh);
                fresh
            }
            (RequestType::Confirmation, ConfirmationForm::Current, Some(id)) => id,
            (RequestType::Confirmation, _, _) => fresh,
        }
    }
}

/// The identity a request is signed with.
#[derive(Clone, Copy)]
pub struct SigningIdentity<'a> {
    /// The key.
    pub signer: &'a dyn Signer,
    /// Its certificate (DER), registered as both signing and encryption certificate.
    pub cert_der: &'a [u8],
}

/// Build and sign the request for `action` (`Send` only; other actions yield `None`).
// Kept out of line: LTO otherwise inlines it into the driver's task frame, which then sits
// under the signing chain and raises the board's peak stack (measured in QEMU).
#[inline(never)]
pub fn build_request<'a>(
    config: &AgentConfig<'a>,
    identity: &SigningIdentity<'a>,
    agent_type: AgentType,
    request_type: RequestType,
    smsid: Option<Smsid>,
    now: UnixTime,
) -> Result<RegistrationRequest<'a>, BuildError> {
    let data = RegistrationData {
        hash_algorithm_oid: crate::sign::hash_algorithm_oid(identity.signer),
        smsid,
        request_type,
        timestamp: now.to_datetime(),
        agent_type,
        encryption_cert: identity.cert_der,
        signing_cert: identity.cert_der,
        netbios_name: config.netbios_name,
        fqdn: config.fqdn,
        locale_id: 1033,
        confirmation_form: config.site_generation.confirmation_form(),
    };
    RegistrationRequest::sign(data, identity.signer, None)
}

/// Who a registration request registers and who signs it.
#[derive(Clone, Copy)]
pub enum Registrant<'a> {
    /// The agent itself (AgentType 0, 2 or 4), signed with the key of the certificate it
    /// registers (proof of possession).
    Own {
        /// Key and certificate.
        identity: SigningIdentity<'a>,
        /// What kind of agent registers.
        agent_type: AgentType,
    },
    /// A client of an ISV proxy (AgentType 8, docs/protocol.md §4): `client_cert_der` is registered, the
    /// request is signed with the proxy's key and names the proxy in `<Signature SMSID>`.
    ProxyClient {
        /// The proxy's key and certificate.
        proxy: SigningIdentity<'a>,
        /// The proxy's own SMSID (it must hold it before acting for any client).
        proxy_smsid: Smsid,
        /// The client's certificate (DER), registered as its signing and encryption certificate.
        client_cert_der: &'a [u8],
    },
}

impl Registrant<'_> {
    /// The SMSID this registrant proposes ([`proposed_smsid`] of the certificate it registers);
    /// none for an ISV proxy's own registration, whose SMSID the certificate import gave.
    pub fn proposes(&self) -> Option<Smsid> {
        match *self {
            Registrant::Own {
                agent_type: AgentType::IsvProxy,
                ..
            } => None,
            Registrant::Own { identity, .. } => Some(proposed_smsid(identity.cert_der)),
            Registrant::ProxyClient {
                client_cert_der, ..
            } => Some(proposed_smsid(client_cert_der)),
        }
    }
}

/// Build and sign the AgentType 8 request an ISV proxy (`proxy`, `proxy_smsid`) sends for a
/// client whose certificate is `client_cert_der`; `config` carries the client's names.
// Out of line like `build_request`, for the board's peak stack.
#[inline(never)]
pub fn build_proxy_client_request<'a>(
    config: &AgentConfig<'a>,
    proxy: &SigningIdentity<'a>,
    proxy_smsid: Smsid,
    client_cert_der: &'a [u8],
    request_type: RequestType,
    smsid: Option<Smsid>,
    now: UnixTime,
) -> Result<RegistrationRequest<'a>, BuildError> {
    let data = RegistrationData {
        hash_algorithm_oid: crate::sign::hash_algorithm_oid(proxy.signer),
        smsid,
        request_type,
        timestamp: now.to_datetime(),
        agent_type: AgentType::IsvProxyClient,
        encryption_cert: client_cert_der,
        signing_cert: client_cert_der,
        netbios_name: config.netbios_name,
        fqdn: config.fqdn,
        locale_id: 1033,
        confirmation_form: config.site_generation.confirmation_form(),
    };
    RegistrationRequest::sign(data, proxy.signer, Some(proxy_smsid))
}

/// Build and sign the request of `registrant`.
// Out of line like `build_request`, for the board's peak stack.
#[inline(never)]
pub fn build_registrant_request<'a>(
    config: &AgentConfig<'a>,
    registrant: &Registrant<'a>,
    request_type: RequestType,
    smsid: Option<Smsid>,
    now: UnixTime,
) -> Result<RegistrationRequest<'a>, BuildError> {
    match *registrant {
        Registrant::Own {
            identity,
            agent_type,
        } => build_request(config, &identity, agent_type, request_type, smsid, now),
        Registrant::ProxyClient {
            proxy,
            proxy_smsid,
            client_cert_der,
        } => build_proxy_client_request(
            config,
            &proxy,
            proxy_smsid,
            client_cert_der,
            request_type,
            smsid,
            now,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mixed-mode configuration for device THING-1 at site PS1.
    fn thing_config() -> AgentConfig<'static> {
        AgentConfig::new(
            "PS1",
            crate::config::SiteMode::Mixed,
            "http://mp:80",
            "THING-1",
            "thing-1.local",
        )
        .unwrap()
    }

    fn reply(status: RegistrationStatus, smsid: Option<Smsid>) -> RegistrationResponse {
        RegistrationResponse {
            status,
            code: status.code(),
            smsid,
            approval_status: None,
            timestamp: None,
        }
    }

    fn id() -> Smsid {
        Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap()
    }

    #[test]
    fn proxy_client_request_names_the_proxy_and_carries_the_client_cert() {
        extern crate std;
        use crate::sign::P256Signer;
        use crate::sink::{emitted_len, Emit, SliceSink};
        let proxy_key = P256Signer::from_secret_bytes(&[9; 32]).unwrap();
        let cfg = thing_config();
        let proxy = SigningIdentity {
            signer: &proxy_key,
            cert_der: &[0xAA],
        };
        let client_cert = [0xBB, 0xCC];
        let reg = Registrant::ProxyClient {
            proxy,
            proxy_smsid: id(),
            client_cert_der: &client_cert,
        };
        let req =
            build_registrant_request(&cfg, &reg, RequestType::Registration, None, UnixTime(0))
                .unwrap();
        assert_eq!(req.signer_smsid, Some(id()));
        assert_eq!(req.data.agent_type, AgentType::IsvProxyClient);
        assert_eq!(req.data.signing_cert, &client_cert);
        let mut v = std::vec![0u8; emitted_len(&req).unwrap()];
        req.emit(&mut SliceSink::new(&mut v)).unwrap();
        let text: std::string::String =
            std::char::decode_utf16(v.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])))
                .map(|c| c.unwrap())
                .collect();
        assert!(text.contains("AgentType=\"8\""), "{text}");
        assert!(text.contains("<Signing Encoding=\"HexBinary\" KeyType=\"1\">BBCC</Signing>"));
        assert!(text.contains(
            "<Signature SMSID=\"GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42\"><SignatureValue>"
        ));
        let own = Registrant::Own {
            identity: proxy,
            agent_type: AgentType::IsvProxy,
        };
        let req =
            build_registrant_request(&cfg, &own, RequestType::Registration, None, UnixTime(0))
                .unwrap();
        assert_eq!(req.signer_smsid, None);
        assert_eq!(req.data.signing_cert, &[0xAA]);
    }

    fn other_id() -> Smsid {
        // `id()` with the GUID's version digit flipped, as a corrupted byte would make it.
        Smsid::parse(b"GUID:1af488d8-7b42-5842-a4bd-b3a2842bbc42").unwrap()
    }

    fn ok(s: RegistrationStatus, smsid: Smsid) -> RegistrationResponse {
        reply(s, Some(smsid))
    }

    const FIRST: u64 = profile::RETRY_BACKOFF_FIRST_SECS;

    #[test]
    fn registered_only_after_the_confirmation_agrees() {
        let mut r = Registrar::new(RegistrationState::Unregistered);
        let t0 = UnixTime(1000);
        assert_eq!(
            r.poll(t0),
            RegistrarAction::Send(RequestType::Registration, None)
        );
        let ev = r.on_response(t0, &ok(RegistrationStatus::Registered, id()));
        assert_eq!(ev, RegistrationEvent::Issued(id()));
        assert_eq!(ev.persist(), None);
        // Not registered yet: the state to persist is unchanged, a confirmation goes out at once.
        assert_eq!(r.state(), RegistrationState::Unregistered);
        assert_eq!(r.candidate(), Some(id()));
        assert_eq!(
            r.poll(t0),
            RegistrarAction::Send(RequestType::Confirmation, Some(id()))
        );
        let ev = r.on_response(t0, &ok(RegistrationStatus::Registered, id()));
        assert_eq!(ev, RegistrationEvent::Registered(id()));
        assert_eq!(ev.persist(), Some(RegistrationState::Registered(id())));
        assert_eq!(r.poll(t0), RegistrarAction::Done(id()));
        assert_eq!(r.candidate(), None);
    }

    #[test]
    fn a_confirmation_naming_another_smsid_discards_the_candidate() {
        let mut r = Registrar::new(RegistrationState::Unregistered);
        r.on_response(UnixTime(0), &ok(RegistrationStatus::Registered, other_id()));
        let ev = r.on_response(UnixTime(0), &ok(RegistrationStatus::Registered, id()));
        assert_eq!(
            ev,
            RegistrationEvent::Discarded(other_id(), UnixTime(FIRST))
        );
        assert_eq!(ev.persist(), None);
        assert_eq!(
            (r.state(), r.candidate(), r.failures()),
            (RegistrationState::Unregistered, None, 1)
        );
        assert_eq!(
            r.poll(UnixTime(1)),
            RegistrarAction::WaitUntil(UnixTime(FIRST))
        );
        assert_eq!(
            r.poll(UnixTime(FIRST)),
            RegistrarAction::Send(RequestType::Registration, None)
        );
    }

    #[test]
    fn a_refused_or_failed_confirmation_discards_the_candidate_and_counts() {
        let mut r = Registrar::new(RegistrationState::Unregistered);
        for n in 1..=3u32 {
            r.on_response(UnixTime(0), &ok(RegistrationStatus::Pending, other_id()));
            // A refusal of an unconfirmed candidate is an ordinary failure (bounded by the
            // caller's give-up limit), whatever its kind.
            let ev = if n % 2 == 0 {
                r.on_failure(UnixTime(0))
            } else {
                r.on_refusal(UnixTime(0))
            };
            assert!(
                matches!(ev, RegistrationEvent::Discarded(x, _) if x == other_id()),
                "{ev:?}"
            );
            assert_eq!(r.failures(), n);
            assert_eq!(r.state(), RegistrationState::Unregistered);
        }
        // Failures are cleared only by a confirmed outcome, not by another registration reply.
        r.on_response(UnixTime(0), &ok(RegistrationStatus::Pending, id()));
        assert_eq!(r.failures(), 3);
        let ev = r.on_response(UnixTime(0), &ok(RegistrationStatus::Pending, id()));
        assert_eq!(
            ev,
            RegistrationEvent::PendingApproval(id(), UnixTime(profile::PENDING_RECHECK_SECS))
        );
        assert_eq!(r.failures(), 0);
        assert!(r.waiting_for_approval());
    }

    #[test]
    fn pending_then_confirmed() {
        let mut r = Registrar::new(RegistrationState::Pending(id()));
        let t0 = UnixTime(1000);
        assert_eq!(
            r.poll(t0),
            RegistrarAction::Send(RequestType::Confirmation, Some(id()))
        );
        let ev = r.on_response(t0, &ok(RegistrationStatus::Pending, id()));
        let at = t0.plus(profile::PENDING_RECHECK_SECS);
        assert_eq!(ev, RegistrationEvent::PendingApproval(id(), at));
        assert_eq!(r.poll(t0.plus(1)), RegistrarAction::WaitUntil(at));
        assert_eq!(
            r.poll(at),
            RegistrarAction::Send(RequestType::Confirmation, Some(id()))
        );
        r.on_response(at, &ok(RegistrationStatus::Registered, id()));
        assert_eq!(r.poll(at), RegistrarAction::Done(id()));
        assert_eq!(r.state(), RegistrationState::Registered(id()));
    }

    #[test]
    fn refused_pending_confirmations_lead_back_to_a_fresh_registration() {
        let mut r = Registrar::new(RegistrationState::Pending(other_id()));
        let ev = r.on_refusal(UnixTime(0));
        assert_eq!(ev, RegistrationEvent::RetryAt(UnixTime(FIRST)));
        // Not a failure towards the caller's give-up bound, and not settled pending either.
        assert_eq!(r.failures(), 0);
        assert!(!r.waiting_for_approval());
        assert_eq!(r.state(), RegistrationState::Pending(other_id()));
        let ev = r.on_refusal(UnixTime(FIRST));
        assert_eq!(
            ev,
            RegistrationEvent::Abandoned(other_id(), UnixTime(2 * FIRST))
        );
        assert_eq!(ev.persist(), Some(RegistrationState::Unregistered));
        assert_eq!(r.state(), RegistrationState::Unregistered);
        assert_eq!(
            r.poll(UnixTime(2 * FIRST)),
            RegistrarAction::Send(RequestType::Registration, None)
        );
        // A transport failure in between is no refusal: it does not advance the count.
        let mut r = Registrar::new(RegistrationState::Pending(other_id()));
        r.on_refusal(UnixTime(0));
        assert_eq!(
            r.on_failure(UnixTime(0)),
            RegistrationEvent::RetryAt(UnixTime(FIRST))
        );
        // ... but an answer with another SMSID is a refusal.
        let ev = r.on_response(UnixTime(0), &ok(RegistrationStatus::Registered, id()));
        assert!(
            matches!(ev, RegistrationEvent::Abandoned(x, _) if x == other_id()),
            "{ev:?}"
        );
        // A confirmed answer clears the count.
        let mut r = Registrar::new(RegistrationState::Pending(id()));
        r.on_refusal(UnixTime(0));
        r.on_response(UnixTime(0), &ok(RegistrationStatus::Pending, id()));
        assert!(r.waiting_for_approval());
        assert_eq!(
            r.on_refusal(UnixTime(0)),
            RegistrationEvent::RetryAt(UnixTime(FIRST))
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut r = Registrar::new(RegistrationState::Unregistered)
            .with_site_generation(SiteGeneration::Sms2007);
        let mut delays = [0u64; 10];
        for d in delays.iter_mut() {
            match r.on_response(UnixTime(0), &reply(RegistrationStatus::RetryLater, None)) {
                RegistrationEvent::RetryAt(t) => *d = t.0,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
        // A confirmed registration resets the failure count.
        r.on_response(UnixTime(0), &ok(RegistrationStatus::Registered, id()));
        r.on_response(UnixTime(0), &ok(RegistrationStatus::Registered, id()));
        assert_eq!(r.failures(), 0);
    }

    #[test]
    fn status_without_smsid_is_a_failure() {
        let mut r = Registrar::new(RegistrationState::Unregistered);
        let ev = r.on_response(UnixTime(0), &reply(RegistrationStatus::Registered, None));
        assert_eq!(ev, RegistrationEvent::RetryAt(UnixTime(5)));
        assert_eq!(r.state(), RegistrationState::Unregistered);
        r.on_response(UnixTime(0), &reply(RegistrationStatus::Other(7), None));
        assert_eq!(r.failures(), 2);
    }

    #[test]
    fn a_proposed_smsid_handed_back_is_final_another_one_is_confirmed() {
        let cert = [0x30, 0x03, 0x02, 0x01, 0x07];
        let mine = proposed_smsid(&cert);
        assert_eq!(mine, proposed_smsid(&cert), "made the same way every time");
        assert_ne!(mine, proposed_smsid(&[0x30, 0x00]));
        let text = mine.to_text();
        assert_eq!(text[5 + 14], b'4', "version 4");
        let mut r = Registrar::new(RegistrationState::Unregistered).with_proposed_smsid(mine);
        assert_eq!(
            r.poll(UnixTime(0)),
            RegistrarAction::Send(RequestType::Registration, Some(mine))
        );
        let ev = r.on_response(
            UnixTime(1),
            &reply(RegistrationStatus::Registered, Some(mine)),
        );
        assert_eq!(ev, RegistrationEvent::Registered(mine));
        assert_eq!(r.poll(UnixTime(1)), RegistrarAction::Done(mine));
        // The site picked another: confirmed before it is kept.
        let mut r = Registrar::new(RegistrationState::Unregistered).with_proposed_smsid(mine);
        let ev = r.on_response(
            UnixTime(1),
            &reply(RegistrationStatus::Registered, Some(id())),
        );
        assert_eq!(ev, RegistrationEvent::Issued(id()));
        assert_eq!(
            r.poll(UnixTime(1)),
            RegistrarAction::Send(RequestType::Confirmation, Some(id()))
        );
        // Pending with ours: pending at once, confirmed later; the proposal survives a reset.
        let mut r = Registrar::new(RegistrationState::Unregistered).with_proposed_smsid(mine);
        let ev = r.on_response(UnixTime(1), &reply(RegistrationStatus::Pending, Some(mine)));
        assert!(matches!(ev, RegistrationEvent::PendingApproval(id, _) if id == mine));
        r.reset();
        assert_eq!(r.proposed(), Some(mine));
    }

    #[test]
    fn states_and_events_read_as_sentences_with_dates() {
        extern crate std;
        use std::string::ToString;
        let id = id();
        assert_eq!(
            RegistrationState::Registered(id).to_string(),
            "registered as GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42"
        );
        assert_eq!(
            RegistrationState::Rejected(UnixTime(1_795_428_000)).to_string(),
            "rejected by the site at 2026-11-23T10:00:00Z"
        );
        let t = UnixTime(60).to_string();
        assert_eq!(t, "1970-01-01T00:01:00Z");
        let e = RegistrationEvent::Abandoned(id, UnixTime(60)).to_string();
        assert!(
            e.contains(&t) && !e.contains("Guid(") && !e.contains("UnixTime("),
            "{e}"
        );
    }

    #[test]
    fn current_sites_reset_error_and_certificate_reset() {
        let code = |n: i32| RegistrationResponse {
            status: RegistrationStatus::from_code(n),
            code: n,
            smsid: None,
            approval_status: None,
            timestamp: None,
        };
        // 2 on a current site: reset, register afresh (the SMSID is dropped and persisted so).
        let mut r = Registrar::new(RegistrationState::Pending(id()));
        let ev = r.on_response(UnixTime(10), &code(2));
        assert_eq!(ev, RegistrationEvent::Reset(UnixTime(15)));
        assert_eq!(ev.persist(), Some(RegistrationState::Unregistered));
        assert_eq!(
            r.poll(UnixTime(15)),
            RegistrarAction::Send(RequestType::Registration, None)
        );
        // The same 2 on a 2007 site: send again, the state kept.
        let mut r = Registrar::new(RegistrationState::Pending(id()))
            .with_site_generation(SiteGeneration::Sms2007);
        assert_eq!(
            r.on_response(UnixTime(10), &code(2)),
            RegistrationEvent::RetryAt(UnixTime(15))
        );
        assert_eq!(r.state(), RegistrationState::Pending(id()));
        // 3 on a current site (Error: blocked) is kept like a rejection once it comes twice.
        let mut r = Registrar::new(RegistrationState::Unregistered);
        assert!(matches!(
            r.on_response(UnixTime(0), &code(3)),
            RegistrationEvent::RejectedOnce(_)
        ));
        assert_eq!(
            r.on_response(UnixTime(2), &code(3)),
            RegistrationEvent::Rejected(UnixTime(2))
        );
        // 4: a new certificate is needed; nothing persisted, asked again after a long backoff.
        let mut r = Registrar::new(RegistrationState::Unregistered);
        let ev = r.on_response(UnixTime(0), &code(4));
        assert_eq!(
            ev,
            RegistrationEvent::CertificateReset(UnixTime(profile::RETRY_BACKOFF_MAX_SECS))
        );
        assert_eq!(ev.persist(), None);
    }

    #[test]
    fn a_confirmation_answered_without_smsid_means_the_one_asked_about() {
        // Registration answered Status 1 with an SMSID; its confirmation says Pending without
        // one, a later one Registered without one (a real MP's replies, docs/protocol.md §4).
        let mut r = Registrar::new(RegistrationState::Unregistered);
        r.on_response(UnixTime(0), &reply(RegistrationStatus::Pending, Some(id())));
        assert_eq!(r.candidate(), Some(id()));
        let ev = r.on_response(UnixTime(1), &reply(RegistrationStatus::Pending, None));
        assert_eq!(
            ev,
            RegistrationEvent::PendingApproval(
                id(),
                UnixTime(1).plus(profile::PENDING_RECHECK_SECS)
            )
        );
        let ev = r.on_response(UnixTime(70), &reply(RegistrationStatus::Registered, None));
        assert_eq!(ev, RegistrationEvent::Registered(id()));
        assert_eq!(r.state(), RegistrationState::Registered(id()));
    }

    #[test]
    fn a_rejection_is_rechecked_on_the_configured_interval_or_at_once_when_asked() {
        let mut r = Registrar::new(RegistrationState::Unregistered).with_rejection_recheck(600);
        r.on_response(UnixTime(10), &reply(RegistrationStatus::Rejected, None));
        r.on_response(UnixTime(12), &reply(RegistrationStatus::Rejected, None));
        assert_eq!(r.state(), RegistrationState::Rejected(UnixTime(12)));
        assert_eq!(r.rejection_recheck_at(), Some(UnixTime(612)));
        assert_eq!(
            r.poll(UnixTime(611)),
            RegistrarAction::Rejected(UnixTime(612))
        );
        assert_eq!(
            r.poll(UnixTime(612)),
            RegistrarAction::Send(RequestType::Registration, None)
        );
        r.retry_now();
        assert_eq!(r.state(), RegistrationState::Unregistered);
        assert_eq!(
            r.poll(UnixTime(13)),
            RegistrarAction::Send(RequestType::Registration, None)
        );
        assert_eq!(r.rejection_recheck_at(), None);
    }

    #[test]
    fn one_rejection_is_asked_again_two_are_persisted_and_rechecked_later() {
        let mut r = Registrar::new(RegistrationState::Unregistered);
        let t0 = UnixTime(10_000);
        let ev = r.on_response(t0, &reply(RegistrationStatus::Rejected, None));
        let again = t0.plus(profile::REJECTION_SECOND_ASK_SECS);
        assert_eq!(ev, RegistrationEvent::RejectedOnce(again));
        assert_eq!(ev.persist(), None);
        assert_eq!(r.state(), RegistrationState::Unregistered);
        assert_eq!(r.poll(t0), RegistrarAction::WaitUntil(again));
        assert_eq!(
            r.poll(again),
            RegistrarAction::Send(RequestType::Registration, None)
        );
        let ev = r.on_response(again, &reply(RegistrationStatus::Rejected, None));
        assert_eq!(ev, RegistrationEvent::Rejected(again));
        assert_eq!(ev.persist(), Some(RegistrationState::Rejected(again)));
        let recheck = again.plus(profile::REJECTION_RECHECK_SECS);
        assert_eq!(r.poll(again), RegistrarAction::Rejected(recheck));
        assert_eq!(r.poll(recheck.minus(1)), RegistrarAction::Rejected(recheck));
        // The persisted rejection, loaded by a later run: silent until the recheck, then asks.
        let later = Registrar::new(RegistrationState::Rejected(again));
        assert_eq!(
            later.poll(recheck.minus(1)),
            RegistrarAction::Rejected(recheck)
        );
        assert_eq!(
            later.poll(recheck),
            RegistrarAction::Send(RequestType::Registration, None)
        );
        // A clock behind the stamp cannot date it: ask.
        assert_eq!(
            later.poll(again.minus(1)),
            RegistrarAction::Send(RequestType::Registration, None)
        );
        r.reset();
        assert_eq!(
            r.poll(UnixTime(0)),
            RegistrarAction::Send(RequestType::Registration, None)
        );
    }

    #[test]
    fn a_rejection_followed_by_another_answer_is_forgotten() {
        let mut r = Registrar::new(RegistrationState::Unregistered)
            .with_site_generation(SiteGeneration::Sms2007);
        r.on_response(UnixTime(0), &reply(RegistrationStatus::Rejected, None));
        // A transport failure in between neither confirms nor clears it.
        r.on_failure(UnixTime(0));
        assert!(matches!(
            r.on_response(UnixTime(0), &reply(RegistrationStatus::RetryLater, None)),
            RegistrationEvent::RetryAt(_)
        ));
        // The count restarted: one more status 3 is again only a first one.
        assert!(matches!(
            r.on_response(UnixTime(0), &reply(RegistrationStatus::Rejected, None)),
            RegistrationEvent::RejectedOnce(_)
        ));
        // A rejection of a candidate's confirmation drops the candidate.
        let mut r = Registrar::new(RegistrationState::Unregistered);
        r.on_response(UnixTime(0), &ok(RegistrationStatus::Registered, id()));
        r.on_response(UnixTime(0), &reply(RegistrationStatus::Rejected, None));
        assert_eq!(r.candidate(), None);
        // A pending SMSID rejected twice (the administrator's decision) is rejected.
        let mut r = Registrar::new(RegistrationState::Pending(id()));
        r.on_response(UnixTime(0), &reply(RegistrationStatus::Rejected, None));
        assert!(!r.waiting_for_approval());
        assert_eq!(
            r.poll(UnixTime(0)),
            RegistrarAction::WaitUntil(UnixTime(profile::REJECTION_SECOND_ASK_SECS))
        );
        assert_eq!(
            r.on_response(UnixTime(9), &reply(RegistrationStatus::Rejected, None)),
            RegistrationEvent::Rejected(UnixTime(9))
        );
        // Re-asking after the recheck: a confirmed registration replaces the rejection.
        let t = UnixTime(9).plus(profile::REJECTION_RECHECK_SECS);
        assert_eq!(
            r.poll(t),
            RegistrarAction::Send(RequestType::Registration, None)
        );
        r.on_response(t, &ok(RegistrationStatus::Registered, id()));
        assert_eq!(r.state(), RegistrationState::Rejected(UnixTime(9)));
        r.on_response(t, &ok(RegistrationStatus::Registered, id()));
        assert_eq!(r.state(), RegistrationState::Registered(id()));
    }

    #[test]
    fn current_confirmations_go_under_the_registration_message_id() {
        let (a, b, c) = (Guid([1; 16]), Guid([2; 16]), Guid([3; 16]));
        let (reg, conf) = (RequestType::Registration, RequestType::Confirmation);
        let mut ids = MessageIds::default();
        // No registration since start (a stored SMSID): a fresh ID.
        assert_eq!(ids.next(ConfirmationForm::Current, conf, a), a);
        assert_eq!(ids.next(ConfirmationForm::Current, reg, b), b);
        assert_eq!(ids.next(ConfirmationForm::Current, conf, c), b);
        assert_eq!(ids.next(ConfirmationForm::Current, conf, a), b);
        // A new registration starts a new ID.
        assert_eq!(ids.next(ConfirmationForm::Current, reg, c), c);
        assert_eq!(ids.next(ConfirmationForm::Current, conf, a), c);
        // The 2007 form confirms under fresh IDs.
        let mut ids = MessageIds::default();
        assert_eq!(ids.next(ConfirmationForm::Sms2007, reg, a), a);
        assert_eq!(ids.next(ConfirmationForm::Sms2007, conf, b), b);
    }

    #[test]
    fn the_generation_numbers_status_and_shapes_confirmations() {
        use crate::sign::P256Signer;
        use crate::sink::{emitted_len, Emit, SliceSink};
        extern crate std;
        // Status 2: "send again" on a 2007 site, "reset" on a current one.
        let two = RegistrationResponse {
            status: RegistrationStatus::RetryLater,
            code: 2,
            smsid: None,
            approval_status: None,
            timestamp: None,
        };
        let mut old = Registrar::new(RegistrationState::Pending(id()))
            .with_site_generation(SiteGeneration::Sms2007);
        assert!(matches!(
            old.on_response(UnixTime(0), &two),
            RegistrationEvent::RetryAt(_)
        ));
        assert_eq!(old.state(), RegistrationState::Pending(id()));
        let mut new = Registrar::new(RegistrationState::Pending(id()))
            .with_site_generation(SiteGeneration::Current);
        assert!(matches!(
            new.on_response(UnixTime(0), &two),
            RegistrationEvent::Reset(_)
        ));
        assert_eq!(new.state(), RegistrationState::Unregistered);
        // The configuration's generation picks the confirmation form.
        let key = P256Signer::from_secret_bytes(&[9; 32]).unwrap();
        let identity = SigningIdentity {
            signer: &key,
            cert_der: &[0xAB],
        };
        let base = thing_config();
        let confirm = |cfg: &AgentConfig<'_>| {
            let req = build_request(
                cfg,
                &identity,
                AgentType::Client,
                RequestType::Confirmation,
                Some(id()),
                UnixTime(0),
            )
            .unwrap();
            let mut v = std::vec![0u8; emitted_len(&req).unwrap()];
            req.emit(&mut SliceSink::new(&mut v)).unwrap();
            std::char::decode_utf16(v.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])))
                .map(|c| c.unwrap())
                .collect::<std::string::String>()
        };
        let current = confirm(&base);
        assert!(!current.contains("<Certificates>"), "{current}");
        assert!(
            current.contains("<Signature SMSID=\"GUID:1AF488D8"),
            "{current}"
        );
        let old = confirm(&base.with_site_generation(SiteGeneration::Sms2007));
        assert!(
            old.contains("<Certificates><Signing Encoding=\"HexBinary\" KeyType=\"1\">AB</Signing></Certificates></Data>"),
            "{old}"
        );
        assert!(old.contains("<Signature><SignatureValue>"), "{old}");
    }
}
