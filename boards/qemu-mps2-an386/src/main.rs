//! mpagent on QEMU's `mps2-an386` (Cortex-M4F, LAN9118 Ethernet): the same core as the host
//! simulator, driven by embassy (executor, time, net) on a real instruction set.
//!
//! One boot: read the provisioning (`mpagent.cfg`), seed the RNG, load the identity
//! (`identity.bin`) or create it (P-256 key + self-signed certificate) and store it, bring up
//! Ethernet with a static address, register with the MP through `mpagent_core::io::register`
//! and store every state change. A device that is already registered re-confirms its
//! registration (a signed `RequestType="Confirmation"` with its SMSID): the site learns the device
//! is back, and the reply proves the stored key and SMSID are still the site's. The last log line
//! says `registered GUID:…` (or why not); QEMU then exits through semihosting with 0 (registered),
//! 2 (pending approval) or 1 (failed).
//!
//! Logs are defmt frames on semihosting stdout: `… | defmt-print -e <this ELF>`. No global
//! allocator exists in this image.
#![no_std]
#![no_main]

mod executor;
mod lan9118;
mod measure;
mod net;
mod provision;
mod record;
mod rng;
mod stack_paint;
mod storage;
mod time_driver;

use core::ffi::CStr;
use core::net::Ipv4Addr;

use cortex_m_rt::{entry, exception, ExceptionFrame};
use defmt::{error, info, warn};
use defmt_semihosting as _;
use embassy_executor::{raw, Spawner};
use embassy_net::{Runner, StackResources, StaticConfigV4};
use embassy_time::{Duration, Instant};
use mpagent_core::agent::registration::{
    Registrar, RegistrationEvent, RegistrationState, SigningIdentity,
};
use mpagent_core::config::{AgentConfig, ConfigError, SiteMode};
use mpagent_core::guid::Smsid;
use mpagent_core::identity::{
    build_self_signed_p256, cert_public_key_p256, CertError, CertParams, MAX_CERT_LEN,
};
use mpagent_core::io::{self, Clock as _, Progress, RegisterError, RegisterOptions};
use mpagent_core::sign::P256Signer;
use mpagent_core::time::UnixTime;
use mpagent_core::wire::registration::AgentType;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use semihosting::sys::arm_compat::sys_time;
use static_cell::{ConstStaticCell, StaticCell};

use crate::lan9118::Lan9118;
use crate::net::{BoardClock, TcpConnector};
use crate::provision::{ProvisionError, Provisioning};
use crate::record::{IdentityRecord, RecordError, MAX_IDENTITY_RECORD};
use crate::storage::{SemihostingFiles, StorageError};

const CONFIG_FILE: &CStr = c"mpagent.cfg";
const IDENTITY_FILE: &CStr = c"identity.bin";
const IDENTITY_TMP: &CStr = c"identity.bin.tmp";
/// The one buffer requests stream through and replies land in (as on the host).
const EXCHANGE_BUFFER: usize = 4096;
const SOCKET_BUFFER: usize = 2048;
const NET_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a boot did not end registered.
#[derive(Debug, defmt::Format)]
enum Failure {
    NoProvisioning,
    Storage(StorageError),
    Provisioning(ProvisionError),
    Config(ConfigError),
    /// The MP host is not an IPv4 literal (this image has no DNS).
    MpNotAnAddress,
    /// `identity.bin` is damaged: refuse to make a second identity over it.
    IdentityCorrupt(RecordError),
    /// `identity.bin`'s certificate does not hold its key's public key.
    IdentityMismatch,
    Certificate(CertError),
    Ethernet(lan9118::InitError),
    Register(RegisterError),
    Rejected,
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

/// How a boot ended well.
enum Outcome {
    Registered(Smsid),
    Pending(Smsid),
    /// `--features measure` ran its measurements instead.
    Measured,
}

/// Every large buffer, in `.bss`. Keeping them out of the tasks' futures keeps those futures
/// small, and so the stack: a future is built on the stack before it moves into its task.
struct Buffers {
    config: [u8; 1024],
    record: [u8; MAX_IDENTITY_RECORD],
    cert: [u8; MAX_CERT_LEN],
    socket_rx: [u8; SOCKET_BUFFER],
    socket_tx: [u8; SOCKET_BUFFER],
    exchange: [u8; EXCHANGE_BUFFER],
}

static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers {
    config: [0; 1024],
    record: [0; MAX_IDENTITY_RECORD],
    cert: [0; MAX_CERT_LEN],
    socket_rx: [0; SOCKET_BUFFER],
    socket_tx: [0; SOCKET_BUFFER],
    exchange: [0; EXCHANGE_BUFFER],
});
static FRAMES: ConstStaticCell<lan9118::Frames> = ConstStaticCell::new(lan9118::Frames::new());
static NET_RESOURCES: ConstStaticCell<StackResources<2>> =
    ConstStaticCell::new(StackResources::new());
