//! One direct-mode appliance of the fleet as the core runs it: a [`Driver`] over the appliance's
//! own in-memory queue flash and virtual clock, with a [`Host`] that makes its heartbeat
//! (discovery) report and tells the fleet how each exchange went.
//!
//! The appliance's clock is the system's plus what it skipped: when the agent has nothing to do
//! until the next heartbeat, the fleet jumps the clock there instead of waiting, so that an
//! appliance sends its heartbeats back to back. Latencies are measured in real time around the
//! driver's steps. A heartbeat period of [`HEARTBEAT_SECS`] keeps every appliance's clock within
//! `--messages-per-client` seconds of the MP's, well inside its `SentTime` window.

use std::time::Instant;

use mpagent_core::agent::lifecycle::{Action, Agent, ReportKind, Schedule};
use mpagent_core::agent::registration::{RegistrationEvent, RegistrationState, SigningIdentity};
use mpagent_core::config::AgentConfig;
use mpagent_core::io::driver::{Buffers, Device, Driver, Event, Host, Persist, Step};
use mpagent_core::io::{Clock, SendError};
use mpagent_core::sink::{Emit, Overflow, Sink};
use mpagent_core::store::embedded_storage::nor_flash::NorFlash;
use mpagent_core::store::testing::RamFlash;
use mpagent_core::store::{Layout, MessageMeta, Store};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::registration::AgentType;
use mpagent_core::wire::report::{Report, ReportIdentity};
use rand_core::OsRng;

use super::{micros, Counters, ThreadStats};
use crate::client::run::HostClock;
use crate::client::transport::TcpConnector;

/// Seconds between an appliance's heartbeats on its virtual clock.
pub const HEARTBEAT_SECS: u64 = 1;

/// Bytes of an appliance's queue flash: two identity slots (unused: the identity lives in
/// memory) and a queue ring of several pages, room for a heartbeat and its retry.
const FLASH_SIZE: usize = 32 * 1024;
/// Erase block of the queue flash (as the host client's flash file and typical MCU flash).
const FLASH_ERASE: usize = 4096;
/// Bytes per identity slot: one erase block.
const IDENTITY_SLOT: u32 = 4096;

/// The appliance's flash: RAM with NOR rules (1-byte reads, 4-byte writes, 4 KiB erase).
type ApplianceFlash = RamFlash<FLASH_SIZE, 1, 4, FLASH_ERASE>;

/// The fleet's side of the driver: the heartbeat report, and what the last exchange came to.
struct FleetHost<'a> {
    fqdn: &'a str,
    /// Messages the MP acknowledged.
    delivered: u64,
    /// Why the last exchange failed, as an error kind (a sentence without IDs or times, so that
    /// failures of one cause add up under one kind).
    failure: Option<String>,
    /// Policy is never polled (the schedule has none); bodies would go nowhere.
    discard: Discard,
}

/// A sink that keeps nothing.
struct Discard;

impl Sink for Discard {
    fn write(&mut self, _bytes: &[u8]) -> Result<(), Overflow> {
        Ok(())
    }
}

impl<F: NorFlash> Host<F> for FleetHost<'_> {
    fn report(
        &mut self,
        kind: ReportKind,
        identity: ReportIdentity<'_>,
        now: UnixTime,
        queue: &mut dyn FnMut(&dyn Emit),
    ) {
        // The schedule asks for heartbeats only.
        if kind == ReportKind::Heartbeat {
            let discovery = crate::client::host_discovery(self.fqdn, &["127.0.0.1"]);
            queue(&Report::discovery(identity, now.to_datetime(), &discovery));
        }
    }

    fn persist(&mut self, _store: &mut Store<F>, _state: RegistrationState) -> Result<(), Persist> {
        // An appliance lives for one fleet run: its registration is the agent's, in memory.
        Ok(())
    }

    fn file_refused(
        &mut self,
        _meta: &MessageMeta,
        _body: &dyn Emit,
        error: SendError,
    ) -> Result<(), Persist> {
        self.failure = Some(format!(
            "message: refused under a confirmed registration: {error}"
        ));
        Ok(())
    }

    fn policy_applied(&mut self, _id: &str, _version: &str) -> bool {
        true
    }

    fn policy_body(&mut self) -> &mut dyn Sink {
        &mut self.discard
    }

    fn policy_done(&mut self, _id: &str, _version: &str, _len: usize, _keep: bool) -> bool {
        false
    }

    fn event(&mut self, event: &Event<'_>) {
        let failure = match *event {
            Event::Delivered { .. } => {
                self.delivered += 1;
                return;
            }
            Event::DeliveryFailed { error, .. } => format!("message: {error}"),
            Event::RegistrationFailed(f) => format!("register: {f}"),
            Event::NoRoom(kind) => format!("message: the queue had no room for the {kind}"),
            // After a failed attempt the registrar's answer (try again later) says less than
            // the failure itself.
            Event::Registration(e) => match registration_failure(e) {
                Some(kind) if self.failure.is_none() => kind.to_string(),
                _ => return,
            },
            _ => return,
        };
        self.failure = Some(failure);
    }
}

