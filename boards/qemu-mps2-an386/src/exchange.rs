//! Management data after registration, as `host-sim`'s `client run` does it with the same core
//! API: the heartbeat DDR goes into the store's queue; the queue drains to the MP in order, a
//! message leaving the queue only once the MP answered 2xx (so a power cut or a dead MP means it
//! is sent again later, with its original message ID, which the MP de-duplicates); policy is
//! requested, new bodies are fetched (written to `policy<N>.xml`) and acknowledged with a state
//! message that is queued and sent like any report.
//!
//! Every exchange runs under [`EXCHANGE_DEADLINE`] (`embassy_time::with_timeout`): a dead or
//! stalled MP costs one deadline, never the boot.

use core::ffi::CStr;

use defmt::{error, info, warn};
use embassy_time::{with_timeout, Duration};
use heapless::{String, Vec};
use mpagent_core::agent::messages::{
    request_assignments, sign_message, PolicyBodyRequest, PolicyGetError, MAX_POLICY_PATH,
};
use mpagent_core::agent::signed::{
    MessageParams, MessageSigner, SignedMessage, SignedMessageError,
};
use mpagent_core::config::AgentConfig;
use mpagent_core::guid::{Guid, Smsid};
use mpagent_core::io::{self, Clock as _, FetchError, PolicyRequestError, SendError};
use mpagent_core::sink::{Emit, Overflow, Sink};
use mpagent_core::store::{BodyFault, Endpoint, MessageMeta, StoreError};
use mpagent_core::wire::header::ReplyMode;
use mpagent_core::wire::policy::PolicyAssignment;
use mpagent_core::wire::report::{BasicDiscovery, Report, ReportIdentity};
use mpagent_core::wire::state_message::StateMessage;
use mpagent_core::wire::xml_reader::XmlText;
use rand_core::RngCore;
use semihosting::fs::{self, File};
use semihosting::io::Write as _;

use crate::identity::{BoardStore, StoreFailure};
use crate::net::{BoardClock, TcpConnector};

/// Bound on one whole exchange (connect, send, reply). The socket's own timeout (10 s,
/// `net.rs`) only catches silence; this catches an MP that keeps trickling bytes.
pub const EXCHANGE_DEADLINE: Duration = Duration::from_secs(20);
/// Policy assignments handled per poll (more are logged and left for a later poll).
pub const MAX_ASSIGNMENTS: usize = 4;
/// Longest policy ID / version kept.
const MAX_POLICY_ID: usize = 64;
const MAX_POLICY_VERSION: usize = 16;
/// State message acknowledging an applied policy ([profile], as `client run`): topic type 402,
/// state 1.
const POLICY_TOPIC_TYPE: u32 = 402;
const POLICY_STATE_APPLIED: u32 = 1;
const POLICY_TMP: &CStr = c"policy.tmp";
const POLICY_FILES: [&CStr; MAX_ASSIGNMENTS] = [
    c"policy0.xml",
    c"policy1.xml",
    c"policy2.xml",
    c"policy3.xml",
];

/// One policy assignment, copied out of the reply (which lives in the exchange buffer).
pub struct Assignment {
    id: String<MAX_POLICY_ID>,
    version: String<MAX_POLICY_VERSION>,
    location: String<{ MAX_POLICY_PATH + 64 }>,
}

/// Where a poll's assignments are kept (a static: they are too large for the task's future).
pub type Assignments = Vec<Assignment, MAX_ASSIGNMENTS>;

/// The data exchange could not go on, for a reason that will not pass by retrying later.
#[derive(Debug, defmt::Format)]
pub enum ExchangeError {
    /// The store failed.
    Store(StoreFailure),
    /// A message could not be signed.
    Sign(SignedMessageError),
    /// A queued message could not be read back from flash.
    QueueRead(BodyFault),
    /// A policy body request could not be built.
    PolicyGet(PolicyGetError),
}

