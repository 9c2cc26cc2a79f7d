//! `mpagent-sim fleet`: many simulated appliances against one MP, and the MP's throughput
//! against its bound.
//!
//! Each appliance is the real core: its own key (`--key p256`, or `rsa2048` as real sites take)
//! and self-signed certificate made in memory (no state directory), then the core's agent run by
//! its [`Driver`](mpagent_core::io::driver::Driver) over an in-memory queue and a virtual clock
//! ([`appliance`]): registration (mixed mode; the MP must auto-approve), then `M` heartbeat DDRs
//! queued and delivered as a device would. The core's async functions are not `Send` (`async
//! fn` in traits), so each client thread runs a current-thread tokio runtime with a
//! [`tokio::task::LocalSet`] and `concurrency / threads` worker tasks that take the next
//! appliance index from a shared counter.
//!
//! Through the ISV proxy (`--proxy ADDR`, or `--via-proxy` for an in-process proxy imported into
//! the in-process MP as the administrator would), each appliance is instead a constrained device
//! speaking MPX ([`crate::proxy::client::DeviceConnection`]) over one connection: `HELLO`,
//! `REGISTER`, `M` × `HEARTBEAT`; the proxy makes its key, registers it and signs its messages.
//!
//! RSA-2048 keys take tens of milliseconds to generate, so an RSA fleet makes them before the
//! clock starts, as appliances come with their keys (up to [`MAX_RSA_KEYS_AHEAD`] distinct ones,
//! then reused under distinct certificates), and an in-process proxy's device-key pool is filled
//! ahead the same way (and, past that many devices, hands the same keys out in turn, each device
//! with its own certificate); the summary reports how many and how long that took.
//!
//! [`bound::run_bound`] (`fleet --bound K`) pre-builds K registration requests, then times (a) the bare
//! ECDSA verification of their K signatures on all cores and (b) the same K requests replayed
//! through an in-process MP, and reports (b)/(a), with the CPU time each phase used per operation.

mod appliance;
mod bound;
pub use bound::{
    prebuild_registration, run_bound, start_floor_mp, BoundSummary, Connections, Floor,
    PrebuiltRegistration,
};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use mpagent_core::agent::registration::SigningIdentity;
use mpagent_core::config::{AgentConfig, SiteGeneration, SiteMode};
use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
use mpagent_core::sign::{P256Signer, SiteHashSigner};

use crate::client::state::{ClientSigner, KeyKind};
use crate::sign::{generate_rsa_keys, HostP256Signer, HostRsaSigner};
use rand_core::OsRng;
use serde::Serialize;

use crate::client::transport::unix_now;
use crate::client::EXCHANGE_BUFFER;
use crate::mp::{Approval, Limits, MpConfig, MpServer};
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
    /// Show progress on stderr: an indicatif bar on a terminal, else a line every few seconds.
    pub progress: bool,
    /// Talk MPX to an ISV proxy instead of the MP.
    pub proxy: Option<ProxyTarget>,
    /// The appliances' key kind (through a proxy: the in-process proxy's kind, which its
    /// device keys follow).
    pub key: KeyKind,
    /// The site's generation the appliances (or the in-process proxy) talk to; their hash is
    /// its default for their key.
    pub site_generation: SiteGeneration,
}

/// Most distinct RSA keys an RSA fleet makes ahead (about 30 s on 2 cores); more appliances
/// reuse them, each with its own certificate (the MP tells clients apart by certificate).
pub const MAX_RSA_KEYS_AHEAD: usize = 1000;

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
    /// The appliances' key kind ("P-256", "RSA-2048").
    pub key: &'static str,
    /// RSA keys made before the clock started, and how long that took (not in `elapsed_secs`).
    pub keys_made_ahead: usize,
    pub keys_ahead_secs: f64,
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
            "  appliances   {} started / {} requested, {} registered, {} messages ({} keys)",
            self.clients_started,
            self.clients_requested,
            self.registered,
            self.messages_sent,
            self.key
        )?;
        if self.keys_made_ahead > 0 {
            writeln!(
                f,
                "  keys ahead   {} made in {:.2} s before the clock started",
                self.keys_made_ahead, self.keys_ahead_secs
            )?;
        }
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

