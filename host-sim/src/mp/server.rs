//! The emulator's TCP server: connection slots (`Limits::max_connections`, 503 beyond them), the
//! HTTP/1.1 exchange over the head parser of [`super::http`] (the method is the non-standard
//! `CCM_POST`), routing, and the logging of every refusal (tracing + the site database's
//! rejection table, answered 403 with the reason).
//! In native mode ([`MpServer::start_tls`]) each connection is TLS with a client certificate
//! first ([`super::tls`]); the HTTP layer above is the same for both.

use super::db::SiteDbPool;
use super::handler;
use super::http::{self, Head};
use super::lookup::{self, MpIdentity};
use super::policy::{self, BodyRefusal};
use super::rejection::Rejection;
use super::tls::TlsConfig;
use super::util::http_date;
use super::{validate_site_code, Limits, MpConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// A running emulator.
pub struct MpServer {
    addr: SocketAddr,
    https: bool,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    config: MpConfig,
    /// One connection per request in flight: parsing and signature checks run in parallel.
    db: SiteDbPool,
    identity: MpIdentity,
    /// Native mode: every connection is TLS with a verified client certificate.
    tls: Option<Acceptor>,
    /// Measurement only: a part of the `CCM_POST` path left out.
    shortcut: Option<Shortcut>,
}

/// The TLS server of native mode: rustls, or OpenSSL where rustls cannot (a client certificate
/// asked for after the request, see [`super::tls`]).
#[derive(Clone)]
enum Acceptor {
    Rustls(tokio_rustls::TlsAcceptor),
    OpenSsl(Arc<super::tls::OpensslServer>),
}

/// A connection that can ask for the client certificate after the request was read (an
/// OpenSSL TLS connection); the others cannot.
trait LateClientCert {
    fn request_client_cert(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>> + Send + '_>>
    {
        Box::pin(async { Err("this connection cannot ask for a client certificate".into()) })
    }
}

impl LateClientCert for TcpStream {}
impl LateClientCert for tokio_rustls::server::TlsStream<TcpStream> {}
impl LateClientCert for tokio_openssl::SslStream<TcpStream> {
    fn request_client_cert(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>> + Send + '_>>
    {
        Box::pin(super::tls::request_client_cert(self))
    }
}

/// A part of the `CCM_POST` path left out, for measurements of how fast the MP would be without
/// it (`crate::fleet::bound`). A server started with one answers without recording, so it is
/// never a usable MP.
pub enum Shortcut {
    /// This reply to every `CCM_POST`, without reading its content.
    Canned(handler::Reply),
    /// The reply a prepared request gets instead of its database write.
    NoWrite(fn(&MpConfig, handler::PendingPost) -> Result<handler::Reply, Rejection>),
}

impl Shared {
    /// Logs a refusal to tracing and to the rejection table.
    fn log_refusal(&self, peer: SocketAddr, endpoint: Option<&str>, reason: &str) {
        tracing::warn!(%peer, endpoint = endpoint.unwrap_or("-"), reason, "request refused");
        let logged = self
            .db
            .get()
            .and_then(|db| db.log_rejection(&peer.to_string(), endpoint, reason));
        if let Err(e) = logged {
            tracing::error!(error = %e, "could not record the rejection");
        }
    }

    /// [`log_refusal`](Self::log_refusal) for async callers: the rejection row is written by the
    /// writer thread and awaited without blocking the runtime's thread.
    async fn log_refusal_async(&self, peer: SocketAddr, endpoint: Option<String>, reason: String) {
        tracing::warn!(%peer, endpoint = endpoint.as_deref().unwrap_or("-"), %reason, "request refused");
        let logged = self
            .db
            .writer()
            .run_async(move |db| db.log_rejection(&peer.to_string(), endpoint.as_deref(), &reason))
            .await;
        if let Err(e) = logged {
            tracing::error!(error = %e, "could not record the rejection");
        }
    }
}

impl MpServer {
    /// Validates the configuration, opens the site database, binds `listen` (port 0 picks one) and
    /// serves plain HTTP (mixed mode) in the background.
    pub async fn start(config: MpConfig, listen: SocketAddr) -> anyhow::Result<MpServer> {
        Self::start_with(config, None, listen, None).await
    }

    /// [`start`](Self::start) for a measurement that leaves `shortcut` out of every `CCM_POST`.
    /// Not an MP: registrations are answered without being recorded.
    pub async fn start_with_shortcut(
        config: MpConfig,
        listen: SocketAddr,
        shortcut: Shortcut,
    ) -> anyhow::Result<MpServer> {
        Self::start_with(config, None, listen, Some(shortcut)).await
    }

    /// [`start`](Self::start) in native mode: HTTPS, client certificates required and verified
    /// against `tls.client_ca` (and its CRLs), and requests checked against the certificate the
    /// client presented (see [`super::tls`]).
    pub async fn start_tls(
        config: MpConfig,
        tls: TlsConfig,
        listen: SocketAddr,
    ) -> anyhow::Result<MpServer> {
        let acceptor = if tls.client_cert_after_request {
            Acceptor::OpenSsl(Arc::new(tls.openssl_server()?))
        } else {
            Acceptor::Rustls(tokio_rustls::TlsAcceptor::from(tls.server_config()?))
        };
        Self::start_with(config, Some(acceptor), listen, None).await
    }

    async fn start_with(
        mut config: MpConfig,
        tls: Option<Acceptor>,
        listen: SocketAddr,
        shortcut: Option<Shortcut>,
    ) -> anyhow::Result<MpServer> {
        config.site_code = validate_site_code(&config.site_code)?;
        let l = &config.limits;
        anyhow::ensure!(l.max_connections > 0, "max_connections must be at least 1");
        anyhow::ensure!(
            l.max_connections_per_address > 0,
            "--max-connections-per-address must be at least 1 (got 0)"
        );
        anyhow::ensure!(
            l.max_head_bytes >= 256,
            "max_head_bytes must be at least 256"
        );
        anyhow::ensure!(!l.read_timeout.is_zero(), "read_timeout must not be zero");
        let db = SiteDbPool::open(&config.db_path)?;
        let identity = MpIdentity::generate(&config.mp_host)?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let https = tls.is_some();
        tracing::info!(%addr, https, site = %config.site_code, mp_host = %config.mp_host, approval = %config.approval, "MP emulator listening");
        let shared = Arc::new(Shared {
            config,
            db,
            identity,
            tls,
            shortcut,
        });
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared, rx));
        Ok(MpServer {
            addr,
            https,
            shutdown: tx,
            task,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (mixed mode) or `https://ADDR` (native mode).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting, ends open connections and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Accepts every connection at once (so that none waits unseen in the kernel's queue) and gives
/// it one of `max_connections` slots. When all are busy, up to `max_connections` more wait for a
/// slot for at most `read_timeout`; a connection that gets none, or finds the waiting line full
/// too, is answered 503 and closed, and the refusal is logged like any other.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let max = shared.config.limits.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let waiting = Arc::new(Semaphore::new(max));
    let per_address = PerAddress::new(shared.config.limits.max_connections_per_address);
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let Some(counted) = per_address.admit(peer.ip()) else {
            let reason = format!(
                "busy: {} already has {} connections open (the limit per address)",
                peer.ip(),
                per_address.limit
            );
            refuse_now(&shared, &stream, peer, &reason);
            continue;
        };
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            conns.spawn(async move {
                serve(&shared, stream, peer, slot).await;
                drop(counted);
            });
        } else if let Ok(place) = waiting.clone().try_acquire_owned() {
            let slots = slots.clone();
            conns.spawn(async move {
                let _counted = counted;
                let wait = shared.config.limits.read_timeout;
                match tokio::time::timeout(wait, slots.acquire_owned()).await {
                    Ok(Ok(slot)) => {
                        drop(place);
                        serve(&shared, stream, peer, slot).await;
                    }
                    _ => {
                        // Out of the line before the answer and its linger (as with slots).
                        drop(place);
                        let reason = format!(
                            "busy: all {max} connection slots stayed taken for {} s",
                            wait.as_secs_f32()
                        );
                        refuse_busy(&shared, stream, peer, &reason).await;
                    }
                }
            });
        } else {
            // Waiting line full too: answered at once (no task, no wait: a flood must not grow
            // our memory), so only what fits into the socket buffer is sent.
            let reason =
                format!("busy: all {max} connection slots taken and {max} connections waiting");
            drop(counted);
            refuse_now(&shared, &stream, peer, &reason);
        }
    }
    conns.shutdown().await;
    tracing::info!("MP emulator stopped");
}

/// A refusal answered at once (no task, no wait: a flood must not grow our memory), so only
/// what fits into the socket buffer is sent.
fn refuse_now(shared: &Shared, stream: &TcpStream, peer: SocketAddr, reason: &str) {
    shared.log_refusal(peer, None, reason);
    if shared.tls.is_none() {
        let _ = stream.try_write(&busy_response(reason));
    }
    // Closing with unread bytes would reset the connection and could destroy the answer:
    // drop what has arrived already (bounded, without waiting).
    let mut sink = [0u8; 16 * 1024];
    for _ in 0..4 {
        if !matches!(stream.try_read(&mut sink), Ok(1..)) {
            break;
        }
    }
}

/// Open connections per IP address, so that one host cannot hold every slot and every place in
/// the waiting line (`Limits::max_connections_per_address`).
struct PerAddress {
    limit: usize,
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// One connection counted against its address until dropped.
struct Counted {
    ip: std::net::IpAddr,
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

impl PerAddress {
    fn new(limit: usize) -> Self {
        PerAddress {
            limit,
            open: Arc::default(),
        }
    }

    /// Counts one more connection from `ip`, or `None` when it has `limit` open already.
    fn admit(&self, ip: std::net::IpAddr) -> Option<Counted> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Counted {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// One of the `max_connections` slots. A connection gives it back before lingering in
/// [`close_gracefully`] after a refusal: that wait must not keep honest clients out.
type Slot = OwnedSemaphorePermit;

async fn serve(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr, slot: Slot) {
    match shared.tls.clone() {
        None => serve_connection(shared.clone(), stream, peer, None, false, slot).await,
        Some(acceptor) => serve_tls(shared.clone(), acceptor, stream, peer, slot).await,
    }
}

/// 503 with `Retry-After`. Mixed mode only: in native mode a busy connection is closed without
/// an answer (plain HTTP would be garbage to a TLS client, and a handshake would need a slot).
fn busy_response(reason: &str) -> Vec<u8> {
    let mut r = Response::text(503, reason);
    r.extra_headers.push(("Retry-After", "1".into()));
    r.serialize(false, false)
}

async fn refuse_busy(shared: &Shared, mut stream: TcpStream, peer: SocketAddr, reason: &str) {
    shared
        .log_refusal_async(peer, None, reason.to_string())
        .await;
    if shared.tls.is_none() {
        write_response(&mut stream, &busy_response(reason), Duration::from_secs(2)).await;
    }
    close_gracefully(stream).await;
}

/// One HTTP request.
struct Request {
    head: Head,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
}

enum ReadOutcome {
    Request(Request),
    /// The peer closed before sending anything.
    Closed,
    /// Refused while reading (limits, malformed head).
    Refused(String),
}

/// An HTTP response.
struct Response {
    status: u16,
    content_type: String,
    extra_headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        body.push('\n');
        Response {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            extra_headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    fn serialize(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nServer: mpagent-sim-mp\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
            self.status,
            http_date(),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        for (k, v) in &self.extra_headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// Reads one request into `buf` (which may hold bytes of a pipelined next request afterwards).
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> std::io::Result<ReadOutcome> {
    let mut chunk = [0u8; 8192];
    // Bytes already known not to hold the end of the head: a slow client sending a byte at a time
    // must not make us rescan the whole buffer on every read.
    let mut scanned = 0usize;
    let head = loop {
        if http::head_end(buf.get(scanned.saturating_sub(3)..).unwrap_or_default()).is_some()
            || buf.len() > limits.max_head_bytes
        {
            match http::parse_request_head(buf, limits) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => return Ok(ReadOutcome::Refused(e.to_string())),
            }
        }
        scanned = buf.len();
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(ReadOutcome::Closed)
            } else {
                Ok(ReadOutcome::Refused(
                    "connection closed in the middle of the request head".into(),
                ))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let (head_end, length) = (head.head_len, head.content_length);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(ReadOutcome::Refused(format!(
                "connection closed after {} of {length} body bytes",
                buf.len() - head_end
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Ok(ReadOutcome::Request(Request { head, body }))
}

async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(timeout, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await,
        Ok(Ok(()))
    )
}

/// After a refusal: stop sending, then read and discard what the client is still sending for a
/// moment, so that it sees our answer instead of a connection reset.
async fn close_gracefully<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 16 * 1024];
    let mut total = 0usize;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = stream.read(&mut sink).await {
            total += n;
            if n == 0 || total > 64 * 1024 * 1024 {
                break;
            }
        }
    })
    .await;
}

/// Native mode: refuse plain HTTP, complete the TLS handshake (client certificate required and
/// verified, in the handshake or after the request) within the read timeout, then serve HTTP
/// with the presented certificate.
async fn serve_tls(
    shared: Arc<Shared>,
    acceptor: Acceptor,
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
) {
    let limits = shared.config.limits;
    let mut first = [0u8; 1];
    match tokio::time::timeout(limits.read_timeout, stream.peek(&mut first)).await {
        Ok(Ok(1..)) if first[0] != 0x16 => {
            // Not a TLS handshake record: most likely a mixed-mode client speaking plain HTTP.
            let reason = "plain HTTP on the native-mode port: this MP requires HTTPS with a \
                          client certificate";
            shared
                .log_refusal_async(peer, None, reason.to_string())
                .await;
            let response = Response::text(403, reason);
            write_response(
                &mut stream,
                &response.serialize(false, false),
                Duration::from_secs(2),
            )
            .await;
            drop(slot);
            close_gracefully(stream).await;
            return;
        }
        Ok(Ok(1..)) => {}
        Ok(_) => return, // closed or failed before sending anything
        Err(_) => {
            shared
                .log_refusal_async(
                    peer,
                    None,
                    "TLS handshake not started within the read timeout".to_string(),
                )
                .await;
            return;
        }
    }
    let acceptor = match acceptor {
        Acceptor::Rustls(a) => a,
        Acceptor::OpenSsl(server) => {
            return serve_openssl(shared, &server, stream, peer, slot).await
        }
    };
    let tls = match tokio::time::timeout(limits.read_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            shared
                .log_refusal_async(peer, None, format!("TLS handshake failed: {e}"))
                .await;
            return;
        }
        Err(_) => {
            shared
                .log_refusal_async(peer, None, "TLS handshake timed out".to_string())
                .await;
            return;
        }
    };
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| Arc::new(c.to_vec()));
    let Some(cert) = cert else {
        // Unreachable with the verifier we build (it requires a certificate); refuse anyway.
        shared
            .log_refusal_async(
                peer,
                None,
                "TLS client presented no certificate".to_string(),
            )
            .await;
        return;
    };
    tracing::debug!(%peer, "TLS client certificate verified");
    serve_connection(shared, tls, peer, Some(cert), false, slot).await;
}

/// [`serve_tls`] over OpenSSL: the handshake, then HTTP with the certificate presented in it,
/// or asked for after the first request.
async fn serve_openssl(
    shared: Arc<Shared>,
    server: &super::tls::OpensslServer,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
) {
    let limits = shared.config.limits;
    let made = openssl::ssl::Ssl::new(&server.context)
        .and_then(|ssl| tokio_openssl::SslStream::new(ssl, stream));
    let mut tls = match made {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(%peer, error = %e, "setting up the TLS connection");
            return;
        }
    };
    let accepted =
        tokio::time::timeout(limits.read_timeout, std::pin::Pin::new(&mut tls).accept()).await;
    match accepted {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let why = super::tls::openssl_failure(&e, tls.ssl());
            shared
                .log_refusal_async(peer, None, format!("TLS handshake failed: {why}"))
                .await;
            return;
        }
        Err(_) => {
            shared
                .log_refusal_async(peer, None, "TLS handshake timed out".to_string())
                .await;
            return;
        }
    }
    if server.after_request {
        serve_connection(shared, tls, peer, None, true, slot).await;
        return;
    }
    let Some(cert) = tls.ssl().peer_certificate().and_then(|c| c.to_der().ok()) else {
        shared
            .log_refusal_async(
                peer,
                None,
                "TLS client presented no certificate".to_string(),
            )
            .await;
        return;
    };
    serve_connection(shared, tls, peer, Some(Arc::new(cert)), false, slot).await;
}

/// Serves HTTP requests on one connection; `client_cert` is the TLS client certificate (native
/// mode) every request is checked against; with `cert_after_request` it is asked for once the
/// first request has been read.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + LateClientCert>(
    shared: Arc<Shared>,
    mut stream: S,
    peer: SocketAddr,
    mut client_cert: Option<Arc<Vec<u8>>>,
    cert_after_request: bool,
    slot: Slot,
) {
    let limits = shared.config.limits;
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        let outcome = tokio::time::timeout(
            limits.read_timeout,
            read_request(&mut stream, &mut buf, &limits),
        )
        .await;
        let refusal = match outcome {
            Ok(Ok(ReadOutcome::Request(req))) => {
                first = false;
                if cert_after_request && client_cert.is_none() {
                    let asked =
                        tokio::time::timeout(limits.read_timeout, stream.request_client_cert())
                            .await
                            .unwrap_or_else(|_| {
                                Err(
                                    "the client certificate asked for after the request did not \
                                     come within the read timeout"
                                        .into(),
                                )
                            });
                    match asked {
                        Ok(cert) => {
                            tracing::debug!(%peer, "TLS client certificate verified after the request");
                            client_cert = Some(Arc::new(cert));
                        }
                        Err(why) => {
                            // The TLS session is broken or refused: nothing more can be said on it.
                            shared
                                .log_refusal_async(
                                    peer,
                                    None,
                                    format!("TLS client certificate after the request: {why}"),
                                )
                                .await;
                            return;
                        }
                    }
                }
                let keep_alive = req.head.keep_alive;
                let head_only = req.head.method == "HEAD";
                let response = if is_ccm_post(&req) {
                    // Parse and verify on the blocking pool, then await the write without a
                    // thread parked on it (see `ccm_post`).
                    ccm_post(&shared, req, peer, client_cert.clone()).await
                } else {
                    let shared2 = shared.clone();
                    let cert = client_cert.clone();
                    match tokio::task::spawn_blocking(move || {
                        route(&shared2, &req, peer, cert.as_deref().map(Vec::as_slice))
                    })
                    .await
                    {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "request handler panicked");
                            Response::text(500, "internal error")
                        }
                    }
                };
                if !write_response(
                    &mut stream,
                    &response.serialize(keep_alive, head_only),
                    limits.read_timeout,
                )
                .await
                    || !keep_alive
                {
                    let _ = stream.shutdown().await;
                    return;
                }
                continue;
            }
            Ok(Ok(ReadOutcome::Closed)) => return,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "connection error");
                return;
            }
            Ok(Ok(ReadOutcome::Refused(reason))) => reason,
            Err(_elapsed) => {
                if buf.is_empty() && !first {
                    return; // idle keep-alive connection
                }
                format!(
                    "read timeout: request not complete after {} s ({} bytes received)",
                    limits.read_timeout.as_secs_f32(),
                    buf.len()
                )
            }
        };
        shared.log_refusal_async(peer, None, refusal.clone()).await;
        let response = Response::text(403, refusal);
        write_response(
            &mut stream,
            &response.serialize(false, false),
            Duration::from_secs(2),
        )
        .await;
        drop(slot);
        close_gracefully(stream).await;
        return;
    }
}