impl From<StoreFailure> for ExchangeError {
    fn from(e: StoreFailure) -> Self {
        Self::Store(e)
    }
}

/// Why the exchange stopped early (what is left stays queued for the next boot).
#[derive(Debug, Clone, Copy, defmt::Format)]
pub enum Stop {
    /// Sending a queued message failed in a way worth retrying (MP unreachable, 5xx, …).
    Send(SendError),
    /// The policy request failed.
    Policy(PolicyRequestError),
    /// A policy body could not be fetched or written.
    Fetch(FetchError),
    /// An exchange ran past [`EXCHANGE_DEADLINE`].
    Deadline,
    /// The queue had no room for a new message.
    QueueFull,
}

/// What one boot's exchange did.
#[derive(Debug, Default, defmt::Format)]
pub struct Summary {
    /// Messages queued this boot.
    pub queued: u32,
    /// Messages the MP acknowledged (2xx) and that left the queue.
    pub delivered: u32,
    /// Messages the MP refused for good (4xx): logged with their ID and removed.
    pub refused: u32,
    /// Policy assignments in the MP's reply.
    pub assignments: u32,
    /// Policy bodies fetched and acknowledged.
    pub policies: u32,
    /// Why the exchange stopped early, if it did.
    pub stopped: Option<Stop>,
}

/// Who talks: the configuration, the signer (with the cached `ClientIDSignature`) and the clock.
pub struct Agent<'a> {
    /// Site, MP and names.
    pub config: &'a AgentConfig<'a>,
    /// Signs every message as the registered client.
    pub signer: MessageSigner<'a>,
    /// Stamps `SentTime` and report dates.
    pub clock: &'a BoardClock,
}

impl Agent<'_> {
    fn smsid(&self) -> Smsid {
        self.signer.source_id()
    }
}

