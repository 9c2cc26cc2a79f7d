//! Registration life cycle (spec §4): register, wait for approval with confirmations, retry with
//! exponential backoff on status 2 or transport trouble, stop on rejection. Pure: time comes in.

use crate::config::AgentConfig;
use crate::guid::Smsid;
use crate::profile;
use crate::sign::Signer;
use crate::time::UnixTime;
use crate::wire::registration::{
    AgentType, BuildError, RegistrationData, RegistrationRequest, RequestType,
};
use crate::wire::reply::{RegistrationResponse, RegistrationStatus};

/// Where the appliance stands with the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RegistrationState {
    /// No SMSID yet.
    Unregistered,
    /// SMSID issued, approval pending: no policy or inventory until approved.
    Pending(Smsid),
    /// Registered and approved.
    Registered(Smsid),
    /// The site refused the registration (status 3). Terminal until [`Registrar::reset`].
    Rejected,
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
    /// Rejected by the site.
    Rejected,
}

/// What a reply (or failure) changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RegistrationEvent {
    /// Status 0.
    Registered(Smsid),
    /// Status 1: SMSID issued, approval pending; confirm again at the given time.
    PendingApproval(Smsid, UnixTime),
    /// Status 2, an unusable reply or a transport failure: try again at the given time.
    RetryAt(UnixTime),
    /// Status 3.
    Rejected,
}

/// The registration state machine.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Registrar {
    state: RegistrationState,
    failures: u32,
    next_attempt: UnixTime,
}

impl Registrar {
    /// Start from a persisted state (`Unregistered` on first run).
    pub fn new(state: RegistrationState) -> Self {
        Self {
            state,
            failures: 0,
            next_attempt: UnixTime(0),
        }
    }

    /// The current state (persist it after every event).
    pub fn state(&self) -> RegistrationState {
        self.state
    }

    /// Consecutive failed attempts.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forget a rejection and start over.
    pub fn reset(&mut self) {
        *self = Self::new(RegistrationState::Unregistered);
    }

    /// The next action at time `now`.
    pub fn poll(&self, now: UnixTime) -> RegistrarAction {
        match self.state {
            RegistrationState::Registered(id) => RegistrarAction::Done(id),
            RegistrationState::Rejected => RegistrarAction::Rejected,
            _ if now < self.next_attempt => RegistrarAction::WaitUntil(self.next_attempt),
            RegistrationState::Unregistered => {
                RegistrarAction::Send(RequestType::Registration, None)
            }
            RegistrationState::Pending(id) => {
                RegistrarAction::Send(RequestType::Confirmation, Some(id))
            }
        }
    }

    /// A `ClientRegistrationResponse` arrived.
    pub fn on_response(
        &mut self,
        now: UnixTime,
        reply: &RegistrationResponse,
    ) -> RegistrationEvent {
        match (reply.status, reply.smsid) {
            (RegistrationStatus::Registered, Some(id)) => {
                self.state = RegistrationState::Registered(id);
                self.failures = 0;
                RegistrationEvent::Registered(id)
            }
            (RegistrationStatus::Pending, Some(id)) => {
                self.state = RegistrationState::Pending(id);
                self.failures = 0;
                self.next_attempt = now.plus(profile::PENDING_RECHECK_SECS);
                RegistrationEvent::PendingApproval(id, self.next_attempt)
            }
            (RegistrationStatus::Rejected, _) => {
                self.state = RegistrationState::Rejected;
                RegistrationEvent::Rejected
            }
            // Status 2, unknown statuses, and 0/1 without the SMSID the spec requires.
            _ => self.on_failure(now),
        }
    }

    /// The attempt failed (transport, HTTP status, empty or malformed reply): back off.
    pub fn on_failure(&mut self, now: UnixTime) -> RegistrationEvent {
        self.failures = self.failures.saturating_add(1);
        let shift = self.failures.saturating_sub(1).min(16);
        let delay = profile::RETRY_BACKOFF_FIRST_SECS
            .saturating_mul(1u64 << shift)
            .min(profile::RETRY_BACKOFF_MAX_SECS);
        self.next_attempt = now.plus(delay);
        RegistrationEvent::RetryAt(self.next_attempt)
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
pub fn build_request<'a>(
    config: &AgentConfig<'a>,
    identity: &SigningIdentity<'a>,
    agent_type: AgentType,
    request_type: RequestType,
    smsid: Option<Smsid>,
    now: UnixTime,
) -> Result<RegistrationRequest<'a>, BuildError> {
    let data = RegistrationData {
        hash_algorithm_oid: identity.signer.scheme().hash_algorithm_oid(),
        smsid,
        request_type,
        timestamp: now.to_datetime(),
        agent_type,
        encryption_cert: identity.cert_der,
        signing_cert: identity.cert_der,
        netbios_name: config.netbios_name,
        fqdn: config.fqdn,
        locale_id: 1033,
    };
    RegistrationRequest::sign(data, identity.signer, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: RegistrationStatus, smsid: Option<Smsid>) -> RegistrationResponse {
        RegistrationResponse {
            status,
            smsid,
            approval_status: None,
            timestamp: None,
        }
    }

    fn id() -> Smsid {
        Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap()
    }

    #[test]
    fn pending_then_confirmed() {
        let mut r = Registrar::new(RegistrationState::Unregistered);
        let t0 = UnixTime(1000);
        assert_eq!(
            r.poll(t0),
            RegistrarAction::Send(RequestType::Registration, None)
        );
        let ev = r.on_response(t0, &reply(RegistrationStatus::Pending, Some(id())));
        let at = t0.plus(profile::PENDING_RECHECK_SECS);
        assert_eq!(ev, RegistrationEvent::PendingApproval(id(), at));
        assert_eq!(r.poll(t0.plus(1)), RegistrarAction::WaitUntil(at));
        assert_eq!(
            r.poll(at),
            RegistrarAction::Send(RequestType::Confirmation, Some(id()))
        );
        r.on_response(at, &reply(RegistrationStatus::Registered, Some(id())));
        assert_eq!(r.poll(at), RegistrarAction::Done(id()));
        assert_eq!(r.state(), RegistrationState::Registered(id()));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut r = Registrar::new(RegistrationState::Unregistered);
        let mut delays = [0u64; 10];
        for d in delays.iter_mut() {
            match r.on_response(UnixTime(0), &reply(RegistrationStatus::RetryLater, None)) {
                RegistrationEvent::RetryAt(t) => *d = t.0,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
        // Success resets the failure count.
        r.on_response(
            UnixTime(0),
            &reply(RegistrationStatus::Registered, Some(id())),
        );
        assert_eq!(r.failures(), 0);
    }

    #[test]
    fn status_without_smsid_is_a_failure_and_rejection_is_terminal() {
        let mut r = Registrar::new(RegistrationState::Unregistered);
        let ev = r.on_response(UnixTime(0), &reply(RegistrationStatus::Registered, None));
        assert_eq!(ev, RegistrationEvent::RetryAt(UnixTime(5)));
        assert_eq!(r.state(), RegistrationState::Unregistered);
        r.on_response(UnixTime(0), &reply(RegistrationStatus::Other(7), None));
        assert_eq!(r.failures(), 2);
        assert_eq!(
            r.on_response(UnixTime(9), &reply(RegistrationStatus::Rejected, None)),
            RegistrationEvent::Rejected
        );
        assert_eq!(r.poll(UnixTime(10_000)), RegistrarAction::Rejected);
        r.reset();
        assert_eq!(
            r.poll(UnixTime(0)),
            RegistrarAction::Send(RequestType::Registration, None)
        );
    }
}