static EXECUTOR: StaticCell<raw::Executor> = StaticCell::new();

#[entry]
fn main() -> ! {
    stack_paint::paint();
    let Some(core) = cortex_m::Peripherals::take() else {
        fail_hard("core peripherals taken twice")
    };
    time_driver::init(core.SYST);
    let executor = EXECUTOR.init(raw::Executor::new(core::ptr::null_mut()));
    executor::run(executor, |spawner| match main_task(spawner) {
        Ok(token) => spawner.spawn(token),
        Err(_) => fail_hard("main task spawned twice"),
    })
}

#[embassy_executor::task]
async fn main_task(spawner: Spawner) {
    let result = run(spawner).await;
    match result {
        Ok(Outcome::Registered(id)) => {
            info!("registered {=str}", text(&id.to_text()));
            semihosting::process::exit(0)
        }
        Ok(Outcome::Pending(id)) => {
            info!("pending approval {=str}", text(&id.to_text()));
            semihosting::process::exit(2)
        }
        Ok(Outcome::Measured) => semihosting::process::exit(0),
        Err(e) => {
            error!("registration failed: {}", e);
            semihosting::process::exit(1)
        }
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Lan9118>) -> ! {
    runner.run().await
}

fn text(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap_or("?")
}

async fn run(spawner: Spawner) -> Result<Outcome, Failure> {
    let files = SemihostingFiles;
    let Buffers {
        config: cfg_buf,
        record: record_buf,
        cert: cert_buf,
        socket_rx,
        socket_tx,
        exchange,
    } = BUFFERS.take();
    let cfg = files
        .read(CONFIG_FILE, cfg_buf)?
        .ok_or(Failure::NoProvisioning)?;
    let prov = Provisioning::parse(cfg).map_err(Failure::Provisioning)?;
    let config = AgentConfig::new(
        prov.site,
        SiteMode::Mixed,
        prov.mp_url,
        prov.name,
        prov.fqdn.as_str(),
    )
    .map_err(Failure::Config)?;
    let mp_ip: Ipv4Addr = config
        .mp
        .host
        .parse()
        .map_err(|_| Failure::MpNotAnAddress)?;
    info!(
        "{=str} joins site {=str} through MP {}:{=u16}",
        prov.name,
        config.site_code.as_str(),
        mp_ip,
        config.mp.port
    );

    let mut clock = BoardClock {
        epoch_at_boot: (sys_time().unwrap_or(0) as u64).saturating_sub(Instant::now().as_secs()),
    };
    let mut rng = rng::seed(&files);
    if cfg!(feature = "measure") {
        measure::report(&config, clock.now(), &mut rng);
        return Ok(Outcome::Measured);
    }

    // Identity: load it, or make it and store it before anything goes on the wire.
    let (signer, cert_len, stored_state) = load_or_create_identity(
        &files,
        record_buf,
        cert_buf,
        prov.name,
        clock.now(),
        &mut rng,
    )?;
    let cert_der = &cert_buf[..cert_len];

    // Network.
    let driver = Lan9118::new(FRAMES.take()).map_err(Failure::Ethernet)?;
    info!("LAN9118 up, MAC {=[u8]:02x}", driver.mac());
    let net_config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: embassy_net::Ipv4Cidr::new(prov.ip, prov.prefix_len),
        gateway: Some(prov.gateway),
        dns_servers: Default::default(),
    });
    let (stack, runner) =
        embassy_net::new(driver, net_config, NET_RESOURCES.take(), rng.next_u64());
    match net_task(runner) {
        Ok(token) => spawner.spawn(token),
        Err(_) => fail_hard("net task spawned twice"),
    }
    stack.wait_config_up().await;

    // Registration. A registered device confirms its SMSID (the core's Registrar sends
    // confirmations from `Pending`; it has no "re-confirm a registration" entry point).
    let start = match stored_state {
        RegistrationState::Registered(id) => RegistrationState::Pending(id),
        RegistrationState::Rejected => return Err(Failure::Rejected),
        other => other,
    };
    let mut registrar = Registrar::new(start);
    let mut connector = TcpConnector {
        stack,
        remote: (mp_ip, config.mp.port).into(),
        rx: socket_rx,
        tx: socket_tx,
        timeout: NET_TIMEOUT,
    };
    let identity = SigningIdentity {
        signer: &signer,
        cert_der,
    };
    let options = RegisterOptions {
        return_when_pending: true,
        max_failures: prov.max_failures,
    };
    let mut store_failed = None;
    let mut observe = |p: &Progress| {
        info!("{}", p);
        let state = match p {
            Progress::Event(RegistrationEvent::Registered(id)) => {
                RegistrationState::Registered(*id)
            }
            Progress::Event(RegistrationEvent::PendingApproval(id, _)) => {
                RegistrationState::Pending(*id)
            }
            Progress::Event(RegistrationEvent::Rejected) => RegistrationState::Rejected,
            _ => return,
        };
        if let Err(e) = store_identity(&files, &signer, cert_der, state) {
            store_failed = Some(e);
        }
    };
    // Stack: what setup (identity included) used, then a fresh paint for the registration alone.
    let setup_stack = stack_paint::peak();
    stack_paint::paint();
    let started = Instant::now();
    let result = io::register(
        &mut connector,
        &mut clock,
        &config,
        &identity,
        AgentType::Client,
        &mut registrar,
        &mut rng,
        exchange,
        options,
        &mut observe,
    )
    .await;
    info!(
        "registration took {=u64} ms; peak stack: setup {=usize} bytes, registration {=usize} bytes",
        started.elapsed().as_millis(),
        setup_stack,
        stack_paint::peak()
    );
    if let Some(e) = store_failed {
        return Err(e.into());
    }
    match result.map_err(Failure::Register)? {
        RegistrationState::Registered(id) => Ok(Outcome::Registered(id)),
        RegistrationState::Pending(id) => Ok(Outcome::Pending(id)),
        RegistrationState::Rejected => Err(Failure::Rejected),
        RegistrationState::Unregistered => {
            warn!("the driver returned while unregistered");
            Err(Failure::Rejected)
        }
    }
}