/// `CCM_POST /ccm_system/request` (the path compared as [`route`] does).
fn is_ccm_post(req: &Request) -> bool {
    let path = req
        .head
        .target
        .split_once('?')
        .map_or(&*req.head.target, |(p, _)| p);
    req.head.method == "CCM_POST" && path.eq_ignore_ascii_case("/ccm_system/request")
}

/// A `CCM_POST`: the synchronous part (envelope, XML, signature checks, look-ups on a pooled
/// reading connection; a fraction of a millisecond of CPU) on the blocking pool, then the write it
/// ends in awaited on the database's writer thread, and the reply written from here.
///
/// Why this split: the CPU work stays off the runtime's threads,
/// so reading requests and writing replies never queue behind signature checks (with the parse on
/// the runtime's threads the cores idled more and the throughput fell); and no thread is parked
/// for the group commit, so a blocking thread is free again as soon as its CPU work is done and
/// the writer finds larger groups waiting (its CPU per registration about halved).
async fn ccm_post(
    shared: &Arc<Shared>,
    req: Request,
    peer: SocketAddr,
    client_cert: Option<Arc<Vec<u8>>>,
) -> Response {
    if let Some(Shortcut::Canned(reply)) = &shared.shortcut {
        return reply_response(reply.clone());
    }
    let prepared = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || {
            prepare_ccm_post(&shared, &req, client_cert.as_deref().map(Vec::as_slice))
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "request handler panicked");
            Err(Rejection::internal("internal error"))
        })
    };
    let result = match prepared {
        Ok(pending) => match &shared.shortcut {
            Some(Shortcut::NoWrite(reply)) => reply(&shared.config, pending),
            _ => {
                pending
                    .reply_async(&shared.config, shared.db.writer())
                    .await
            }
        },
        Err(r) => Err(r),
    };
    match result {
        Ok(reply) => reply_response(reply),
        Err(r) => {
            let response = refusal_response(&r);
            let reason = logged_reason(&r);
            shared.log_refusal_async(peer, r.endpoint, reason).await;
            response
        }
    }
}

