//! `fleet --bound K`: the MP's registrations/s against its bare bound. K registration requests
//! are pre-built with the core, then (a) their K signatures are verified on all cores (the bound)
//! and (b) the same K requests are replayed through an in-process MP; the summary gives (b)/(a)
//! and the CPU time each phase used per operation.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use mpagent_core::agent::outbound::{Post, PostParams};
use mpagent_core::agent::registration::{build_request, SigningIdentity};
use mpagent_core::config::{AgentConfig, SiteMode};
use mpagent_core::guid::Guid;
use mpagent_core::sink::{Emit, Overflow, Sink};
use mpagent_core::wire::header::{endpoint, ReplyMode};
use mpagent_core::wire::registration::{AgentType, RequestType};
use rand_core::OsRng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{
    appliance_name, local_mp_config, localhost_any_port, new_identity, peak_rss_kib,
    DEFAULT_SITE_CODE,
};
use crate::client::transport::unix_now;
use crate::mp;

/// How (b) replays the requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Connections {
    /// One TCP connection per request, closed after the reply: what the core does
    /// (`Connection: close`), so what the MP sees from real appliances.
    PerRequest,
    /// `concurrency` persistent connections, each carrying request after request
    /// (`Connection: keep-alive` in the replayed head; nothing signed changes): the connection
    /// set-up and tear-down of both ends left out, as with clients that keep connections open.
    KeepAlive,
}

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
    let head_end = mp::http::head_end(&http).context("no end of head")?;
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

/// What a `CCM_POST` leaves out in a floor measurement (`fleet --bound K --floor …`): how fast
/// the MP would be without that part. Such an MP answers registrations without recording them,
/// so it is never a usable MP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Floor {
    /// Everything: the request is read and a canned registration reply written (HTTP and TCP
    /// only).
    Transport,
    /// The store: envelope, XML, signature check and look-ups as always, then a registration
    /// reply with a fresh SMSID, without the database write.
    NoStore,
}

/// An in-process MP that leaves `floor` out of every `CCM_POST`.
pub async fn start_floor_mp(
    config: mp::MpConfig,
    listen: std::net::SocketAddr,
    floor: Floor,
) -> Result<mp::MpServer> {
    let shortcut = match floor {
        Floor::Transport => mp::Shortcut::Canned(canned_registration_reply(&config)?),
        Floor::NoStore => mp::Shortcut::NoWrite(reply_without_store),
    };
    mp::MpServer::start_with_shortcut(config, listen, shortcut).await
}

/// [`Floor::NoStore`]: the reply a registration would get, with a fresh SMSID and nothing
/// written; other requests get their answer with the write left out.
fn reply_without_store(
    config: &mp::MpConfig,
    pending: mp::handler::PendingPost,
) -> Result<mp::handler::Reply, mp::rejection::Rejection> {
    pending.reply_with(config, |endpoint, step| match step {
        mp::step::Step::Ready(answer) => answer,
        mp::step::Step::Write(_) if endpoint == "MP_ClientRegistration" => {
            mp::handler::EndpointReply::Message(unstored_registration_xml())
        }
        mp::step::Step::Write(_) => mp::handler::EndpointReply::Accepted,
    })
}

fn unstored_registration_xml() -> String {
    mp::registration::Outcome {
        response_type: "Registration".into(),
        status: mp::messages::RegistrationStatus::Registered,
        smsid: Some(mp::util::new_smsid()),
    }
    .to_xml()
}

/// [`Floor::Transport`]: a registration reply for no request in particular (to a header without
/// options), made once and sent to every request.
fn canned_registration_reply(config: &mp::MpConfig) -> Result<mp::handler::Reply> {
    let header = mp::messages::MsgHeader::parse(
        "<Msg><ID>{00000000-0000-0000-0000-000000000000}</ID>\
         <TargetEndpoint>MP_ClientRegistration</TargetEndpoint>\
         <Body Type=\"ByteRange\" Offset=\"0\" Length=\"2\" /></Msg>",
    )
    .map_err(|e| anyhow!("{e}"))?;
    Ok(mp::handler::build_reply(
        config,
        &header,
        &unstored_registration_xml(),
    ))
}

