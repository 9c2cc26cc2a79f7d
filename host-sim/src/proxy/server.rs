//! `proxy serve`: register the proxy, then serve devices over the compact protocol.
//!
//! The core's drivers borrow `dyn Signer` / `dyn RngCore`, so their futures are not `Send`: the
//! server runs [`ProxyOptions::workers`] threads, each a current-thread runtime with a `LocalSet`
//! accepting on its own handle of the one listening socket, one local task per connection. The
//! proxy's state is shared (`Arc`): the registry ([`Registry`]) and a per-device lock so that two
//! `REGISTER`s of one device do not race; nothing is held across the MP exchange that another
//! device would wait for. A malformed frame gets an `ERROR` frame and that connection is closed;
//! the others carry on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use mpagent_core::agent::messages::{
    attachment_name, request_assignments, sign_message, travels_attached, MessageBody,
};
use mpagent_core::agent::registration::{
    Registrant, Registrar, RegistrationState, SigningIdentity,
};
use mpagent_core::agent::signed::{MessageParams, MessageSigner, SignedMessage};
use mpagent_core::guid::{Guid, Smsid};
use mpagent_core::identity::CertParams;
use mpagent_core::io::{
    self, AttemptFailure, PolicyRequestError, Progress, RegisterError, RegisterOptions, SendError,
};
use mpagent_core::sink::Overflow;
use mpagent_core::store::Endpoint;
use mpagent_core::wire::clientauth::ClientIdSignature;
use mpagent_core::wire::policy::ServerCookie;
use mpagent_core::wire::report::{
    InstanceContent, InstanceWriter, Namespace, Report, ReportIdentity, ReportType, ReportVersion,
};
use mpagent_core::wire::report_framing::AttachedReport;
use mpagent_core::wire::state_message::StateMessage;
use mpagent_core::wire::status::StatusMessage;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Mutex, OwnedMutexGuard};