/// [`handler::prepare_ccm_post`] on a connection of the pool (runs on a blocking thread).
fn prepare_ccm_post(
    shared: &Shared,
    req: &Request,
    client_cert: Option<&[u8]>,
) -> Result<handler::PendingPost, Rejection> {
    let db = shared
        .db
        .get()
        .map_err(|e| Rejection::internal(format!("site database: {e:#}")))?;
    handler::prepare_ccm_post(
        &shared.config,
        &db,
        req.header("content-type"),
        &req.body,
        client_cert,
    )
}

fn reply_response(reply: handler::Reply) -> Response {
    Response {
        status: 200,
        content_type: reply.content_type,
        extra_headers: Vec::new(),
        body: reply.body,
    }
}

/// The reason as the rejection table keeps it: a quiet refusal says what the client was told.
fn logged_reason(r: &Rejection) -> String {
    if r.quiet {
        format!(
            "{} (answered 200 with an empty body, as a real MP does)",
            r.reason
        )
    } else {
        r.reason.clone()
    }
}

/// 403 for a refusal, 500 for a fault of ours; the reason is the body. A quiet refusal is a 200
/// with an empty body, as real MPs answer messages they drop.
fn refusal_response(r: &Rejection) -> Response {
    if r.quiet {
        return Response {
            status: 200,
            content_type: "text/plain".into(),
            extra_headers: Vec::new(),
            body: Vec::new(),
        };
    }
    Response::text(if r.internal { 500 } else { 403 }, r.reason.clone())
}

