//! mpagent on ST NUCLEO-F767ZI: STM32F767ZI (Cortex-M7F, run as thumbv7em), on-board LAN8742A
//! Ethernet PHY over RMII, the MCU's TRNG, identity and outbound queue in the MCU's own flash.
//!
//! One boot: open the core's store (`mpagent_core::store` on the last four flash sectors, see
//! `storage.rs`), bring up Ethernet with DHCP, resolve the MP, take the time from the MP's `Date`
//! header (the board has no set clock), load the identity or create it (P-256 key from the TRNG,
//! self-signed certificate) and save it, then run the core's agent for ever
//! (`mpagent_core::io::driver`, the board's side in `mpagent-firmware-common`, shared with the
//! QEMU board): a stored registration is confirmed first, then the heartbeat every hour, the
//! queue drained in order, policy polled, checked and acknowledged; each step bounded in time,
//! the board sleeping until the agent's next action. Provisioning is at build time (`MPAGENT_MP`, `MPAGENT_SITE`, `MPAGENT_NAME`,
//! see README.md). Logs: defmt over RTT (`probe-rs run`).
#![no_std]
#![no_main]

#[path = "../../qemu-mps2-an386/src/net.rs"]
mod net;
mod policy_ram;
mod storage;
#[cfg(feature = "native")]
mod tls_pool;

use core::net::Ipv4Addr;

use defmt::{error, info, warn};
use embassy_executor::Spawner;
use embassy_net::dns::DnsQueryType;
use embassy_net::{IpAddress, Runner, Stack, StackResources};
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::flash::Flash;
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::Rng;
use embassy_stm32::time::Hertz;
use embassy_stm32::{bind_interrupts, eth, rng, Config};
use embassy_time::{Duration, Instant, Timer};
use mpagent_core::agent::lifecycle::{Agent, Schedule};
use mpagent_core::agent::registration::SigningIdentity;
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::http::request::RequestHead;
use mpagent_core::io::driver::{Buffers as DriverBuffers, Device, Driver, PolicySlot, Step};
use mpagent_core::io::{self, Clock as _, Connector};
use mpagent_core::store::Store;
use mpagent_core::wire::registration::AgentType;
use mpagent_firmware_common::exchange::{self, Addresses, BoardHost, Bounded, MAX_ASSIGNMENTS};
use mpagent_firmware_common::identity::{self, LOAD_BUFFER_ANY_KIND};
/// The identity's certificate: self-signed, or in native mode the CA-issued one (longer).
#[cfg(not(feature = "native"))]
const CERT_LEN: usize = identity::CERT_BUFFER;
#[cfg(feature = "native")]
const CERT_LEN: usize = identity::NATIVE_CERT_BUFFER;
use static_cell::{ConstStaticCell, StaticCell};
use {defmt_rtt as _, panic_probe as _};

use crate::net::{BoardClock, TcpConnector};
use crate::policy_ram::{PolicyRam, MAX_POLICY_BODY};
use crate::storage::{BoardStore, LAYOUT};
#[cfg(feature = "native")]
use mpagent_firmware_common::tls;
// Mbed TLS's strchr, strcmp, strlen, strncmp and strstr.
#[cfg(feature = "native")]
use tinyrlibc as _;

/// Native mode's build-time provisioning (see build.rs and README.md).
#[cfg(feature = "native")]
const NATIVE_CA: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ca.der"));
#[cfg(feature = "native")]
const NATIVE_CLIENT_CERT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/client.der"));
#[cfg(feature = "native")]
const NATIVE_CLIENT_KEY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/client-key.der"));
/// Certificate dates are checked against this floor (the build time) until the MP's `Date`
/// header gives the time.
#[cfg(feature = "native")]
const BUILD_UNIX: u64 = parse_u64(env!("MPAGENT_BUILD_UNIX"));

#[cfg(feature = "native")]
const fn parse_u64(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n = 0u64;
    while i < b.len() {
        n = n * 10 + (b[i] - b'0') as u64;
        i += 1;
    }
    n
}
#[cfg(feature = "native")]
static TLS_RNG: StaticCell<tls::Rng<rand_chacha::ChaCha20Rng>> = StaticCell::new();

/// Build-time provisioning (`MPAGENT_MP=http://mp.corp.example:80 cargo build --release`).
const MP_URL: &str = match option_env!("MPAGENT_MP") {
    Some(url) => url,
    None => DEFAULT_MP_URL,
};
#[cfg(not(feature = "native"))]
const DEFAULT_MP_URL: &str = "http://192.168.1.10:80";
/// Native mode speaks HTTPS (an `http://` URL is refused).
#[cfg(feature = "native")]
const DEFAULT_MP_URL: &str = "https://192.168.1.10:443";
const SITE: &str = match option_env!("MPAGENT_SITE") {
    Some(site) => site,
    None => "PS1",
};
const NAME: &str = match option_env!("MPAGENT_NAME") {
    Some(name) => name,
    None => "NUCLEO-1",
};
const FQDN: &str = match option_env!("MPAGENT_FQDN") {
    Some(fqdn) => fqdn,
    None => "nucleo-1.local",
};

