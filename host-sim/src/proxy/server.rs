//! `proxy serve`: register the proxy, then serve devices over the compact protocol.
//!
//! The core's drivers borrow `dyn Signer` / `dyn RngCore`, so their futures are not `Send`: the
//! server runs [`ProxyOptions::workers`] threads, each a current-thread runtime with a `LocalSet`
//! accepting on its own handle of the one listening socket, one local task per connection. The
//! proxy's state is shared (`Arc`): the registry ([`Registry`]), each device's Agent between its
//! frames, and a per-device lock so that two frames of one device do not race; nothing is held
//! across the MP exchange that another device would wait for. A malformed frame gets an `ERROR`
//! frame and that connection is closed; the others carry on.
//!
//! Every device runs the core's `Driver` (its Agent, its queue, [`super::device::DeviceHost`]),
//! signing through the proxy: a frame queues the device's message or asks for what it names,
//! then steps the Agent until the frame's work is done or the MP cannot be reached, and the
//! device is told what happened (`docs/proxy-protocol.md`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::guid::{Guid, Smsid};
use mpagent_core::identity::CertParams;
use mpagent_core::io::driver::{
    Buffers, CallerReport, Carried, Device as DriverDevice, Driver, PolicySlot, QueueReportError,
    ReportQueued, Step, ThroughProxy,
};
use mpagent_core::io::{PolicyRequestError, SendError};
use mpagent_core::sink::Overflow;
use mpagent_core::wire::policy::policy_reply_scratch_len;
use mpagent_core::wire::registration::AgentType;
use mpagent_core::wire::report::{
    InstanceContent, InstanceWriter, Namespace, Report, ReportIdentity, ReportType, ReportVersion,
};
use mpagent_core::wire::state_message::StateMessage;
use mpagent_core::wire::status::StatusMessage;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Mutex, OwnedMutexGuard};

use super::device::{new_agent, DeviceHost, PolicyAnswer, Writes};
use super::device_key::{self, DeviceIdentity};
use super::protocol::{self, code, reg_status, Frame, ReadError};
use super::queue;
use super::registry::{DeviceRecord, Registry};
use super::{register_self, ProxyLink, ProxyOptions};
use crate::buffers::Buffer;
use crate::client::transport::{unix_now, SystemClock};
use crate::client::EXCHANGE_BUFFER;

/// A connection idle this long between frames is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Time allowed for one frame to arrive once its first byte has (slow senders are cut off).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// A running proxy.
pub struct ProxyHandle {
    addr: SocketAddr,
    smsid: Smsid,
    stop: Option<watch::Sender<bool>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ProxyHandle {
    /// Where devices connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's own SMSID (held before it acts for any device).
    pub fn smsid(&self) -> Smsid {
        self.smsid
    }

    /// Stop serving and wait for the server threads.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The proxy's shared state.
struct Proxy {
    opts: ProxyOptions,
    /// The proxy's identity and its connection to the MP (TLS in native mode).
    link: ProxyLink,
    smsid: Smsid,
    /// The devices' keys, certificates and SMSIDs.
    registry: Registry,
    /// One lock per device with a frame in progress (the map itself is locked only to find or
    /// drop an entry), so a device's second frame waits for its first and no other device waits
    /// at all.
    turns: StdMutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Each device's Agent between its frames (a device not here starts from the registry).
    agents: StdMutex<HashMap<String, Kept>>,
}

/// What the proxy holds for a device between its frames.
struct Kept {
    agent: mpagent_core::agent::lifecycle::Agent,
    /// What its last driver held beyond the Agent.
    carried: Carried,
    /// A key and certificate made after a CertificateReset and not registered yet.
    made: Option<DeviceIdentity>,
}

/// A device's turn; dropping it lets the device's next frame in.
struct DeviceTurn<'a> {
    map: &'a StdMutex<HashMap<String, Arc<Mutex<()>>>>,
    id: &'a str,
    lock: Arc<Mutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<'a> DeviceTurn<'a> {
    async fn take(map: &'a StdMutex<HashMap<String, Arc<Mutex<()>>>>, id: &'a str) -> Self {
        let lock = map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_string())
            .or_default()
            .clone();
        let guard = Some(lock.clone().lock_owned().await);
        DeviceTurn {
            map,
            id,
            lock,
            guard,
        }
    }
}

impl Drop for DeviceTurn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the map's and this turn's handles left: nobody else waits for the device.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(self.id);
        }
    }
}

