//! Management data after registration, as `host-sim`'s `client run` does it with the same core
//! API: the heartbeat DDR goes into the store's queue; the queue drains to the MP in order, a
//! message leaving the queue only once the MP answered 2xx (so a power cut or a dead MP means it
//! is sent again later, with its original message ID, which the MP de-duplicates); policy is
//! requested, new bodies are fetched (into the board's [`PolicyBodies`]) and acknowledged with a
//! state message that is queued and sent like any report.
//!
//! Every exchange runs under [`EXCHANGE_DEADLINE`] (`embassy_time::with_timeout`): a dead or
//! stalled MP costs one deadline, never the boot.

use defmt::{error, info, warn};
use embassy_time::{with_timeout, Duration};
use heapless::{String, Vec};
use mpagent_core::agent::messages::{
    request_assignments, sign_message, PolicyBodyRequest, PolicyGetError, MAX_POLICY_PATH,
};
use mpagent_core::agent::registration::{RegistrationState, SigningIdentity};
use mpagent_core::agent::signed::{
    MessageParams, MessageSigner, SignedMessage, SignedMessageError,
};
use mpagent_core::config::AgentConfig;
use mpagent_core::guid::{Guid, Smsid};
use mpagent_core::io::{self, Clock, Connector, FetchError, PolicyRequestError, SendError};
use mpagent_core::sink::{Emit, Sink};
use mpagent_core::store::embedded_storage::nor_flash::NorFlash;
use mpagent_core::store::{BodyFault, Endpoint, MessageMeta, Store, StoreError};
use mpagent_core::wire::clientauth::ClientIdSignature;
use mpagent_core::wire::header::ReplyMode;
use mpagent_core::wire::policy::PolicyAssignment;
use mpagent_core::wire::report::{BasicDiscovery, Report, ReportIdentity};
use mpagent_core::wire::state_message::StateMessage;
use mpagent_core::wire::xml_reader::XmlText;
use rand_core::RngCore;

use crate::text::{ip_text, mac_text};

/// Bound on one whole exchange (connect, send, reply). A connector's own socket timeout only
/// catches silence; this catches an MP that keeps trickling bytes.
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

/// Where a board keeps the policy bodies it fetches (files, RAM, flash…).
pub trait PolicyBodies {
    /// Receives one body as it streams in.
    type Body<'a>: Sink
    where
        Self: 'a;
    /// Start receiving body `index` (below [`MAX_ASSIGNMENTS`]); `None` if it cannot be kept.
    fn begin(&mut self, index: usize) -> Option<Self::Body<'_>>;
    /// Body `index` arrived whole (its `Body` already dropped): keep it in place of the previous
    /// one. `false` if that failed.
    fn keep(&mut self, index: usize, len: usize) -> bool;
}

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
pub enum ExchangeError<E> {
    /// The store failed.
    Store(StoreError<E>),
    /// A message could not be signed.
    Sign(SignedMessageError),
    /// A queued message could not be read back from flash.
    QueueRead(BodyFault),
    /// A policy body request could not be built.
    PolicyGet(PolicyGetError),
}

impl<E> From<StoreError<E>> for ExchangeError<E> {
    fn from(e: StoreError<E>) -> Self {
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
    /// A policy body could not be fetched or kept.
    Fetch(FetchError),
    /// An exchange ran past [`EXCHANGE_DEADLINE`].
    Deadline,
    /// The queue had no room for a new message.
    QueueFull,
}

/// What one exchange did.
#[derive(Debug, Default, defmt::Format)]
pub struct Summary {
    /// Messages queued this time.
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
pub struct Agent<'a, K: Clock> {
    /// Site, MP and names.
    pub config: &'a AgentConfig<'a>,
    /// Signs every message as the registered client.
    pub signer: MessageSigner<'a>,
    /// Stamps `SentTime` and report dates.
    pub clock: &'a K,
}

impl<K: Clock> Agent<'_, K> {
    fn smsid(&self) -> Smsid {
        self.signer.source_id()
    }
}

/// The buffers of one exchange (statics on the boards: too large for a task's future).
pub struct Buffers<'b> {
    /// Requests stream through it and replies land in it.
    pub exchange: &'b mut [u8],
    /// Decodes a policy reply: 3/2 of `exchange` (`wire::policy::policy_reply_scratch_len`).
    pub policy_scratch: &'b mut [u8],
    /// A poll's assignments.
    pub assignments: &'b mut Assignments,
}