/// What `fleet --bound` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BoundSummary {
    pub requests: usize,
    pub verify_threads: usize,
    pub concurrency: usize,
    pub connections: Connections,
    /// What (b)'s MP left out (`--floor`): `None` for the real MP.
    pub floor: Option<Floor>,
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
    /// Of `mp_cpu_ms_per_registration`, the replaying client's part (its own thread).
    pub client_cpu_ms_per_registration: f64,
    /// (a)'s CPU per verify / (b)'s CPU per registration: the ratio if both phases had the
    /// cores to themselves (less sensitive to other load on the machine than `ratio`).
    pub cpu_ratio: f64,
    /// `cpu_ratio` without the replaying client's CPU: the MP alone, as with clients elsewhere.
    pub mp_only_cpu_ratio: f64,
    /// (b)'s CPU per registration by thread name (milliseconds; `/proc/self/task/*/schedstat`,
    /// Linux only, else empty): where the MP's time goes without a profiler.
    pub cpu_ms_per_registration_by_thread: BTreeMap<String, f64>,
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
        if let Some(floor) = self.floor {
            writeln!(
                f,
                "  floor                (b)'s MP leaves out {} (a measurement, not an MP)",
                match floor {
                    Floor::Transport => "everything but HTTP and TCP",
                    Floor::NoStore => "the database write",
                }
            )?;
        }
        writeln!(
            f,
            "  (b) through the MP   {:.0} registrations/s (concurrency {}, {}, {:.3} s, {} ok, {} failed)",
            self.mp_registrations_per_sec,
            self.concurrency,
            match self.connections {
                Connections::PerRequest => "a connection per request",
                Connections::KeepAlive => "keep-alive connections",
            },
            self.mp_secs,
            self.mp_ok,
            self.mp_failed
        )?;
        writeln!(
            f,
            "  CPU per operation    (a) {:.3} ms/verify, (b) {:.3} ms/registration (MP {:.3} + replaying client {:.3})",
            self.verify_cpu_ms_per_op,
            self.mp_cpu_ms_per_registration,
            self.mp_cpu_ms_per_registration - self.client_cpu_ms_per_registration,
            self.client_cpu_ms_per_registration
        )?;
        writeln!(
            f,
            "  cores busy           (a) {:.2}, (b) {:.2} (CPU time / elapsed)",
            self.verify_cpu_ms_per_op * self.verify_per_sec / 1000.0,
            self.mp_cpu_ms_per_registration * self.mp_registrations_per_sec / 1000.0
        )?;
        writeln!(f, "  ratio (b)/(a)        {:.1} %", self.ratio * 100.0)?;
        writeln!(
            f,
            "  CPU ratio            {:.1} % (CPU per verify / CPU per registration)",
            self.cpu_ratio * 100.0
        )?;
        write!(
            f,
            "  CPU ratio, MP only   {:.1} % (the replaying client's CPU left out)",
            self.mp_only_cpu_ratio * 100.0
        )?;
        if !self.cpu_ms_per_registration_by_thread.is_empty() {
            write!(f, "\n  (b) CPU by thread    ")?;
            for (i, (name, ms)) in self.cpu_ms_per_registration_by_thread.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                write!(f, "{sep}{name} {ms:.3}")?;
            }
            write!(f, " ms/registration")?;
        }
        Ok(())
    }
}

/// CPU time of each live thread of this process by thread id: (name, nanoseconds on a CPU), from
/// `/proc/self/task/*/{comm,schedstat}` (empty where there is no such file).
fn thread_cpu_ns() -> HashMap<u32, (String, u64)> {
    let mut threads = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        if let Some(ns) = ns {
            threads.insert(tid, (name.trim().to_owned(), ns));
        }
    }
    threads
}

