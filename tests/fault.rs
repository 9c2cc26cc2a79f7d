//! A loopback TCP fault proxy for tests: it sits between a client and the MP emulator and, per
//! connection, forwards faithfully or misbehaves the way hostile or broken networks do (delay,
//! drop, reset mid-reply, truncate, corrupt bytes, slow drip, hang), or answers in the MP's place
//! (a rogue or misconfigured server).
//!
//! Request bytes are always forwarded as they arrive. Except for [`Fault::Pass`], the MP's reply is
//! read in full first (the MP closes after it, as the client sends `Connection: close`) and then
//! delivered the way the fault says. Every connection is bounded in time ([`FaultProxy::DEFAULT_CONNECTION_LIMIT`]);
//! dropping the proxy stops it and ends every connection it holds.
//!
//! ```ignore
//! let proxy = FaultProxy::start(mp.local_addr(), FaultPlan::first(2, Fault::Reset { after: 40 })).await?;
//! // connect the client to proxy.local_addr(): connections 0 and 1 are reset, the rest pass.
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Where [`Fault::Corrupt`] flips bits in the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spot {
    /// This byte offset of the reply (HTTP head included).
    Offset(usize),
    /// `skip` bytes after the start of the first occurrence of `pattern` in the reply.
    After {
        /// Bytes to look for (e.g. the UTF-16LE of `SMSID="GUID:`).
        pattern: Vec<u8>,
        /// Offset from the start of the match.
        skip: usize,
    },
}

/// What the proxy does to one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways, untouched.
    Pass,
    /// Hold the MP's reply back this long, then deliver it whole.
    Delay(Duration),
    /// Accept the connection and close it at once, without reading the request.
    Drop,
    /// Deliver the first `after` bytes of the reply, then abort the connection (RST, SO_LINGER 0).
    Reset {
        /// Reply bytes delivered before the reset.
        after: usize,
    },
    /// Deliver the first `after` bytes of the reply, then close cleanly (FIN).
    Truncate {
        /// Reply bytes delivered before the close.
        after: usize,
    },
    /// XOR one reply byte with `xor`, deliver the rest untouched.
    Corrupt {
        /// Which byte.
        at: Spot,
        /// The bits to flip.
        xor: u8,
    },
    /// Deliver the reply `bytes` at a time, one piece every `every`.
    Drip {
        /// Bytes per piece.
        bytes: usize,
        /// Pause between pieces.
        every: Duration,
    },
    /// Read and discard the request, never answer, never close (the client's deadline must act).
    Hang,
    /// Play a rogue MP: read the request (the real MP never sees it), answer these bytes, close.
    Respond(Vec<u8>),
}

/// Which fault each connection gets, by its index (0 = the first connection accepted).
#[derive(Debug, Clone)]
pub struct FaultPlan {
    first: Vec<Fault>,
    then: Fault,
}

impl FaultPlan {
    /// Every connection gets `fault`.
    pub fn always(fault: Fault) -> Self {
        Self {
            first: Vec::new(),
            then: fault,
        }
    }

    /// The first `n` connections get `fault`, the others pass.
    pub fn first(n: usize, fault: Fault) -> Self {
        Self {
            first: vec![fault; n],
            then: Fault::Pass,
        }
    }

    /// Connection `i` gets `faults[i]`; connections beyond the list get `then`.
    pub fn sequence(faults: Vec<Fault>, then: Fault) -> Self {
        Self {
            first: faults,
            then,
        }
    }

    /// The fault of connection `index`.
    pub fn fault_for(&self, index: usize) -> Fault {
        self.first
            .get(index)
            .cloned()
            .unwrap_or_else(|| self.then.clone())
    }
}

/// What happened on one proxied connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnRecord {
    /// Accept order, from 0.
    pub index: usize,
    /// The fault applied.
    pub fault: Fault,
    /// Whether the proxy connected to the MP.
    pub reached_mp: bool,
    /// Request bytes forwarded to the MP.
    pub request_bytes: usize,
    /// Reply bytes the MP sent.
    pub reply_bytes: usize,
    /// Reply bytes delivered to the client.
    pub delivered: usize,
    /// The reply offset that [`Fault::Corrupt`] changed (`None`: the spot was not in the reply).
    pub corrupted_at: Option<usize>,
    /// The connection hit its time limit.
    pub timed_out: bool,
}

