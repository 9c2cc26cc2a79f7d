//! `client run`: the long-running appliance on a host, a thin driver over the core's
//! [`Agent`](mpagent_core::agent::lifecycle::Agent): the state directory persists the
//! registration, the queue lives in a flash file in the same record format boards keep in flash,
//! applied policy bodies go to `policies/`, messages the site refused under a confirmed
//! registration to `refused/` (never dropped silently). Everything else — registration and
//! re-confirmation, schedules, superseding, what a refusal means — is the core's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use mpagent_core::agent::lifecycle::{Agent, Refusal, ReportKind, Schedule as AgentSchedule};
use mpagent_core::agent::registration::{RegistrationState, SigningIdentity};
use mpagent_core::io::driver::{
    Buffers, Device, Driver, DriverError, Event, Host, Persist, PolicySlot, Step,
};
use mpagent_core::io::{Clock, SendError};
use mpagent_core::sign::SiteHashSigner;
use mpagent_core::sink::{Emit, Overflow, Sink};
use mpagent_core::store::{MessageMeta, Store};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::registration::AgentType;
use mpagent_core::wire::report::{
    InstanceContent, InstanceSource, InstanceWriter, Namespace, Report, ReportIdentity, ReportType,
    ReportVersion,
};

use super::flash_file::FlashFile;
use super::session::Session;
use super::transport::unix_now;
use super::{ClientOptions, EXCHANGE_BUFFER};

/// Name of the flash file holding the queue.
pub const QUEUE_FILE: &str = "queue.flash";
/// Where applied policy bodies are written.
pub const POLICY_DIR: &str = "policies";
/// Where messages the site refused under a confirmed registration are kept.
pub const REFUSED_DIR: &str = "refused";
/// Policy assignments handled per poll (more are left for a later poll).
const MAX_ASSIGNMENTS: usize = 32;

/// What a pass should do (tests and the demo narrow it; `client run` does everything).
#[derive(Debug, Clone, Copy)]
pub struct Due {
    /// Queue a heartbeat DDR.
    pub heartbeat: bool,
    /// Queue a hardware inventory with this many synthetic items (0 = none).
    pub inventory_items: usize,
    /// Queue the online status message.
    pub status: bool,
    /// Poll policy.
    pub policy: bool,
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleReport {
    /// The SMSID reports name, once the site knew the device.
    pub smsid: Option<String>,
    /// Pending approval: nothing is sent until approved.
    pub pending: bool,
    /// Rejected by the site: asked again at this time (or with `--retry-now`).
    pub rejected_until: Option<UnixTime>,
    /// Reports queued.
    pub queued: u32,
    /// Messages the MP acknowledged.
    pub delivered: u32,
    /// Messages left in the queue.
    pub still_queued: u32,
    /// Messages the site refused under a confirmed registration (kept under `refused/`).
    pub refused: u32,
    /// Unsent reports a newer one replaced.
    pub superseded: u32,
    /// Reports not made: the queue had no room.
    pub no_room: u32,
    /// Policies fetched, checked and applied (`id.version`).
    pub policies_applied: Vec<String>,
    /// Why delivery stopped early, if it did.
    pub delivery_stopped: Option<String>,
    /// The site's last `ApprovalStatus` (apart from registration `Status`), when it sent one.
    pub approval_status: Option<i32>,
}

impl CycleReport {
    /// Whether the pass did its job: registered, nothing left queued, nothing refused.
    pub fn done(&self) -> bool {
        self.smsid.is_some()
            && !self.pending
            && self.rejected_until.is_none()
            && self.still_queued == 0
            && self.delivery_stopped.is_none()
            && self.no_room == 0
    }
}

impl std::fmt::Display for CycleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.smsid, self.pending, self.rejected_until) {
            (_, _, Some(t)) => write!(
                f,
                "rejected by the site; asking again at {} (or now with --retry-now)",
                crate::human::date(t)
            )?,
            (Some(id), true, _) => write!(f, "{id}: pending approval; nothing sent")?,
            (Some(id), false, _) => write!(f, "{id}")?,
            (None, _, _) => write!(f, "not registered")?,
        }
        write!(
            f,
            ": {} queued, {} delivered, {} waiting",
            self.queued, self.delivered, self.still_queued
        )?;
        if self.superseded > 0 {
            write!(f, ", {} superseded by newer reports", self.superseded)?;
        }
        if self.no_room > 0 {
            write!(f, ", {} not made (queue full)", self.no_room)?;
        }
        if self.refused > 0 {
            write!(f, ", {} refused (kept in {REFUSED_DIR}/)", self.refused)?;
        }
        if !self.policies_applied.is_empty() {
            write!(
                f,
                ", policies applied: {}",
                self.policies_applied.join(", ")
            )?;
        }
        if let Some(why) = &self.delivery_stopped {
            write!(f, "; stopped: {why}")?;
        }
        if let Some(a) = self.approval_status {
            write!(f, "; {}", crate::human::approval_status(a))?;
        }
        Ok(())
    }
}

