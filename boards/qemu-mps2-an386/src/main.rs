//! mpagent on QEMU's `mps2-an386` (Cortex-M4F, LAN9118 Ethernet): the same core as the host
//! simulator, driven by embassy (executor, time, net) on a real instruction set.
//!
//! One boot: read the provisioning (`mpagent.cfg`), seed the RNG, open the core's store
//! (`mpagent_core::store` on a NOR flash emulated in `flash.bin`: identity A/B slots + outbound
//! queue), load the identity or create it (P-256 key + self-signed certificate) and save it, bring
//! up Ethernet with a static address, then one pass of the core's agent
//! (`mpagent_core::io::driver`, with `mpagent_firmware_common::exchange` as the board's side): a
//! stored registration is confirmed first (a new device registers), the heartbeat DDR is queued,
//! the queue drains in order, policy is polled and bodies fetched, checked and acknowledged. When
//! the site answers CertificateReset, a new key and self-signed certificate are made between two
//! steps and registered; they replace the stored identity once the site knows them. Every
//! step runs under a deadline; the pass ends at the agent's first wait (registration backoffs
//! are waited through up to `max_failures` attempts), and the next boot goes on from the flash.
//!
//! QEMU exits through semihosting with 0 (registered, queue drained, policy polled), 3
//! (registered, but an exchange failed: what is left stays queued for the next boot),
//! 2 (pending approval) or 1 (failed: not registered this boot, rejected, or an error). When the
//! MP is unreachable, a registered device still queues its heartbeat, which a later boot delivers.
//!
//! With `--features native` the image speaks HTTPS to an HTTPS-only site's MP: Mbed TLS over
//! the TCP connector (`mpagent_firmware_common::tls`), the identity is the provisioned
//! CA-issued certificate and key, and Mbed TLS allocates from a fixed pool (`src/tls_pool.rs`).
//!
//! Logs are defmt frames on semihosting stdout: `… | defmt-print -e <this ELF>`. No global
//! allocator exists in this image.
#![no_std]
#![no_main]

mod executor;
mod lan9118;
mod measure;
mod net;
mod policy_files;
mod provision;
mod rng;
mod stack_paint;
mod storage;
mod time_driver;
#[cfg(feature = "native")]
mod tls_pool;

use core::ffi::CStr;
use core::net::Ipv4Addr;

use cortex_m_rt::{entry, exception, ExceptionFrame};
use defmt::{error, info};
use defmt_semihosting as _;
use embassy_executor::{raw, Spawner};
use embassy_net::{Runner, StackResources, StaticConfigV4};
use embassy_time::{Duration, Instant};
use mpagent_core::agent::lifecycle::{Agent, Schedule};
use mpagent_core::agent::registration::{RegistrationState, SigningIdentity};
use mpagent_core::config::{AgentConfig, ConfigError, SiteMode};
use mpagent_core::guid::Smsid;
use mpagent_core::io::driver::{
    Buffers as DriverBuffers, Device, Driver, DriverError, PolicySlot, Step,
};
use mpagent_core::io::Clock as _;
use mpagent_core::store::{Store, StoreError};
use mpagent_core::wire::registration::AgentType;
#[cfg(not(feature = "native"))]
use mpagent_firmware_common::exchange::NewIdentity;
use mpagent_firmware_common::exchange::{
    self, Addresses, BoardHost, BoardReport, Bounded, MAX_ASSIGNMENTS,
};
#[cfg(not(feature = "native"))]
use mpagent_firmware_common::identity::CERT_BUFFER;
use mpagent_firmware_common::identity::{self, LOAD_BUFFER_ANY_KIND, PROVISIONED_KEY_BUFFER};
use rand_core::RngCore;
use semihosting::sys::arm_compat::sys_time;
use static_cell::{ConstStaticCell, StaticCell};

use crate::lan9118::Lan9118;
use crate::net::{BoardClock, TcpConnector};
use crate::policy_files::PolicyFiles;
use crate::provision::{ProvisionError, Provisioning};
use crate::storage::{FlashError, SemihostingFiles, SemihostingFlash, StorageError};
#[cfg(feature = "native")]
use mpagent_firmware_common::tls;
// Mbed TLS's strchr, strcmp, strlen, strncmp and strstr.
#[cfg(feature = "native")]
use tinyrlibc as _;

/// The store on this board.
type BoardStore = Store<SemihostingFlash>;
type StoreFailure = StoreError<FlashError>;
type IdentityError = identity::IdentityError<FlashError>;

