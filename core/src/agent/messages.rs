//! Message composition after registration: where each body goes ([`MessageBody`]), signing it
//! into a request ([`sign_message`]), and the policy body `GET` ([`PolicyBodyRequest`]).
//!
//! Signing a policy request by hand (the [`crate::Driver`] does this, and queues and sends
//! reports, for a caller that runs it):
//! ```
//! use mpagent_core::agent::messages::{request_assignments, sign_message};
//! use mpagent_core::agent::signed::MessageSigner;
//! use mpagent_core::sink::emitted_len;
//! use mpagent_core::wire::clientauth::ClientIdSignature;
//! use mpagent_core::{AgentConfig, Guid, P256Signer, SigningIdentity, SiteMode, Smsid, UnixTime};
//! # fn main() -> Result<(), Box<dyn core::error::Error>> {
//! let cfg = AgentConfig::new("PS1", SiteMode::Mixed, "http://mp01:80", "THING-1", "thing-1.example")?;
//! let signer = P256Signer::from_secret_bytes(&[7; 32])?;
//! let cert_der: &[u8] = &[]; // the device's certificate (not part of a signed message)
//! let smsid = Smsid(Guid([0x1a; 16])); // from the registration reply
//! // Once after registration (and persisted with the SMSID):
//! let cid = ClientIdSignature::compute(&signer, smsid)?;
//! let me = MessageSigner::client(SigningIdentity { signer: &signer, cert_der }, &cid);
//! // Per poll: the request, signed; it emits identically as often as it is streamed.
//! let body = request_assignments(&cfg, smsid, "");
//! let msg = sign_message(&cfg, &me, &body, Guid([0x2b; 16]), UnixTime(1_796_000_000))?;
//! assert_eq!(emitted_len(&msg)?, emitted_len(&msg)?);
//! # Ok(())
//! # }
//! ```

use crate::agent::signed::{MessageParams, MessageSigner, SignedMessage, SignedMessageError};
use crate::config::{AgentConfig, AttachmentNaming};
use crate::guid::{Guid, Smsid};
use crate::http::request::RequestHead;
use crate::sign::{SignError, Signer, MAX_SIGNATURE_LEN};
use crate::sink::{Emit, Overflow, Sink};
use crate::store::Endpoint;
use crate::time::UnixTime;
use crate::wire::header::{endpoint, ReplyMode};
use crate::wire::policy::{
    policy_location_path, ClientToken, LocationError, PolicyAssignment, RequestAssignments,
};
use crate::wire::report::Report;
use crate::wire::state_message::StateMessage;
use crate::wire::status::StatusMessage;

/// A message body that knows where it goes.
pub trait MessageBody: Emit {
    /// The target endpoint.
    fn endpoint(&self) -> &'static str;
    /// Sync (request/reply) or ASync (one-way).
    fn reply_mode(&self) -> ReplyMode;
}

impl MessageBody for Report<'_> {
    fn endpoint(&self) -> &'static str {
        self.kind.endpoint()
    }
    fn reply_mode(&self) -> ReplyMode {
        ReplyMode::Async
    }
}

impl MessageBody for StateMessage<'_> {
    fn endpoint(&self) -> &'static str {
        endpoint::RELAY
    }
    fn reply_mode(&self) -> ReplyMode {
        ReplyMode::Async
    }
}

impl MessageBody for StatusMessage<'_> {
    fn endpoint(&self) -> &'static str {
        endpoint::STATUS
    }
    fn reply_mode(&self) -> ReplyMode {
        ReplyMode::Async
    }
}

impl MessageBody for RequestAssignments<'_> {
    fn endpoint(&self) -> &'static str {
        endpoint::POLICY
    }
    fn reply_mode(&self) -> ReplyMode {
        ReplyMode::Sync
    }
}

/// Sign `body` into the request that carries it to its endpoint.
pub fn sign_message<'a, B: MessageBody>(
    config: &AgentConfig<'a>,
    signer: &MessageSigner<'a>,
    body: &'a B,
    message_id: Guid,
    now: UnixTime,
) -> Result<SignedMessage<'a>, SignedMessageError> {
    let params = MessageParams {
        endpoint: body.endpoint(),
        reply_mode: body.reply_mode(),
        message_id,
        now,
    };
    SignedMessage::new(config, signer, params, body)
}

/// The `RequestAssignments` of `smsid` from `config` (machine policy of the configured site),
/// echoing `server_cookie`, the last reply's (empty the first time).
pub fn request_assignments<'a>(
    config: &AgentConfig<'a>,
    smsid: Smsid,
    server_cookie: &'a str,
) -> RequestAssignments<'a> {
    RequestAssignments {
        smsid,
        fqdn: config.fqdn,
        netbios_name: config.netbios_name,
        site_code: config.site_code,
        server_cookie,
    }
}

