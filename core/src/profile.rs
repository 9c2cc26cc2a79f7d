//! Every wire detail that is our own choice or inferred rather than confirmed by the public record
//! (`\[profile\]` in `docs/protocol.md`) lives here, so it can change in one place when a real
//! MP says otherwise.

/// HashAlgorithm OID we send with ECDSA P-256 signatures (docs/protocol.md §6, \[profile\]).
pub const ECDSA_P256_SHA256_OID: &str = "1.2.840.10045.4.3.2";
/// HashAlgorithm OID of RSA PKCS#1 v1.5 + SHA-256 (docs/protocol.md §6, confirmed).
pub const RSA_SHA256_OID: &str = "1.2.840.113549.1.1.11";

/// `AgentIdentity` we announce in registration requests.
pub const AGENT_IDENTITY: &str = "mpagent";
/// `AgentVersion` we announce.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Subject CN the public tools put in self-signed client certificates (docs/protocol.md §7).
pub const DEFAULT_CERT_CN: &str = "ConfigMgr Client";
/// Self-signed certificates start this long before "now" to absorb clock skew (docs/protocol.md §7).
pub const CERT_BACKDATE_SECS: u64 = 24 * 3600;
/// And stay valid this long (docs/protocol.md §7: one or more years).
pub const CERT_VALIDITY_SECS: u64 = 10 * 365 * 24 * 3600;

/// `PublicKey` property of the clientauth hook: we send the signing certificate's DER as hex
/// (real RSA clients send a CryptoAPI PUBLICKEYBLOB; docs/protocol.md §5 \[profile\]).
pub const PUBLIC_KEY_IS_CERT_DER: bool = true;

/// Registration retry backoff (status 2 and transport errors): first delay, cap (seconds).
pub const RETRY_BACKOFF_FIRST_SECS: u64 = 5;
/// Upper bound of the exponential backoff.
pub const RETRY_BACKOFF_MAX_SECS: u64 = 300;
/// A pending (status 1) registration is confirmed again after this long (docs/protocol.md §4: 30 s – 5 min).
pub const PENDING_RECHECK_SECS: u64 = 60;

// The registration reply is unsigned (docs/protocol.md §4), so no single reply is believed on its own. These
// are our policy choices, not the site's.

/// Consecutive refusals (HTTP 4xx, or the quiet 200-with-empty-body of real MPs) of confirmations
/// for a pending or re-confirmed SMSID before the agent drops it and registers afresh. Registering
/// again is safe: the site answers the same certificate with the SMSID it holds for it.
pub const CONFIRMATION_REFUSALS_BEFORE_REREGISTER: u32 = 2;
/// A `Status="3"` (rejected) reply must come this many times in a row before it is believed and
/// persisted: one flipped byte must not silence a device for [`REJECTION_RECHECK_SECS`].
pub const REJECTIONS_TO_BELIEVE: u32 = 2;
/// After a first rejection the agent asks again this soon.
pub const REJECTION_SECOND_ASK_SECS: u64 = 2;
/// A persisted rejection is not forever: the agent registers again this long after it (an
/// administrator may have approved or unblocked the device meanwhile). One request a day from a
/// rejected device is negligible load; a day is how long an unblocked device may stay silent.
pub const REJECTION_RECHECK_SECS: u64 = 24 * 3600;

// ---- Messages after registration (docs/protocol.md §5) ----------------------------------------------------

/// Name of the clientauth property that names the ISV proxy signing for a client (docs/protocol.md §5
/// \[profile\]). With it, `ClientIDSignature` is the proxy's signature over the *client's* SMSID
/// (the `SourceID`), and `PublicKey` is the proxy's certificate.
pub const CLIENTAUTH_PROXY_SMSID_PROPERTY: &str = "ProxySMSID";

/// `<Machine><ClientInstalled>` of reports: we are the installed client (Windows clients send 1;
/// the public tools, which are not clients, send 0).
pub const REPORT_CLIENT_INSTALLED: u32 = 1;
/// `<Machine><ClientType>`: 1, as Windows clients and the public tools send.
pub const REPORT_CLIENT_TYPE: u32 = 1;
/// `<Machine><ClientVersion>`: the Windows client version the public tools send and real MPs
/// accept (our own version travels as `AgentVersion` at registration).
pub const REPORT_CLIENT_VERSION: &str = "5.00.8325.0000";
/// `<Machine><CodePage>`: 437 (OEM United States), what en-US Windows clients send.
pub const REPORT_CODE_PAGE: u32 = 437;
/// `<Machine><SystemDefaultLCID>`: 1033 (en-US), as in registration's `Locale ID`.
pub const REPORT_SYSTEM_DEFAULT_LCID: u32 = 1033;

/// `<ReportContent>` of discovery and hardware inventory reports (public tools).
pub const INVENTORY_REPORT_CONTENT: &str = "Inventory Data";
/// `<Format>` of discovery and hardware inventory reports (public tools).
pub const INVENTORY_REPORT_FORMAT: &str = "1.1";
/// `CCM_DiscoveryData/PlatformID` of [`crate::wire::report::BasicDiscovery`] (ours).
pub const DISCOVERY_PLATFORM_ID: &str = "mpagent appliance";

/// `<ReportContent>` of state messages (as a Windows client's StateMessage.log shows them).
/// State messages carry no `<InventoryAction>` (same source).
pub const STATE_REPORT_CONTENT: &str = "State Message Data";
/// `<Format>` of state messages (same source).
pub const STATE_REPORT_FORMAT: &str = "1.0";
/// `State/@Criticality` unless the caller says otherwise (docs/protocol.md §5: State attributes are profile).
pub const STATE_CRITICALITY: u32 = 0;
/// `StateDetails/@Type` unless the caller says otherwise (1 in every public sample).
pub const STATE_DETAILS_TYPE: u32 = 1;
// State message extras (as the Windows client log shows): `StateMessage/@MessageTime` (WMI form)
// and `UserParameters/@Flags="0"` + `@Count`. Status messages: `ClientID`, `DateTime`,
// `MachineName`, `SiteCode` properties first, `Name`/`Value` attributes (wire/status.rs).

/// An ASync post counts as delivered on any 2xx (the spec expects 200; 202/204 would be an
/// MP's way of saying the same, and retrying them would only duplicate the message).
pub const ASYNC_ACCEPTS_ANY_2XX: bool = true;

/// Default heartbeat (discovery data record) period of the agent's schedule.
pub const HEARTBEAT_SECS: u64 = 3600;
/// Default full hardware inventory period.
pub const INVENTORY_SECS: u64 = 24 * 3600;
/// Default policy request period.
pub const POLICY_SECS: u64 = 3600;
/// Whether an empty HTTP 200 to the policy request makes the agent re-confirm its registration.
/// Real MPs answer both "nothing for you yet" and "your identity or signature failed" that way
/// (docs/protocol.md §5, §6), and a forgotten device would otherwise never find out: one confirmation per
/// policy period settles which it was.
pub const EMPTY_POLICY_REPLY_RECONFIRMS: bool = true;
/// `<Type>` of the status message an agent queues when it starts.
pub const ONLINE_STATUS_TYPE: &str = "appliance-online";
