//! The driver over a scripted MP: reports the caller queues itself (supersede rules, a full
//! queue), and a device an ISV proxy signs for (registration as AgentType 8 naming the proxy,
//! messages with `ProxySMSID`, a CertificateReset answered with a new device certificate).
extern crate std;

use std::collections::VecDeque;
use std::vec::Vec;

use embedded_io_async::{ErrorKind, Read, Write};

use super::*;
use crate::agent::lifecycle::Schedule;
use crate::config::SiteMode;
use crate::io::mp_replies::utf16;
use crate::sign::P256Signer;
use crate::store::testing::RamFlash;
use crate::store::Layout;

type Flash = RamFlash<16384, 1, 4, 512>;

fn block_on<T>(f: impl core::future::Future<Output = T>) -> T {
    let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    let mut f = core::pin::pin!(f);
    loop {
        if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// The MP: one canned response per connection, in order; with none left it is down.
struct Mp {
    responses: VecDeque<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    requests: Vec<Vec<u8>>,
}

impl Mp {
    fn new() -> Self {
        Self {
            responses: VecDeque::new(),
            current: Vec::new(),
            at: 0,
            requests: Vec::new(),
        }
    }
}

impl embedded_io_async::ErrorType for Mp {
    type Error = ErrorKind;
}

impl Read for Mp {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let rest = self.current.get(self.at..).unwrap_or(&[]);
        let n = rest.len().min(buf.len()).min(97);
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Mp {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if let Some(r) = self.requests.last_mut() {
            r.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Connector for Mp {
    type Error = ErrorKind;
    type Connection<'c> = &'c mut Mp;
    async fn connect(&mut self) -> Result<&mut Mp, ErrorKind> {
        let Some(next) = self.responses.pop_front() else {
            return Err(ErrorKind::ConnectionRefused);
        };
        self.current = next;
        self.at = 0;
        self.requests.push(Vec::new());
        Ok(self)
    }
}

struct VirtualClock(UnixTime);

impl Clock for VirtualClock {
    fn now(&self) -> UnixTime {
        self.0
    }
    async fn sleep_until(&mut self, t: UnixTime) {
        self.0 = self.0.max(t);
    }
}

#[derive(Default)]
struct NoBody;
impl Sink for NoBody {
    fn write(&mut self, _: &[u8]) -> Result<(), Overflow> {
        Ok(())
    }
}

/// What a host sees; `new_cert` is what it makes on a CertificateReset.
#[derive(Default)]
struct TestHost {
    persisted: Vec<RegistrationState>,
    delivered: Vec<Guid>,
    new_cert: Option<Vec<u8>>,
    made: bool,
    stored_new: Option<RegistrationState>,
    body: NoBody,
}

impl<F: NorFlash> Host<F> for TestHost {
    fn report(
        &mut self,
        _: ReportKind,
        _: ReportIdentity<'_>,
        _: UnixTime,
        _: &mut dyn FnMut(&dyn Emit),
    ) {
    }
    fn persist(&mut self, _: &mut Store<F>, state: RegistrationState) -> Result<(), Persist> {
        self.persisted.push(state);
        Ok(())
    }
    fn file_refused(&mut self, _: &MessageMeta, _: &dyn Emit, _: SendError) -> Result<(), Persist> {
        Ok(())
    }
    fn policy_applied(&mut self, _: &str, _: &str) -> bool {
        true
    }
    fn policy_body(&mut self) -> &mut dyn Sink {
        &mut self.body
    }
    fn policy_done(&mut self, _: &str, _: &str, _: usize, _: bool) -> bool {
        false
    }
    fn event(&mut self, event: &Event<'_>) {
        if let Event::Delivered { message_id, .. } = event {
            self.delivered.push(*message_id);
        }
    }
    fn make_new_identity(&mut self, _: UnixTime) -> bool {
        self.made = self.new_cert.is_some();
        self.made
    }
    fn new_certificate(&self) -> Option<&[u8]> {
        self.new_cert.as_deref().filter(|_| self.made)
    }
    fn store_new_identity(
        &mut self,
        _: &mut Store<F>,
        state: RegistrationState,
    ) -> Result<(), Persist> {
        self.stored_new = Some(state);
        Ok(())
    }
}

struct Text<'t>(&'t [u8]);
impl Emit for Text<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        out.write(self.0)
    }
}

fn config() -> AgentConfig<'static> {
    AgentConfig::new(
        "PS1",
        SiteMode::Mixed,
        "http://mp.corp.example:8080",
        "THING-1",
        "thing-1.local",
    )
    .unwrap()
}

fn id(n: u8) -> Smsid {
    Smsid(Guid([n; 16]))
}

/// Reports only when the caller queues them; policy only when asked.
fn quiet() -> Schedule {
    Schedule {
        heartbeat_secs: 0,
        inventory_secs: 0,
        policy_secs: 0,
        rejection_recheck_secs: 3600,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn hex(b: &[u8]) -> std::string::String {
    b.iter().map(|x| std::format!("{x:02X}")).collect()
}

/// An MP's registration reply with `status` naming `smsid`.
fn registration_reply(status: i32, smsid: Smsid) -> Vec<u8> {
    let (content_type, mp) = crate::io::mp_replies::multipart_reply(&std::format!(
        "<ClientRegistrationResponse ResponseType=\"Registration\" TimeStamp=\"2026-11-23T10:00:00Z\" Status=\"{status}\" SMSID=\"{smsid}\"/>"
    ));
    let mut out = std::format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        mp.len()
    )
    .into_bytes();
    out.extend_from_slice(&mp);
    out
}

fn accepted() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()
}

/// Everything a driver borrows, for one test.
struct Rig {
    config: AgentConfig<'static>,
    key: P256Signer,
    mp: Mp,
    clock: VirtualClock,
    store: Store<Flash>,
    rng: rand_core::OsRng,
    exchange: Vec<u8>,
    scratch: Vec<u8>,
    slots: Vec<PolicySlot>,
    host: TestHost,
}

impl Rig {
    fn new() -> Self {
        Self {
            config: config(),
            key: P256Signer::from_secret_bytes(&[7; 32]).unwrap(),
            mp: Mp::new(),
            clock: VirtualClock(UnixTime(1_800_000_000)),
            store: Store::format(Flash::default(), Layout::split::<Flash>(16384, 512)).unwrap(),
            rng: rand_core::OsRng,
            exchange: std::vec![0u8; 4096],
            scratch: std::vec![0u8; 6144],
            slots: std::vec![PolicySlot::default(); 4],
            host: TestHost::default(),
        }
    }

    fn driver(
        &mut self,
        stored: RegistrationState,
    ) -> Driver<'_, Mp, VirtualClock, Flash, TestHost> {
        let now = self.clock.0;
        let mut agent = Agent::new(stored, quiet(), self.store.len(), now);
        agent.skip_online_status();
        Driver::new(
            agent,
            Device {
                config: &self.config,
                identity: SigningIdentity {
                    signer: &self.key,
                    cert_der: PROXY_CERT,
                },
                agent_type: AgentType::IsvProxyClient,
            },
            &mut self.mp,
            &mut self.clock,
            &mut self.store,
            &mut self.rng,
            Buffers {
                exchange: &mut self.exchange,
                policy_scratch: &mut self.scratch,
                policies: &mut self.slots,
            },
            &mut self.host,
        )
    }
}