/// Longest policy body path accepted.
pub const MAX_POLICY_PATH: usize = 256;

/// Why a policy body request could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PolicyGetError {
    /// The body location is not one the agent fetches.
    Location(LocationError),
    /// The path is longer than [`MAX_POLICY_PATH`].
    PathTooLong,
    /// Signing the client token failed.
    Sign(SignError),
}

impl core::fmt::Display for PolicyGetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Location(e) => write!(f, "the policy body location is not fetchable: {e}"),
            Self::PathTooLong => write!(
                f,
                "the policy body path is longer than {MAX_POLICY_PATH} bytes"
            ),
            Self::Sign(e) => write!(f, "signing the client token failed: {e}"),
        }
    }
}

impl core::error::Error for PolicyGetError {}

/// `GET /SMS_MP/.sms_pol?{id}.{version}` with `ClientToken` and `ClientTokenSignature` (docs/protocol.md §5),
/// in small fixed buffers it owns; an [`Emit`] of the whole request head.
#[derive(Clone)]
pub struct PolicyBodyRequest<'a> {
    path: heapless::String<MAX_POLICY_PATH>,
    host: &'a str,
    port: u16,
    token: ClientToken,
    signature_hex: heapless::String<{ 2 * MAX_SIGNATURE_LEN }>,
}

impl core::fmt::Debug for PolicyBodyRequest<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GET {} (Host {}:{})", self.path, self.host, self.port)
    }
}

impl<'a> PolicyBodyRequest<'a> {
    /// The request for the body at `location` (unescaped, e.g.
    /// `http://<mp>/SMS_MP/.sms_pol?{id}.2_00`; `<mp>` is the configured MP), signed for `smsid`
    /// with `signer` at `now`.
    pub fn new(
        config: &AgentConfig<'a>,
        signer: &dyn Signer,
        smsid: Smsid,
        location: &str,
        now: UnixTime,
    ) -> Result<Self, PolicyGetError> {
        let path =
            policy_location_path(location, config.mp.host).map_err(PolicyGetError::Location)?;
        let mut p = heapless::String::new();
        p.push_str(path).map_err(|_| PolicyGetError::PathTooLong)?;
        let token = ClientToken::new(smsid, &now.to_datetime());
        let sig = token.sign(signer).map_err(PolicyGetError::Sign)?;
        let mut signature_hex = heapless::String::new();
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for b in sig.as_bytes() {
            for nibble in [b >> 4, b & 0x0F] {
                let c = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
                signature_hex
                    .push(char::from(c))
                    .map_err(|_| PolicyGetError::Sign(SignError::Crypto))?;
            }
        }
        Ok(Self {
            path: p,
            host: config.mp.host,
            port: config.mp.port,
            token,
            signature_hex,
        })
    }

    /// The request for an assignment's body (its location unescaped into a stack buffer).
    pub fn for_assignment(
        config: &AgentConfig<'a>,
        signer: &dyn Signer,
        smsid: Smsid,
        assignment: &PolicyAssignment<'_>,
        now: UnixTime,
    ) -> Result<Self, PolicyGetError> {
        let mut buf = [0u8; MAX_POLICY_PATH + 64];
        let location = assignment
            .location
            .unescape_into(&mut buf)
            .map_err(|_| PolicyGetError::Location(LocationError::TooLong))?;
        Self::new(config, signer, smsid, location, now)
    }

    /// The origin-form path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `ClientToken` header value.
    pub fn client_token(&self) -> &str {
        self.token.as_str()
    }

    /// The `ClientTokenSignature` header value (hex, upper case).
    pub fn client_token_signature(&self) -> &str {
        &self.signature_hex
    }
}

impl Emit for PolicyBodyRequest<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        let extra = [
            ("ClientToken", self.token.as_str()),
            ("ClientTokenSignature", self.signature_hex.as_str()),
        ];
        RequestHead::get(&self.path, self.host, Some(self.port), &extra).emit(out)
    }
}

/// Whether reports to `endpoint` travel as body + attachment (discovery and inventory: real MPs
/// read those from the attachment, docs/protocol.md §5) rather than as one body.
pub fn travels_attached(endpoint: Endpoint) -> bool {
    matches!(endpoint, Endpoint::Ddr | Endpoint::Hinv)
}