/// A running fault proxy on 127.0.0.1. Stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<ConnRecord>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The most reply bytes the proxy buffers (the MP's replies are a few KiB).
const MAX_REPLY: usize = 8 * 1024 * 1024;

impl FaultProxy {
    /// Every connection ends after this long, whatever its fault (a [`Fault::Hang`] included).
    pub const DEFAULT_CONNECTION_LIMIT: Duration = Duration::from_secs(30);

    /// Listen on 127.0.0.1 (a free port) and forward to `upstream` with `plan`.
    pub async fn start(upstream: SocketAddr, plan: FaultPlan) -> std::io::Result<FaultProxy> {
        Self::start_with_limit(upstream, plan, Self::DEFAULT_CONNECTION_LIMIT).await
    }

    /// As [`FaultProxy::start`], with another bound on each connection's lifetime.
    pub async fn start_with_limit(
        upstream: SocketAddr,
        plan: FaultPlan,
        connection_limit: Duration,
    ) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            plan,
            connection_limit,
            log.clone(),
        ));
        Ok(FaultProxy { addr, log, task })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Records of the connections that have finished, in the order they finished.
    pub fn log(&self) -> Vec<ConnRecord> {
        let mut v = self.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
        v.sort_by_key(|r| r.index);
        v
    }

    /// Wait (up to `max`) until `n` connections have finished; returns their records.
    pub async fn wait_for(&self, n: usize, max: Duration) -> Vec<ConnRecord> {
        let until = tokio::time::Instant::now() + max;
        loop {
            let log = self.log();
            if log.len() >= n || tokio::time::Instant::now() >= until {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    plan: FaultPlan,
    limit: Duration,
    log: Arc<Mutex<Vec<ConnRecord>>>,
) {
    let mut conns = JoinSet::new();
    let mut index = 0usize;
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((client, _peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let fault = plan.fault_for(index);
        let log = log.clone();
        let i = index;
        index += 1;
        conns.spawn(async move {
            let mut rec = ConnRecord {
                index: i,
                fault: fault.clone(),
                reached_mp: false,
                request_bytes: 0,
                reply_bytes: 0,
                delivered: 0,
                corrupted_at: None,
                timed_out: false,
            };
            if tokio::time::timeout(limit, serve(client, upstream, &fault, &mut rec))
                .await
                .is_err()
            {
                rec.timed_out = true;
            }
            log.lock().unwrap_or_else(|e| e.into_inner()).push(rec);
        });
    }
}

/// Forward `from` to `to` until `from` ends, then half-close `to`. Returns the bytes copied.
async fn pump<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(mut from: R, mut to: W) -> usize {
    let mut buf = [0u8; 8192];
    let mut total = 0;
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        total += n;
    }
    let _ = to.shutdown().await;
    total
}

/// Read `from` to its end (or [`MAX_REPLY`]).
async fn read_all<R: AsyncRead + Unpin>(mut from: R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || out.len() + n > MAX_REPLY {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// True once `req` holds a whole HTTP request (head and its `Content-Length` body).
fn request_complete(req: &[u8]) -> bool {
    let Some(head_end) = find(req, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&req[..head_end]).to_ascii_lowercase();
    let length = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    req.len() >= head_end + 4 + length
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, fault: &Fault, rec: &mut ConnRecord) {
    match fault {
        Fault::Drop => {
            drop(client);
            return;
        }
        Fault::Respond(reply) => {
            // Wait for the end of the request head and its Content-Length body, then answer.
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            while !request_complete(&got) {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            rec.request_bytes = got.len();
            if client.write_all(reply).await.is_ok() && client.shutdown().await.is_ok() {
                rec.delivered = reply.len();
            }
            // Let the client read the answer and close first (no RST for unread bytes).
            let _ = client.read(&mut buf).await;
            return;
        }
        Fault::Hang => {
            // Swallow the request and whatever follows; answer nothing until the client gives up.
            let mut sink = [0u8; 8192];
            while let Ok(n) = client.read(&mut sink).await {
                if n == 0 {
                    break;
                }
                rec.request_bytes += n;
            }
            return;
        }
        _ => {}
    }
    let Ok(mut mp) = TcpStream::connect(upstream).await else {
        return;
    };
    rec.reached_mp = true;
    if *fault == Fault::Pass {
        if let Ok((up, down)) = tokio::io::copy_bidirectional(&mut client, &mut mp).await {
            rec.request_bytes = up as usize;
            rec.reply_bytes = down as usize;
            rec.delivered = down as usize;
        }
        return;
    }
    if matches!(fault, Fault::Reset { .. }) {
        // Closing a socket with SO_LINGER 0 sends RST instead of FIN.
        let _ = client.set_zero_linger();
    }
    let (client_r, mut client_w) = client.split();
    let (mp_r, mp_w) = mp.split();
    let request = pump(client_r, mp_w);
    let reply = async {
        let mut reply = read_all(mp_r).await;
        let (delivered, corrupted_at) = deliver(&mut client_w, fault, &mut reply).await;
        (reply.len(), delivered, corrupted_at)
    };
    tokio::pin!(request, reply);
    let (reply_bytes, delivered, corrupted_at) = if matches!(fault, Fault::Reset { .. }) {
        // Stop as soon as the partial reply is out: dropping the socket resets the connection.
        let out = tokio::select! {
            n = &mut request => {
                rec.request_bytes = n;
                (&mut reply).await
            }
            out = &mut reply => out,
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        out
    } else {
        let (n, out) = tokio::join!(request, reply);
        rec.request_bytes = n;
        out
    };
    rec.reply_bytes = reply_bytes;
    rec.delivered = delivered;
    rec.corrupted_at = corrupted_at;
}

/// Deliver `reply` the way `fault` says; returns (bytes delivered, offset corrupted).
async fn deliver<W: AsyncWrite + Unpin>(
    to: &mut W,
    fault: &Fault,
    reply: &mut [u8],
) -> (usize, Option<usize>) {
    let cut = |after: usize| after.min(reply.len());
    let mut corrupted_at = None;
    let out: &[u8] = match fault {
        Fault::Delay(d) => {
            tokio::time::sleep(*d).await;
            reply
        }
        Fault::Reset { after } | Fault::Truncate { after } => &reply[..cut(*after)],
        Fault::Corrupt { at, xor } => {
            let pos = match at {
                Spot::Offset(o) => Some(*o),
                Spot::After { pattern, skip } => find(reply, pattern).map(|p| p + skip),
            };
            if let Some(b) = pos.and_then(|p| reply.get_mut(p)) {
                *b ^= xor;
                corrupted_at = pos;
            }
            reply
        }
        Fault::Drip { bytes, every } => {
            let mut delivered = 0;
            for piece in reply.chunks((*bytes).max(1)) {
                if to.write_all(piece).await.is_err() || to.flush().await.is_err() {
                    return (delivered, None);
                }
                delivered += piece.len();
                tokio::time::sleep(*every).await;
            }
            let _ = to.shutdown().await;
            return (delivered, None);
        }
        Fault::Pass | Fault::Drop | Fault::Hang | Fault::Respond(_) => reply,
    };
    let mut delivered = 0;
    if to.write_all(out).await.is_ok() && to.flush().await.is_ok() {
        delivered = out.len();
    }
    if !matches!(fault, Fault::Reset { .. }) {
        let _ = to.shutdown().await;
    }
    (delivered, corrupted_at)
}

/// The UTF-16LE bytes of `s` (to aim [`Spot::After`] into a message body).
pub fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// A [`mpagent_core::io::Clock`] whose sleeps return at once: time jumps to the wake-up time, so a
/// backoff of minutes costs nothing in a test. Every sleep is recorded.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    now: mpagent_core::time::UnixTime,
    /// The wake-up times asked for, in order.
    pub sleeps: Vec<mpagent_core::time::UnixTime>,
}

impl VirtualClock {
    /// Start at `now`.
    pub fn new(now: mpagent_core::time::UnixTime) -> Self {
        Self {
            now,
            sleeps: Vec::new(),
        }
    }
}

impl mpagent_core::io::Clock for VirtualClock {
    fn now(&self) -> mpagent_core::time::UnixTime {
        self.now
    }

    async fn sleep_until(&mut self, t: mpagent_core::time::UnixTime) {
        self.sleeps.push(t);
        if t > self.now {
            self.now = t;
        }
        tokio::task::yield_now().await;
    }
}