fn enqueue(
    store: &mut BoardStore,
    agent: &Agent<'_>,
    endpoint: Endpoint,
    body: &dyn Emit,
    rng: &mut dyn RngCore,
    summary: &mut Summary,
) -> Result<(), ExchangeError> {
    let meta = MessageMeta {
        message_id: Guid::random(rng),
        endpoint,
        reply_mode: ReplyMode::Async,
        sent_time: agent.clock.now(),
        source_id: Some(agent.smsid()),
    };
    let mut scratch = [0u8; 256];
    match store.enqueue(&meta, body, &mut scratch) {
        Ok(()) => {
            summary.queued += 1;
            info!(
                "queued {=str} {} ({} waiting)",
                endpoint.name(),
                meta.message_id,
                store.len()
            );
            Ok(())
        }
        // Full: deliver what waits first; this message is not made (nothing half-stored).
        Err(StoreError::QueueFull) => {
            warn!("queue full: {=str} not queued", endpoint.name());
            summary.stopped = Some(Stop::QueueFull);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Queue a heartbeat DDR naming this device's address and MAC.
pub fn queue_heartbeat(
    store: &mut BoardStore,
    agent: &Agent<'_>,
    ip: [u8; 4],
    mac: [u8; 6],
    rng: &mut dyn RngCore,
    summary: &mut Summary,
) -> Result<(), ExchangeError> {
    let ip = ip_text(ip);
    let mac = mac_text(mac);
    let discovery = BasicDiscovery {
        fqdn: agent.config.fqdn,
        client_version: mpagent_core::profile::REPORT_CLIENT_VERSION,
        platform_id: mpagent_core::profile::DISCOVERY_PLATFORM_ID,
        domain: None,
        ip_addresses: &[ip.as_str()],
        mac_addresses: &[mac.as_str()],
    };
    let identity = ReportIdentity::new(agent.smsid(), agent.config.netbios_name);
    let report = Report::discovery(identity, agent.clock.now().to_datetime(), &discovery);
    enqueue(store, agent, Endpoint::Ddr, &report, rng, summary)
}

/// Send queued messages in order until the queue is empty or the MP stops answering.
pub async fn drain(
    store: &mut BoardStore,
    connector: &mut TcpConnector<'_>,
    agent: &Agent<'_>,
    buf: &mut [u8],
    summary: &mut Summary,
) -> Result<(), ExchangeError> {
    while let Some(msg) = store.peek()? {
        let meta = msg.meta;
        // SentTime is restamped (the MP checks a window; the header is not signed); the message
        // ID stays the original one so a retry is recognised.
        let params = MessageParams {
            endpoint: meta.endpoint.name(),
            reply_mode: meta.reply_mode,
            message_id: meta.message_id,
            now: agent.clock.now(),
        };
        let outcome = {
            let body = store.body(&msg);
            let signed = SignedMessage::new(agent.config, &agent.signer, params, &body)
                .map_err(ExchangeError::Sign)?;
            let sent =
                with_timeout(EXCHANGE_DEADLINE, io::send_message(connector, &signed, buf)).await;
            if let Some(fault) = body.fault() {
                return Err(ExchangeError::QueueRead(fault));
            }
            sent
        };
        match outcome {
            Ok(Ok(())) => {
                store.pop(&msg)?;
                summary.delivered += 1;
                info!("delivered {=str} {}", meta.endpoint.name(), meta.message_id);
            }
            Ok(Err(e)) if e.is_retryable() => {
                warn!("delivery stopped ({}): {} queued", e, store.len());
                summary.stopped = Some(Stop::Send(e));
                return Ok(());
            }
            Ok(Err(e)) => {
                // Sending it again would fail the same way and block every later message.
                error!(
                    "MP refused {=str} {} for good ({}): removed from the queue",
                    meta.endpoint.name(),
                    meta.message_id,
                    e
                );
                store.pop(&msg)?;
                summary.refused += 1;
            }
            Err(_) => {
                warn!("delivery stopped: deadline; {} queued", store.len());
                summary.stopped = Some(Stop::Deadline);
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Request policy; fetch each assigned body into `policy<N>.xml` and queue a state message
/// acknowledging it. `scratch` decodes the reply (3/2 of the reply's size).
#[allow(clippy::too_many_arguments)]
pub async fn poll_policy(
    store: &mut BoardStore,
    connector: &mut TcpConnector<'_>,
    agent: &Agent<'_>,
    buf: &mut [u8],
    scratch: &mut [u8],
    found: &mut Assignments,
    rng: &mut dyn RngCore,
    summary: &mut Summary,
) -> Result<(), ExchangeError> {
    let smsid = agent.smsid();
    let request = request_assignments(agent.config, smsid);
    let signed = sign_message(
        agent.config,
        &agent.signer,
        &request,
        Guid::random(rng),
        agent.clock.now(),
    )
    .map_err(ExchangeError::Sign)?;
    found.clear();
    let mut skipped = 0u32;
    let mut keep = |a: &PolicyAssignment<'_>| {
        let kept = copy_assignment(a).is_some_and(|a| found.push(a).is_ok());
        if !kept {
            skipped += 1;
        }
    };
    let polled = with_timeout(
        EXCHANGE_DEADLINE,
        io::request_policy(connector, &signed, buf, scratch, &mut keep),
    )
    .await;
    let n = match polled {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            warn!("policy request failed: {}", e);
            summary.stopped = Some(Stop::Policy(e));
            return Ok(());
        }
        Err(_) => {
            warn!("policy request: deadline");
            summary.stopped = Some(Stop::Deadline);
            return Ok(());
        }
    };
    summary.assignments = n as u32;
    if skipped > 0 {
        warn!("{} policy assignments not handled this time", skipped);
    }
    for (i, a) in found.iter().enumerate() {
        let req = PolicyBodyRequest::new(
            agent.config,
            agent.signer.identity.signer,
            smsid,
            &a.location,
            agent.clock.now(),
        )
        .map_err(ExchangeError::PolicyGet)?;
        let Some(name) = POLICY_FILES.get(i) else {
            break;
        };
        let fetched = match File::create(POLICY_TMP) {
            Ok(file) => {
                let mut sink = FileSink {
                    file,
                    failed: false,
                };
                let r = with_timeout(
                    EXCHANGE_DEADLINE,
                    io::fetch_policy_body(connector, &req, buf, &mut sink),
                )
                .await;
                drop(sink); // closed before the rename
                r
            }
            Err(_) => Ok(Err(FetchError::Sink)),
        };
        let len = match fetched {
            Ok(Ok(len)) => len,
            Ok(Err(e)) => {
                warn!(
                    "policy {=str}.{=str}: {}",
                    a.id.as_str(),
                    a.version.as_str(),
                    e
                );
                summary.stopped = Some(Stop::Fetch(e));
                return Ok(());
            }
            Err(_) => {
                warn!("policy {=str}: deadline", a.id.as_str());
                summary.stopped = Some(Stop::Deadline);
                return Ok(());
            }
        };
        if fs::rename(POLICY_TMP, name).is_err() {
            summary.stopped = Some(Stop::Fetch(FetchError::Sink));
            return Ok(());
        }
        info!(
            "policy {=str}.{=str} applied: {=usize} bytes",
            a.id.as_str(),
            a.version.as_str(),
            len
        );
        summary.policies += 1;
        // Acknowledge (topic = `id.version`, as `client run`), queued like any report.
        let mut topic: String<{ MAX_POLICY_ID + 1 + MAX_POLICY_VERSION }> = String::new();
        let _ = topic.push_str(&a.id);
        let _ = topic.push('.');
        let _ = topic.push_str(&a.version);
        let identity = ReportIdentity::new(smsid, agent.config.netbios_name);
        let state = StateMessage::new(
            identity,
            agent.clock.now().to_datetime(),
            &topic,
            POLICY_TOPIC_TYPE,
            0,
            POLICY_STATE_APPLIED,
        );
        enqueue(store, agent, Endpoint::Relay, &state, rng, summary)?;
    }
    Ok(())
}

fn copy_text<const N: usize>(t: &XmlText<'_>) -> Option<String<N>> {
    let mut tmp = [0u8; MAX_POLICY_PATH + 64];
    let text = t.unescape_into(&mut tmp).ok()?;
    let mut s = String::new();
    s.push_str(text).ok()?;
    Some(s)
}

fn copy_assignment(a: &PolicyAssignment<'_>) -> Option<Assignment> {
    Some(Assignment {
        id: copy_text(&a.policy_id)?,
        version: copy_text(&a.policy_version)?,
        location: copy_text(&a.location)?,
    })
}

/// Streams a policy body into a semihosting file.
struct FileSink {
    file: File,
    failed: bool,
}

impl Sink for FileSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        if self.failed || self.file.write_all(bytes).is_err() {
            self.failed = true;
            return Err(Overflow);
        }
        Ok(())
    }
}

/// `a.b.c.d` without `core::fmt` (which would link several KiB).
fn ip_text(ip: [u8; 4]) -> String<15> {
    let mut s = String::new();
    for (i, octet) in ip.iter().enumerate() {
        if i > 0 {
            let _ = s.push('.');
        }
        let mut digits = [0u8; 3];
        let mut n = *octet;
        let mut len = 0;
        loop {
            digits[len] = b'0' + n % 10;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for d in digits[..len].iter().rev() {
            let _ = s.push(char::from(*d));
        }
    }
    s
}

/// `AA:BB:CC:DD:EE:FF`, as Windows reports `MACAddress`.
fn mac_text(mac: [u8; 6]) -> String<17> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::new();
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            let _ = s.push(':');
        }
        let _ = s.push(char::from(HEX[usize::from(b >> 4)]));
        let _ = s.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    s
}
