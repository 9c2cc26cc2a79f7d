//! The management point (MP) emulator: an independent implementation of the wire profile
//! (`docs/protocol.md`) that registers clients into a SQLite site database.
//!
//! It deliberately shares no parser with `mpagent-core`: requests are framed with `httparse`, the
//! multipart envelope and UTF-16 are decoded by hand ([`envelope`]), the XML is read with serde
//! (on `quick-xml` for the header and registration, `serde-xml-rs` for the rest: [`messages`])
//! and signatures are checked with RustCrypto ([`verify`]). A bug in the core's emitter therefore
//! shows up here instead of being mirrored.
//!
//! Layout: [`server`] (TCP + HTTP/1.1), [`http`] (the request-head parser), [`handler`] (the
//! `CCM_POST` pipeline and endpoint dispatch), [`registration`] (`MP_ClientRegistration`),
//! [`clientauth`] (the signed `clientauth` hook of every later message, ISV proxy rules, `SentTime`
//! window), [`management`] (DDR, hardware inventory, status and state messages: shape checks and
//! the de-duplicating store), [`policy`] (`RequestAssignments` → `ReplyAssignments`, policy bodies
//! behind `ClientToken`), [`lookup`] (anonymous `.sms_aut` GETs), [`db`] (site database, one module per table family),
//! [`rejection`] (the refusal every step returns),
//! [`crate::group_commit`] (the database's one writer thread), [`step`] (a handler's answer
//! that may still wait on its one database write), [`cli`] (`mpagent-sim mp …`),
//! [`util`] (GUIDs and time stamps), [`tls`] (native mode: HTTPS with client certificates
//! required).
//!
//! Choices the spec leaves open are made in one place each: the signed-message rules in
//! [`clientauth`] (module docs), the accepted report shapes in [`management`], the policy reply and
//! body formats in [`policy`].

pub mod cli;
pub mod clientauth;
pub mod db;
pub mod envelope;
pub mod handler;
pub mod http;
pub mod lookup;
pub mod management;
pub mod messages;
pub mod policy;
pub mod registration;
pub mod rejection;
pub mod server;
pub mod step;
pub mod tls;
pub mod util;
pub mod verify;

use std::path::PathBuf;
use std::time::Duration;

pub use cli::{run, MpCommand};
pub use server::{MpServer, Shortcut};
pub use tls::TlsConfig;

/// Everything the emulator needs to run one site.
#[derive(Clone, Debug)]
pub struct MpConfig {
    /// Three ASCII alphanumerics; validated (and upper-cased) by [`MpServer::start`].
    pub site_code: String,
    /// SQLite site database (created if missing).
    pub db_path: PathBuf,
    /// What happens to a new registration.
    pub approval: Approval,
    /// Resource limits for each connection.
    pub limits: Limits,
    /// The name we report as our FQDN (`TargetHost` of replies, `MPLIST`, …).
    pub mp_host: String,
    /// Behave as real MPs do where they are quieter or stricter than our diagnostics need
    /// (docs/protocol.md §4, §5): reports sent as a single body or from pending clients, and
    /// messages whose identity or signature fails, are answered 200 with an empty body and dropped
    /// (the reason recorded); Confirmation replies carry no SMSID; certificates outside their
    /// validity are refused. Off: every refusal is a 403 with its reason, as the emulator's own
    /// tests want.
    pub strict: bool,
}

/// Approval policy for new (non-proxy) registrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Approval {
    /// Status 0 at once.
    Auto,
    /// Status 1 (`ApprovalStatus="-1"`) until `mpagent-sim mp approve`.
    Pending,
}

/// As `--approval` spells it.
impl std::fmt::Display for Approval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Pending => "pending",
        })
    }
}

/// Per-connection resource limits; anything beyond them is refused with HTTP 403 (503 for a
/// connection beyond `max_connections`) and logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus headers.
    pub max_head_bytes: usize,
    /// Request body (and the decompressed message body).
    pub max_body_bytes: usize,
    /// Time allowed for one whole request to arrive (slowloris guard) and for an idle keep-alive.
    pub read_timeout: Duration,
    /// Connections served at once. As many more wait up to `read_timeout` for a slot; one that
    /// gets none, or finds that waiting line full, is answered 503 (`Retry-After: 1`; native mode:
    /// no answer) and closed, the reason logged.
    pub max_connections: usize,
    /// Connections one IP address may have open (served or waiting) at once; one more is
    /// answered 503 at once, so one host cannot take every slot from the others. The default
    /// leaves a quarter of the slots to other hosts and still lets an ISV proxy forward a few
    /// dozen devices at once.
    pub max_connections_per_address: usize,
    /// Signed messages whose `SentTime` is further than this from the MP's clock (either way) are
    /// refused as possible replays. Registration is exempt (a device without a clock learns the
    /// time from the reply's `Date` header).
    pub sent_time_window: Duration,
    /// A policy `ClientToken` whose time is further than this from the MP's clock is refused.
    pub client_token_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            read_timeout: Duration::from_secs(10),
            max_connections: 64,
            max_connections_per_address: 48,
            sent_time_window: Duration::from_secs(86_400),
            client_token_window: Duration::from_secs(3_600),
        }
    }
}

/// Maximum number of HTTP request headers accepted.
pub const MAX_HEADERS: usize = 32;

/// Validates a site code: exactly three ASCII alphanumerics, returned upper-cased.
pub fn validate_site_code(code: &str) -> anyhow::Result<String> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(code.to_ascii_uppercase())
    } else {
        anyhow::bail!("site code must be exactly 3 ASCII letters or digits, got {code:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_code_validation() {
        assert_eq!(validate_site_code("p01").unwrap(), "P01");
        assert!(validate_site_code("P0").is_err());
        assert!(validate_site_code("P012").is_err());
        assert!(validate_site_code("P-1").is_err());
        assert!(validate_site_code("PÄ1").is_err());
    }

    #[test]
    fn an_approval_prints_as_its_option_value() {
        for approval in [Approval::Auto, Approval::Pending] {
            let back = <Approval as clap::ValueEnum>::from_str(&approval.to_string(), false);
            assert_eq!(back, Ok(approval));
        }
    }
}