/// Events for the demo and logs.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// A registration or confirmation request went out (one connection).
    RegistrationSent,
    /// A registration step, as a sentence.
    Registration(String),
    /// A message went into the queue.
    Queued {
        /// Its endpoint.
        endpoint: &'static str,
        /// Whether it replaced an unsent older one of its kind.
        superseded: bool,
    },
    /// A report was not made: the queue had no room.
    NoRoom {
        /// Which report.
        kind: &'static str,
    },
    /// The MP acknowledged a message.
    Delivered {
        /// Its endpoint.
        endpoint: &'static str,
        /// Its message ID, braced.
        message_id: String,
    },
    /// Delivery stopped; the rest stays queued.
    DeliveryStopped {
        /// Why, as a sentence.
        reason: String,
    },
    /// The site refused a message under a confirmed registration; kept under `refused/`.
    Refused {
        /// Its message ID, braced.
        message_id: String,
        /// Why.
        reason: String,
    },
    /// A policy body was fetched, checked and applied.
    PolicyApplied {
        /// `id.version`.
        id: String,
        /// Body bytes.
        bytes: usize,
    },
    /// A policy body was refused (hash mismatch, fetch failure).
    PolicyRefused {
        /// `id`.
        id: String,
        /// Why.
        reason: String,
    },
}

/// A synthetic hardware inventory of `n` items: deterministic, as every emission pass must be.
pub struct SyntheticInventory {
    /// Items (one `Win32_Printer`-like instance each, plus one operating system instance).
    pub items: usize,
}

impl InstanceSource for SyntheticInventory {
    fn write_instances(&self, w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
        w.instance(
            InstanceContent::New,
            Namespace::Cimv2,
            "Win32_OperatingSystem",
            |p| {
                p.prop("Caption", "mpagent appliance firmware")?;
                p.prop("Version", env!("CARGO_PKG_VERSION"))
            },
        )?;
        for i in 0..self.items {
            w.instance(
                InstanceContent::New,
                Namespace::Cimv2,
                "Win32_Printer",
                |p| {
                    p.prop_fmt("DeviceID", format_args!("TRAY-{i:05}"))?;
                    p.prop_fmt("Name", format_args!("Paper tray {i}"))?;
                    p.prop_u64("PaperLevelPercent", (i as u64 * 37) % 101)
                },
            )?;
        }
        Ok(())
    }
}

/// A `Vec` as a sink (host only).
#[derive(Default)]
struct VecSink(Vec<u8>);
impl Sink for VecSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// The host's side of the driver: files in the state directory, the synthetic reports, events.
struct HostSide<'e> {
    dir: PathBuf,
    fqdn: String,
    inventory_items: usize,
    policy_body: VecSink,
    policies_applied: Vec<String>,
    stopped: Option<String>,
    /// Why keeping something last failed: the core's `Persist` carries no reason, and the
    /// run's final error should say what went wrong, not only that something did.
    persist_failure: Option<String>,
    on: &'e mut dyn FnMut(&RunEvent),
    renewal: Renewal,
}

/// What a CertificateReset needs: how to make a new identity like the current one, and the one
/// made (held in memory until the site knows it; then it replaces the stored one).
struct Renewal {
    /// Native mode: the certificate is the administrator's, never made here.
    provisioned: bool,
    common_name: String,
    key: super::state::KeyKind,
    hash: mpagent_core::config::SignatureHash,
    made: Option<(
        SiteHashSigner<super::state::ClientSigner>,
        super::state::Identity,
    )>,
}