/// Load `identity.bin`, or create key and certificate and store them. Returns the signer, the
/// certificate's length in `cert_buf` and the stored registration state.
fn load_or_create_identity(
    files: &SemihostingFiles,
    record_buf: &mut [u8],
    cert_buf: &mut [u8],
    name: &str,
    now: UnixTime,
    rng: &mut ChaCha20Rng,
) -> Result<(P256Signer, usize, RegistrationState), Failure> {
    if let Some(bytes) = files.read(IDENTITY_FILE, record_buf)? {
        let rec = IdentityRecord::decode(bytes).map_err(Failure::IdentityCorrupt)?;
        let signer = P256Signer::from_secret_bytes(&rec.secret)
            .map_err(|_| Failure::IdentityCorrupt(RecordError::BadPayload))?;
        let cert_key = cert_public_key_p256(rec.cert_der).map_err(Failure::Certificate)?;
        if signer.verifying_key().to_encoded_point(false).as_bytes() != cert_key.as_slice() {
            return Err(Failure::IdentityMismatch);
        }
        let cert = cert_buf
            .get_mut(..rec.cert_der.len())
            .ok_or(Failure::IdentityCorrupt(RecordError::BadPayload))?;
        cert.copy_from_slice(rec.cert_der);
        info!("identity loaded, state {}", rec.state);
        return Ok((signer, rec.cert_der.len(), rec.state));
    }
    let signer = P256Signer::generate(rng);
    let params = CertParams::self_signed_now(name, now, rng);
    let len = build_self_signed_p256(&params, &signer, cert_buf).map_err(Failure::Certificate)?;
    let state = RegistrationState::Unregistered;
    store_identity(files, &signer, &cert_buf[..len], state)?;
    info!(
        "identity created: P-256 key, {=usize}-byte certificate",
        len
    );
    Ok((signer, len, state))
}

#[inline(never)]
fn store_identity(
    files: &SemihostingFiles,
    signer: &P256Signer,
    cert_der: &[u8],
    state: RegistrationState,
) -> Result<(), StorageError> {
    let mut out = [0u8; MAX_IDENTITY_RECORD];
    let record = IdentityRecord {
        secret: signer.secret_bytes(),
        state,
        cert_der,
    };
    let len = record
        .encode(&mut out)
        .map_err(|_| StorageError::TooLarge)?;
    let written = files.replace(IDENTITY_FILE, IDENTITY_TMP, &out[..len]);
    out.fill(0); // the secret scalar does not linger on the stack
    written
}

fn fail_hard(what: &str) -> ! {
    error!("{=str}", what);
    semihosting::process::exit(1)
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    // cortex-m-rt hands in the IRQ number (exception number - 16).
    if irqn == lan9118::IRQ as i16 {
        lan9118::on_interrupt();
    } else {
        fail_hard("unexpected interrupt");
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    error!("hard fault at pc {=u32:#010x}", frame.pc());
    semihosting::process::exit(1)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // The location only: formatting the message would link core::fmt (several KiB).
    match info.location() {
        Some(at) => error!("panic at {=str}:{=u32}", at.file(), at.line()),
        None => error!("panic"),
    }
    semihosting::process::exit(101)
}