use super::device_key;
use super::protocol::{self, code, kind, reg_status, Frame, ReadError};
use super::registry::{DeviceRecord, Registry};
use super::{register_self, ProxyLink, ProxyOptions};
use crate::buffers::Buffer;
use crate::client::transport::{unix_now, SystemClock};
use crate::client::EXCHANGE_BUFFER;
use crate::render::render_once;

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
    /// One lock per device with a `REGISTER` in progress (the map itself is locked only to find
    /// or drop an entry), so a device's second `REGISTER` waits for its first and no other device
    /// waits at all.
    registering: StdMutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// A device's turn to register; dropping it lets the device's next `REGISTER` in.
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
        registering: StdMutex::new(HashMap::new()),
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
            let state = proxy.client_state(&device_id).unwrap_or(None);
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
            match frame {
                Frame::Register => proxy.register_device(dev).await,
                other => match proxy.registered_smsid(dev) {
                    Err(e) => e,
                    Ok(smsid) => proxy.forward(dev, smsid, other).await,
                },
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

fn send_error(e: SendError, connector: &crate::client::session::AnyConnector) -> Frame {
    match e {
        SendError::Transport(k) => Frame::error(
            code::MP_UNAVAILABLE,
            match connector.last_tls_error() {
                Some(t) => t.to_string(),
                None => format!("the MP is unreachable: {k}"),
            },
        ),
        SendError::Status(s) => Frame::error(
            code::MP_REFUSED,
            format!("the MP refused the message (HTTP {s})"),
        ),
        other => Frame::error(code::MP_UNAVAILABLE, format!("sending failed: {other:?}")),
    }
}

impl Proxy {
    fn client_state(&self, id: &str) -> Result<Option<RegistrationState>> {
        self.registry.state(id)
    }

    fn registered_smsid(&self, dev: &Device) -> Result<Smsid, Frame> {
        match self.client_state(&dev.id) {
            Ok(Some(RegistrationState::Registered(id))) => Ok(id),
            Ok(Some(RegistrationState::Pending(id))) => Err(Frame::error(
                code::NOT_REGISTERED,
                format!("registration {id} is pending approval; send REGISTER again later"),
            )),
            Ok(_) => Err(Frame::error(
                code::NOT_REGISTERED,
                "not registered: send REGISTER first",
            )),
            Err(e) => Err(Frame::error(code::INTERNAL, format!("{e:#}"))),
        }
    }

    fn signing(&self) -> SigningIdentity<'_> {
        self.link.signing()
    }

    /// Register (or confirm) a device through the proxy, keeping its certificate and SMSID.
    async fn register_device(&self, dev: &Device) -> Frame {
        let _turn = DeviceTurn::take(&self.registering, &dev.id).await;
        match self.register_device_locked(dev).await {
            Ok(f) => f,
            Err(e) => Frame::error(code::INTERNAL, format!("{e:#}")),
        }
    }

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

    async fn register_device_locked(&self, dev: &Device) -> Result<Frame> {
        let client = self.device_record(dev).await?;
        let fqdn = format!("{}.local", dev.name);
        let config = self.opts.config(&dev.name, &fqdn)?;
        let registrant = Registrant::ProxyClient {
            proxy: self.signing(),
            proxy_smsid: self.smsid,
            client_cert_der: &client.cert_der,
        };
        // A device registered before is re-confirmed with the MP (RequestType="Confirmation"
        // with its SMSID), so the MP — not only this proxy's files — vouches for the mapping.
        let known = match client.state {
            RegistrationState::Registered(id) => RegistrationState::Pending(id),
            other => other,
        };
        let mut registrar = Registrar::new(known);
        if let Some(p) = registrant.proposes() {
            registrar = registrar.with_proposed_smsid(p);
        }
        let mut connector = self.link.connector();
        let mut buf = Buffer::take(EXCHANGE_BUFFER);
        // The states to keep are written once the exchange is over (one registry write): the
        // observer cannot wait for the registry, and the last such state is the one that counts.
        let mut persisted = None;
        let mut observe = |p: &Progress| {
            if let Progress::Event(ev) = p {
                if let Some(s) = ev.persist() {
                    persisted = Some(s);
                }
            }
        };
        let result = io::register_as(
            &mut connector,
            &mut SystemClock,
            &config,
            &registrant,
            &mut registrar,
            &mut rand_core::OsRng,
            &mut buf,
            RegisterOptions {
                return_when_pending: true,
                max_failures: 1,
            },
            &mut observe,
        )
        .await;
        let keep = match &result {
            Ok(s) => Some(*s),
            Err(_) => persisted,
        };
        if let Some(s) = keep {
            self.registry
                .set_registration(&dev.id, &dev.name, s)
                .await
                .context("persisting the device's registration")?;
        }
        let state = match result {
            Ok(s) => s,
            Err(RegisterError::GaveUp(AttemptFailure::Status(s))) => {
                return Ok(Frame::error(
                    code::MP_REFUSED,
                    format!("the MP refused the registration (HTTP {s})"),
                ))
            }
            Err(RegisterError::GaveUp(AttemptFailure::Transport(k))) => {
                return Ok(Frame::error(
                    code::MP_UNAVAILABLE,
                    match connector.last_tls_error() {
                        Some(t) => t.to_string(),
                        None => format!("the MP is unreachable: {k}"),
                    },
                ))
            }
            Err(e) => {
                return Ok(Frame::error(
                    code::MP_REFUSED,
                    format!("registration failed: {e}"),
                ))
            }
        };
        tracing::info!("device {} ({}): {state:?}", dev.id, dev.name);
        Ok(match state {
            RegistrationState::Registered(id) => Frame::RegisterResult {
                status: reg_status::REGISTERED,
                smsid: id.to_string(),
            },
            RegistrationState::Pending(id) => Frame::RegisterResult {
                status: reg_status::PENDING,
                smsid: id.to_string(),
            },
            RegistrationState::Rejected(_) => Frame::RegisterResult {
                status: reg_status::REJECTED,
                smsid: String::new(),
            },
            RegistrationState::Unregistered => {
                Frame::error(code::MP_REFUSED, "the MP did not register the device")
            }
        })
    }

    /// Sign `body` for the device (proxy key, device SMSID, `ProxySMSID`) and send it.
    async fn send_for<B: MessageBody>(&self, dev: &Device, smsid: Smsid, body: &B) -> Frame {
        let fqdn = format!("{}.local", dev.name);
        let config = match self.opts.config(&dev.name, &fqdn) {
            Ok(c) => c,
            Err(e) => return Frame::error(code::INTERNAL, format!("{e:#}")),
        };
        let client_id = match ClientIdSignature::compute(&self.link.signer, smsid) {
            Ok(c) => c,
            Err(e) => return Frame::error(code::INTERNAL, format!("signing: {e}")),
        };
        let signer = MessageSigner::proxy(self.signing(), &client_id, self.smsid);
        let message_id = Guid::random(&mut rand_core::OsRng);
        // Rendered once, then signed and sent from those bytes (crate::render).
        let mut rendered = Vec::new();
        let rendered = match render_once(body, &mut rendered) {
            Ok(r) => r,
            Err(_) => {
                return Frame::error(
                    code::INVALID,
                    "the data cannot be sent: the message could not be written out",
                )
            }
        };
        let params = MessageParams {
            endpoint: body.endpoint(),
            reply_mode: body.reply_mode(),
            message_id,
            now: unix_now(),
        };
        // Discovery and inventory go as body + attachment, as real MPs read them (the same rule
        // and naming as the agent's own: `mpagent_core::agent::messages`).
        let endpoint = Endpoint::from_name(body.endpoint());
        let framed = match endpoint.filter(|e| travels_attached(*e)) {
            Some(_) => match AttachedReport::new(&rendered) {
                Ok(r) => Some(r),
                Err(e) => {
                    return Frame::error(code::INVALID, format!("the data cannot be sent: {e}"))
                }
            },
            None => None,
        };
        let signed = match (&framed, endpoint) {
            (Some(report), Some(endpoint)) => SignedMessage::new_attached(
                &config,
                &signer,
                params,
                report,
                attachment_name(
                    config.site_generation.attachment_naming(),
                    endpoint,
                    message_id,
                ),
            ),
            _ => SignedMessage::new(&config, &signer, params, &rendered),
        };
        let msg = match signed {
            Ok(m) => m,
            Err(e) => return Frame::error(code::INVALID, format!("the data cannot be sent: {e}")),
        };
        let mut connector = self.link.connector();
        let mut buf = Buffer::take(EXCHANGE_BUFFER);
        match io::send_message(&mut connector, &msg, &mut buf).await {
            Ok(()) => Frame::Ack {
                of: 0,
                detail: String::from_utf8_lossy(&message_id.to_braced()).into_owned(),
            },
            Err(e) => send_error(e, &connector),
        }
    }

    async fn forward(&self, dev: &Device, smsid: Smsid, frame: Frame) -> Frame {
        let of = frame.kind();
        let now = unix_now();
        let identity = ReportIdentity::new(smsid, &dev.name);
        let fqdn = format!("{}.local", dev.name);
        let reply = match &frame {
            Frame::Heartbeat => {
                let discovery = crate::client::host_discovery(&fqdn, &[]);
                let report = Report::discovery(identity, now.to_datetime(), &discovery);
                self.send_for(dev, smsid, &report).await
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
                self.send_for(dev, smsid, &report).await
            }
            Frame::Status {
                message_type,
                properties,
            } => {
                let props: Vec<(&str, &str)> = properties
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect();
                let site = match mpagent_core::config::SiteCode::new(&self.opts.site_code) {
                    Ok(s) => s,
                    Err(e) => return Frame::error(code::INTERNAL, format!("{e}")),
                };
                let status = StatusMessage {
                    message_type,
                    smsid,
                    machine_name: &dev.name,
                    site_code: site,
                    time: now.to_datetime(),
                    properties: &props,
                    qualifiers: &[],
                };
                self.send_for(dev, smsid, &status).await
            }
            Frame::State { topic, state } => {
                let msg = StateMessage::new(identity, now.to_datetime(), topic, 0, 0, *state);
                self.send_for(dev, smsid, &msg).await
            }
            Frame::PolicyRequest => return self.policy(dev, smsid).await,
            _ => return Frame::error(code::SEQUENCE, "unexpected frame"),
        };
        match reply {
            Frame::Ack { detail, .. } => Frame::Ack { of, detail },
            other => other,
        }
    }

    async fn policy(&self, dev: &Device, smsid: Smsid) -> Frame {
        let fqdn = format!("{}.local", dev.name);
        let config = match self.opts.config(&dev.name, &fqdn) {
            Ok(c) => c,
            Err(e) => return Frame::error(code::INTERNAL, format!("{e:#}")),
        };
        let client_id = match ClientIdSignature::compute(&self.link.signer, smsid) {
            Ok(c) => c,
            Err(e) => return Frame::error(code::INTERNAL, format!("signing: {e}")),
        };
        let signer = MessageSigner::proxy(self.signing(), &client_id, self.smsid);
        // A proxied device's requests are not tied to one another here: each sends the empty
        // cookie of a first request (docs/protocol.md §5).
        let request = request_assignments(&config, smsid, "");
        let msg = match sign_message(
            &config,
            &signer,
            &request,
            Guid::random(&mut rand_core::OsRng),
            unix_now(),
        ) {
            Ok(m) => m,
            Err(e) => return Frame::error(code::INTERNAL, format!("{e}")),
        };
        let mut connector = self.link.connector();
        let mut buf = Buffer::take(EXCHANGE_BUFFER * 4);
        let mut scratch = Buffer::take(EXCHANGE_BUFFER * 6);
        let mut policies = Vec::new();
        let mut cookie = ServerCookie::new();
        let result = io::request_policy(
            &mut connector,
            &msg,
            &mut buf,
            &mut scratch,
            &mut cookie,
            &mut |a| {
                let text = |t: &mpagent_core::wire::xml_reader::XmlText<'_>| {
                    let mut b = [0u8; 512];
                    t.unescape_into(&mut b)
                        .map(str::to_string)
                        .unwrap_or_default()
                };
                if policies.len() < protocol::MAX_PAIRS {
                    policies.push((text(&a.policy_id), text(&a.policy_version)));
                }
            },
        )
        .await;
        match result {
            Ok(_) => Frame::PolicyList { policies },
            // A real MP with nothing for the device yet answers with an empty body.
            Err(PolicyRequestError::EmptyReply) => Frame::PolicyList { policies },
            Err(PolicyRequestError::Send(e)) => send_error(e, &connector),
            Err(e) => Frame::error(code::MP_REFUSED, format!("policy request failed: {e}")),
        }
    }
}

/// The frame types that carry device data to the MP (documentation aid for tests).
pub const DATA_FRAMES: [u8; 5] = [
    kind::HEARTBEAT,
    kind::INVENTORY,
    kind::STATUS,
    kind::STATE,
    kind::POLICY_REQUEST,
];