fn braced(g: mpagent_core::guid::Guid) -> String {
    String::from_utf8_lossy(&g.to_braced()).into_owned()
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl HostSide<'_> {
    /// Log why keeping something failed and remember it for the run's final error.
    fn persist_failed(&mut self, what: &str, e: &anyhow::Error) -> Persist {
        let sentence = format!("{what}: {e:#}");
        tracing::error!("{sentence}");
        self.persist_failure = Some(sentence);
        Persist
    }

    /// A step's error as the run's final error: for a failure to keep something, the reason
    /// the host met.
    fn step_error<E: mpagent_core::store::embedded_storage::nor_flash::NorFlashError>(
        &self,
        e: &DriverError<E>,
    ) -> anyhow::Error {
        let said = crate::human::driver_error(e);
        match (e, &self.persist_failure) {
            (DriverError::Persist, Some(why)) => anyhow!("{said}: {why}"),
            _ => anyhow!("{said}"),
        }
    }

    fn policy_path(&self, id: &str, version: &str) -> PathBuf {
        self.dir
            .join(POLICY_DIR)
            .join(format!("{}.xml", sanitize(&format!("{id}.{version}"))))
    }

    fn file(&self, meta: &MessageMeta, body: &dyn Emit, error: SendError) -> Result<()> {
        let dir = self.dir.join(REFUSED_DIR);
        std::fs::create_dir_all(&dir)?;
        let mut sink = VecSink::default();
        body.emit(&mut sink)
            .map_err(|_| anyhow!("reading a refused message back"))?;
        let id = braced(meta.message_id);
        let name = id.trim_matches(|c| c == '{' || c == '}');
        super::state::write_atomic(&dir.join(format!("{name}.body")), &sink.0)?;
        super::state::write_atomic(
            &dir.join(format!("{name}.reason")),
            format!(
                "{} refused by the MP under a confirmed registration: {}\n",
                meta.endpoint.name(),
                crate::human::send_error(&error)
            )
            .as_bytes(),
        )?;
        Ok(())
    }
}