const CONFIG_FILE: &CStr = c"mpagent.cfg";
const FLASH_FILE: &CStr = c"flash.bin";
const FLASH_TMP: &CStr = c"flash.bin.tmp";
/// A key for the first boot's new identity (DER, PKCS#8 or PKCS#1; RSA-2048 builds only):
/// read only while no identity is stored, else a key is generated.
#[cfg(not(feature = "native"))]
const PROVISION_KEY_FILE: &CStr = c"provision-key.der";
/// The one buffer requests stream through and replies land in (as on the host).
const EXCHANGE_BUFFER: usize = 4096;
/// Decoding a policy reply needs 3/2 of its size (`wire::policy::policy_reply_scratch_len`).
const POLICY_SCRATCH: usize = EXCHANGE_BUFFER * 3 / 2;
// The identity is read into the exchange buffer (free until the registration): any record of
// either key kind fits, so one of the other kind is refused by name, not for its size.
const _: () = assert!(EXCHANGE_BUFFER >= LOAD_BUFFER_ANY_KIND);
const SOCKET_BUFFER: usize = 2048;
/// The identity's certificate: the device's own self-signed one, or in native mode the
/// CA-issued one (longer: the CA's extensions).
#[cfg(not(feature = "native"))]
const CERT_LEN: usize = CERT_BUFFER;
#[cfg(feature = "native")]
const CERT_LEN: usize = identity::NATIVE_CERT_BUFFER;
/// Native mode's provisioned files (DER), next to `mpagent.cfg`.
#[cfg(feature = "native")]
const CA_FILE: &CStr = c"ca.der";
#[cfg(feature = "native")]
const CLIENT_CERT_FILE: &CStr = c"client.der";
#[cfg(feature = "native")]
const CLIENT_KEY_FILE: &CStr = c"client-key.der";
/// Largest CA certificate read.
#[cfg(feature = "native")]
const CA_BUFFER: usize = 2048;
const NET_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a boot did not end registered.
#[derive(Debug, defmt::Format)]
enum Failure {
    NoProvisioning,
    Storage(StorageError),
    Store(StoreFailure),
    Provisioning(ProvisionError),
    Config(ConfigError),
    /// The MP host is not an IPv4 literal (this image has no DNS).
    MpNotAnAddress,
    /// The stored identity is damaged, inconsistent or of the other key kind (refused: no
    /// second identity is made), a new one could not be made, or saving it failed.
    Identity(IdentityError),
    Ethernet(lan9118::InitError),
    /// The agent's driver hit an error that retrying will not fix (store, signing).
    Driver(DriverError<FlashError>),
    /// The MP never answered a stored SMSID's confirmation this boot.
    NotConfirmed,
    /// The MP never answered the registration this boot.
    NotRegistered,
    Rejected,
    /// Native mode: a provisioned file (named) is missing.
    #[cfg(feature = "native")]
    NativeFileMissing(&'static str),
    /// Native mode: the provisioned TLS material was refused, or TLS did not start.
    #[cfg(feature = "native")]
    Tls(tls::ProvisionError),
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

impl From<StoreFailure> for Failure {
    fn from(e: StoreFailure) -> Self {
        Self::Store(e)
    }
}

/// How a boot ended well.
enum Outcome {
    /// Registered; what the boot saw and how many messages are still queued.
    Registered(Smsid, BoardReport, u32),
    Pending(Smsid),
    /// `--features measure` ran its measurements instead.
    Measured,
}

/// Every large buffer, in `.bss`. Keeping them out of the tasks' futures keeps those futures
/// small, and so the stack: a future is built on the stack before it moves into its task.
struct Buffers {
    config: [u8; 1024],
    cert: [u8; CERT_LEN],
    #[cfg(feature = "native")]
    ca: [u8; CA_BUFFER],
    #[cfg(feature = "native")]
    client_cert: [u8; CERT_LEN],
    provisioned_key: [u8; PROVISIONED_KEY_BUFFER],
    socket_rx: [u8; SOCKET_BUFFER],
    socket_tx: [u8; SOCKET_BUFFER],
    exchange: [u8; EXCHANGE_BUFFER],
    policy_scratch: [u8; POLICY_SCRATCH],
    policies: [PolicySlot; MAX_ASSIGNMENTS],
}

static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers {
    config: [0; 1024],
    cert: [0; CERT_LEN],
    #[cfg(feature = "native")]
    ca: [0; CA_BUFFER],
    #[cfg(feature = "native")]
    client_cert: [0; CERT_LEN],
    provisioned_key: [0; PROVISIONED_KEY_BUFFER],
    socket_rx: [0; SOCKET_BUFFER],
    socket_tx: [0; SOCKET_BUFFER],
    exchange: [0; EXCHANGE_BUFFER],
    policy_scratch: [0; POLICY_SCRATCH],
    policies: [const { PolicySlot::EMPTY }; MAX_ASSIGNMENTS],
});
static FRAMES: ConstStaticCell<lan9118::Frames> = ConstStaticCell::new(lan9118::Frames::new());
static NET_RESOURCES: ConstStaticCell<StackResources<2>> =
    ConstStaticCell::new(StackResources::new());
static EXECUTOR: StaticCell<raw::Executor> = StaticCell::new();
/// The new identity a CertificateReset asks for.
#[cfg(not(feature = "native"))]
static NEW_IDENTITY: ConstStaticCell<NewIdentity> = ConstStaticCell::new(NewIdentity::new());

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
        Ok(Outcome::Registered(id, report, queued)) => {
            info!("done {}: {}, {} still queued", id, report, queued);
            semihosting::process::exit(if report.stopped || queued > 0 { 3 } else { 0 })
        }
        Ok(Outcome::Pending(id)) => {
            info!("pending approval {}", id);
            semihosting::process::exit(2)
        }
        Ok(Outcome::Measured) => semihosting::process::exit(0),
        Err(e) => {
            error!("boot failed: {}", e);
            semihosting::process::exit(1)
        }
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Lan9118>) -> ! {
    runner.run().await
}