const PROXY_CERT: &[u8] = &[0xAA, 0xAB];
const DEVICE_CERT: &[u8] = &[0xD1, 0xD2, 0xD3];
const NEW_DEVICE_CERT: &[u8] = &[0xE1, 0xE2, 0xE3, 0xE4];

fn proxy() -> ThroughProxy<'static> {
    ThroughProxy {
        proxy_smsid: id(0x22),
        device_cert_der: DEVICE_CERT,
    }
}

#[test]
fn reports_the_caller_queues_keep_the_supersede_rules() {
    let mut rig = Rig::new();
    let mut d = rig.driver(RegistrationState::Unregistered);
    assert_eq!(
        d.queue_report(CallerReport::Heartbeat, &Text(b"hb")),
        Err(QueueReportError::NotRegistered)
    );
    let mut rig = Rig::new();
    let mut d = rig.driver(RegistrationState::Registered(id(5)));
    let stored = |r| match r {
        Ok(ReportQueued::Stored { superseded, .. }) => superseded,
        other => panic!("not stored: {other:?}"),
    };
    assert!(!stored(
        d.queue_report(CallerReport::Heartbeat, &Text(b"hb1"))
    ));
    assert!(!stored(
        d.queue_report(CallerReport::FullInventory, &Text(b"inv1"))
    ));
    assert!(!stored(d.queue_report(CallerReport::Status, &Text(b"st1"))));
    assert!(!stored(d.queue_report(CallerReport::Status, &Text(b"st2"))));
    assert!(stored(
        d.queue_report(CallerReport::Heartbeat, &Text(b"hb2"))
    ));
    assert!(stored(
        d.queue_report(CallerReport::FullInventory, &Text(b"inv2"))
    ));
    assert!(!stored(d.queue_report(CallerReport::State, &Text(b"sm1"))));
    let counts = d.agent.counts();
    assert_eq!((counts.queued, counts.superseded), (7, 2));
    // What is left, in order: the older heartbeat and inventory withdrawn.
    let mut left = Vec::new();
    while let Some(m) = d.store.peek().unwrap() {
        let mut body = Vec::new();
        d.store.body(&m).emit(&mut VecSink(&mut body)).unwrap();
        assert_eq!(m.meta.source_id, Some(id(5)));
        left.push((m.meta.endpoint, body));
        d.store.pop(&m).unwrap();
    }
    let want: [(Endpoint, &[u8]); 5] = [
        (Endpoint::Status, b"st1"),
        (Endpoint::Status, b"st2"),
        (Endpoint::Ddr, b"hb2"),
        (Endpoint::Hinv, b"inv2"),
        (Endpoint::Relay, b"sm1"),
    ];
    assert_eq!(left.len(), want.len());
    for ((e, b), (we, wb)) in left.iter().zip(want) {
        assert_eq!((*e, b.as_slice()), (we, wb));
    }
}