/// Load (or create) the proxy's identity, register it (AgentType 4) unless it holds its SMSID
/// already, and serve devices on `listen`. Fails — before listening — if the MP refuses the
/// proxy (e.g. its certificate was not imported).
pub async fn start(opts: ProxyOptions, listen: SocketAddr) -> Result<ProxyHandle> {
    let link = ProxyLink::open(&opts)?;
    // Before anything goes on the wire: an old state layout that cannot be imported stops here.
    let registry = Registry::open(&opts.state_dir)?;
    let smsid = register_self(&opts, &link).await?;
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let workers = opts.workers.max(1);
    let proxy = Arc::new(Proxy {
        opts,
        link,
        smsid,
        registry,
        turns: StdMutex::new(HashMap::new()),
        agents: StdMutex::new(HashMap::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handle = ProxyHandle {
        addr,
        smsid,
        stop: Some(stop_tx),
        threads: Vec::new(),
    };
    let mut ready = Vec::new();
    for w in 0..workers {
        let listener = listener.try_clone()?;
        let (proxy, stop) = (proxy.clone(), stop_rx.clone());
        let (ready_tx, ready_rx) = oneshot::channel::<Result<()>>();
        ready.push(ready_rx);
        // On an early return `handle` is dropped, which stops the threads already started.
        handle.threads.push(
            std::thread::Builder::new()
                .name(format!("mpx-proxy-{w}"))
                .spawn(move || serve_on_this_thread(listener, proxy, stop, ready_tx))?,
        );
    }
    for r in ready {
        r.await.map_err(|_| anyhow!("a proxy thread died"))??;
    }
    tracing::info!("ISV proxy {smsid} serving devices on {addr} ({workers} threads)");
    Ok(handle)
}

/// One worker: a current-thread runtime and `LocalSet` accepting on `listener`.
fn serve_on_this_thread(
    listener: std::net::TcpListener,
    proxy: Arc<Proxy>,
    stop: watch::Receiver<bool>,
    ready: oneshot::Sender<Result<()>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e.into()));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        accept_loop(listener, proxy, stop).await;
    });
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            // An error: the handle is gone, nobody can stop us any more; stop now.
            changed = stop.changed() => if changed.is_err() { return },
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let proxy = proxy.clone();
                    tokio::task::spawn_local(async move {
                        serve_connection(&proxy, stream, peer).await;
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// The device a connection speaks for, once it said `HELLO`.
struct Device {
    id: String,
    name: String,
}

async fn serve_connection(proxy: &Proxy, mut stream: TcpStream, peer: SocketAddr) {
    let mut device: Option<Device> = None;
    loop {
        // Wait for the first byte up to IDLE_TIMEOUT, then the whole frame within FRAME_TIMEOUT.
        let mut probe = [0u8; 1];
        match tokio::time::timeout(IDLE_TIMEOUT, stream.peek(&mut probe)).await {
            Err(_) => {
                let _ = protocol::write_frame(
                    &mut stream,
                    &Frame::error(code::SEQUENCE, "idle for too long"),
                )
                .await;
                return;
            }
            Ok(Err(_)) | Ok(Ok(0)) => return,
            Ok(Ok(_)) => {}
        }
        let frame = match tokio::time::timeout(FRAME_TIMEOUT, protocol::read_frame(&mut stream))
            .await
        {
            Err(_) => {
                let _ = protocol::write_frame(
                    &mut stream,
                    &Frame::error(code::MALFORMED, "frame not complete in time"),
                )
                .await;
                return;
            }
            Ok(Err(ReadError::Closed)) | Ok(Err(ReadError::Io(_))) => return,
            Ok(Err(ReadError::Proto(e))) => {
                tracing::warn!("device connection {peer}: {e}; closing it");
                let _ = protocol::write_frame(&mut stream, &Frame::error(e.code(), e.to_string()))
                    .await;
                return;
            }
            Ok(Ok(f)) => f,
        };
        let reply = handle(proxy, &mut device, frame).await;
        if let Frame::Error { code, text } = &reply {
            tracing::info!("device connection {peer}: error {code}: {text}");
        }
        if protocol::write_frame(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

async fn handle(proxy: &Proxy, device: &mut Option<Device>, frame: Frame) -> Frame {
    let of = frame.kind();
    match frame {
        Frame::Hello { device_id, name } => {
            if !protocol::valid_device_id(&device_id) {
                return Frame::error(
                    code::INVALID,
                    "device id must be 1-64 of [A-Za-z0-9._-] (and not . or ..)",
                );
            }
            if !protocol::valid_name(&name) {
                return Frame::error(code::INVALID, "name must be 1-15 letters, digits or '-'");
            }
            let state = proxy.registry.state(&device_id).unwrap_or(None);
            *device = Some(Device {
                id: device_id,
                name,
            });
            Frame::Ack {
                of,
                detail: match state {
                    Some(RegistrationState::Registered(id)) => format!("registered {id}"),
                    Some(RegistrationState::Pending(id)) => format!("pending {id}"),
                    _ => "unregistered".into(),
                },
            }
        }
        Frame::Ack { .. }
        | Frame::RegisterResult { .. }
        | Frame::PolicyList { .. }
        | Frame::Error { .. } => {
            Frame::error(code::SEQUENCE, "that frame type is the proxy's to send")
        }
        _ => {
            let Some(dev) = device.as_ref() else {
                return Frame::error(code::SEQUENCE, "send HELLO first");
            };
            let work = match frame {
                Frame::Register => Work::Register,
                Frame::PolicyRequest => Work::Policy,
                other => Work::Data(other),
            };
            // One frame of a device at a time: its Agent and queue are the frame's.
            let _turn = DeviceTurn::take(&proxy.turns, &dev.id).await;
            match proxy.device_turn(dev, work).await {
                Ok(f) => f,
                Err(e) => Frame::error(code::INTERNAL, format!("{e:#}")),
            }
        }
    }
}

/// A `(name, value)` inventory as hardware inventory instances ([profile]: one
/// `MPX_InventoryItem` instance per item, in `root\cimv2`).
struct PairsInventory<'a>(&'a [(String, String)]);

impl mpagent_core::wire::report::InstanceSource for PairsInventory<'_> {
    fn write_instances(&self, w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
        for (name, value) in self.0 {
            w.instance(
                InstanceContent::New,
                Namespace::Cimv2,
                "MPX_InventoryItem",
                |p| {
                    p.prop("Name", name)?;
                    p.prop("Value", value)
                },
            )?;
        }
        Ok(())
    }
}

/// What a device frame asks of its Agent.
enum Work {
    /// `REGISTER`: register, or confirm the stored registration.
    Register,
    /// `POLICY_REQUEST`: request the assignments now.
    Policy,
    /// A data frame: queue its message, then deliver.
    Data(Frame),
}

/// Longest wait between steps that a frame sits through while the site is answering (a
/// refused message's re-confirmation and the registration afresh after it fit); an MP that
/// cannot be reached is not waited for: the message stays queued and the device is told so.
const MAX_STEP_WAIT_SECS: u64 = 10;
/// Longest a frame drives its device's Agent before it answers (the device waits
/// `client::ANSWER_TIMEOUT` for the answer).
const MAX_FRAME_WORK: Duration = Duration::from_secs(30);

/// The answer to a device whose Agent has no SMSID to send under.
fn not_registered(state: RegistrationState) -> Frame {
    match state {
        RegistrationState::Pending(id) => Frame::error(
            code::NOT_REGISTERED,
            format!("registration {id} is pending approval; send REGISTER again later"),
        ),
        _ => Frame::error(code::NOT_REGISTERED, "not registered: send REGISTER first"),
    }
}

fn braced(id: Guid) -> String {
    String::from_utf8_lossy(&id.to_braced()).into_owned()
}

impl Proxy {
    /// The device's record, made (key, certificate) and stored durably on its first `REGISTER`.
    async fn device_record(&self, dev: &Device) -> Result<DeviceRecord> {
        if let Some(r) = self.registry.device(&dev.id)? {
            return Ok(r);
        }
        // The device has no key: the proxy makes and keeps its certificate (docs/protocol.md §4 [profile]),
        // with a key of the proxy's own kind (an RSA site gets RSA device certificates). It is
        // stored before the MP sees the certificate.
        let params = CertParams::self_signed_now(&dev.name, unix_now(), &mut rand_core::OsRng);
        let made = device_key::make(self.link.signer.inner().kind(), &params)?;
        let record = DeviceRecord {
            id: dev.id.clone(),
            name: dev.name.clone(),
            key_pk8: made.key_pk8,
            cert_der: made.cert_der,
            state: RegistrationState::Unregistered,
        };
        self.registry.insert_new(record).await
    }

    /// The registry writes a step asked for, done before the next step.
    async fn keep(&self, dev: &Device, writes: &mut Writes) -> Result<()> {
        if let Some((made, state)) = writes.new_identity.take() {
            self.registry
                .replace_identity(&dev.id, made.key_pk8, made.cert_der, state)
                .await
                .context("keeping the device's new key and certificate")?;
        }
        if let Some(state) = writes.registration.take() {
            self.registry
                .set_registration(&dev.id, &dev.name, state)
                .await
                .context("persisting the device's registration")?;
        }
        Ok(())
    }

    /// Drive the device's Agent (signing through this proxy) for one frame and answer it.
    async fn device_turn(&self, dev: &Device, work: Work) -> Result<Frame> {
        let record = match &work {
            Work::Register => self.device_record(dev).await?,
            _ => match self.registry.device(&dev.id)? {
                Some(r) => r,
                None => return Ok(not_registered(RegistrationState::Unregistered)),
            },
        };
        let fqdn = format!("{}.local", dev.name);
        let config = self.opts.config(&dev.name, &fqdn)?;
        let kept_queue = self.registry.queue_image(&dev.id)?;
        let had_queue = kept_queue.is_some();
        let mut store = queue::open(kept_queue)?;
        let now = unix_now();
        let kept = self
            .agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&dev.id);
        // REGISTER starts from what the registry holds, so a known device is confirmed with
        // the MP (the MP, not only this proxy's files, vouches for the mapping) — unless a new
        // identity waits to be registered: that one goes on.
        let kept = match (&work, kept) {
            (Work::Register, Some(k)) if k.made.is_none() => None,
            (_, k) => k,
        };
        let (agent, carried, made) = match kept {
            Some(k) => (k.agent, Some(k.carried), k.made),
            None => (new_agent(record.state, store.len(), now), None, None),
        };
        let policy = matches!(work, Work::Policy);
        let mut host = DeviceHost::new(
            &dev.id,
            &dev.name,
            self.link.signer.inner().kind(),
            protocol::MAX_PAIRS,
        )
        .with_made(made);
        let mut connector = self.link.connector();
        let exchange_len = if policy {
            EXCHANGE_BUFFER * 4
        } else {
            EXCHANGE_BUFFER
        };
        let mut exchange = Buffer::take(exchange_len);
        let mut scratch = Buffer::take(if policy {
            policy_reply_scratch_len(exchange_len)
        } else {
            0
        });
        let mut slots = vec![PolicySlot::default(); if policy { protocol::MAX_PAIRS } else { 0 }];
        let mut clock = SystemClock;
        let mut rng = rand_core::OsRng;
        let mut driver = Driver::new(
            agent,
            DriverDevice {
                config: &config,
                identity: self.link.signing(),
                agent_type: AgentType::IsvProxyClient,
            },
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
        )
        .through_proxy(ThroughProxy {
            proxy_smsid: self.smsid,
            device_cert_der: &record.cert_der,
        });
        if let Some(carried) = carried {
            driver = driver.carry_on(carried);
        }
        let queued = match &work {
            Work::Register => None,
            Work::Policy => {
                if driver.agent.smsid().is_none() {
                    return Ok(not_registered(driver.agent.registration()));
                }
                // The device asks now: whatever backoff the Agent holds is cut short.
                driver.agent.retry_now(now);
                driver.agent.set_next_policy(now);
                None
            }
            Work::Data(frame) => {
                let Some(smsid) = driver.agent.smsid() else {
                    return Ok(not_registered(driver.agent.registration()));
                };
                driver.agent.retry_now(now);
                match queue_frame(&mut driver, &self.opts.site_code, dev, &fqdn, smsid, frame) {
                    Ok(Some(id)) => Some(id),
                    Ok(None) => None,
                    Err(answer) => return Ok(answer),
                }
            }
        };
        let started = std::time::Instant::now();
        let failed = loop {
            let step = driver.step().await;
            self.keep(dev, &mut driver.host.writes).await?;
            let until = match step {
                Err(e) => break Some(crate::human::driver_error(&e)),
                Ok(Step::Did(_)) => continue,
                Ok(Step::Idle(until)) => until,
            };
            let agent = &driver.agent;
            let host = &*driver.host;
            let settled = matches!(
                agent.registration(),
                RegistrationState::Registered(_) | RegistrationState::Rejected(_)
            ) || agent.waiting_for_approval();
            let done = match &work {
                Work::Register => settled,
                // An empty reply sends the Agent to re-confirm (a real MP's quiet refusal): the
                // answer waits until the registration is settled again.
                Work::Policy => host.policy.is_some() && settled,
                Work::Data(_) => queued.is_none_or(|id| {
                    host.delivered.contains(&id) || host.refused.iter().any(|(r, _)| *r == id)
                }),
            };
            let wait = until.0.saturating_sub(unix_now().0);
            if done
                || host.unreachable
                || host.registration_refused
                || wait > MAX_STEP_WAIT_SECS
                || started.elapsed() + Duration::from_secs(wait) > MAX_FRAME_WORK
            {
                break None;
            }
            tokio::time::sleep(Duration::from_secs(wait)).await;
        };
        let agent = driver.agent.clone();
        let carried = driver.carried();
        drop(driver);
        let made = host.take_made();
        let image = queue::image_to_keep(store);
        if image.is_some() || had_queue {
            self.registry
                .set_queue_image(&dev.id, image)
                .await
                .context("keeping the device's queue")?;
        }
        let state = agent.registration();
        let waiting = agent.waiting_for_approval();
        self.agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                dev.id.clone(),
                Kept {
                    agent,
                    carried,
                    made,
                },
            );
        if let Some(text) = failed {
            return Ok(Frame::error(code::INTERNAL, text));
        }
        let unavailable = |host: &DeviceHost<'_>| {
            let text = connector
                .last_tls_error()
                .map(|t| t.to_string())
                .or_else(|| host.last_failure.clone())
                .unwrap_or_else(|| "the MP did not answer".into());
            Frame::error(code::MP_UNAVAILABLE, text)
        };
        Ok(match work {
            Work::Register => match state {
                RegistrationState::Registered(id) => Frame::RegisterResult {
                    status: reg_status::REGISTERED,
                    smsid: id.to_string(),
                },
                RegistrationState::Rejected(_) => Frame::RegisterResult {
                    status: reg_status::REJECTED,
                    smsid: String::new(),
                },
                RegistrationState::Pending(id) if waiting => Frame::RegisterResult {
                    status: reg_status::PENDING,
                    smsid: id.to_string(),
                },
                _ if host.unreachable => unavailable(&host),
                _ => Frame::error(
                    code::MP_REFUSED,
                    host.last_failure
                        .clone()
                        .unwrap_or_else(|| "the MP did not register the device".into()),
                ),
            },
            Work::Policy => match host.policy {
                Some(PolicyAnswer::Assignments) | Some(PolicyAnswer::Empty) => Frame::PolicyList {
                    policies: std::mem::take(&mut host.policies),
                },
                Some(PolicyAnswer::Failed(PolicyRequestError::Send(SendError::Transport(_))))
                | None => unavailable(&host),
                Some(PolicyAnswer::Failed(e)) => {
                    Frame::error(code::MP_REFUSED, format!("the policy request failed: {e}"))
                }
            },
            Work::Data(frame) => {
                let of = frame.kind();
                match queued {
                    None => Frame::error(code::INTERNAL, "the message was not queued"),
                    Some(id) if host.delivered.contains(&id) => Frame::Ack {
                        of,
                        detail: braced(id),
                    },
                    Some(id) => match host.refused.iter().find(|(r, _)| *r == id) {
                        Some((_, e)) => Frame::error(
                            code::MP_REFUSED,
                            format!(
                                "the MP refused the message: {}",
                                crate::human::send_error(e)
                            ),
                        ),
                        None => {
                            tracing::info!(
                                "device {}: message {} queued ({})",
                                dev.id,
                                braced(id),
                                host.last_failure
                                    .as_deref()
                                    .unwrap_or("the MP did not take it")
                            );
                            Frame::Ack {
                                of,
                                detail: format!("queued {}", braced(id)),
                            }
                        }
                    },
                }
            }
        })
    }
}