async fn run(spawner: Spawner) -> Result<Outcome, Failure> {
    let files = SemihostingFiles;
    let Buffers {
        config: cfg_buf,
        cert: cert_buf,
        #[cfg(feature = "native")]
            ca: ca_buf,
        #[cfg(feature = "native")]
            client_cert: client_cert_buf,
        provisioned_key,
        socket_rx,
        socket_tx,
        exchange,
        policy_scratch,
        policies,
    } = BUFFERS.take();
    let cfg = files
        .read(CONFIG_FILE, cfg_buf)?
        .ok_or(Failure::NoProvisioning)?;
    let prov = Provisioning::parse(cfg).map_err(Failure::Provisioning)?;
    let (config, mp_ip) = agent_config(&prov)?;
    if !cfg!(feature = "native")
        && (prov.tls_name.is_some() || prov.tls_version != provision::TlsVersions::Any)
    {
        defmt::warn!(
            "tls_name and tls_version in mpagent.cfg apply to native builds only: ignored"
        );
    }
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

    // Store and identity: load it, or make it and save it before anything goes on the wire.
    let flash = SemihostingFlash::open(FLASH_FILE, FLASH_TMP)?;
    let mut store = open_store(flash)?;
    info!("store open: {} messages queued", store.len());
    // The signer is written here in place (an RSA key is ~3.3 KB: not returned through frames).
    let mut key_slot = None;
    #[cfg(feature = "native")]
    let (loaded, tls_material) = {
        let ca = read_required(&files, CA_FILE, "ca.der", ca_buf)?;
        let client_cert = read_required(&files, CLIENT_CERT_FILE, "client.der", client_cert_buf)?;
        let client_key = read_required(&files, CLIENT_KEY_FILE, "client-key.der", provisioned_key)?;
        let loaded = identity::load_or_provision(
            &mut store,
            &mut key_slot,
            &mut exchange[..],
            cert_buf,
            client_cert,
            client_key,
        );
        // Mbed TLS's own copies, in its pool (the key's parsed once, here).
        let material = tls::Provisioned::parse(ca, client_cert, client_key);
        provisioned_key.fill(0);
        (loaded, material.map_err(Failure::Tls)?)
    };
    #[cfg(not(feature = "native"))]
    let provisioned = if store.has_identity() {
        None
    } else {
        files.read(PROVISION_KEY_FILE, provisioned_key)?
    };
    #[cfg(not(feature = "native"))]
    let loaded = identity::load_or_create(
        &mut store,
        &mut key_slot,
        &mut exchange[..],
        cert_buf,
        prov.name,
        clock.now(),
        &mut rng,
        provisioned,
    );
    provisioned_key.fill(0); // the provisioned secret does not linger in RAM
    let (signer, cert_len, stored_state) = loaded.map_err(Failure::Identity)?;
    let cert_der = &cert_buf[..cert_len];

    // Network.
    let driver = Lan9118::new(FRAMES.take()).map_err(Failure::Ethernet)?;
    let mac = driver.mac();
    info!("LAN9118 up, MAC {=[u8]:02x}", mac);
    let net_config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: embassy_net::Ipv4Cidr::new(prov.ip, prov.prefix_len),
        gateway: Some(prov.gateway),
        dns_servers: Default::default(),
    });
    let (stack, runner) = net_stack(driver, net_config, rng.next_u64());
    match net_task(runner) {
        Ok(token) => spawner.spawn(token),
        Err(_) => fail_hard("net task spawned twice"),
    }
    stack.wait_config_up().await;

    // The agent: registration (a stored registration is confirmed first), the heartbeat, the
    // queue, policy, one pass (`run_until_idle`): each step bounded in time.
    let tcp = TcpConnector {
        stack,
        remote: (mp_ip, config.mp.port).into(),
        rx: socket_rx,
        tx: socket_tx,
        timeout: NET_TIMEOUT,
    };
    #[cfg(not(feature = "native"))]
    let mut connector = tcp;
    #[cfg(feature = "native")]
    let tls_instance = start_tls(&mut rng, &clock)?;
    #[cfg(feature = "native")]
    let mut connector = tls::TlsConnector::new(
        tcp,
        tls_instance.reference(),
        &tls_material,
        prov.tls_name.unwrap_or(config.mp.host),
        match prov.tls_version {
            provision::TlsVersions::Only12 => {
                (tls::TlsVersion::Tls1_2, Some(tls::TlsVersion::Tls1_2))
            }
            provision::TlsVersions::Only13 => {
                (tls::TlsVersion::Tls1_3, Some(tls::TlsVersion::Tls1_3))
            }
            provision::TlsVersions::Any => (tls::TlsVersion::Tls1_2, None),
        },
    )
    .map_err(Failure::Tls)?;
    let schedule = Schedule {
        inventory_secs: 0,
        ..Schedule::default()
    };
    let mut agent = Agent::new(stored_state, schedule, store.len(), clock.now());
    // No status message per boot: its current wire form is not public (docs/protocol.md §5), so real sites
    // may ignore it, and every boot would spend a flash record and an exchange on it.
    agent.skip_online_status();
    let mut bodies = PolicyFiles::default();
    // The new identity's key comes from an RNG of its own: the driver holds the board's.
    #[cfg(not(feature = "native"))]
    let mut identity_rng = fork_rng(&mut rng);
    let host = BoardHost::new(
        &config,
        signer,
        cert_der,
        stored_state,
        Addresses {
            ip: prov.ip.octets(),
            mac,
        },
        &mut bodies,
    );
    #[cfg(not(feature = "native"))]
    let mut host = host.with_new_identity(NEW_IDENTITY.take(), &mut identity_rng);
    #[cfg(feature = "native")]
    let mut host = host;
    let device = Device {
        config: &config,
        identity: SigningIdentity { signer, cert_der },
        agent_type: AgentType::Client,
    };
    let mut driver = Driver::new(
        agent,
        device,
        &mut connector,
        &mut clock,
        &mut store,
        &mut rng,
        DriverBuffers {
            exchange,
            policy_scratch,
            policies,
        },
        &mut host,
    );
    // Stack: what setup (identity included) used, then a fresh paint for the registration, then
    // one for the data exchange.
    let setup_stack = stack_paint::peak();
    {
        // The agent's context: the agent, the driver (references and caches) and one step's
        // future, which the executor holds while it runs; the buffers are statics on top.
        let step = exchange::step(&mut driver);
        let step_len = core::mem::size_of_val(&step);
        drop(step);
        info!(
            "agent context: agent {=usize} B, driver {=usize} B, one step {=usize} B",
            core::mem::size_of::<Agent>(),
            core::mem::size_of_val(&driver),
            step_len
        );
    }
    stack_paint::paint();
    let started = Instant::now();
    let mut reg_stack = None;
    loop {
        let step = exchange::step(&mut driver).await.map_err(Failure::Driver)?;
        // A CertificateReset: the new identity is made here, between steps, and the next
        // step registers it.
        if driver.make_due_new_identity() {
            continue;
        }
        if reg_stack.is_none()
            && matches!(
                driver.agent.registration(),
                RegistrationState::Registered(_)
            )
        {
            let peak = stack_paint::peak();
            info!(
                "registration took {=u64} ms; peak stack: setup {=usize} bytes, registration {=usize} bytes",
                started.elapsed().as_millis(),
                setup_stack,
                peak
            );
            reg_stack = Some(peak);
            stack_paint::paint();
        }
        // One pass: the boot ends at the first wait (every failure backs off, so it comes),
        // except for the registration's backoffs, waited through up to the provisioned number
        // of failed attempts. The next boot goes on from what the flash holds.
        if let Bounded::Step(Step::Idle(until)) = step {
            let registering = !matches!(
                driver.agent.registration(),
                RegistrationState::Registered(_)
            ) && !driver.agent.waiting_for_approval()
                && !matches!(driver.agent.registration(), RegistrationState::Rejected(_));
            if !registering || driver.agent.registrar().failures() >= prov.max_failures {
                break;
            }
            driver.clock.sleep_until(until).await;
        }
    }
    let registration = driver.agent.registration();
    let waiting = driver.agent.waiting_for_approval();
    #[cfg(feature = "native")]
    {
        let pool = tls_pool::usage();
        info!(
            "tls pool: peak {=usize} of {=usize} bytes, {=usize} in use, {=u32} refused",
            pool.peak, pool.size, pool.in_use, pool.failures
        );
        if let Some(e) = driver.connector.last_error {
            error!("the last connection to the MP failed: {}", e);
        }
    }
    let queued = driver.store.len();
    let report = driver.host.report;
    let exchange_stack = stack_paint::peak();
    let reg_stack = reg_stack.unwrap_or(exchange_stack);
    info!(
        "exchange: {} still queued; peak stack: exchange {=usize} bytes, whole boot {=usize} bytes",
        queued,
        exchange_stack,
        setup_stack.max(reg_stack).max(exchange_stack)
    );
    match registration {
        RegistrationState::Registered(id) => Ok(Outcome::Registered(id, report, queued)),
        RegistrationState::Pending(id) if waiting => Ok(Outcome::Pending(id)),
        RegistrationState::Rejected(_) => Err(Failure::Rejected),
        RegistrationState::Pending(_) => Err(Failure::NotConfirmed),
        RegistrationState::Unregistered => Err(Failure::NotRegistered),
    }
}