/// The `Name` of a report's attachment: the inventory action ID in the ConfigMgr 2007 form, a
/// GUID of the message's own in the captured current-branch form (docs/protocol.md §5 leaves which one a
/// given MP insists on open: the site generation decides).
pub fn attachment_name(naming: AttachmentNaming, endpoint: Endpoint, message_id: Guid) -> Guid {
    use crate::wire::report::ReportKind as Kind;
    let action = match endpoint {
        Endpoint::Hinv => Kind::HardwareInventory,
        _ => Kind::Discovery,
    };
    match naming {
        AttachmentNaming::InventoryActionId => {
            Guid::parse(action.inventory_action_id().as_bytes()).unwrap_or(message_id)
        }
        AttachmentNaming::MessageId => message_id,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::config::SiteMode;
    use crate::sign::P256Signer;
    use crate::sink::{emitted_len, SliceSink};
    use crate::wire::policy::ReplyAssignments;
    use p256::ecdsa::signature::Verifier;
    use std::vec;
    use std::vec::Vec;

    fn config() -> AgentConfig<'static> {
        AgentConfig::new(
            "PS1",
            SiteMode::Mixed,
            "http://mp.corp.example:8080",
            "PRN-1",
            "prn-1.corp.example",
        )
        .unwrap()
    }

    #[test]
    fn policy_get_head_and_token_signature() {
        let signer = P256Signer::from_secret_bytes(&[8; 32]).unwrap();
        let smsid = Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap();
        let xml = "<ReplyAssignments><PolicyAssignment><Policy PolicyID=\"{A}\" PolicyVersion=\"1.00\"><PolicyLocation><![CDATA[http://<mp>/SMS_MP/.sms_pol?{A}.1_00]]></PolicyLocation></Policy></PolicyAssignment></ReplyAssignments>";
        let r = ReplyAssignments::parse(xml).unwrap();
        let a = r.assignments().next().unwrap().unwrap();
        let cfg = config();
        let req =
            PolicyBodyRequest::for_assignment(&cfg, &signer, smsid, &a, UnixTime(1_795_428_000))
                .unwrap();
        let mut v = vec![0u8; emitted_len(&req).unwrap()];
        let mut s = SliceSink::new(&mut v);
        req.emit(&mut s).unwrap();
        let text = std::str::from_utf8(&v).unwrap();
        let want_head = "GET /SMS_MP/.sms_pol?{A}.1_00 HTTP/1.1\r\nHost: mp.corp.example:8080\r\n\
User-Agent: ConfigMgr Messaging HTTP Sender\r\nConnection: close\r\n\
ClientToken: GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42;2026-11-23T10:00:00Z;2\r\nClientTokenSignature: ";
        assert!(text.starts_with(want_head), "{text}");
        assert!(text.ends_with("\r\n\r\n"));
        let hex = req.client_token_signature();
        assert_eq!(hex.len(), 128);
        assert_eq!(hex, hex.to_uppercase());
        let sig: Vec<u8> = (0..64)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let mut msg: Vec<u8> = req
            .client_token()
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        msg.extend_from_slice(&[0, 0]);
        signer
            .verifying_key()
            .verify(&msg, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
            .unwrap();
        assert_eq!(
            PolicyBodyRequest::new(&cfg, &signer, smsid, "http://evil/x", UnixTime(0)).err(),
            Some(PolicyGetError::Location(LocationError::ForeignHost))
        );
        let long = std::format!("http://<mp>/{}", "a".repeat(300));
        assert_eq!(
            PolicyBodyRequest::new(&cfg, &signer, smsid, &long, UnixTime(0)).err(),
            Some(PolicyGetError::PathTooLong)
        );
    }

    #[test]
    fn bodies_route_to_their_endpoints() {
        use crate::wire::report::{NoInstances, ReportIdentity};
        let smsid = Smsid(Guid([1; 16]));
        let id = ReportIdentity::new(smsid, "PRN-1");
        let t = UnixTime(0).to_datetime();
        let ddr = Report::discovery(id, t, &NoInstances);
        assert_eq!(
            (ddr.endpoint(), ddr.reply_mode()),
            ("MP_DdrEndpoint", ReplyMode::Async)
        );
        let st = StateMessage::new(id, t, "x", 1, 0, 1);
        assert_eq!(
            (st.endpoint(), st.reply_mode()),
            ("MP_RelayEndpoint", ReplyMode::Async)
        );
        let ra = request_assignments(&config(), smsid, "");
        assert_eq!(
            (ra.endpoint(), ra.reply_mode()),
            ("MP_PolicyManager", ReplyMode::Sync)
        );
        assert_eq!(ra.site_code.as_str(), "PS1");
    }
}