/// CPU used between two [`thread_cpu_ns`] readings, summed by thread name, in milliseconds per
/// `per` operations (a thread that ended in between is missing: read `after` before stopping
/// the threads that count).
fn cpu_ms_by_thread(
    before: &HashMap<u32, (String, u64)>,
    after: &HashMap<u32, (String, u64)>,
    per: usize,
) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    for (tid, (name, ns)) in after {
        let start = before.get(tid).map_or(0, |(_, ns)| *ns);
        *by_name.entry(name.clone()).or_insert(0.0) +=
            ns.saturating_sub(start) as f64 / 1e6 / per.max(1) as f64;
    }
    by_name.retain(|_, ms| *ms >= 0.0005);
    by_name
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
/// requests through a fresh in-process MP with `concurrency` connections in flight (with `floor`,
/// an MP that leaves that part out: how fast it would be without it).
pub async fn run_bound(
    requests: usize,
    concurrency: usize,
    verify_threads: usize,
    connections: Connections,
    floor: Option<Floor>,
) -> Result<BoundSummary> {
    anyhow::ensure!(requests > 0 && concurrency > 0 && verify_threads > 0);
    let dir = tempfile::tempdir()?;
    let config = local_mp_config(dir.path(), concurrency);
    let server = match floor {
        None => mp::MpServer::start(config, localhost_any_port()).await?,
        Some(floor) => start_floor_mp(config, localhost_any_port(), floor).await?,
    };
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

    // (b) through the MP: plain TCP, the pre-built bytes out, each reply read whole.
    let keep_alive = connections == Connections::KeepAlive;
    let replayed: Arc<Vec<Vec<u8>>> = Arc::new(
        built
            .into_iter()
            .map(|r| {
                if keep_alive {
                    with_keep_alive(&r.http)
                } else {
                    Ok(r.http)
                }
            })
            .collect::<Result<_>>()?,
    );
    let threads = thread_cpu_ns();
    let cpu = process_cpu_secs();
    let t = Instant::now();
    // The replaying client runs on a thread of its own, which measures its own CPU time, so
    // the summary can tell the MP's CPU from the client's.
    let (done, client_result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bound-client".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .map(|rt| {
                    let counts = rt.block_on(replay_all(addr, replayed, concurrency, keep_alive));
                    (counts, thread_cpu_secs())
                });
            let _ = done.send(result);
        })?;
    let ((mp_ok, mp_failed), client_cpu) = client_result
        .await
        .map_err(|_| anyhow!("the replaying client stopped"))??;
    let mp_secs = t.elapsed().as_secs_f64();
    let mp_cpu = process_cpu_secs() - cpu;
    let by_thread = cpu_ms_by_thread(&threads, &thread_cpu_ns(), mp_ok);
    server.shutdown().await;
    let verify_per_sec = requests as f64 / verify_secs.max(1e-9);
    let mp_registrations_per_sec = mp_ok as f64 / mp_secs.max(1e-9);
    Ok(BoundSummary {
        requests,
        verify_threads,
        concurrency,
        connections,
        floor,
        verify_per_sec,
        verify_secs,
        mp_registrations_per_sec,
        mp_secs,
        mp_ok,
        mp_failed,
        ratio: mp_registrations_per_sec / verify_per_sec,
        verify_cpu_ms_per_op: verify_cpu * 1000.0 / requests as f64,
        mp_cpu_ms_per_registration: mp_cpu * 1000.0 / (mp_ok.max(1)) as f64,
        client_cpu_ms_per_registration: client_cpu * 1000.0 / (mp_ok.max(1)) as f64,
        mp_only_cpu_ratio: (verify_cpu / requests as f64)
            / ((mp_cpu - client_cpu) / mp_ok.max(1) as f64).max(1e-12),
        cpu_ratio: (verify_cpu / requests as f64) / (mp_cpu / mp_ok.max(1) as f64).max(1e-12),
        cpu_ms_per_registration_by_thread: by_thread,
        peak_rss_kib: peak_rss_kib(),
    })
}