impl<F: mpagent_core::store::embedded_storage::nor_flash::NorFlash> Host<F> for HostSide<'_> {
    fn report(
        &mut self,
        kind: ReportKind,
        identity: ReportIdentity<'_>,
        now: UnixTime,
        queue: &mut dyn FnMut(&dyn Emit),
    ) {
        let date = now.to_datetime();
        match kind {
            ReportKind::Heartbeat => {
                let discovery = super::host_discovery(&self.fqdn, &["127.0.0.1"]);
                queue(&Report::discovery(identity, date, &discovery));
            }
            ReportKind::Inventory => {
                let inventory = SyntheticInventory {
                    items: self.inventory_items,
                };
                queue(&Report::hardware_inventory(
                    identity,
                    ReportType::Full,
                    ReportVersion::default(),
                    date,
                    &inventory,
                ));
            }
            ReportKind::OnlineStatus => {}
        }
    }

    fn persist(&mut self, _store: &mut Store<F>, state: RegistrationState) -> Result<(), Persist> {
        super::state::StateDir::open(&self.dir)
            .and_then(|d| d.save_registration(state))
            .map_err(|e| self.persist_failed("saving the registration state", &e))
    }

    fn file_refused(
        &mut self,
        meta: &MessageMeta,
        body: &dyn Emit,
        error: SendError,
    ) -> Result<(), Persist> {
        self.file(meta, body, error).map_err(|e| {
            self.persist_failed(&format!("keeping a refused message in {REFUSED_DIR}/"), &e)
        })
    }

    fn policy_applied(&mut self, id: &str, version: &str) -> bool {
        self.policy_path(id, version).exists()
    }

    fn policy_body(&mut self) -> &mut dyn Sink {
        self.policy_body.0.clear();
        &mut self.policy_body
    }

    fn policy_done(&mut self, id: &str, version: &str, _len: usize, keep: bool) -> bool {
        let body = std::mem::take(&mut self.policy_body.0);
        if !keep {
            return false;
        }
        let path = self.policy_path(id, version);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(anyhow::Error::from)
            .and_then(|()| super::state::write_atomic(&path, &body));
        match written {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("writing policy {id} to {}: {e:#}", path.display());
                false
            }
        }
    }

    fn make_new_identity(&mut self, now: UnixTime) -> bool {
        let r = &mut self.renewal;
        if r.provisioned {
            return false;
        }
        let made =
            super::state::StateDir::make_identity(&r.common_name, now, r.key).and_then(|id| {
                let signer = SiteHashSigner::new(id.signer.clone(), r.hash)
                    .map_err(|e| anyhow!("binding the new key to the site's hash: {e}"))?;
                Ok((signer, id))
            });
        match made {
            Ok(m) => {
                r.made = Some(m);
                true
            }
            Err(e) => {
                tracing::error!("making a new key and certificate: {e:#}");
                false
            }
        }
    }

    fn new_identity(&self) -> Option<SigningIdentity<'_>> {
        self.renewal
            .made
            .as_ref()
            .map(|(signer, id)| SigningIdentity {
                signer,
                cert_der: &id.cert_der,
            })
    }

    fn store_new_identity(
        &mut self,
        _store: &mut Store<F>,
        state: RegistrationState,
    ) -> Result<(), Persist> {
        let Some((_, identity)) = self.renewal.made.as_ref() else {
            return Err(self.persist_failed("storing a new identity", &anyhow!("none was made")));
        };
        let stored = super::state::StateDir::open(&self.dir)
            .and_then(|d| d.replace_identity(identity, state));
        stored.map_err(|e| self.persist_failed("storing the new key and certificate", &e))
    }

    fn event(&mut self, event: &Event<'_>) {
        let line = crate::human::driver_event(event);
        tracing::info!("{line}");
        let run_event = match *event {
            Event::Queued {
                kind, superseded, ..
            } => Some(RunEvent::Queued {
                endpoint: kind.endpoint().name(),
                superseded,
            }),
            Event::NoRoom(kind) => Some(RunEvent::NoRoom { kind: kind.name() }),
            Event::Delivered {
                endpoint,
                message_id,
            } => {
                self.stopped = None;
                Some(RunEvent::Delivered {
                    endpoint: endpoint.name(),
                    message_id: braced(message_id),
                })
            }
            Event::DeliveryFailed { error, next } => {
                let reason = match next {
                    Refusal::Reconfirming => format!(
                        "{}; confirming the registration with the site",
                        crate::human::send_error(&error)
                    ),
                    _ => crate::human::send_error(&error),
                };
                self.stopped = Some(reason.clone());
                Some(RunEvent::DeliveryStopped { reason })
            }
            Event::Refused {
                message_id, error, ..
            } => Some(RunEvent::Refused {
                message_id: braced(message_id),
                reason: crate::human::send_error(&error),
            }),
            Event::PolicyFailed(_) => {
                self.stopped = Some(line.clone());
                None
            }
            Event::PolicyApplied { id, version, bytes } => {
                let key = format!("{id}.{version}");
                self.policies_applied.push(key.clone());
                Some(RunEvent::PolicyApplied { id: key, bytes })
            }
            Event::PolicyHashMismatch { id, .. } | Event::PolicyFetchFailed { id, .. } => {
                Some(RunEvent::PolicyRefused {
                    id: id.to_string(),
                    reason: line.clone(),
                })
            }
            Event::RegistrationSending { .. } => Some(RunEvent::RegistrationSent),
            Event::Registration(_) | Event::RegistrationFailed(_) => {
                Some(RunEvent::Registration(line.clone()))
            }
            _ => None,
        };
        if let Some(e) = run_event {
            (self.on)(&e);
        }
    }
}

/// The host clock, optionally skipping its waits (tests and `--once` of a demo run forward
/// instead of sleeping): `now` is the system time plus what was skipped.
pub struct HostClock {
    skipped: u64,
    skip: bool,
}

impl HostClock {
    /// A clock that sleeps for real.
    pub fn system() -> Self {
        Self {
            skipped: 0,
            skip: false,
        }
    }

    /// A clock that jumps over every wait.
    pub fn skipping() -> Self {
        Self {
            skipped: 0,
            skip: true,
        }
    }
}