/// Routes one request (runs on a blocking thread: it may touch the database and verify RSA).
/// `client_cert`: the TLS client certificate in native mode.
fn route(shared: &Shared, req: &Request, peer: SocketAddr, client_cert: Option<&[u8]>) -> Response {
    let (path, query) = req
        .head
        .target
        .split_once('?')
        .unwrap_or((&req.head.target, ""));
    let path = path.to_ascii_lowercase();
    match path.as_str() {
        "/ccm_system/request" => {
            if req.head.method != "CCM_POST" {
                let mut r = Response::text(
                    405,
                    format!("method {} not allowed; use CCM_POST", req.head.method),
                );
                r.extra_headers.push(("Allow", "CCM_POST".into()));
                return r;
            }
            let result = match shared.db.get() {
                Ok(db) => handler::handle_ccm_post_from(
                    &shared.config,
                    &db,
                    req.header("content-type"),
                    &req.body,
                    client_cert,
                ),
                Err(e) => Err(Rejection::internal(format!("site database: {e:#}"))),
            };
            match result {
                Ok(reply) => reply_response(reply),
                Err(r) => {
                    shared.log_refusal(peer, r.endpoint.as_deref(), &logged_reason(&r));
                    refusal_response(&r)
                }
            }
        }
        "/ccm_system_windowsauth/request" | "/ccm_system_altauth/request" => {
            let mut r = Response::text(
                401,
                "authentication required (not emulated); use /ccm_system/request",
            );
            r.extra_headers
                .push(("WWW-Authenticate", "Negotiate".into()));
            r.extra_headers.push(("WWW-Authenticate", "NTLM".into()));
            r
        }
        "/sms_mp/.sms_aut" if req.head.method == "GET" || req.head.method == "HEAD" => {
            match lookup::answer(query, &shared.config, &shared.identity) {
                Some((ct, body)) => Response {
                    status: 200,
                    content_type: ct.into(),
                    extra_headers: Vec::new(),
                    body,
                },
                None => Response::text(404, format!("unknown query {query:?}")),
            }
        }
        "/sms_mp/.sms_pol" if req.head.method == "GET" || req.head.method == "HEAD" => {
            let db = match shared.db.get() {
                Ok(db) => db,
                Err(e) => return Response::text(500, format!("site database: {e:#}")),
            };
            let result = {
                policy::serve_body(
                    &shared.config,
                    &db,
                    query,
                    req.header("ClientToken"),
                    req.header("ClientTokenSignature"),
                )
            };
            match result {
                Ok(body) => Response {
                    status: 200,
                    content_type: policy::BODY_CONTENT_TYPE.into(),
                    extra_headers: Vec::new(),
                    body,
                },
                Err(BodyRefusal { status, reason }) => {
                    shared.log_refusal(peer, Some(".sms_pol"), &reason);
                    Response::text(status, reason)
                }
            }
        }
        _ => Response::text(404, "not found"),
    }
}