/// Queue the message of data frame `frame` for `dev` (naming `smsid`): its message ID, `None`
/// when the queue's unsent report of the kind stands for it, or the answer when it cannot be
/// queued.
fn queue_frame<C, K, F, H>(
    driver: &mut Driver<'_, C, K, F, H>,
    site_code: &str,
    dev: &Device,
    fqdn: &str,
    smsid: Smsid,
    frame: &Frame,
) -> Result<Option<Guid>, Frame>
where
    C: mpagent_core::io::Connector,
    K: mpagent_core::io::Clock,
    F: mpagent_core::store::embedded_storage::nor_flash::NorFlash,
    F::Error: mpagent_core::store::embedded_storage::nor_flash::NorFlashError,
    H: mpagent_core::io::driver::Host<F>,
{
    let now = unix_now();
    let identity = ReportIdentity::new(smsid, &dev.name);
    let queued = match frame {
        Frame::Heartbeat => {
            let discovery = crate::client::host_discovery(fqdn, &[]);
            let report = Report::discovery(identity, now.to_datetime(), &discovery);
            driver.queue_report(CallerReport::Heartbeat, &report)
        }
        Frame::Inventory { items } => {
            let inv = PairsInventory(items);
            let report = Report::hardware_inventory(
                identity,
                ReportType::Full,
                ReportVersion::default(),
                now.to_datetime(),
                &inv,
            );
            driver.queue_report(CallerReport::FullInventory, &report)
        }
        Frame::Status {
            message_type,
            properties,
        } => {
            let props: Vec<(&str, &str)> = properties
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            let site = mpagent_core::config::SiteCode::new(site_code)
                .map_err(|e| Frame::error(code::INTERNAL, e.to_string()))?;
            let status = StatusMessage {
                message_type,
                smsid,
                machine_name: &dev.name,
                site_code: site,
                time: now.to_datetime(),
                properties: &props,
                qualifiers: &[],
            };
            driver.queue_report(CallerReport::Status, &status)
        }
        Frame::State { topic, state } => {
            let msg = StateMessage::new(identity, now.to_datetime(), topic, 0, 0, *state);
            driver.queue_report(CallerReport::State, &msg)
        }
        _ => return Err(Frame::error(code::SEQUENCE, "unexpected frame")),
    };
    match queued {
        Ok(ReportQueued::Stored { message_id, .. }) => Ok(Some(message_id)),
        Ok(ReportQueued::UnsentStandsFor) => Ok(None),
        Err(QueueReportError::NotRegistered) => Err(not_registered(driver.agent.registration())),
        Err(QueueReportError::NoRoom) => Err(Frame::error(
            code::MP_UNAVAILABLE,
            "the proxy's queue for this device is full until the MP takes what it holds; \
             try again later",
        )),
        Err(e) => Err(Frame::error(code::INTERNAL, e.to_string())),
    }
}