/// Everything after registration: queue a heartbeat DDR naming `ip` and `mac`, drain the queue,
/// poll policy (fetching and acknowledging bodies), drain again. Stops early (see
/// [`Summary::stopped`]) when the MP does not answer; what is left stays queued.
#[allow(clippy::too_many_arguments)]
pub async fn report<F: NorFlash, C: Connector, K: Clock>(
    store: &mut Store<F>,
    connector: &mut C,
    agent: &Agent<'_, K>,
    bufs: &mut Buffers<'_>,
    bodies: &mut impl PolicyBodies,
    ip: [u8; 4],
    mac: [u8; 6],
    rng: &mut dyn RngCore,
) -> Result<Summary, ExchangeError<F::Error>> {
    let mut summary = Summary::default();
    queue_heartbeat(store, agent, ip, mac, rng, &mut summary)?;
    drain(store, connector, agent, bufs.exchange, &mut summary).await?;
    if summary.stopped.is_none() {
        poll_policy(store, connector, agent, bufs, bodies, rng, &mut summary).await?;
    }
    if summary.stopped.is_none() {
        drain(store, connector, agent, bufs.exchange, &mut summary).await?;
    }
    Ok(summary)
}

fn enqueue<F: NorFlash, K: Clock>(
    store: &mut Store<F>,
    agent: &Agent<'_, K>,
    endpoint: Endpoint,
    body: &dyn Emit,
    rng: &mut dyn RngCore,
    summary: &mut Summary,
) -> Result<(), ExchangeError<F::Error>> {
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
pub fn queue_heartbeat<F: NorFlash, K: Clock>(
    store: &mut Store<F>,
    agent: &Agent<'_, K>,
    ip: [u8; 4],
    mac: [u8; 6],
    rng: &mut dyn RngCore,
    summary: &mut Summary,
) -> Result<(), ExchangeError<F::Error>> {
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

/// The MP did not answer the registration: a device registered before (`stored`) still queues
/// its heartbeat, delivered later with this message ID. Failures are logged only: the caller
/// has failed already.
#[allow(clippy::too_many_arguments)]
pub fn queue_offline<F: NorFlash, K: Clock>(
    store: &mut Store<F>,
    stored: RegistrationState,
    config: &AgentConfig<'_>,
    signer: &crate::key::DeviceSigner,
    cert_der: &[u8],
    clock: &K,
    ip: [u8; 4],
    mac: [u8; 6],
    rng: &mut dyn RngCore,
) where
    F::Error: defmt::Format,
{
    let RegistrationState::Registered(smsid) = stored else {
        return;
    };
    let Ok(client_id) = ClientIdSignature::compute(signer, smsid) else {
        return;
    };
    let agent = Agent {
        config,
        signer: MessageSigner::client(SigningIdentity { signer, cert_der }, &client_id),
        clock,
    };
    let mut summary = Summary::default();
    match queue_heartbeat(store, &agent, ip, mac, rng, &mut summary) {
        Ok(()) => warn!(
            "MP unreachable: heartbeat kept for later ({} queued)",
            store.len()
        ),
        Err(e) => error!(
            "MP unreachable, and the heartbeat could not be queued: {}",
            e
        ),
    }
}

/// Send queued messages in order until the queue is empty or the MP stops answering.
pub async fn drain<F: NorFlash, C: Connector, K: Clock>(
    store: &mut Store<F>,
    connector: &mut C,
    agent: &Agent<'_, K>,
    buf: &mut [u8],
    summary: &mut Summary,
) -> Result<(), ExchangeError<F::Error>> {
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

/// Request policy; fetch each assigned body into `bodies` and queue a state message
/// acknowledging it.
pub async fn poll_policy<F: NorFlash, C: Connector, K: Clock>(
    store: &mut Store<F>,
    connector: &mut C,
    agent: &Agent<'_, K>,
    bufs: &mut Buffers<'_>,
    bodies: &mut impl PolicyBodies,
    rng: &mut dyn RngCore,
    summary: &mut Summary,
) -> Result<(), ExchangeError<F::Error>> {
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
    let found = &mut *bufs.assignments;
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
        io::request_policy(
            connector,
            &signed,
            bufs.exchange,
            bufs.policy_scratch,
            &mut keep,
        ),
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
    summary.assignments = u32::try_from(n).unwrap_or(u32::MAX);
    if skipped > 0 {
        warn!("{} policy assignments not handled this time", skipped);
    }
    for (i, a) in bufs.assignments.iter().enumerate() {
        let req = PolicyBodyRequest::new(
            agent.config,
            agent.signer.identity.signer,
            smsid,
            &a.location,
            agent.clock.now(),
        )
        .map_err(ExchangeError::PolicyGet)?;
        let fetched = match bodies.begin(i) {
            Some(mut sink) => {
                with_timeout(
                    EXCHANGE_DEADLINE,
                    io::fetch_policy_body(connector, &req, bufs.exchange, &mut sink),
                )
                .await
            }
            None => Ok(Err(FetchError::Sink)),
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
        if !bodies.keep(i, len) {
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
