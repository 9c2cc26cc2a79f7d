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
// Kept out of line: LTO otherwise inlines it into the driver's task frame, which then sits
// under the signing chain (board stack measurement, issue 5).
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
    /// A client of an ISV proxy (AgentType 8, spec §4): `client_cert_der` is registered, the
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

/// Build and sign the AgentType 8 request an ISV proxy (`proxy`, `proxy_smsid`) sends for a
/// client whose certificate is `client_cert_der`; `config` carries the client's names.
// Out of line like `build_request` (board stack peak, issue 5).
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
        hash_algorithm_oid: proxy.signer.scheme().hash_algorithm_oid(),
        smsid,
        request_type,
        timestamp: now.to_datetime(),
        agent_type: AgentType::IsvProxyClient,
        encryption_cert: client_cert_der,
        signing_cert: client_cert_der,
        netbios_name: config.netbios_name,
        fqdn: config.fqdn,
        locale_id: 1033,
    };
    RegistrationRequest::sign(data, proxy.signer, Some(proxy_smsid))
}

/// Build and sign the request of `registrant`.
// Out of line like `build_request` (board stack peak, issue 5).
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
    fn proxy_client_request_names_the_proxy_and_carries_the_client_cert() {
        extern crate std;
        use crate::sign::P256Signer;
        use crate::sink::{emitted_len, Emit, SliceSink};
        let proxy_key = P256Signer::from_secret_bytes(&[9; 32]).unwrap();
        let cfg = AgentConfig::new(
            "PS1",
            crate::config::SiteMode::Mixed,
            "http://mp:80",
            "THING-1",
            "thing-1.local",
        )
        .unwrap();
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