/// The one buffer requests stream through and replies land in (as on the QEMU board).
const EXCHANGE_BUFFER: usize = 4096;
/// Decoding a policy reply needs 3/2 of its size (`wire::policy::policy_reply_scratch_len`).
const POLICY_SCRATCH: usize = EXCHANGE_BUFFER * 3 / 2;
// The identity is read into the exchange buffer (free until the registration): any record of
// either key kind fits, so one of the other kind is refused by name, not for its size.
const _: () = assert!(EXCHANGE_BUFFER >= LOAD_BUFFER_ANY_KIND);
const SOCKET_BUFFER: usize = 2048;
const NET_TIMEOUT: Duration = Duration::from_secs(10);

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<RNG>;
});

type EthDevice = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

/// Large buffers in `.bss`, out of the task's future (and so off the stack when it is spawned).
struct Buffers {
    cert: [u8; CERT_LEN],
    socket_rx: [u8; SOCKET_BUFFER],
    socket_tx: [u8; SOCKET_BUFFER],
    exchange: [u8; EXCHANGE_BUFFER],
    policy_scratch: [u8; POLICY_SCRATCH],
    policies: [PolicySlot; MAX_ASSIGNMENTS],
    policy_body: [u8; MAX_POLICY_BODY],
}

static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers {
    cert: [0; CERT_LEN],
    socket_rx: [0; SOCKET_BUFFER],
    socket_tx: [0; SOCKET_BUFFER],
    exchange: [0; EXCHANGE_BUFFER],
    policy_scratch: [0; POLICY_SCRATCH],
    policies: [const { PolicySlot::EMPTY }; MAX_ASSIGNMENTS],
    policy_body: [0; MAX_POLICY_BODY],
});
static PACKETS: ConstStaticCell<PacketQueue<4, 4>> = ConstStaticCell::new(PacketQueue::new());
static NET_RESOURCES: ConstStaticCell<StackResources<3>> =
    ConstStaticCell::new(StackResources::new());
static RNG_CELL: StaticCell<Rng<'static, RNG>> = StaticCell::new();

fn clocks() -> Config {
    use embassy_stm32::rcc::{
        AHBPrescaler, APBPrescaler, Hse, HseMode, Pll, PllMul, PllPDiv, PllPreDiv, PllQDiv,
        PllSource, Sysclk,
    };
    let mut config = Config::default();
    // 8 MHz from the ST-LINK's MCO; 216 MHz core; 48 MHz for the RNG.
    config.rcc.hse = Some(Hse {
        freq: Hertz(8_000_000),
        mode: HseMode::Bypass,
    });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL216,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV9),
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, EthDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    run(spawner).await;
    // Done (or failed, logged): idle; a reset starts over.
    loop {
        Timer::after_secs(3600).await;
    }
}