// The setup steps below are out of line: inlined, their locals would stay in the main task's
// poll frame, which sits under every signing chain of the agent's pass.

/// The agent's configuration from the provisioning, and the MP's address.
#[inline(never)]
fn agent_config<'p>(prov: &'p Provisioning<'p>) -> Result<(AgentConfig<'p>, Ipv4Addr), Failure> {
    let mode = if cfg!(feature = "native") {
        SiteMode::Native
    } else {
        SiteMode::Mixed
    };
    let config = AgentConfig::new(prov.site, mode, prov.mp_url, prov.name, prov.fqdn.as_str())
        .map_err(Failure::Config)?;
    let mp_ip: Ipv4Addr = config
        .mp
        .host
        .parse()
        .map_err(|_| Failure::MpNotAnAddress)?;
    Ok((config, mp_ip))
}

/// embassy-net's stack: its interface and sockets are built in place in `NET_RESOURCES`
/// through temporaries of about 1 KiB.
#[inline(never)]
fn net_stack(
    driver: Lan9118,
    config: embassy_net::Config,
    seed: u64,
) -> (embassy_net::Stack<'static>, Runner<'static, Lan9118>) {
    embassy_net::new(driver, config, NET_RESOURCES.take(), seed)
}

/// A provisioned file that must exist (native mode).
#[cfg(feature = "native")]
#[inline(never)]
fn read_required<'b>(
    files: &SemihostingFiles,
    name: &CStr,
    shown: &'static str,
    buf: &'b mut [u8],
) -> Result<&'b [u8], Failure> {
    files
        .read(name, buf)?
        .ok_or(Failure::NativeFileMissing(shown))
}

