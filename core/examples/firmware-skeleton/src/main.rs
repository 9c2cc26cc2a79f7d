//! The smallest whole firmware around `mpagent-core`: a vendor starts here. Every item named
//! `Vendor…` is a seam the device fills with its own driver; everything else is the core.
//!
//! What it does at boot, in order: open the store on flash, load the identity or make one
//! (P-256 key from the RNG, self-signed certificate, saved before anything goes on the wire),
//! then run the core's agent one step at a time. The agent registers first (a stored
//! registration is confirmed), then queues and sends the heartbeat and polls policy, each on its
//! schedule; between steps it says until when there is nothing to do.
//!
//! Here the network seam has no network behind it ([`VendorNet`] refuses every connection), so
//! under QEMU the skeleton shows the first registration attempt failing at the transport and
//! the agent backing off to a later time; `tests/run-all.sh` checks exactly that. The QEMU
//! board (`boards/qemu-mps2-an386`) is the same loop over a real TCP stack (embassy-net).
//!
//! Memory: the exchange buffer, the policy scratch and the flash stand-in are statics the
//! firmware owns (`cortex_m::singleton!`); the driver and one step's future live on the stack.
//! Measured (`cargo build --release && llvm-size -A target/thumbv7em-none-eabihf/release/mpagent-firmware-skeleton`):
//! 93 736 B of `.text` and 14 228 B of `.rodata` in flash (the whole agent: registration,
//! reports, queue, policy, P-256, certificates), 77 352 B of `.bss` (64 KiB of it the flash
//! stand-in).
#![no_std]
#![no_main]

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use mpagent_core::agent::lifecycle::ReportKind;
use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
use mpagent_core::io::driver::Persist;
use mpagent_core::io::SendError;
use mpagent_core::sink::{Emit, Overflow, Sink};
use mpagent_core::store::embedded_storage::nor_flash::NorFlash;
use mpagent_core::store::testing::RamFlash;
use mpagent_core::store::{MessageMeta, StoredIdentity, IDENTITY_OVERHEAD};
use mpagent_core::wire::report::{BasicDiscovery, Report, ReportIdentity};
use mpagent_core::{
    Agent, AgentConfig, AgentType, Buffers, Clock, Connector, Device, Driver, Event, Host, Layout,
    P256Signer, PolicySlot, RegistrationState, Schedule, SigningIdentity, SiteMode, Step, Store,
    UnixTime,
};
use rand_core::{CryptoRng, RngCore};

/// Bytes requests stream through and replies land in (4 KiB holds the MP's policy replies).
const EXCHANGE: usize = 4096;
/// Policy replies decode through 3/2 of the exchange buffer.
const POLICY_SCRATCH: usize = EXCHANGE * 3 / 2;
/// One identity slot: a P-256 key (32 bytes), its certificate and the record's framing.
const IDENTITY_SLOT: u32 = 4096;
const _: () = assert!(IDENTITY_OVERHEAD + 32 + MAX_CERT_LEN <= IDENTITY_SLOT as usize);
/// Steps this demonstration runs before it exits (a device loops for ever: `Driver::run`).
const STEPS: usize = 4;

/// The device's NOR flash: here RAM with NOR rules (64 KiB, 4 KiB sectors). A vendor puts its
/// flash driver here (any `embedded_storage::nor_flash::NorFlash`).
type VendorFlash = RamFlash<65536, 4, 4, 4096>;

/// The device's network: a TCP (or TLS) connection to the MP per exchange, over
/// `embedded-io-async`. This one has no network and refuses every connection.
struct VendorNet;

/// A connection [`VendorNet`] never makes.
enum NoConnection {}

impl ErrorType for NoConnection {
    type Error = ErrorKind;
}
impl Read for NoConnection {
    async fn read(&mut self, _buf: &mut [u8]) -> Result<usize, ErrorKind> {
        match *self {}
    }
}
impl Write for NoConnection {
    async fn write(&mut self, _buf: &[u8]) -> Result<usize, ErrorKind> {
        match *self {}
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        match *self {}
    }
}

impl Connector for VendorNet {
    type Error = ErrorKind;
    type Connection<'c> = NoConnection;
    async fn connect(&mut self) -> Result<NoConnection, ErrorKind> {
        Err(ErrorKind::NotConnected)
    }
}

/// The device's clock: UTC from its RTC (or from the MP's `Date`), and a timer to sleep on.
/// This one starts at a fixed date and jumps to each deadline.
struct VendorClock(UnixTime);

