//! `mpagent-sim fleet`: many simulated appliances against one MP, and the MP's throughput
//! against its bound.
//!
//! Each appliance is the real core: its own P-256 key and self-signed certificate made in memory
//! (no state directory), a registration through [`io::register`] (mixed mode; the MP must
//! auto-approve), then `M` heartbeat DDRs signed with [`MessageSigner::client`] and sent with
//! [`io::send_message`]. The core's async functions are not `Send` (`async fn` in traits), so
//! each client thread runs a current-thread tokio runtime with a [`tokio::task::LocalSet`] and
//! `concurrency / threads` worker tasks that take the next appliance index from a shared
//! counter.
//!
//! Through the ISV proxy (`--proxy ADDR`, or `--via-proxy` for an in-process proxy imported into
//! the in-process MP as the administrator would), each appliance is instead a constrained device
//! speaking MPX ([`crate::proxy::client::DeviceConnection`]) over one connection: `HELLO`,
//! `REGISTER`, `M` × `HEARTBEAT`; the proxy makes its key, registers it and signs its messages.
//!
//! [`run_bound`] (`fleet --bound K`) pre-builds K registration requests, then times (a) the bare
//! ECDSA verification of their K signatures on all cores and (b) the same K requests replayed
//! through an in-process MP, and reports (b)/(a), with the CPU time each phase used per operation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use mpagent_core::agent::outbound::{Post, PostParams};
use mpagent_core::agent::registration::{
    build_request, Registrar, RegistrationState, SigningIdentity,
};
use mpagent_core::agent::signed::{MessageParams, MessageSigner, SignedMessage};
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::guid::Guid;
use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
use mpagent_core::io::{self, RegisterOptions};
use mpagent_core::sign::P256Signer;

use crate::sign::HostP256Signer;
use mpagent_core::sink::{Emit, Overflow, Sink};
use mpagent_core::store::Endpoint;
use mpagent_core::wire::clientauth::ClientIdSignature;
use mpagent_core::wire::header::{endpoint, ReplyMode};
use mpagent_core::wire::registration::{AgentType, RequestType};
use mpagent_core::wire::report::{BasicDiscovery, Report, ReportIdentity};
use rand_core::OsRng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::transport::{unix_now, SystemClock, TcpConnector};
use crate::client::EXCHANGE_BUFFER;
use crate::mp::{self, Approval, Limits, MpConfig, MpServer};
use crate::proxy::client::DeviceConnection;
use crate::proxy::protocol::{reg_status, Frame};
use crate::proxy::{self as isv, ProxyHandle, ProxyOptions};

/// Site code of the in-process MP (and the default for `--site-code`).
pub const DEFAULT_SITE_CODE: &str = "FLT";

/// NetBIOS name (and certificate CN) of the in-process proxy of `--via-proxy`.
pub const PROXY_NAME: &str = "FLT-PROXY";
/// File name of the in-process MP's site database (in the temporary directory).
pub const SITE_DB_FILE: &str = "fleet-site.db";

/// Where the appliances of a proxied fleet connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyTarget {
    /// Start a proxy in process, imported into the in-process MP (`--via-proxy`).
    InProcess,
    /// A running proxy's MPX address (`--proxy ADDR`).
    At(SocketAddr),
}

/// What a fleet run does.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// MP URL (`http://host:port`); `None` starts an in-process MP on loopback (temp DB).
    pub mp: Option<String>,
    /// Site code the appliances use.
    pub site_code: String,
    /// Appliances to simulate.
    pub clients: usize,
    /// Appliances in flight at once (over all client threads).
    pub concurrency: usize,
    /// Stop starting new appliances after this long.
    pub duration: Option<Duration>,
    /// Heartbeat DDRs each appliance sends after registering.
    pub messages_per_client: usize,
    /// Client threads (each a current-thread runtime + LocalSet).
    pub threads: usize,
    /// Show an indicatif progress bar on stderr.
    pub progress: bool,
    /// Talk MPX to an ISV proxy instead of the MP.
    pub proxy: Option<ProxyTarget>,
}

