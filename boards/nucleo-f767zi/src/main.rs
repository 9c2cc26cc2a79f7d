//! mpagent on ST NUCLEO-F767ZI: STM32F767ZI (Cortex-M7F, run as thumbv7em), on-board LAN8742A
//! Ethernet PHY over RMII, the MCU's TRNG, identity in the MCU's flash.
//!
//! One boot: seed nothing (the TRNG is the RNG), load the identity from flash or create it (P-256
//! key from the TRNG, self-signed certificate) and store it, bring up Ethernet with DHCP, resolve
//! the MP, take the time from the MP's `Date` header (the board has no set clock), then register —
//! or confirm a stored registration — with `mpagent_core::io::register`, store the outcome and
//! idle. Provisioning is at build time (`MPAGENT_MP`, `MPAGENT_SITE`, `MPAGENT_NAME`, see
//! README.md). Logs: defmt over RTT (`probe-rs run`).
#![no_std]
#![no_main]

#[path = "../../qemu-mps2-an386/src/net.rs"]
mod net;
// The record format the QEMU board used before it moved to the core's store (its seed record is
// unused here).
#[allow(dead_code)]
mod record;
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
use embassy_time::{Duration, Instant, Timer};
use mpagent_core::agent::registration::{Registrar, RegistrationState, SigningIdentity};
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::http::request::RequestHead;
use mpagent_core::identity::{
    build_self_signed_p256, cert_public_key_p256, CertParams, MAX_CERT_LEN,
};
use mpagent_core::io::{self, Connector, Progress, RegisterOptions};
use mpagent_core::sign::P256Signer;
use mpagent_core::wire::registration::AgentType;
use static_cell::{ConstStaticCell, StaticCell};
use {defmt_rtt as _, panic_probe as _};

use crate::net::{BoardClock, TcpConnector};
use crate::record::{IdentityRecord, MAX_IDENTITY_RECORD};
use crate::storage::{FlashStore, SCRATCH_LEN};

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

const EXCHANGE_BUFFER: usize = 4096;
const SOCKET_BUFFER: usize = 2048;
const NET_TIMEOUT: Duration = Duration::from_secs(10);

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<RNG>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

/// Large buffers in `.bss`, out of the task's future (and so off the stack when it is spawned).
struct Buffers {
    scratch: [u8; SCRATCH_LEN],
    record: [u8; MAX_IDENTITY_RECORD],
    cert: [u8; MAX_CERT_LEN],
    socket_rx: [u8; SOCKET_BUFFER],
    socket_tx: [u8; SOCKET_BUFFER],
    exchange: [u8; EXCHANGE_BUFFER],
}

static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers {
    scratch: [0; SCRATCH_LEN],
    record: [0; MAX_IDENTITY_RECORD],
    cert: [0; MAX_CERT_LEN],
    socket_rx: [0; SOCKET_BUFFER],
    socket_tx: [0; SOCKET_BUFFER],
    exchange: [0; EXCHANGE_BUFFER],
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
    let p = embassy_stm32::init(clocks());
    let Buffers {
        scratch,
        record: record_buf,
        cert: cert_buf,
        socket_rx,
        socket_tx,
        exchange,
    } = BUFFERS.take();
    let rng = RNG_CELL.init(Rng::new(p.RNG, Irqs));
    let Ok(config) = AgentConfig::new(SITE, SiteMode::Mixed, MP_URL, NAME, FQDN) else {
        error!("the build-time provisioning is invalid: check MPAGENT_MP/SITE/NAME/FQDN");
        return;
    };
    let mut store = FlashStore::new(Flash::new_blocking(p.FLASH));

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

    // Identity: load it, or make it and store it before anything goes on the wire.
    let now = mpagent_core::io::Clock::now(&clock);
    let (signer, cert_len, state) = match store.load(scratch).await {
        Ok(Some(bytes)) => {
            let Ok(rec) = IdentityRecord::decode(bytes) else {
                error!("the stored identity is damaged: refusing to make a second one");
                return;
            };
            let Ok(signer) = P256Signer::from_secret_bytes(&rec.secret) else {
                error!("the stored key is invalid");
                return;
            };
            let matches = cert_public_key_p256(rec.cert_der).is_ok_and(|k| {
                signer.verifying_key().to_encoded_point(false).as_bytes() == k.as_slice()
            });
            if !matches || rec.cert_der.len() > cert_buf.len() {
                error!("the stored certificate does not hold the stored key");
                return;
            }
            cert_buf[..rec.cert_der.len()].copy_from_slice(rec.cert_der);
            info!("identity loaded, state {}", rec.state);
            (signer, rec.cert_der.len(), rec.state)
        }
        Ok(None) => {
            let signer = P256Signer::generate(rng);
            let params = CertParams::self_signed_now(NAME, now, rng);
            let Ok(len) = build_self_signed_p256(&params, &signer, cert_buf) else {
                error!("building the certificate failed");
                return;
            };
            let state = RegistrationState::Unregistered;
            if save(
                &mut store,
                &signer,
                &cert_buf[..len],
                state,
                record_buf,
                scratch,
            )
            .await
            .is_err()
            {
                return;
            }
            info!("identity created: {=usize}-byte certificate", len);
            (signer, len, state)
        }
        Err(e) => {
            error!("reading the identity from flash failed: {}", e);
            return;
        }
    };
    let cert_der = &cert_buf[..cert_len];

    // Registration (a registered device confirms its SMSID; see the QEMU board's README).
    let start = match state {
        RegistrationState::Registered(id) => RegistrationState::Pending(id),
        // A stored rejection is handed to the registrar: it asks the site again once the
        // re-check interval (profile::REJECTION_RECHECK_SECS) has passed.
        other => other,
    };
    let mut registrar = Registrar::new(start);
    let identity = SigningIdentity {
        signer: &signer,
        cert_der,
    };
    let result = io::register(
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
        &mut |p: &Progress| info!("{}", p),
    )
    .await;
    // The flash store is async and the driver's observer is not: the state is stored once the
    // driver returns. Lost power before that means registering again with the same certificate,
    // which the site answers with the same SMSID.
    match result {
        Ok(state) => {
            if save(&mut store, &signer, cert_der, state, record_buf, scratch)
                .await
                .is_ok()
            {
                info!("registration state: {}", state);
            }
        }
        Err(e) => error!("registration failed: {}", e),
    }
    loop {
        Timer::after_secs(3600).await;
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

async fn save(
    store: &mut FlashStore,
    signer: &P256Signer,
    cert_der: &[u8],
    state: RegistrationState,
    record_buf: &mut [u8; MAX_IDENTITY_RECORD],
    scratch: &mut [u8; SCRATCH_LEN],
) -> Result<(), ()> {
    let record = IdentityRecord {
        secret: signer.secret_bytes(),
        state,
        cert_der,
    };
    let len = record.encode(record_buf).map_err(|_| ())?;
    let stored = store.store(&record_buf[..len], scratch).await;
    record_buf.fill(0); // the secret scalar does not linger in RAM
    stored.map_err(|e| error!("storing the identity failed: {}", e))
}