struct VecSink<'v>(&'v mut Vec<u8>);
impl Sink for VecSink<'_> {
    fn write(&mut self, b: &[u8]) -> Result<(), Overflow> {
        self.0.extend_from_slice(b);
        Ok(())
    }
}

#[test]
fn a_full_queue_refuses_what_nothing_queued_stands_for() {
    let mut rig = Rig::new();
    let mut d = rig.driver(RegistrationState::Registered(id(5)));
    let big = [b'x'; 700];
    assert!(matches!(
        d.queue_report(CallerReport::Heartbeat, &Text(&big)),
        Ok(ReportQueued::Stored { .. })
    ));
    let mut states = 0;
    loop {
        match d.queue_report(CallerReport::State, &Text(&big)) {
            Ok(_) => states += 1,
            Err(QueueReportError::NoRoom) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(states < 100, "the queue never filled");
    }
    assert!(states > 3);
    // The unsent heartbeat stands for the new one; an inventory has none to stand for it.
    assert_eq!(
        d.queue_report(CallerReport::Heartbeat, &Text(&big)),
        Ok(ReportQueued::UnsentStandsFor)
    );
    assert_eq!(
        d.queue_report(CallerReport::FullInventory, &Text(&big)),
        Err(QueueReportError::NoRoom)
    );
    let counts = d.agent.counts();
    assert_eq!(counts.queued, 1 + states);
    assert_eq!(counts.superseded, 1);
    // The state message that did not fit and the inventory.
    assert_eq!(counts.no_room, 2);
    assert_eq!(d.store.len(), 1 + states);
}

#[test]
fn through_a_proxy_the_device_registers_as_agent_type_8_and_its_messages_carry_proxy_smsid() {
    let mut rig = Rig::new();
    let device = proposed_smsid(DEVICE_CERT);
    rig.mp.responses.push_back(registration_reply(0, device));
    rig.mp.responses.push_back(accepted());
    let mut d = rig
        .driver(RegistrationState::Unregistered)
        .through_proxy(proxy());
    block_on(d.run_until_idle()).unwrap();
    assert_eq!(
        d.agent.registration(),
        RegistrationState::Registered(device)
    );
    let queued = d
        .queue_report(CallerReport::State, &Text(b"<state/>"))
        .unwrap();
    let ReportQueued::Stored { message_id, .. } = queued else {
        panic!("{queued:?}")
    };
    block_on(d.run_until_idle()).unwrap();
    assert_eq!(d.store.len(), 0);
    drop(d);
    assert_eq!(rig.host.delivered, [message_id]);
    assert_eq!(rig.host.persisted, [RegistrationState::Registered(device)]);
    let [registration, message] = rig.mp.requests.as_slice() else {
        panic!("{} requests", rig.mp.requests.len())
    };
    // The registration registers the device's certificate, signed by the proxy and naming it.
    assert!(contains(registration, &utf16("AgentType=\"8\"")));
    assert!(contains(registration, &utf16(&hex(DEVICE_CERT))));
    assert!(!contains(registration, &utf16(&hex(PROXY_CERT))));
    assert!(contains(
        registration,
        &utf16(&std::format!("<Signature SMSID=\"{}\">", id(0x22)))
    ));
    // The message is the device's, signed by the proxy for it.
    assert!(contains(
        message,
        &utf16(&std::format!("<SourceID>{device}</SourceID>"))
    ));
    assert!(contains(
        message,
        &utf16(&std::format!(
            "<Property Name=\"ProxySMSID\">{}</Property>",
            id(0x22)
        ))
    ));
    assert!(contains(
        message,
        &utf16(&std::format!(
            "<Property Name=\"PublicKey\">{}</Property>",
            hex(PROXY_CERT)
        ))
    ));
}

#[test]
fn through_a_proxy_a_certificate_reset_registers_the_new_device_certificate_and_stores_it() {
    let mut rig = Rig::new();
    let device = proposed_smsid(DEVICE_CERT);
    rig.host.new_cert = Some(NEW_DEVICE_CERT.to_vec());
    // Never registered before, the device proposes the new certificate's SMSID.
    let renewed = proposed_smsid(NEW_DEVICE_CERT);
    rig.mp.responses.push_back(registration_reply(4, device));
    rig.mp.responses.push_back(registration_reply(0, renewed));
    let mut d = rig
        .driver(RegistrationState::Unregistered)
        .through_proxy(proxy());
    block_on(d.run_until_idle()).unwrap();
    assert_eq!(
        d.agent.registration(),
        RegistrationState::Registered(renewed)
    );
    assert_eq!(d.agent.counts().new_identities, 1);
    drop(d);
    assert!(rig.host.made);
    assert_eq!(
        rig.host.stored_new,
        Some(RegistrationState::Registered(renewed))
    );
    let [first, second] = rig.mp.requests.as_slice() else {
        panic!("{} requests", rig.mp.requests.len())
    };
    assert!(contains(first, &utf16(&hex(DEVICE_CERT))));
    assert!(contains(second, &utf16(&hex(NEW_DEVICE_CERT))));
    assert!(!contains(second, &utf16(&hex(DEVICE_CERT))));
    // Still signed by the proxy, naming it.
    assert!(contains(
        second,
        &utf16(&std::format!("<Signature SMSID=\"{}\">", id(0x22)))
    ));
}

#[test]
fn a_new_identity_made_in_one_driver_is_registered_by_the_next_one_it_is_carried_to() {
    let mut rig = Rig::new();
    let device = proposed_smsid(DEVICE_CERT);
    let renewed = proposed_smsid(NEW_DEVICE_CERT);
    rig.host.new_cert = Some(NEW_DEVICE_CERT.to_vec());
    // CertificateReset, then the MP is gone before the new certificate is registered.
    rig.mp.responses.push_back(registration_reply(4, device));
    let mut d = rig
        .driver(RegistrationState::Unregistered)
        .through_proxy(proxy());
    block_on(d.run_until_idle()).unwrap();
    assert_eq!(d.agent.counts().new_identities, 1);
    let (agent, carried) = (d.agent.clone(), d.carried());
    drop(d);
    assert_eq!(rig.host.stored_new, None);
    rig.mp.responses.push_back(registration_reply(0, renewed));
    // The MP is back; the next driver starts from the Agent and what the first one carried.
    rig.clock.0 = rig.clock.0.plus(3600);
    let mut d = rig
        .driver(RegistrationState::Unregistered)
        .through_proxy(proxy())
        .carry_on(carried);
    d.agent = agent;
    block_on(d.run_until_idle()).unwrap();
    assert_eq!(
        d.agent.registration(),
        RegistrationState::Registered(renewed)
    );
    drop(d);
    assert_eq!(
        rig.host.stored_new,
        Some(RegistrationState::Registered(renewed))
    );
    let last = rig.mp.requests.last().unwrap();
    assert!(contains(last, &utf16(&hex(NEW_DEVICE_CERT))));
    assert!(!contains(last, &utf16(&hex(DEVICE_CERT))));
}