impl Clock for HostClock {
    fn now(&self) -> UnixTime {
        unix_now().plus(self.skipped)
    }

    async fn sleep_until(&mut self, t: UnixTime) {
        let now = self.now();
        if t <= now {
            return;
        }
        if self.skip {
            self.skipped += t.0 - now.0;
        } else {
            tokio::time::sleep(Duration::from_secs(t.0 - now.0)).await;
        }
    }
}

/// How a pass runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// What is due at start.
    pub due: Due,
    /// The schedule's periods (`client run` only; a single pass ignores them).
    pub schedule: AgentSchedule,
    /// Waits up to this long are waited through (backoffs, the pause between a refused
    /// confirmation and a fresh registration); a longer one ends the pass.
    pub max_wait: Duration,
    /// Skip waits instead of sleeping (tests).
    pub skip_waits: bool,
    /// Forget a rejection or backoff and ask at once.
    pub retry_now: bool,
    /// Never end the pass: sleep until the agent has something to do (`client run`).
    pub forever: bool,
}

impl Plan {
    /// A single pass doing `due`, waiting through backoffs of up to ten seconds (a refused
    /// confirmation followed by a fresh registration fits; an MP that is down costs 15 s).
    pub fn once(due: Due) -> Self {
        Self {
            due,
            schedule: AgentSchedule::default(),
            max_wait: Duration::from_secs(10),
            skip_waits: false,
            retry_now: false,
            forever: false,
        }
    }
}

fn open_store(dir: &Path) -> Result<Store<FlashFile>> {
    let path = dir.join(QUEUE_FILE);
    let flash = FlashFile::open(&path, super::flash_file::DEFAULT_SIZE)
        .with_context(|| format!("opening the queue {}", path.display()))?;
    let layout = FlashFile::layout(flash.size());
    Store::open(flash, layout).map_err(|e| {
        anyhow!(
            "the queue file {} is unreadable: {}",
            path.display(),
            crate::human::store_error(&e)
        )
    })
}

/// Messages waiting in the queue of the client in `opts`.
pub fn queued_messages(opts: &ClientOptions) -> Result<u32> {
    Ok(open_store(&opts.state_dir)?.len())
}