/// p50 / p99 / max of one kind of operation, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn from_micros(mut v: Vec<u32>) -> Latency {
        if v.is_empty() {
            return Latency::default();
        }
        v.sort_unstable();
        let at = |q: f64| {
            let i = ((v.len() as f64 - 1.0) * q).round() as usize;
            f64::from(v[i.min(v.len() - 1)]) / 1000.0
        };
        Latency {
            count: v.len() as u64,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// The end-of-run summary (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct FleetSummary {
    pub mp: String,
    /// The ISV proxy's MPX address when the appliances went through one.
    pub proxy: Option<String>,
    pub clients_requested: usize,
    pub clients_started: u64,
    pub registered: u64,
    pub messages_sent: u64,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
    pub elapsed_secs: f64,
    pub registrations_per_sec: f64,
    pub messages_per_sec: f64,
    /// Key generation + self-signed certificate.
    pub identity: Latency,
    /// One whole registration (build, sign, connect, exchange).
    pub registration: Latency,
    /// One heartbeat DDR (build, sign, connect, exchange).
    pub message: Latency,
    pub concurrency: usize,
    pub threads: usize,
    /// Peak resident set of this process (VmHWM), KiB: includes the in-process MP if any.
    pub peak_rss_kib: u64,
}

impl std::fmt::Display for FleetSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.proxy {
            Some(p) => writeln!(f, "fleet against {} through the ISV proxy at {p}", self.mp)?,
            None => writeln!(f, "fleet against {}", self.mp)?,
        }
        writeln!(
            f,
            "  appliances   {} started / {} requested, {} registered, {} messages",
            self.clients_started, self.clients_requested, self.registered, self.messages_sent
        )?;
        writeln!(
            f,
            "  elapsed      {:.2} s ({} threads, concurrency {})",
            self.elapsed_secs, self.threads, self.concurrency
        )?;
        writeln!(
            f,
            "  throughput   {:.0} registrations/s, {:.0} messages/s",
            self.registrations_per_sec, self.messages_per_sec
        )?;
        for (name, l) in [
            ("identity", &self.identity),
            ("registration", &self.registration),
            ("message", &self.message),
        ] {
            writeln!(
                f,
                "  {name:<12} n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                l.count, l.p50_ms, l.p99_ms, l.max_ms
            )?;
        }
        writeln!(f, "  errors       {}", self.errors_total)?;
        for (k, n) in &self.errors {
            writeln!(f, "    {n:>8}  {k}")?;
        }
        write!(
            f,
            "  peak RSS     {:.1} MiB",
            self.peak_rss_kib as f64 / 1024.0
        )
    }
}

/// Peak resident set size of this process in KiB (`VmHWM` of `/proc/self/status`; 0 elsewhere).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Live counters the progress bar reads.
#[derive(Default)]
struct Counters {
    started: AtomicU64,
    registered: AtomicU64,
    messages: AtomicU64,
    errors: AtomicU64,
}