impl Clock for VendorClock {
    fn now(&self) -> UnixTime {
        self.0
    }
    async fn sleep_until(&mut self, t: UnixTime) {
        self.0 = self.0.max(t);
    }
}

/// The device's random numbers. **A stand-in, not a generator**: keys and certificate serials
/// need the device's TRNG (or a DRBG seeded from it); this xorshift only lets the skeleton run.
struct VendorRng(u64);

impl RngCore for VendorRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
// Only so the skeleton runs: see the type's documentation.
impl CryptoRng for VendorRng {}

/// Where policy bodies go: this device counts their bytes and keeps none.
struct CountingBody(usize);

impl Sink for CountingBody {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.0 = self.0.saturating_add(bytes.len());
        Ok(())
    }
}

/// The device's side of the agent: what it reports, where its state and policy go, its log.
struct VendorHost<'a> {
    config: &'a AgentConfig<'a>,
    secret: [u8; 32],
    cert_der: &'a [u8],
    body: CountingBody,
}

impl<F: NorFlash> Host<F> for VendorHost<'_> {
    fn report(
        &mut self,
        kind: ReportKind,
        identity: ReportIdentity<'_>,
        now: UnixTime,
        queue: &mut dyn FnMut(&dyn Emit),
    ) {
        // Discovery data names the device's addresses; this one has no inventory to send.
        if kind != ReportKind::Heartbeat {
            return;
        }
        let discovery = BasicDiscovery {
            fqdn: self.config.fqdn,
            client_version: mpagent_core::profile::REPORT_CLIENT_VERSION,
            platform_id: mpagent_core::profile::DISCOVERY_PLATFORM_ID,
            domain: None,
            ip_addresses: &["10.0.2.15"],
            mac_addresses: &["52:54:00:12:34:56"],
        };
        queue(&Report::discovery(identity, now.to_datetime(), &discovery));
    }

    fn persist(&mut self, store: &mut Store<F>, state: RegistrationState) -> Result<(), Persist> {
        // The registration state lives with the identity: one record, saved A/B.
        let record = StoredIdentity {
            key: &self.secret,
            cert_der: self.cert_der,
            registration: state,
        };
        store.save_identity(&record).map_err(|e| {
            hprintln!("saving the registration state failed: {}", e);
            Persist
        })
    }

    fn file_refused(
        &mut self,
        meta: &MessageMeta,
        _body: &dyn Emit,
        error: SendError,
    ) -> Result<(), Persist> {
        hprintln!(
            "the MP refused {} {} for good ({})",
            meta.endpoint.name(),
            meta.message_id,
            error
        );
        Ok(())
    }

    fn policy_applied(&mut self, _id: &str, _version: &str) -> bool {
        false
    }

    fn policy_body(&mut self) -> &mut dyn Sink {
        self.body.0 = 0;
        &mut self.body
    }

    fn policy_done(&mut self, id: &str, version: &str, len: usize, keep: bool) -> bool {
        hprintln!("policy {}.{}: {} bytes, kept: {}", id, version, len, keep);
        keep
    }

    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::RegistrationSending { message_id, .. } => {
                hprintln!("registration request {}", message_id)
            }
            Event::RegistrationFailed(failure) => {
                hprintln!("registration attempt failed: {}", failure)
            }
            Event::Registration(moved) => hprintln!("registration: {}", moved),
            Event::Delivered {
                endpoint,
                message_id,
            } => hprintln!("delivered {} {}", endpoint.name(), message_id),
            Event::DeliveryFailed { error, .. } => hprintln!("delivery stopped: {}", error),
            _ => {}
        }
    }
}

/// Runs a future to its end by polling it. A firmware with an executor (embassy, RTIC) awaits
/// instead; nothing in the core needs a particular one.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// Waits for ever once semihosting has been told to exit (on a device without a debugger the
/// exit is ignored and the core sleeps).
fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

/// Stops the program with a failure line (semihosting exit code 1 under QEMU).
fn fail(what: &str, why: &dyn core::fmt::Display) -> ! {
    hprintln!("skeleton: {}: {}", what, why);
    debug::exit(debug::EXIT_FAILURE);
    halt()
}