/// One pass: register or re-confirm, queue what `plan.due` asks for, deliver the queue, poll
/// policy; waits up to `plan.max_wait` are waited through. Errors only for what retrying will
/// not fix (a broken state directory or queue file); an unreachable MP is in the report.
pub async fn run_cycle_with(
    opts: &ClientOptions,
    plan: Plan,
    on: &mut dyn FnMut(&RunEvent),
) -> Result<CycleReport> {
    let due = plan.due;
    let schedule = AgentSchedule {
        heartbeat_secs: if due.heartbeat {
            plan.schedule.heartbeat_secs.max(1)
        } else {
            0
        },
        inventory_secs: if due.inventory_items > 0 {
            plan.schedule.inventory_secs.max(1)
        } else {
            0
        },
        policy_secs: if due.policy {
            plan.schedule.policy_secs.max(1)
        } else {
            0
        },
        rejection_recheck_secs: plan.schedule.rejection_recheck_secs,
    };
    let mut clock = if plan.skip_waits {
        HostClock::skipping()
    } else {
        HostClock::system()
    };
    let (session, mut connector) = Session::open(opts)?;
    let config = session.config()?;
    let mut store = open_store(session.state_dir.path())?;
    let stored = session.state_dir.registration()?;
    // Before the first registration only: a registered device's site is settled.
    if stored == RegistrationState::Unregistered {
        super::site_check::check_site(
            &mut connector,
            config.mp.host,
            config.mp.port,
            &opts.site_code,
            &opts.mp_url,
        )
        .await?;
    }
    let start = clock.now();
    let mut agent = Agent::new(stored, schedule, store.len(), start);
    if !due.status {
        agent.skip_online_status();
    }
    if plan.retry_now {
        agent.retry_now(start);
    }
    let mut host = HostSide {
        dir: session.state_dir.path().to_path_buf(),
        fqdn: session.fqdn.clone(),
        inventory_items: due.inventory_items,
        policy_body: VecSink::default(),
        policies_applied: Vec::new(),
        stopped: None,
        persist_failure: None,
        on,
        renewal: Renewal {
            provisioned: session.opts.pki.is_some(),
            common_name: session.opts.name.clone(),
            key: session.identity.signer.inner().kind(),
            hash: session.identity.signer.hash(),
            made: None,
        },
    };
    let mut exchange = vec![0u8; EXCHANGE_BUFFER];
    let mut scratch =
        vec![0u8; mpagent_core::wire::policy::policy_reply_scratch_len(EXCHANGE_BUFFER)];
    let mut slots = vec![PolicySlot::default(); MAX_ASSIGNMENTS];
    let mut rng = rand_core::OsRng;
    let device = Device {
        config: &config,
        identity: SigningIdentity {
            signer: &session.identity.signer,
            cert_der: &session.identity.cert_der,
        },
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
            exchange: &mut exchange,
            policy_scratch: &mut scratch,
            policies: &mut slots,
        },
        &mut host,
    );
    // Everything due at start is done once: the periods lie ahead.
    let first_period = [
        schedule.heartbeat_secs,
        schedule.inventory_secs,
        schedule.policy_secs,
    ]
    .into_iter()
    .filter(|&s| s > 0)
    .min()
    .unwrap_or(u64::MAX);
    let stepped = loop {
        let step = match driver.step().await {
            Ok(step) => step,
            Err(e) => break Err(e),
        };
        let Step::Idle(until) = step else { continue };
        let now = driver.clock.now();
        let agent = &driver.agent;
        let waiting = agent.waiting_for_approval()
            || matches!(agent.registration(), RegistrationState::Rejected(_));
        let wait = until.0.saturating_sub(now.0);
        if !plan.forever
            && (waiting
                || wait > plan.max_wait.as_secs()
                || until.0 >= start.0.saturating_add(first_period))
        {
            break Ok(());
        }
        driver.clock.sleep_until(until).await;
    };
    if let Err(e) = stepped {
        drop(driver);
        return Err(host.step_error(&e));
    }
    let agent = driver.agent.clone();
    let still_queued = driver.store.len();
    let counts = agent.counts();
    let registration = agent.registration();
    Ok(CycleReport {
        smsid: agent.smsid().map(|s| s.to_string()).or(match registration {
            RegistrationState::Pending(id) => Some(id.to_string()),
            _ => None,
        }),
        pending: matches!(registration, RegistrationState::Pending(_))
            && agent.waiting_for_approval(),
        rejected_until: agent.registrar().rejection_recheck_at(),
        queued: counts.queued,
        delivered: counts.delivered,
        still_queued,
        refused: counts.refused,
        superseded: counts.superseded,
        no_room: counts.no_room,
        policies_applied: host.policies_applied,
        approval_status: agent.approval_status(),
        delivery_stopped: if still_queued > 0 || registration == RegistrationState::Unregistered {
            host.stopped
                .or_else(|| Some("the MP did not answer".into()))
        } else {
            None
        },
    })
}

/// [`run_cycle_with`] with [`Plan::once`].
pub async fn run_cycle(
    opts: &ClientOptions,
    due: Due,
    on: &mut dyn FnMut(&RunEvent),
) -> Result<CycleReport> {
    run_cycle_with(opts, Plan::once(due), on).await
}

/// Run forever on `schedule` (or one pass with `once`); returns the last pass's report.
pub async fn run(
    opts: &ClientOptions,
    schedule: AgentSchedule,
    inventory_items: usize,
    once: bool,
    retry_now: bool,
    on: &mut dyn FnMut(&RunEvent),
) -> Result<CycleReport> {
    let due = Due {
        heartbeat: schedule.heartbeat_secs > 0,
        inventory_items: if schedule.inventory_secs > 0 {
            inventory_items
        } else {
            0
        },
        status: true,
        policy: schedule.policy_secs > 0,
    };
    if once {
        let plan = Plan {
            schedule,
            retry_now,
            ..Plan::once(due)
        };
        return run_cycle_with(opts, plan, on).await;
    }
    let plan = Plan {
        schedule,
        retry_now,
        forever: true,
        ..Plan::once(due)
    };
    run_cycle_with(opts, plan, on).await
}