/// The error kind of a registration event that leaves the appliance unregistered, if it is one.
fn registration_failure(e: RegistrationEvent) -> Option<&'static str> {
    Some(match e {
        RegistrationEvent::PendingApproval(..) => "register: pending (is the MP auto-approving?)",
        RegistrationEvent::RejectedOnce(_) | RegistrationEvent::Rejected(_) => {
            "register: the site rejected the registration"
        }
        RegistrationEvent::RetryAt(_) => "register: the site asked to try again later",
        RegistrationEvent::Discarded(..) => {
            "register: the site did not confirm the SMSID its reply named"
        }
        RegistrationEvent::Abandoned(..) => "register: the site no longer knows the SMSID",
        RegistrationEvent::Reset(_) => "register: the site asked the client to reset",
        RegistrationEvent::CertificateReset(_) => {
            "register: the site says the certificate conflicts with another client's"
        }
        RegistrationEvent::Issued(_) | RegistrationEvent::Registered(_) => return None,
    })
}

/// Who the appliance is and what it does.
pub(super) struct Plan<'a> {
    /// Site, MP and names.
    pub config: &'a AgentConfig<'a>,
    /// Key and certificate.
    pub identity: SigningIdentity<'a>,
    /// Its FQDN (in the heartbeat).
    pub fqdn: &'a str,
    /// Heartbeat deliveries to attempt after registering.
    pub messages: usize,
}

/// Register `plan`'s appliance and attempt `plan.messages` heartbeat deliveries through the
/// core's driver, counting and timing each. Errors are counted, not returned: the fleet goes
/// on. A failed registration ends the appliance at once (no backoff in the figures); a failed
/// delivery is counted and the next attempt goes at once, as the agent's retry would after its
/// backoff.
pub(super) async fn run(
    plan: Plan<'_>,
    buf: &mut [u8],
    stats: &mut ThreadStats,
    counters: &Counters,
) {
    let mut connector = TcpConnector {
        host: plan.config.mp.host.to_string(),
        port: plan.config.mp.port,
        connect_timeout: std::time::Duration::from_secs(10),
    };
    let mut flash = Box::new(ApplianceFlash::new());
    let layout = Layout::split::<ApplianceFlash>(FLASH_SIZE as u32, IDENTITY_SLOT);
    let mut store = match Store::open(&mut *flash, layout) {
        Ok(s) => s,
        Err(e) => {
            return stats.error(
                counters,
                format!("queue: {}", crate::human::store_error(&e)),
            )
        }
    };
    let mut clock = HostClock::skipping();
    let schedule = Schedule {
        heartbeat_secs: HEARTBEAT_SECS,
        inventory_secs: 0,
        policy_secs: 0,
        ..Schedule::default()
    };
    let mut agent = Agent::new(
        RegistrationState::Unregistered,
        schedule,
        store.len(),
        clock.now(),
    );
    // The fleet counts heartbeats: the online status would be one more message each.
    agent.skip_online_status();
    let mut host = FleetHost {
        fqdn: plan.fqdn,
        delivered: 0,
        failure: None,
        discard: Discard,
    };
    let mut rng = OsRng;
    let device = Device {
        config: plan.config,
        identity: plan.identity,
        agent_type: AgentType::Client,
    };
    let mut driver = Driver::new(
        agent,
        device,
        &mut connector,
        &mut clock,
        &mut store,
        &mut rng,
        Buffers {
            exchange: buf,
            // Policy is never polled: its buffers stay empty.
            policy_scratch: &mut [],
            policies: &mut [],
        },
        &mut host,
    );

    let registration_started = Instant::now();
    let mut registered = false;
    let mut attempts = 0usize;
    // When the report now in the queue started being made (its latency runs from there).
    let mut message_started: Option<Instant> = None;
    // Registration and confirmation, then per message a queue and a delivery, and a confirmation
    // after a refusal: past this many steps the agent is going round in circles.
    let max_steps = 8 + 6 * plan.messages;
    for _ in 0..max_steps {
        if registered && attempts >= plan.messages {
            return;
        }
        let t = Instant::now();
        let delivered = driver.host.delivered;
        let step = match driver.step().await {
            Ok(s) => s,
            Err(e) => {
                return stats.error(
                    counters,
                    format!("agent: {}", crate::human::driver_error(&e)),
                )
            }
        };
        match step {
            Step::Did(Action::Queue { .. }) => {
                message_started.get_or_insert(t);
            }
            Step::Did(Action::Deliver(_)) => {
                attempts += 1;
                let started = message_started.take().unwrap_or(t);
                if driver.host.delivered > delivered {
                    stats.message_us.push(micros(started.elapsed()));
                    counters
                        .messages
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                } else {
                    let kind = driver
                        .host
                        .failure
                        .take()
                        .unwrap_or_else(|| "message: not delivered".into());
                    stats.error(counters, kind);
                    let now = driver.clock.now();
                    driver.agent.retry_now(now);
                }
            }
            Step::Did(_) => {}
            Step::Idle(until) => {
                if !matches!(
                    driver.agent.registration(),
                    RegistrationState::Registered(_)
                ) {
                    let kind = driver
                        .host
                        .failure
                        .take()
                        .unwrap_or_else(|| "register: not registered".into());
                    return stats.error(counters, kind);
                }
                // Nothing to do before the next heartbeat: jump there.
                driver.clock.sleep_until(until).await;
            }
        }
        if !registered
            && matches!(
                driver.agent.registration(),
                RegistrationState::Registered(_)
            )
        {
            registered = true;
            driver.host.failure = None;
            stats
                .registration_us
                .push(micros(registration_started.elapsed()));
            counters
                .registered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    stats.error(counters, format!("agent: not done after {max_steps} steps"));
}