/// How often progress is printed as a line when stderr is not a terminal.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(5);

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
            let proxy =
                start_local_proxy_for(dir.path(), &server, opts.key, opts.site_generation).await;
            let summary = match proxy {
                Ok(proxy) => {
                    let ahead = Instant::now();
                    let n = keys_ahead(&opts);
                    let opts_clients = opts.clients;
                    let filled = tokio::task::spawn_blocking(move || {
                        // A P-256 run leaves the pool (and its thread) unstarted.
                        match n {
                            0 => Ok(()),
                            n => {
                                let pool = crate::proxy::device_key::rsa_pool();
                                // More devices than keys made ahead: they take turns with the
                                // keys (each its own certificate), as direct appliances do.
                                if n < opts_clients {
                                    pool.reuse_keys();
                                }
                                pool.fill(n)
                            }
                        }
                    })
                    .await?;
                    let ahead_secs = ahead.elapsed().as_secs_f64();
                    let s = match filled {
                        Ok(()) => run_via_proxy(proxy.local_addr(), &server.url(), &opts)
                            .await
                            .map(|mut s| {
                                s.keys_made_ahead = n;
                                s.keys_ahead_secs = if n == 0 { 0.0 } else { ahead_secs };
                                s
                            }),
                        Err(e) => Err(anyhow!("making the proxy's device keys ahead: {e}")),
                    };
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
    MpServer::start(local_mp_config(dir, concurrency), localhost_any_port()).await
}

fn localhost_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The configuration of [`start_local_mp`].
fn local_mp_config(dir: &std::path::Path, concurrency: usize) -> MpConfig {
    MpConfig {
        site_code: DEFAULT_SITE_CODE.into(),
        db_path: dir.join(SITE_DB_FILE),
        approval: Approval::Auto,
        limits: Limits {
            max_connections: concurrency.max(64) + 16,
            // Every appliance of the fleet comes from this one host.
            max_connections_per_address: concurrency.max(64) + 16,
            ..Limits::default()
        },
        mp_host: "mp.fleet.local".into(),
        strict: false,
    }
}

/// Starts a proxy in front of `mp` (started by [`start_local_mp`] with `dir`) as the
/// administrator would set it up: its first run exports its certificate to `dir`, the certificate
/// is imported into the MP's database, then the proxy registers (AgentType 4) and listens on a
/// free loopback port. Its state directory is `dir/fleet-proxy`.
pub async fn start_local_proxy(dir: &std::path::Path, mp: &MpServer) -> Result<ProxyHandle> {
    start_local_proxy_with(dir, mp, KeyKind::P256).await
}

/// [`start_local_proxy`] with a proxy (and so device) key of `key`.
pub async fn start_local_proxy_with(
    dir: &std::path::Path,
    mp: &MpServer,
    key: KeyKind,
) -> Result<ProxyHandle> {
    start_local_proxy_for(dir, mp, key, SiteGeneration::Current).await
}

/// [`start_local_proxy_with`] for a site of `generation`.
pub async fn start_local_proxy_for(
    dir: &std::path::Path,
    mp: &MpServer,
    key: KeyKind,
    generation: SiteGeneration,
) -> Result<ProxyHandle> {
    let state = dir.join("fleet-proxy");
    let exported = isv::export_cert_with(&state, &dir.join("fleet-proxy.cer"), PROXY_NAME, key)?;
    crate::mp::db::SiteDb::open(dir.join(SITE_DB_FILE))?.import_cert(&exported.cert_der)?;
    let mut opts = ProxyOptions::new(&mp.url(), DEFAULT_SITE_CODE, state);
    opts.name = PROXY_NAME.into();
    opts.key = key;
    opts.site_generation = generation;
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
    .map_err(|e| anyhow!("invalid fleet configuration ({url}): {e}"))?;
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

/// RSA keys to make before the clock starts: one per appliance up to [`MAX_RSA_KEYS_AHEAD`].
fn keys_ahead(opts: &FleetOptions) -> usize {
    match opts.key {
        KeyKind::P256 => 0,
        KeyKind::Rsa2048 => opts.clients.min(MAX_RSA_KEYS_AHEAD),
    }
}

async fn run_target(target: Target, label: &str, opts: &FleetOptions) -> Result<FleetSummary> {
    anyhow::ensure!(opts.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(opts.concurrency > 0, "--concurrency must be at least 1");
    // Direct appliances of an RSA fleet bring their keys; through a proxy the proxy makes them.
    let ahead = Instant::now();
    let rsa_keys: Arc<Vec<HostRsaSigner>> = match target {
        Target::Mp(_) => {
            let n = keys_ahead(opts);
            Arc::new(
                tokio::task::spawn_blocking(move || generate_rsa_keys(n))
                    .await?
                    .map_err(|e| anyhow!("making the appliances' RSA keys ahead: {e}"))?,
            )
        }
        Target::Proxy(_) => Arc::new(Vec::new()),
    };
    let keys_ahead_secs = ahead.elapsed().as_secs_f64();
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
        let (key, rsa_keys) = (opts.key, rsa_keys.clone());
        let generation = opts.site_generation;
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
                            key,
                            rsa_keys: rsa_keys.clone(),
                            generation,
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
    let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = if opts.progress && on_terminal {
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
    // Not on a terminal (a log file, CI): a plain line now and then, and one at the end,
    // instead of a bar.
    let line = || {
        eprintln!(
            "fleet: {:.1} s, {} registered, {} messages, {} errors ({total} exchanges planned)",
            started.elapsed().as_secs_f64(),
            counters.registered.load(Ordering::Relaxed),
            counters.messages.load(Ordering::Relaxed),
            counters.errors.load(Ordering::Relaxed),
        )
    };
    let print_lines = opts.progress && !on_terminal;
    let mut next_line = started + PROGRESS_LINE_EVERY;
    while !handles.iter().all(|h| h.is_finished()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        show(&bar);
        if print_lines && Instant::now() >= next_line {
            next_line += PROGRESS_LINE_EVERY;
            line();
        }
    }
    if print_lines {
        line();
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
        key: opts.key.name(),
        keys_made_ahead: rsa_keys.len(),
        keys_ahead_secs: if rsa_keys.is_empty() {
            0.0
        } else {
            keys_ahead_secs
        },
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
    key: KeyKind,
    /// RSA keys made ahead (empty for P-256 and through a proxy).
    rsa_keys: Arc<Vec<HostRsaSigner>>,
    /// The site's generation.
    generation: SiteGeneration,
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
        .map_err(|e| anyhow!("self-signed certificate: {e}"))?;
    cert.truncate(n);
    Ok((signer, cert))
}

/// An in-memory RSA-2048 identity of `key` with a fresh self-signed certificate.
pub fn new_rsa_identity(name: &str, key: HostRsaSigner) -> Result<(ClientSigner, Vec<u8>)> {
    let signer = ClientSigner::Rsa(key);
    let params = CertParams::self_signed_now(name, unix_now(), &mut OsRng);
    let cert = signer.self_signed_cert(&params)?;
    Ok((signer, cert))
}

impl Worker {
    /// The identity of appliance `i`: a fresh P-256 key, or one of the RSA keys made ahead.
    fn identity(&self, i: usize, name: &str) -> Result<(ClientSigner, Vec<u8>)> {
        match self.key {
            KeyKind::P256 => {
                let (signer, cert) = new_identity(name)?;
                Ok((ClientSigner::P256(signer), cert))
            }
            KeyKind::Rsa2048 => {
                let key = self
                    .rsa_keys
                    .get(i % self.rsa_keys.len().max(1))
                    .cloned()
                    .ok_or_else(|| anyhow!("no RSA keys were made ahead"))?;
                new_rsa_identity(name, key)
            }
        }
    }

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
            Ok(c) => c.with_site_generation(self.generation),
            Err(e) => return stats.error(c, format!("config: {e}")),
        };
        let t = Instant::now();
        let (signer, cert_der) = match self.identity(i, &name) {
            Ok(x) => x,
            Err(e) => return stats.error(c, format!("identity: {e}")),
        };
        let hash = crate::client::session::signature_hash(self.generation, None, signer.kind());
        let signer = match SiteHashSigner::new(signer, hash) {
            Ok(s) => s,
            Err(e) => return stats.error(c, format!("identity: {e}")),
        };
        stats.identity_us.push(micros(t.elapsed()));
        let plan = appliance::Plan {
            config: &config,
            identity: SigningIdentity {
                signer: &signer,
                cert_der: &cert_der,
            },
            fqdn: &fqdn,
            messages: self.messages,
        };
        appliance::run(plan, buf, stats, c).await;
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
        Ok(other) => format!(
            "{what}: unexpected answer, frame kind {:#04x}",
            other.kind()
        ),
        Err(e) => format!("{what}: {e:#}"),
    })
}
