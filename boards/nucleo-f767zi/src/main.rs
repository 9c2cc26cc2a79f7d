//! mpagent on ST NUCLEO-F767ZI: STM32F767ZI (Cortex-M7F, run as thumbv7em), on-board LAN8742A
//! Ethernet PHY over RMII, the MCU's TRNG, identity and outbound queue in the MCU's own flash.
//!
//! One boot: open the core's store (`mpagent_core::store` on the last four flash sectors, see
//! `storage.rs`), bring up Ethernet with DHCP, resolve the MP, take the time from the MP's `Date`
//! header (the board has no set clock), load the identity or create it (P-256 key from the TRNG,
//! self-signed certificate) and save it, register — or confirm a stored registration — with
//! `mpagent_core::io::register` (saving every state change), then, as the QEMU board does, queue
//! a heartbeat DDR, drain the queue, poll policy and acknowledge it; the heartbeat cycle repeats
//! every [`REPORT_INTERVAL`]. Identity and exchange are `mpagent-firmware-common` (shared with
//! the QEMU board). Provisioning is at build time (`MPAGENT_MP`, `MPAGENT_SITE`, `MPAGENT_NAME`,
//! see README.md). Logs: defmt over RTT (`probe-rs run`).
#![no_std]
#![no_main]

#[path = "../../qemu-mps2-an386/src/net.rs"]
mod net;
mod policy_ram;
mod storage;

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
use embassy_time::{with_timeout, Duration, Instant, Timer};
use mpagent_core::agent::registration::{Registrar, RegistrationState, SigningIdentity};
use mpagent_core::agent::signed::MessageSigner;
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::http::request::RequestHead;
use mpagent_core::io::{self, Clock as _, Connector, Progress, RegisterOptions};
use mpagent_core::store::Store;
use mpagent_core::wire::clientauth::ClientIdSignature;
use mpagent_core::wire::registration::AgentType;
use mpagent_firmware_common::exchange::{self, Agent, Assignments, Buffers as ExchangeBuffers};
use mpagent_firmware_common::identity::{self, CERT_BUFFER, LOAD_BUFFER_ANY_KIND};
use static_cell::{ConstStaticCell, StaticCell};
use {defmt_rtt as _, panic_probe as _};

use crate::net::{BoardClock, TcpConnector};
use crate::policy_ram::{PolicyRam, MAX_POLICY_BODY};
use crate::storage::{BoardStore, LAYOUT};

/// Build-time provisioning (`MPAGENT_MP=http://mp.corp.example:80 cargo build --release`).
const MP_URL: &str = match option_env!("MPAGENT_MP") {
    Some(url) => url,
    None => "http://192.168.1.10:80",
};
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
/// Bound on the whole registration (every attempt and back-off included).
const REGISTER_DEADLINE: Duration = Duration::from_secs(60);
/// Time between heartbeats (each one also drains the queue and polls policy).
const REPORT_INTERVAL: Duration = Duration::from_secs(3600);

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<RNG>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

/// Large buffers in `.bss`, out of the task's future (and so off the stack when it is spawned).
struct Buffers {
    cert: [u8; CERT_BUFFER],
    socket_rx: [u8; SOCKET_BUFFER],
    socket_tx: [u8; SOCKET_BUFFER],
    exchange: [u8; EXCHANGE_BUFFER],
    policy_scratch: [u8; POLICY_SCRATCH],
    assignments: Assignments,
    policy_body: [u8; MAX_POLICY_BODY],
}