/// Replays every request with `concurrency` tasks taking the next one in turn; (ok, failed).
async fn replay_all(
    addr: std::net::SocketAddr,
    replayed: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    keep_alive: bool,
) -> (usize, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (replayed, next) = (replayed.clone(), next.clone());
        set.spawn(async move {
            let (mut ok, mut failed) = (0usize, 0usize);
            let mut conn: Option<TcpStream> = None;
            let mut reply = Vec::with_capacity(4096);
            while let Some(request) = replayed.get(next.fetch_add(1, Ordering::Relaxed)) {
                match replay_one(addr, &mut conn, request, &mut reply, keep_alive).await {
                    Ok(200) => ok += 1,
                    Ok(_) | Err(_) => {
                        failed += 1;
                        conn = None;
                    }
                }
            }
            (ok, failed)
        });
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(r) = set.join_next().await {
        let (o, f) = r.unwrap_or((0, 1));
        ok += o;
        failed += f;
    }
    (ok, failed)
}

/// CPU time (user + system) of the calling thread, in seconds.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant of the platform.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The request with its `Connection: close` (as the core writes it) turned into keep-alive; only
/// the HTTP head changes, not a signed byte.
fn with_keep_alive(http: &[u8]) -> Result<Vec<u8>> {
    const CLOSE: &[u8] = b"\r\nConnection: close\r\n";
    // The head up to its last header line's CRLF (the blank line's CRLF left out).
    let head_end = mp::http::head_end(http).context("no end of head")?;
    let at = http[..head_end - 2]
        .windows(CLOSE.len())
        .position(|w| w == CLOSE)
        .context("no `Connection: close` in the request head")?;
    let mut out = Vec::with_capacity(http.len() + 5);
    out.extend_from_slice(&http[..at]);
    out.extend_from_slice(b"\r\nConnection: keep-alive\r\n");
    out.extend_from_slice(&http[at + CLOSE.len()..]);
    Ok(out)
}

/// Sends one request and reads its reply (to the close, or by `Content-Length` on a kept
/// connection); returns the status. `conn` is opened when empty and emptied when the server
/// closes (or per request without keep-alive).
async fn replay_one(
    addr: std::net::SocketAddr,
    conn: &mut Option<TcpStream>,
    request: &[u8],
    reply: &mut Vec<u8>,
    keep_alive: bool,
) -> Result<u16> {
    let mut stream = match conn.take() {
        Some(s) => s,
        None => {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            s
        }
    };
    stream.write_all(request).await?;
    reply.clear();
    if !keep_alive {
        stream.read_to_end(reply).await?;
        return Ok(status_of(reply)?.0);
    }
    let mut chunk = [0u8; 4096];
    let (status, head_len, length, close) = loop {
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed before the reply head");
        reply.extend_from_slice(&chunk[..n]);
        if let Some(head_len) = mp::http::head_end(reply) {
            let (status, length, close) = status_of(reply)?;
            break (
                status,
                head_len,
                length.context("reply without Content-Length")?,
                close,
            );
        }
    };
    while reply.len() < head_len + length {
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed in the reply body");
        reply.extend_from_slice(&chunk[..n]);
    }
    if !close {
        *conn = Some(stream);
    }
    Ok(status)
}

/// Status, `Content-Length` and whether the server closes, from a reply's head.
fn status_of(reply: &[u8]) -> Result<(u16, Option<usize>, bool)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    anyhow::ensure!(r.parse(reply)?.is_complete(), "incomplete reply head");
    let status = r.code.context("no status")?;
    let mut length = None;
    let mut close = false;
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(std::str::from_utf8(h.value)?.trim().parse()?);
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok((status, length, close))
}