/// Mbed TLS with its own ChaCha20 (seeded from the board's) and the board's clock for
/// certificate dates.
#[cfg(feature = "native")]
#[inline(never)]
fn start_tls(
    rng: &mut rand_chacha::ChaCha20Rng,
    clock: &BoardClock,
) -> Result<tls::Tls<'static>, Failure> {
    use rand_core::SeedableRng;
    static TLS_RNG: StaticCell<tls::Rng<rand_chacha::ChaCha20Rng>> = StaticCell::new();
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let tls_rng = TLS_RNG.init(tls::Rng(rand_chacha::ChaCha20Rng::from_seed(seed)));
    seed.fill(0);
    tls::set_utc_now(clock.now());
    tls::start(tls_rng).map_err(Failure::Tls)
}

/// A ChaCha20 seeded from `rng`.
#[cfg(not(feature = "native"))]
#[inline(never)]
fn fork_rng(rng: &mut rand_chacha::ChaCha20Rng) -> rand_chacha::ChaCha20Rng {
    use rand_core::SeedableRng;
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let forked = rand_chacha::ChaCha20Rng::from_seed(seed);
    seed.fill(0);
    forked
}

#[inline(never)]
fn open_store(flash: SemihostingFlash) -> Result<BoardStore, Failure> {
    Ok(Store::open(flash, SemihostingFlash::layout())?)
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