#[entry]
fn main() -> ! {
    let exchange = cortex_m::singleton!(: [u8; EXCHANGE] = [0; EXCHANGE]);
    let scratch = cortex_m::singleton!(: [u8; POLICY_SCRATCH] = [0; POLICY_SCRATCH]);
    let policies = cortex_m::singleton!(: [PolicySlot; 2] = [PolicySlot::EMPTY, PolicySlot::EMPTY]);
    let cert_buf = cortex_m::singleton!(: [u8; MAX_CERT_LEN] = [0; MAX_CERT_LEN]);
    let flash = cortex_m::singleton!(: VendorFlash = VendorFlash::new());
    let (Some(exchange), Some(scratch), Some(policies), Some(cert_buf), Some(flash)) =
        (exchange, scratch, policies, cert_buf, flash)
    else {
        fail("statics", &"taken twice")
    };

    // Site code, mode, MP, NetBIOS name and FQDN: checked here, before anything is sent.
    let config = match AgentConfig::new(
        "PS1",
        SiteMode::Mixed,
        "http://10.0.2.2:8080",
        "SKELETON-1",
        "skeleton-1.example.com",
    ) {
        Ok(config) => config,
        Err(e) => fail("configuration", &e),
    };
    let mut clock = VendorClock(UnixTime(1_796_000_000));
    let mut rng = VendorRng(0x9E37_79B9_7F4A_7C15);

    // Identity and queue share the flash: two identity slots, the queue ring after them.
    let capacity = 65536;
    let layout = Layout::split::<&mut VendorFlash>(capacity, IDENTITY_SLOT);
    let mut store = match Store::open(flash, layout) {
        Ok(store) => store,
        Err(e) => fail("opening the store", &e),
    };

    // The identity: loaded, or made and saved before the first request.
    let mut secret = [0u8; 32];
    let mut state = RegistrationState::Unregistered;
    let mut cert_len = 0;
    match store.load_identity(&mut exchange[..]) {
        Ok(Some(found)) if found.key.len() == 32 && found.cert_der.len() <= cert_buf.len() => {
            secret.copy_from_slice(found.key);
            cert_buf[..found.cert_der.len()].copy_from_slice(found.cert_der);
            cert_len = found.cert_der.len();
            state = found.registration;
        }
        Ok(Some(_)) => fail("the stored identity", &"not a P-256 identity"),
        Ok(None) => {}
        Err(e) => fail("loading the identity", &e),
    }
    let signer = if cert_len > 0 {
        match P256Signer::from_secret_bytes(&secret) {
            Ok(signer) => signer,
            Err(e) => fail("the stored key", &e),
        }
    } else {
        let signer = P256Signer::generate(&mut rng);
        secret = signer.secret_bytes();
        let params = CertParams::self_signed_now(config.netbios_name, clock.now(), &mut rng);
        cert_len = match build_self_signed_p256(&params, &signer, &mut cert_buf[..]) {
            Ok(len) => len,
            Err(e) => fail("the certificate", &e),
        };
        let record = StoredIdentity {
            key: &secret,
            cert_der: &cert_buf[..cert_len],
            registration: state,
        };
        if let Err(e) = store.save_identity(&record) {
            fail("saving the identity", &e);
        }
        hprintln!("identity made: P-256 key, {}-byte certificate", cert_len);
        signer
    };
    let cert_der = &cert_buf[..cert_len];

    // The agent, with the default schedules, and everything it runs on.
    let agent = Agent::new(state, Schedule::default(), store.len(), clock.now());
    let mut host = VendorHost {
        config: &config,
        secret,
        cert_der,
        body: CountingBody(0),
    };
    let device = Device {
        config: &config,
        identity: SigningIdentity {
            signer: &signer,
            cert_der,
        },
        agent_type: AgentType::Client,
    };
    let mut net = VendorNet;
    let mut driver = Driver::new(
        agent,
        device,
        &mut net,
        &mut clock,
        &mut store,
        &mut rng,
        Buffers {
            exchange: &mut exchange[..],
            policy_scratch: &mut scratch[..],
            policies: &mut policies[..],
        },
        &mut host,
    );

    // A device loops for ever (`driver.run()`, or this loop with a sleep on `Step::Idle`).
    for _ in 0..STEPS {
        match block_on(driver.step()) {
            Ok(Step::Idle(until)) => {
                hprintln!("nothing to do until {}", until);
                block_on(driver.clock.sleep_until(until));
            }
            Ok(Step::Did(_)) => {}
            Err(e) => fail("the agent stopped", &e),
        }
    }
    hprintln!("skeleton: {} steps run", STEPS);
    debug::exit(debug::EXIT_SUCCESS);
    halt()
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    halt()
}