async fn run(spawner: Spawner) {
    let p = embassy_stm32::init(clocks());
    let Buffers {
        cert: cert_buf,
        socket_rx,
        socket_tx,
        exchange,
        policy_scratch,
        policies,
        policy_body,
    } = BUFFERS.take();
    let rng = RNG_CELL.init(Rng::new(p.RNG, Irqs));
    let mode = if cfg!(feature = "native") {
        SiteMode::Native
    } else {
        SiteMode::Mixed
    };
    let Ok(config) = AgentConfig::new(SITE, mode, MP_URL, NAME, FQDN) else {
        error!("the build-time provisioning is invalid: check MPAGENT_MP/SITE/NAME/FQDN");
        return;
    };
    let mut store: BoardStore = match Store::open(Flash::new_blocking(p.FLASH), LAYOUT) {
        Ok(store) => store,
        Err(e) => {
            error!("opening the store in flash failed: {}", e);
            return;
        }
    };
    info!(
        "store open: {} messages queued ({})",
        store.len(),
        store.report()
    );

    // Network first: a new identity's certificate needs the time, which comes from the MP.
    let uid = embassy_stm32::uid::uid();
    let mac = [0x02, uid[0], uid[2], uid[4], uid[6], uid[8]]; // locally administered
    let device = Ethernet::new(
        PACKETS.take(),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        mac,
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );
    let net_config = embassy_net::Config::dhcpv4(Default::default());
    let (stack, runner) =
        embassy_net::new(device, net_config, NET_RESOURCES.take(), rng.next_u64());
    match net_task(runner) {
        Ok(token) => spawner.spawn(token),
        Err(_) => return,
    }
    info!("waiting for DHCP");
    stack.wait_config_up().await;
    let ip = stack
        .config_v4()
        .map_or([0; 4], |c| c.address.address().octets());
    let Some(mp_ip) = resolve(stack, config.mp.host).await else {
        error!("cannot resolve the MP {=str}", config.mp.host);
        return;
    };
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
    let tls_instance = {
        use rand_core::SeedableRng as _;
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let tls_rng = TLS_RNG.init(tls::Rng(rand_chacha::ChaCha20Rng::from_seed(seed)));
        seed.fill(0);
        tls::set_utc_now(mpagent_core::time::UnixTime(BUILD_UNIX));
        match tls::start(tls_rng) {
            Ok(t) => t,
            Err(e) => {
                error!("{}", e);
                return;
            }
        }
    };
    #[cfg(feature = "native")]
    let tls_material = match tls::Provisioned::parse(
        NATIVE_CA,
        NATIVE_CLIENT_CERT,
        NATIVE_CLIENT_KEY,
    ) {
        Ok(m) => m,
        Err(e) => {
            error!("native mode is not provisioned (build with MPAGENT_CA, MPAGENT_CLIENT_CERT and MPAGENT_CLIENT_KEY): {}", e);
            return;
        }
    };
    #[cfg(feature = "native")]
    let mut connector = match tls::TlsConnector::new(
        tcp,
        tls_instance.reference(),
        &tls_material,
        config.mp.host,
        (tls::TlsVersion::Tls1_2, None),
    ) {
        Ok(c) => c,
        Err(e) => {
            error!("{}", e);
            return;
        }
    };
    let mut clock = loop {
        match time_from_mp(&mut connector, &config, exchange).await {
            Some(clock) => break clock,
            None => Timer::after_secs(10).await,
        }
    };

    #[cfg(feature = "native")]
    tls::set_utc_now(clock.now());

    // Identity: load it, or make it and save it before anything goes on the wire.
    // The signer is written here in place (an RSA key is ~3.3 KB: not returned through frames).
    let mut key_slot = None;
    #[cfg(feature = "native")]
    let loaded = identity::load_or_provision(
        &mut store,
        &mut key_slot,
        &mut exchange[..],
        cert_buf,
        NATIVE_CLIENT_CERT,
        NATIVE_CLIENT_KEY,
    );
    #[cfg(not(feature = "native"))]
    let loaded = identity::load_or_create(
        &mut store,
        &mut key_slot,
        &mut exchange[..],
        cert_buf,
        NAME,
        clock.now(),
        rng,
        None,
    );
    let (signer, cert_len, stored_state) = match loaded {
        Ok(found) => found,
        Err(e) => {
            error!("identity unusable, refusing to make a second one: {}", e);
            return;
        }
    };
    let cert_der = &cert_buf[..cert_len];

    // The agent, for ever: registration (a stored registration is confirmed first), the
    // heartbeat every hour, the queue, policy; each step bounded in time, sleeping in between.
    let schedule = Schedule {
        inventory_secs: 0,
        ..Schedule::default()
    };
    let mut agent = Agent::new(stored_state, schedule, store.len(), clock.now());
    // No status message per boot (see the QEMU board).
    agent.skip_online_status();
    let mut bodies = PolicyRam {
        buf: policy_body,
        len: 0,
        writing: 0,
    };
    let mut host = BoardHost::new(
        &config,
        signer,
        cert_der,
        stored_state,
        Addresses { ip, mac },
        &mut bodies,
    );
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
        rng,
        DriverBuffers {
            exchange,
            policy_scratch,
            policies,
        },
        &mut host,
    );
    loop {
        match exchange::step(&mut driver).await {
            Ok(Bounded::Step(Step::Idle(until))) => {
                info!(
                    "{}: {} queued; next action at {}",
                    driver.agent.registration(),
                    driver.store.len(),
                    until
                );
                #[cfg(feature = "native")]
                info!("tls pool: {}", tls_pool::usage());
                driver.clock.sleep_until(until).await;
            }
            Ok(_) => {}
            Err(e) => {
                error!("the agent stopped: {}", e);
                return;
            }
        }
    }
}

/// The MP's address: an IPv4 literal, or a DNS query through the DHCP-provided servers.
async fn resolve(stack: Stack<'static>, host: &str) -> Option<Ipv4Addr> {
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    let addrs = stack.dns_query(host, DnsQueryType::A).await.ok()?;
    addrs.iter().find_map(|a| match a {
        IpAddress::Ipv4(ip) => Some(*ip),
        #[allow(unreachable_patterns)]
        _ => None,
    })
}

/// UTC from the `Date` header of an anonymous MP look-up (`GET /SMS_MP/.sms_aut?MPLIST`).
async fn time_from_mp<C: Connector>(
    connector: &mut C,
    config: &AgentConfig<'_>,
    buf: &mut [u8],
) -> Option<BoardClock>
where
    C::Error: defmt::Format,
{
    let head = RequestHead::get(
        "/SMS_MP/.sms_aut?MPLIST",
        config.mp.host,
        Some(config.mp.port),
        &[],
    );
    let mut conn = connector.connect().await.ok()?;
    let response = io::exchange(&mut conn, &head, buf).await;
    let date = match response {
        Ok(r) => r.head.date,
        Err(e) => {
            warn!("MP look-up failed: {}", e);
            None
        }
    }?;
    info!("time from the MP: {}", date);
    Some(BoardClock {
        epoch_at_boot: date.0.saturating_sub(Instant::now().as_secs()),
    })
}