/// What one client thread measured.
#[derive(Default)]
struct ThreadStats {
    identity_us: Vec<u32>,
    registration_us: Vec<u32>,
    message_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

impl ThreadStats {
    fn error(&mut self, counters: &Counters, kind: String) {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        *self.errors.entry(kind).or_default() += 1;
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// A fleet with an in-process MP: starts it (auto-approve, temp DB) unless `opts.mp` is set.
pub async fn run(opts: FleetOptions) -> Result<FleetSummary> {
    match (opts.proxy, opts.mp.clone()) {
        (Some(ProxyTarget::At(addr)), None) => run_via_proxy(addr, "the proxy's MP", &opts).await,
        (Some(ProxyTarget::At(_)), Some(_)) => {
            anyhow::bail!("--proxy ADDR: the proxy already knows its MP; leave out --mp")
        }
        (Some(ProxyTarget::InProcess), Some(_)) => anyhow::bail!(
            "--via-proxy starts a proxy in front of the in-process MP (its certificate must be \
             imported into that MP's database); for a proxy of your own use --proxy ADDR"
        ),
        (Some(ProxyTarget::InProcess), None) => {
            let dir = tempfile::tempdir()?;
            let server = start_local_mp(dir.path(), opts.concurrency).await?;
            let summary = match start_local_proxy(dir.path(), &server).await {
                Ok(proxy) => {
                    let s = run_via_proxy(proxy.local_addr(), &server.url(), &opts).await;
                    // Shutdown joins the proxy's thread: not on a runtime worker.
                    tokio::task::spawn_blocking(move || proxy.shutdown()).await?;
                    s
                }
                Err(e) => Err(e),
            };
            server.shutdown().await;
            summary
        }
        (None, Some(url)) => run_against(&url, &opts).await,
        (None, None) => {
            let dir = tempfile::tempdir()?;
            let server = start_local_mp(dir.path(), opts.concurrency).await?;
            let summary = run_against(&server.url(), &opts).await;
            server.shutdown().await;
            summary
        }
    }
}

/// Starts an auto-approving MP on a free loopback port with its database in `dir`.
pub async fn start_local_mp(dir: &std::path::Path, concurrency: usize) -> Result<MpServer> {
    let config = MpConfig {
        site_code: DEFAULT_SITE_CODE.into(),
        db_path: dir.join(SITE_DB_FILE),
        approval: Approval::Auto,
        limits: Limits {
            max_connections: concurrency.max(64) + 16,
            ..Limits::default()
        },
        mp_host: "mp.fleet.local".into(),
    };
    MpServer::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts a proxy in front of `mp` (started by [`start_local_mp`] with `dir`) as the
/// administrator would set it up: its first run exports its certificate to `dir`, the certificate
/// is imported into the MP's database, then the proxy registers (AgentType 4) and listens on a
/// free loopback port. Its state directory is `dir/fleet-proxy`.
pub async fn start_local_proxy(dir: &std::path::Path, mp: &MpServer) -> Result<ProxyHandle> {
    let state = dir.join("fleet-proxy");
    let exported = isv::export_cert(&state, &dir.join("fleet-proxy.cer"), PROXY_NAME)?;
    crate::mp::db::SiteDb::open(dir.join(SITE_DB_FILE))?.import_cert(&exported.cert_der)?;
    let mut opts = ProxyOptions::new(&mp.url(), DEFAULT_SITE_CODE, state);
    opts.name = PROXY_NAME.into();
    isv::start(opts, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Who the appliances talk to.
#[derive(Debug, Clone)]
enum Target {
    Mp(String),
    Proxy(SocketAddr),
}

/// Runs the fleet against the MP at `url`.
pub async fn run_against(url: &str, opts: &FleetOptions) -> Result<FleetSummary> {
    // Check the configuration once, up front.
    AgentConfig::new(
        &opts.site_code,
        SiteMode::Mixed,
        url,
        "FLT0000000",
        "FLT0000000.local",
    )
    .map_err(|e| anyhow!("invalid fleet configuration ({url}): {e:?}"))?;
    run_target(Target::Mp(url.to_string()), url, opts).await
}

/// Runs the fleet through the ISV proxy at `proxy` (MPX); `mp` only labels the summary.
pub async fn run_via_proxy(
    proxy: SocketAddr,
    mp: &str,
    opts: &FleetOptions,
) -> Result<FleetSummary> {
    let mut summary = run_target(Target::Proxy(proxy), mp, opts).await?;
    summary.proxy = Some(proxy.to_string());
    Ok(summary)
}

async fn run_target(target: Target, label: &str, opts: &FleetOptions) -> Result<FleetSummary> {
    anyhow::ensure!(opts.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(opts.concurrency > 0, "--concurrency must be at least 1");
    let threads = opts.threads.clamp(1, opts.concurrency);
    let counters = Arc::new(Counters::default());
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = opts.duration.map(|d| Instant::now() + d);
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        // Spread the concurrency over the threads as evenly as possible.
        let tasks = opts.concurrency / threads + usize::from(t < opts.concurrency % threads);
        let (target, site) = (target.clone(), opts.site_code.clone());
        let (counters, next, stop) = (counters.clone(), next.clone(), stop.clone());
        let (clients, m) = (opts.clients, opts.messages_per_client);
        let handle = std::thread::Builder::new()
            .name(format!("fleet-{t}"))
            .spawn(move || -> Result<ThreadStats> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let local = tokio::task::LocalSet::new();
                let stats = Arc::new(std::sync::Mutex::new(ThreadStats::default()));
                local.block_on(&rt, async {
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..tasks {
                        let w = Worker {
                            target: target.clone(),
                            site: site.clone(),
                            messages: m,
                            counters: counters.clone(),
                        };
                        let (next, stop, stats) = (next.clone(), stop.clone(), stats.clone());
                        set.spawn_local(async move {
                            let mut local = ThreadStats::default();
                            let mut buf = vec![0u8; EXCHANGE_BUFFER];
                            loop {
                                if stop.load(Ordering::Relaxed)
                                    || deadline.is_some_and(|d| Instant::now() >= d)
                                {
                                    break;
                                }
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                if i >= clients {
                                    break;
                                }
                                w.appliance(i, &mut buf, &mut local).await;
                            }
                            let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                            s.identity_us.append(&mut local.identity_us);
                            s.registration_us.append(&mut local.registration_us);
                            s.message_us.append(&mut local.message_us);
                            for (k, n) in local.errors {
                                *s.errors.entry(k).or_default() += n;
                            }
                        });
                    }
                    while set.join_next().await.is_some() {}
                });
                let stats = std::mem::take(&mut *stats.lock().unwrap_or_else(|e| e.into_inner()));
                Ok(stats)
            })?;
        handles.push(handle);
    }

    let total = (opts.clients * (1 + opts.messages_per_client)) as u64;
    let bar = if opts.progress {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} exchanges ({per_sec}, eta {eta}) {msg}",
            )
            .map_err(|e| anyhow!("progress template: {e}"))?
            .progress_chars("=> "),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let show = |bar: &indicatif::ProgressBar| {
        let (r, m, e) = (
            counters.registered.load(Ordering::Relaxed),
            counters.messages.load(Ordering::Relaxed),
            counters.errors.load(Ordering::Relaxed),
        );
        bar.set_position(r + m + e);
        bar.set_message(format!("{r} registered, {m} messages, {e} errors"));
    };
    while !handles.iter().all(|h| h.is_finished()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        show(&bar);
    }
    show(&bar);
    bar.finish();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);

    let mut all = ThreadStats::default();
    for h in handles {
        let mut s = h.join().map_err(|_| anyhow!("a fleet thread panicked"))??;
        all.identity_us.append(&mut s.identity_us);
        all.registration_us.append(&mut s.registration_us);
        all.message_us.append(&mut s.message_us);
        for (k, n) in s.errors {
            *all.errors.entry(k).or_default() += n;
        }
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    let registered = counters.registered.load(Ordering::Relaxed);
    let messages = counters.messages.load(Ordering::Relaxed);
    Ok(FleetSummary {
        mp: label.to_string(),
        proxy: None,
        clients_requested: opts.clients,
        clients_started: counters.started.load(Ordering::Relaxed),
        registered,
        messages_sent: messages,
        errors_total: all.errors.values().sum(),
        errors: all.errors,
        elapsed_secs: secs,
        registrations_per_sec: registered as f64 / secs,
        messages_per_sec: messages as f64 / secs,
        identity: Latency::from_micros(all.identity_us),
        registration: Latency::from_micros(all.registration_us),
        message: Latency::from_micros(all.message_us),
        concurrency: opts.concurrency,
        threads,
        peak_rss_kib: peak_rss_kib(),
    })
}

/// What every worker task of a thread shares.
struct Worker {
    target: Target,
    site: String,
    messages: usize,
    counters: Arc<Counters>,
}

/// Error kind of a `Debug` value: its text up to the first `(` / `{` of a payload that varies
/// (e.g. `GaveUp(Transport(TimedOut))` is kept whole; only long reasons are cut).
fn kind_of(prefix: &str, e: &dyn std::fmt::Debug) -> String {
    cut_kind(format!("{prefix}: {e:?}"))
}

/// `s` cut to at most 100 bytes.
fn cut_kind(mut s: String) -> String {
    if s.len() > 100 {
        let mut cut = 100;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// NetBIOS name of appliance `i` (at most 15 characters).
pub fn appliance_name(i: usize) -> String {
    format!("FLT{i:07}")
}

/// A fresh in-memory P-256 identity: signer (the host's OpenSSL one) and self-signed certificate.
pub fn new_identity(name: &str) -> Result<(HostP256Signer, Vec<u8>)> {
    let signer = crate::client::state::host_p256(P256Signer::generate(&mut OsRng))?;
    let params = CertParams::self_signed_now(name, unix_now(), &mut OsRng);
    let mut cert = vec![0u8; MAX_CERT_LEN];
    let n = build_self_signed_p256(&params, &signer, &mut cert)
        .map_err(|e| anyhow!("self-signed certificate: {e:?}"))?;
    cert.truncate(n);
    Ok((signer, cert))
}

impl Worker {
    /// One appliance: identity, registration, `messages` heartbeat DDRs. Errors are counted, not
    /// returned: the fleet goes on.
    async fn appliance(&self, i: usize, buf: &mut [u8], stats: &mut ThreadStats) {
        let c = &self.counters;
        c.started.fetch_add(1, Ordering::Relaxed);
        let name = appliance_name(i);
        let url = match &self.target {
            Target::Mp(url) => url,
            Target::Proxy(addr) => return self.via_proxy(*addr, name, stats).await,
        };
        let fqdn = format!("{name}.fleet.local");
        let config = match AgentConfig::new(&self.site, SiteMode::Mixed, url, &name, &fqdn) {
            Ok(c) => c,
            Err(e) => return stats.error(c, kind_of("config", &e)),
        };
        let mut connector = TcpConnector {
            host: config.mp.host.to_string(),
            port: config.mp.port,
            connect_timeout: Duration::from_secs(10),
        };
        let t = Instant::now();
        let (signer, cert_der) = match new_identity(&name) {
            Ok(x) => x,
            Err(e) => return stats.error(c, format!("identity: {e}")),
        };
        stats.identity_us.push(micros(t.elapsed()));
        let signing = SigningIdentity {
            signer: &signer,
            cert_der: &cert_der,
        };
        let mut registrar = Registrar::new(RegistrationState::Unregistered);
        let t = Instant::now();
        let outcome = io::register(
            &mut connector,
            &mut SystemClock,
            &config,
            &signing,
            AgentType::Client,
            &mut registrar,
            &mut OsRng,
            buf,
            RegisterOptions {
                return_when_pending: true,
                // No retries: a failure is counted at once (no back-off sleep in the figures).
                max_failures: 1,
            },
            &mut |_| {},
        )
        .await;
        let smsid = match outcome {
            Ok(RegistrationState::Registered(id)) => id,
            Ok(RegistrationState::Pending(_)) => {
                return stats.error(c, "register: pending (is the MP auto-approving?)".into())
            }
            Ok(other) => return stats.error(c, kind_of("register", &other)),
            Err(e) => return stats.error(c, kind_of("register", &e)),
        };
        stats.registration_us.push(micros(t.elapsed()));
        c.registered.fetch_add(1, Ordering::Relaxed);

        let client_id = match ClientIdSignature::compute(&signer, smsid) {
            Ok(x) => x,
            Err(e) => return stats.error(c, kind_of("client id", &e)),
        };
        let message_signer = MessageSigner::client(signing, &client_id);
        for _ in 0..self.messages {
            let t = Instant::now();
            let now = unix_now();
            let discovery = BasicDiscovery {
                fqdn: &fqdn,
                client_version: mpagent_core::profile::REPORT_CLIENT_VERSION,
                platform_id: mpagent_core::profile::DISCOVERY_PLATFORM_ID,
                domain: None,
                ip_addresses: &["127.0.0.1"],
                mac_addresses: &[],
            };
            let report = Report::discovery(
                ReportIdentity::new(smsid, &name),
                now.to_datetime(),
                &discovery,
            );
            let params = MessageParams {
                endpoint: Endpoint::Ddr.name(),
                reply_mode: ReplyMode::Async,
                message_id: Guid::random(&mut OsRng),
                now,
            };
            let signed = match SignedMessage::new(&config, &message_signer, params, &report) {
                Ok(s) => s,
                Err(e) => {
                    stats.error(c, kind_of("sign", &e));
                    continue;
                }
            };
            match io::send_message(&mut connector, &signed, buf).await {
                Ok(()) => {
                    stats.message_us.push(micros(t.elapsed()));
                    c.messages.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => stats.error(c, kind_of("message", &e)),
            }
        }
    }
}

impl Worker {
    /// One appliance through the ISV proxy: one MPX connection, `HELLO` + `REGISTER` (timed
    /// together as the registration), then `messages` × `HEARTBEAT`. The device has no key of
    /// its own (the proxy makes it), so there is no identity time.
    async fn via_proxy(&self, proxy: SocketAddr, name: String, stats: &mut ThreadStats) {
        let c = &self.counters;
        let t = Instant::now();
        let mut conn = match DeviceConnection::connect(proxy).await {
            Ok(x) => x,
            Err(e) => return stats.error(c, cut_kind(format!("proxy connect: {e:#}"))),
        };
        let hello = Frame::Hello {
            device_id: name.clone(),
            name,
        };
        match conn.request(&hello).await {
            Ok(Frame::Ack { .. }) => {}
            other => return stats.error(c, answer_kind("hello", other)),
        }
        match conn.request(&Frame::Register).await {
            Ok(Frame::RegisterResult {
                status: reg_status::REGISTERED,
                ..
            }) => {}
            Ok(Frame::RegisterResult {
                status: reg_status::PENDING,
                ..
            }) => return stats.error(c, "register: pending (is the MP auto-approving?)".into()),
            other => return stats.error(c, answer_kind("register", other)),
        }
        stats.registration_us.push(micros(t.elapsed()));
        c.registered.fetch_add(1, Ordering::Relaxed);
        for _ in 0..self.messages {
            let t = Instant::now();
            match conn.request(&Frame::Heartbeat).await {
                Ok(Frame::Ack { .. }) => {
                    stats.message_us.push(micros(t.elapsed()));
                    c.messages.fetch_add(1, Ordering::Relaxed);
                }
                other => stats.error(c, answer_kind("message", other)),
            }
        }
    }
}

/// Error kind of an unexpected proxy answer (an `ERROR` frame keeps its code and text).
fn answer_kind(what: &str, answer: Result<Frame>) -> String {
    cut_kind(match answer {
        Ok(Frame::Error { code, text }) => format!("{what}: proxy ERROR {code}: {text}"),
        Ok(other) => format!("{what}: unexpected answer {:?}", other.kind()),
        Err(e) => format!("{what}: {e:#}"),
    })
}

// ---------------------------------------------------------------------------------------------
// The MP against its bound.

/// A `Sink` into a `Vec`.
struct VecSink(Vec<u8>);

impl Sink for VecSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// One pre-built registration: the whole HTTP request, and what the MP will verify in it.
pub struct PrebuiltRegistration {
    pub http: Vec<u8>,
    pub key: mp::verify::PublicKey,
    pub alg: mp::verify::SigAlg,
    pub signed: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Builds registration `i` for the MP at `url` with the core, and takes its signature apart with
/// the MP's own parsers (so (a) verifies exactly what (b) will).
pub fn prebuild_registration(url: &str, site: &str, i: usize) -> Result<PrebuiltRegistration> {
    let name = appliance_name(i);
    let fqdn = format!("{name}.fleet.local");
    let config = AgentConfig::new(site, SiteMode::Mixed, url, &name, &fqdn)
        .map_err(|e| anyhow!("config: {e:?}"))?;
    let (signer, cert_der) = new_identity(&name)?;
    let signing = SigningIdentity {
        signer: &signer,
        cert_der: &cert_der,
    };
    let now = unix_now();
    let request = build_request(
        &config,
        &signing,
        AgentType::Client,
        RequestType::Registration,
        None,
        now,
    )
    .map_err(|e| anyhow!("registration request: {e:?}"))?;
    let post = Post::new(
        &config,
        PostParams {
            endpoint: endpoint::CLIENT_REGISTRATION,
            reply_mode: ReplyMode::Sync,
            source_id: None,
            message_id: Guid::random(&mut OsRng),
            now,
            hooks: None,
        },
        &request,
    )
    .map_err(|_| anyhow!("request too large"))?;
    let mut sink = VecSink(Vec::new());
    post.emit(&mut sink)
        .map_err(|_| anyhow!("emitting the request"))?;
    let http = sink.0;

    // Take it apart as the MP does.
    use mp::{envelope, messages, verify};
    let head_end = http
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of head")?
        + 4;
    let head = std::str::from_utf8(&http[..head_end])?;
    let ct = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type").then(|| v.trim())
        })
        .context("no Content-Type")?;
    let body = &http[head_end..];
    let boundary = envelope::boundary_from_content_type(ct)?;
    let parts = envelope::split_multipart(body, &boundary)?;
    let (header_part, body_part) = envelope::message_parts(&parts)?;
    let header = messages::MsgHeader::parse(&envelope::decode_header_part(header_part)?)?;
    let decoded = envelope::decode_body_part(
        body_part,
        header.is_compressed(),
        header.body_range()?,
        &header.attachment_ranges()?,
        1 << 20,
    )?;
    let req = messages::ClientRegistrationRequest::parse(&decoded.text)?;
    let signed = envelope::element_bytes(&decoded.bytes, "Data")?.to_vec();
    let alg = verify::SigAlg::from_oid(req.data.hash_algorithm.as_deref())?;
    let signature = verify::decode_hex(&req.signature.value, "SignatureValue")?;
    let cert_hex = req
        .data
        .certificates
        .as_ref()
        .and_then(|c| c.signing.as_ref())
        .context("no signing certificate")?;
    let key = verify::parse_cert(&verify::decode_hex(&cert_hex.hex, "Signing certificate")?)?.key;
    Ok(PrebuiltRegistration {
        http,
        key,
        alg,
        signed,
        signature,
    })
}

/// What `fleet --bound` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BoundSummary {
    pub requests: usize,
    pub verify_threads: usize,
    pub concurrency: usize,
    /// (a) ECDSA verifications per second over all verify threads.
    pub verify_per_sec: f64,
    pub verify_secs: f64,
    /// (b) registrations per second through the MP.
    pub mp_registrations_per_sec: f64,
    pub mp_secs: f64,
    pub mp_ok: usize,
    pub mp_failed: usize,
    /// (b) / (a).
    pub ratio: f64,
    /// CPU time of this process (user + system) per verify in (a), milliseconds.
    pub verify_cpu_ms_per_op: f64,
    /// CPU time of this process per registration in (b) (the MP and the replaying client
    /// together), milliseconds.
    pub mp_cpu_ms_per_registration: f64,
    /// (a)'s CPU per verify / (b)'s CPU per registration: the ratio if both phases had the
    /// cores to themselves (less sensitive to other load on the machine than `ratio`).
    pub cpu_ratio: f64,
    pub peak_rss_kib: u64,
}

impl std::fmt::Display for BoundSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "MP against its bound, {} registrations", self.requests)?;
        writeln!(
            f,
            "  (a) verify only      {:.0} verifies/s ({} threads, {:.3} s)",
            self.verify_per_sec, self.verify_threads, self.verify_secs
        )?;
        writeln!(
            f,
            "  (b) through the MP   {:.0} registrations/s (concurrency {}, {:.3} s, {} ok, {} failed)",
            self.mp_registrations_per_sec, self.concurrency, self.mp_secs, self.mp_ok, self.mp_failed
        )?;
        writeln!(
            f,
            "  CPU per operation    (a) {:.3} ms/verify, (b) {:.3} ms/registration (MP + client)",
            self.verify_cpu_ms_per_op, self.mp_cpu_ms_per_registration
        )?;
        writeln!(
            f,
            "  cores busy           (a) {:.2}, (b) {:.2} (CPU time / elapsed)",
            self.verify_cpu_ms_per_op * self.verify_per_sec / 1000.0,
            self.mp_cpu_ms_per_registration * self.mp_registrations_per_sec / 1000.0
        )?;
        writeln!(f, "  ratio (b)/(a)        {:.1} %", self.ratio * 100.0)?;
        write!(
            f,
            "  CPU ratio            {:.1} % (CPU per verify / CPU per registration)",
            self.cpu_ratio * 100.0
        )
    }
}

/// CPU time (user + system) this process has used, in seconds (`/proc/self/stat`; 0 elsewhere).
fn process_cpu_secs() -> f64 {
    // Fields 14 and 15 (utime, stime) in clock ticks: USER_HZ, 100 on Linux.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

/// `fleet --bound K`: (a) verify the K signatures on `verify_threads` threads, (b) replay the K
/// requests through a fresh in-process MP with `concurrency` connections in flight.
pub async fn run_bound(
    requests: usize,
    concurrency: usize,
    verify_threads: usize,
) -> Result<BoundSummary> {
    anyhow::ensure!(requests > 0 && concurrency > 0 && verify_threads > 0);
    let dir = tempfile::tempdir()?;
    let server = start_local_mp(dir.path(), concurrency).await?;
    let url = server.url();
    let addr = server.local_addr();

    // Pre-build on all cores.
    let built: Vec<PrebuiltRegistration> = {
        let chunks: Vec<Vec<usize>> = (0..verify_threads)
            .map(|t| (t..requests).step_by(verify_threads).collect())
            .collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|idx| {
                let url = url.clone();
                std::thread::spawn(move || {
                    idx.into_iter()
                        .map(|i| prebuild_registration(&url, DEFAULT_SITE_CODE, i))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(requests);
        for h in handles {
            all.extend(h.join().map_err(|_| anyhow!("prebuild panicked"))??);
        }
        all
    };
    let built = Arc::new(built);

    // (a) bare verification.
    let cpu = process_cpu_secs();
    let t = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..verify_threads)
            .map(|th| {
                let built = &built;
                s.spawn(move || -> Result<()> {
                    for r in built.iter().skip(th).step_by(verify_threads) {
                        mp::verify::verify(&r.key, r.alg, &r.signed, &r.signature)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow!("verify panicked"))??;
        }
        Ok(())
    })?;
    let verify_secs = t.elapsed().as_secs_f64();
    let verify_cpu = process_cpu_secs() - cpu;

    // (b) through the MP: plain TCP, the pre-built bytes out, the reply read to the close.
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = process_cpu_secs();
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (built, next) = (built.clone(), next.clone());
        set.spawn(async move {
            let (mut ok, mut failed) = (0usize, 0usize);
            let mut reply = Vec::with_capacity(4096);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = built.get(i) else { break };
                reply.clear();
                let res = async {
                    let mut s = tokio::net::TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    s.write_all(&r.http).await?;
                    s.read_to_end(&mut reply).await?;
                    std::io::Result::Ok(())
                }
                .await;
                if res.is_ok() && reply.starts_with(b"HTTP/1.1 200") {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        });
    }
    let (mut mp_ok, mut mp_failed) = (0, 0);
    while let Some(r) = set.join_next().await {
        let (o, f) = r?;
        mp_ok += o;
        mp_failed += f;
    }
    let mp_secs = t.elapsed().as_secs_f64();
    let mp_cpu = process_cpu_secs() - cpu;
    server.shutdown().await;
    let verify_per_sec = requests as f64 / verify_secs.max(1e-9);
    let mp_registrations_per_sec = mp_ok as f64 / mp_secs.max(1e-9);
    Ok(BoundSummary {
        requests,
        verify_threads,
        concurrency,
        verify_per_sec,
        verify_secs,
        mp_registrations_per_sec,
        mp_secs,
        mp_ok,
        mp_failed,
        ratio: mp_registrations_per_sec / verify_per_sec,
        verify_cpu_ms_per_op: verify_cpu * 1000.0 / requests as f64,
        mp_cpu_ms_per_registration: mp_cpu * 1000.0 / (mp_ok.max(1)) as f64,
        cpu_ratio: (verify_cpu / requests as f64) / (mp_cpu / mp_ok.max(1) as f64).max(1e-12),
        peak_rss_kib: peak_rss_kib(),
    })
}