static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers {
    cert: [0; CERT_BUFFER],
    socket_rx: [0; SOCKET_BUFFER],
    socket_tx: [0; SOCKET_BUFFER],
    exchange: [0; EXCHANGE_BUFFER],
    policy_scratch: [0; POLICY_SCRATCH],
    assignments: Assignments::new(),
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
async fn net_task(mut runner: Runner<'static, Device>) -> ! {
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
        assignments,
        policy_body,
    } = BUFFERS.take();
    let rng = RNG_CELL.init(Rng::new(p.RNG, Irqs));
    let Ok(config) = AgentConfig::new(SITE, SiteMode::Mixed, MP_URL, NAME, FQDN) else {
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
    let mut connector = TcpConnector {
        stack,
        remote: (mp_ip, config.mp.port).into(),
        rx: socket_rx,
        tx: socket_tx,
        timeout: NET_TIMEOUT,
    };
    let mut clock = loop {
        match time_from_mp(&mut connector, &config, exchange).await {
            Some(clock) => break clock,
            None => Timer::after_secs(10).await,
        }
    };

    // Identity: load it, or make it and save it before anything goes on the wire.
    let loaded = identity::load_or_create(
        &mut store,
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

    // Registration (a registered device confirms its SMSID; see the QEMU board's README). A
    // stored rejection is handed to the registrar: it asks the site again once the re-check
    // interval (profile::REJECTION_RECHECK_SECS) has passed.
    let start = match stored_state {
        RegistrationState::Registered(id) => RegistrationState::Pending(id),
        other => other,
    };
    let mut registrar = Registrar::new(start);
    let identity = SigningIdentity {
        signer: &signer,
        cert_der,
    };
    let mut recorder =
        identity::RegistrationRecorder::new(&mut store, &signer, cert_der, stored_state);
    let result = with_timeout(
        REGISTER_DEADLINE,
        io::register(
            &mut connector,
            &mut clock,
            &config,
            &identity,
            AgentType::Client,
            &mut registrar,
            rng,
            exchange,
            RegisterOptions {
                return_when_pending: true,
                max_failures: 8,
            },
            &mut |p: &Progress| recorder.observe(p),
        ),
    )
    .await;
    let (answered, store_failed) = (recorder.answered, recorder.store_failed);
    if let Some(e) = store_failed {
        error!("saving the registration state failed: {}", e);
        return;
    }
    let smsid = match result {
        Ok(Ok(RegistrationState::Registered(id))) => id,
        Ok(Ok(RegistrationState::Pending(id))) if answered => {
            info!("pending approval {}: reset to ask again", id);
            return;
        }
        Ok(Ok(RegistrationState::Rejected(_))) => {
            error!("the site rejected this device");
            return;
        }
        other => {
            match other {
                Ok(Ok(state)) => warn!("registration ended {}: the MP did not answer", state),
                Ok(Err(e)) => error!("registration failed: {}", e),
                Err(_) => error!("registration: deadline"),
            }
            exchange::queue_offline(
                &mut store,
                stored_state,
                &config,
                &signer,
                cert_der,
                &clock,
                ip,
                mac,
                rng,
            );
            return;
        }
    };
    info!("registered {}", smsid);

    // Management data: heartbeat, queue, policy; again every REPORT_INTERVAL.
    let Ok(client_id) = ClientIdSignature::compute(&signer, smsid) else {
        error!("computing the ClientIDSignature failed");
        return;
    };
    let agent = Agent {
        config: &config,
        signer: MessageSigner::client(identity, &client_id),
        clock: &clock,
    };
    let mut bufs = ExchangeBuffers {
        exchange,
        policy_scratch,
        assignments,
    };
    let mut bodies = PolicyRam {
        buf: policy_body,
        len: 0,
    };
    loop {
        let started = Instant::now();
        match exchange::report(
            &mut store,
            &mut connector,
            &agent,
            &mut bufs,
            &mut bodies,
            ip,
            mac,
            rng,
        )
        .await
        {
            Ok(summary) => info!("exchange {}: {} still queued", summary, store.len()),
            Err(e) => {
                error!("exchange failed: {}", e);
                return;
            }
        }
        Timer::at(started + REPORT_INTERVAL).await;
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
async fn time_from_mp(
    connector: &mut TcpConnector<'_>,
    config: &AgentConfig<'_>,
    buf: &mut [u8],
) -> Option<BoardClock> {
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
