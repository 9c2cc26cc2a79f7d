//! Every wire detail that is our own choice or inferred rather than confirmed by the public record
//! (`[profile]` in `shared/spec/wire.md`) lives here, so it can change in one place when a real
//! MP says otherwise.

/// HashAlgorithm OID we send with ECDSA P-256 signatures (spec §6, [profile]).
pub const ECDSA_P256_SHA256_OID: &str = "1.2.840.10045.4.3.2";
/// HashAlgorithm OID of RSA PKCS#1 v1.5 + SHA-256 (spec §6, confirmed).
pub const RSA_SHA256_OID: &str = "1.2.840.113549.1.1.11";

/// `AgentIdentity` we announce in registration requests.
pub const AGENT_IDENTITY: &str = "mpagent";
/// `AgentVersion` we announce.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Subject CN the public tools put in self-signed client certificates (spec §7).
pub const DEFAULT_CERT_CN: &str = "ConfigMgr Client";
/// Self-signed certificates start this long before "now" to absorb clock skew (spec §7).
pub const CERT_BACKDATE_SECS: u64 = 24 * 3600;
/// And stay valid this long (spec §7: one or more years).
pub const CERT_VALIDITY_SECS: u64 = 10 * 365 * 24 * 3600;

/// `PublicKey` property of the clientauth hook: we send the signing certificate's DER as hex
/// (real RSA clients send a CryptoAPI PUBLICKEYBLOB; spec §5 [profile]).
pub const PUBLIC_KEY_IS_CERT_DER: bool = true;

/// Registration retry backoff (status 2 and transport errors): first delay, cap (seconds).
pub const RETRY_BACKOFF_FIRST_SECS: u64 = 5;
/// Upper bound of the exponential backoff.
pub const RETRY_BACKOFF_MAX_SECS: u64 = 300;
/// A pending (status 1) registration is confirmed again after this long (spec §4: 30 s – 5 min).
pub const PENDING_RECHECK_SECS: u64 = 60;
