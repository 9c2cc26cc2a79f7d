//! The async driver: the one loop that boards (embassy-net sockets) and the host simulator (tokio
//! sockets through `embedded-io-adapters`) both run. It connects, streams a request through the
//! caller's buffer window by window, reads the reply into the same buffer, and feeds the sans-IO
//! state machines. Transports, clocks and RNGs are the caller's.
#![allow(async_fn_in_trait)] // single-threaded executors (embassy) are the primary users

pub mod driver;
mod frame;

pub use frame::out_of_line;

use embedded_io_async::{Read, Write};

use crate::agent::outbound::{Post, PostParams};
use crate::agent::registration::{
    build_registrant_request, MessageIds, Registrant, Registrar, RegistrarAction,
    RegistrationEvent, RegistrationState, SigningIdentity,
};
use crate::config::AgentConfig;
use crate::guid::Guid;
use crate::http::{self, HttpError, ResponseHead, ResponseProgress};
use crate::sink::{Checkpoint, Emit};
use crate::time::UnixTime;
use crate::wire::header::{endpoint, ReplyMode};
use crate::wire::registration::{AgentType, BuildError, RequestType};
use crate::wire::reply::{self, ReplyError};

/// Opens a fresh connection to the MP for each exchange (requests say `Connection: close`).
pub trait Connector {
    /// The transport's error.
    type Error: embedded_io_async::Error;
    /// One connection.
    type Connection<'c>: Read<Error = Self::Error> + Write<Error = Self::Error>
    where
        Self: 'c;
    /// Connect to the MP.
    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error>;
}

/// The caller's clock.
pub trait Clock {
    /// Current UTC time.
    fn now(&self) -> UnixTime;
    /// Sleep until `t`.
    async fn sleep_until(&mut self, t: UnixTime);
}

/// One request/response exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ExchangeError<E> {
    /// The transport failed (connect, read or write).
    Transport(E),
    /// The request could not be emitted (a length overflowed).
    Request,
    /// The reply's HTTP framing is malformed or did not fit the buffer.
    Http(HttpError),
}

/// A complete HTTP response inside the caller's buffer.
#[derive(Debug)]
pub struct Response<'b> {
    /// Status, framing, boundary, `Date`.
    pub head: ResponseHead,
    /// The decoded body.
    pub body: &'b [u8],
}

/// Send `request` (streamed through `buf` in windows) and read the response into `buf`.
pub async fn exchange<'b, T: Read + Write>(
    conn: &mut T,
    request: &dyn Emit,
    buf: &'b mut [u8],
) -> Result<Response<'b>, ExchangeError<T::Error>> {
    // One emission pass per window, each stopping once its window is full: a request that fits
    // `buf` is emitted once, and no pass is spent on counting.
    let cap = buf.len();
    let mut offset = 0usize;
    let mut checkpoint = Checkpoint::default();
    loop {
        let n = fill_window_at(request, offset, buf, Some(&mut checkpoint))
            .map_err(|_| ExchangeError::Request)?;
        let chunk = buf.get(..n).ok_or(ExchangeError::Request)?;
        conn.write_all(chunk)
            .await
            .map_err(ExchangeError::Transport)?;
        offset = offset.saturating_add(n);
        if n < cap {
            break;
        }
    }
    conn.flush().await.map_err(ExchangeError::Transport)?;

    let mut filled = 0usize;
    loop {
        let n = match buf.get_mut(filled..) {
            Some(free) if !free.is_empty() => {
                conn.read(free).await.map_err(ExchangeError::Transport)?
            }
            _ => 0,
        };
        filled += n;
        match http::poll_response(buf, filled, n == 0).map_err(ExchangeError::Http)? {
            ResponseProgress::Complete { head, body } => {
                let body = buf
                    .get(body)
                    .ok_or(ExchangeError::Http(HttpError::MalformedHead))?;
                return Ok(Response { head, body });
            }
            ResponseProgress::NeedMore => {}
        }
    }
}

/// Why one registration attempt failed (kept free of the transport's type for observers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AttemptFailure {
    /// Connecting, sending or receiving failed.
    Transport(embedded_io_async::ErrorKind),
    /// The request could not be emitted (a length overflowed): it never went out whole.
    Request,
    /// The reply's HTTP framing was bad, or the reply did not fit the buffer.
    Http(HttpError),
    /// The MP answered with a non-200 status (e.g. 403 for a refused signature).
    Status(u16),
    /// HTTP 200 with an empty body: the MP had nothing to say (a quiet refusal, docs/protocol.md §4).
    EmptyReply,
    /// The reply body was not a usable `ClientRegistrationResponse`.
    Reply(ReplyError),
    /// The confirmation of the SMSID a registration reply named was answered with another one.
    Unconfirmed,
}

impl AttemptFailure {
    /// The site said no to this request (HTTP 4xx, or 200 with an empty body, which is how real
    /// MPs refuse: docs/protocol.md §4), as opposed to a failure on the way.
    pub fn is_refusal(&self) -> bool {
        match self {
            Self::Status(s) => (400..500).contains(s),
            Self::EmptyReply => true,
            _ => false,
        }
    }
}

/// What the driver reports while it works (for logs and the demo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Progress {
    /// A request is going out.
    Sending {
        /// Registration or confirmation.
        request_type: RequestType,
        /// Its message ID.
        message_id: Guid,
        /// HTTP body bytes.
        content_length: usize,
    },
    /// The attempt failed; the registrar backs off.
    Failed(AttemptFailure),
    /// The registrar's state moved.
    Event(RegistrationEvent),
    /// Waiting before the next attempt.
    Waiting(UnixTime),
}

/// When the registration driver should return.
#[derive(Debug, Clone, Copy)]
pub struct RegisterOptions {
    /// Return as soon as the registration is pending approval, confirmed and with nothing in
    /// doubt ([`Registrar::waiting_for_approval`]) and the site said so in this run, instead of
    /// confirming until approved.
    pub return_when_pending: bool,
    /// Give up after this many consecutive failed attempts.
    pub max_failures: u32,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        Self {
            return_when_pending: false,
            max_failures: 8,
        }
    }
}

/// The registration driver failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RegisterError {
    /// Building or signing the request failed.
    Build(BuildError),
    /// `max_failures` consecutive attempts failed; the last failure.
    GaveUp(AttemptFailure),
}

/// Register (or confirm) until registered, rejected, pending (if asked) or out of attempts.
/// Returns the final state; persist it (and persist after every `Progress::Event` too).
#[allow(clippy::too_many_arguments)]
pub async fn register<C: Connector, K: Clock>(
    connector: &mut C,
    clock: &mut K,
    config: &AgentConfig<'_>,
    identity: &SigningIdentity<'_>,
    agent_type: AgentType,
    registrar: &mut Registrar,
    rng: &mut dyn rand_core::RngCore,
    buf: &mut [u8],
    options: RegisterOptions,
    observer: &mut dyn FnMut(&Progress),
) -> Result<RegistrationState, RegisterError> {
    let registrant = Registrant::Own {
        identity: *identity,
        agent_type,
    };
    register_as(
        connector,
        clock,
        config,
        &registrant,
        registrar,
        rng,
        buf,
        options,
        observer,
    )
    .await
}

/// [`register`] for any [`Registrant`]: the agent itself, or (an ISV proxy) one of its clients,
/// whose names `config` then carries.
#[allow(clippy::too_many_arguments)]
pub async fn register_as<C: Connector, K: Clock>(
    connector: &mut C,
    clock: &mut K,
    config: &AgentConfig<'_>,
    registrant: &Registrant<'_>,
    registrar: &mut Registrar,
    rng: &mut dyn rand_core::RngCore,
    buf: &mut [u8],
    options: RegisterOptions,
    observer: &mut dyn FnMut(&Progress),
) -> Result<RegistrationState, RegisterError> {
    // The configuration is the one place the site's generation is set.
    *registrar = registrar.with_site_generation(config.site_generation);
    let mut message_ids = MessageIds::default();
    // "Pending" is only reported once the site said so in this run: a stored pending state
    // with an MP that never answers is a failed attempt, not a wait for approval.
    let mut site_answered = false;
    loop {
        let now = clock.now();
        let (request_type, smsid) = match registrar.poll(now) {
            RegistrarAction::Done(_) | RegistrarAction::Rejected(_) => return Ok(registrar.state()),
            RegistrarAction::WaitUntil(t) => {
                if options.return_when_pending && site_answered && registrar.waiting_for_approval()
                {
                    return Ok(registrar.state());
                }
                observer(&Progress::Waiting(t));
                clock.sleep_until(t).await;
                continue;
            }
            RegistrarAction::Send(kind, smsid) => (kind, smsid),
        };
        let request = build_registrant_request(config, registrant, request_type, smsid, now)
            .map_err(RegisterError::Build)?;
        let message_id = message_ids.next(
            config.site_generation.confirmation_form(),
            request_type,
            Guid::random(rng),
        );
        let params = PostParams {
            endpoint: endpoint::CLIENT_REGISTRATION,
            reply_mode: ReplyMode::Sync,
            source_id: None,
            message_id,
            now,
            hooks: None,
        };
        let post = Post::new(config, params, &request)
            .map_err(|_| RegisterError::Build(BuildError::Overflow))?;
        observer(&Progress::Sending {
            request_type,
            message_id,
            content_length: post.content_length(),
        });
        let outcome = attempt(connector, &post, buf).await;
        let now = clock.now();
        let failures_before = registrar.failures();
        let (event, failure) = match outcome {
            Ok(reply) => {
                site_answered = true;
                let event = registrar.on_response(now, &reply);
                // A confirmation the site answered with another SMSID than it named.
                let failure = matches!(event, RegistrationEvent::Discarded(..))
                    .then_some(AttemptFailure::Unconfirmed);
                if let Some(f) = failure {
                    observer(&Progress::Failed(f));
                }
                (event, failure)
            }
            Err(failure) => {
                observer(&Progress::Failed(failure));
                let event = if failure.is_refusal() {
                    registrar.on_refusal(now)
                } else {
                    registrar.on_failure(now)
                };
                (event, Some(failure))
            }
        };
        // Only attempts the registrar counted as failures bring the give-up bound nearer.
        if let Some(failure) = failure {
            if registrar.failures() > failures_before
                && registrar.failures() >= options.max_failures
            {
                return Err(RegisterError::GaveUp(failure));
            }
        }
        info!("registration: {}", event);
        observer(&Progress::Event(event));
    }
}

async fn attempt<C: Connector>(
    connector: &mut C,
    post: &Post<'_>,
    buf: &mut [u8],
) -> Result<reply::RegistrationResponse, AttemptFailure> {
    use embedded_io_async::Error as _;
    let mut conn = connector
        .connect()
        .await
        .map_err(|e| AttemptFailure::Transport(e.kind()))?;
    let response = exchange(&mut conn, post, buf).await.map_err(|e| match e {
        ExchangeError::Transport(e) => AttemptFailure::Transport(e.kind()),
        ExchangeError::Http(h) => AttemptFailure::Http(h),
        ExchangeError::Request => AttemptFailure::Request,
    })?;
    if response.head.status != 200 {
        return Err(AttemptFailure::Status(response.head.status));
    }
    if response.body.is_empty() {
        return Err(AttemptFailure::EmptyReply);
    }
    reply::parse_registration_reply(response.body, response.head.boundary.as_str())
        .map_err(AttemptFailure::Reply)
}

// ---- Messages after registration (docs/protocol.md §5) ----------------------------------------------------
//
// Requests go out through `agent::signed::fill_window_at`: each window's emission stops once the
// window is full, so no pass over the request is spent on counting and none runs past its window;
// a `Checkpoint` carried from pass to pass lets each jump over the repeated items (inventory
// instances) before its window.

use crate::agent::signed::fill_window_at;
use crate::http::stream::{BodyDecoder, StreamError};
use crate::sink::Sink;
use crate::wire::policy::{parse_policy_reply_in, PolicyAssignment, PolicyError, ServerCookie};

/// Sending a request or reading its response head failed. `Copy` and transport-agnostic, so a
/// queue can keep it and decide with [`SendError::is_retryable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SendError {
    /// Connecting, sending or receiving failed (the MP is unreachable): retry later.
    Transport(embedded_io_async::ErrorKind),
    /// The request could not be emitted (a length overflowed, a header failed validation, or an
    /// inventory description refused to emit): it will never go out as it is.
    Request,
    /// The response's HTTP framing was malformed, or its head did not fit the buffer.
    Http(HttpError),
    /// The MP answered with this non-success status: 403 for a refused identity or signature,
    /// 5xx when it is in trouble, …
    Status(u16),
}

impl SendError {
    /// Whether sending the same message again later can succeed: transport failures, malformed
    /// responses, 408, 429 and 5xx. A request that cannot be emitted and 4xx refusals (403: the
    /// MP refused the identity or a signature) will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match *self {
            SendError::Transport(_) | SendError::Http(_) => true,
            SendError::Request => false,
            SendError::Status(s) => s == 408 || s == 429 || s >= 500,
        }
    }
}

fn transport<E: embedded_io_async::Error>(e: E) -> SendError {
    SendError::Transport(e.kind())
}

/// Stream `request` into `conn` through `buf`, one window per emission pass. The same loop as at
/// the start of [`exchange`], on purpose: one shared async fn nests its future inside
/// `io::register`'s (measured: +32 B of agent context and +192 B of QEMU firmware flash).
async fn send_request<T: Write>(
    conn: &mut T,
    request: &dyn Emit,
    buf: &mut [u8],
) -> Result<usize, SendError> {
    let cap = buf.len();
    let mut offset = 0usize;
    let mut checkpoint = Checkpoint::default();
    loop {
        let n = fill_window_at(request, offset, buf, Some(&mut checkpoint))
            .map_err(|_| SendError::Request)?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).ok_or(SendError::Request)?;
        conn.write_all(chunk).await.map_err(transport)?;
        offset = offset.saturating_add(n);
        if n < cap {
            break;
        }
    }
    conn.flush().await.map_err(transport)?;
    Ok(offset)
}

/// Read until the response head is complete; returns it and how much of `buf` is filled.
async fn read_head<T: Read>(
    conn: &mut T,
    buf: &mut [u8],
) -> Result<(ResponseHead, usize), SendError> {
    let mut filled = 0usize;
    loop {
        let free = match buf.get_mut(filled..) {
            Some(free) if !free.is_empty() => free,
            _ => return Err(SendError::Http(HttpError::too_large(buf.len()))),
        };
        let n = conn.read(free).await.map_err(transport)?;
        filled = filled.saturating_add(n);
        let data = buf
            .get(..filled)
            .ok_or(SendError::Http(HttpError::too_large(buf.len())))?;
        if let Some(head) = http::parse_response_head(data).map_err(SendError::Http)? {
            return Ok((head, filled));
        }
        if n == 0 {
            return Err(SendError::Http(HttpError::UnexpectedEof));
        }
    }
}

/// Read the whole response into `buf` (chunked bodies decoded in place).
async fn read_response<'b, T: Read>(
    conn: &mut T,
    buf: &'b mut [u8],
) -> Result<Response<'b>, SendError> {
    let mut filled = 0usize;
    loop {
        let n = match buf.get_mut(filled..) {
            Some(free) if !free.is_empty() => conn.read(free).await.map_err(transport)?,
            _ => 0,
        };
        filled = filled.saturating_add(n);
        match http::poll_response(buf, filled, n == 0).map_err(SendError::Http)? {
            ResponseProgress::Complete { head, body } => {
                let body = buf
                    .get(body)
                    .ok_or(SendError::Http(HttpError::MalformedHead))?;
                return Ok(Response { head, body });
            }
            ResponseProgress::NeedMore => {}
        }
    }
}

fn is_delivered(status: u16) -> bool {
    if crate::profile::ASYNC_ACCEPTS_ANY_2XX {
        (200..300).contains(&status)
    } else {
        status == 200
    }
}

/// Post a one-way (ASync) message — DDR, inventory, state, status — streamed through `buf`
/// (any size ≥ 1; a few hundred bytes suffice for any message), and wait for the MP's HTTP
/// answer. Delivered on a 2xx; only the response head is read (the MP sends no reply message).
pub async fn send_message<C: Connector>(
    connector: &mut C,
    request: &dyn Emit,
    buf: &mut [u8],
) -> Result<(), SendError> {
    let mut conn = connector.connect().await.map_err(transport)?;
    let _sent = send_request(&mut conn, request, buf).await?;
    let (head, _) = read_head(&mut conn, buf).await?;
    debug!("message of {} bytes: HTTP {}", _sent, head.status);
    if is_delivered(head.status) {
        Ok(())
    } else {
        warn!("message refused: HTTP {}", head.status);
        Err(SendError::Status(head.status))
    }
}

/// A policy request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PolicyRequestError {
    /// The exchange failed (see [`SendError::is_retryable`]); a reply larger than `buf` is
    /// `Send(Http(ResponseTooLarge { .. }))`, with the size it needs when its head says.
    Send(SendError),
    /// HTTP 200 with an empty body: the MP had nothing to say (a quiet refusal, docs/protocol.md §5).
    EmptyReply,
    /// The reply was not a usable `ReplyAssignments` (envelope, header or body); nothing was
    /// reported to the callback.
    Reply(PolicyError),
}

/// Send a signed `RequestAssignments` (Sync, to `MP_PolicyManager`), read the reply into `buf`,
/// decode it into `scratch` (at most 3/2 of the reply's size, see
/// [`crate::wire::policy::policy_reply_scratch_len`]), validate all of it, then call
/// `on_assignment` for each assignment in order. Returns the number of assignments. The reply's
/// `ServerCookie` lands in `server_cookie`, for the next request to echo.
pub async fn request_policy<C: Connector>(
    connector: &mut C,
    request: &dyn Emit,
    buf: &mut [u8],
    scratch: &mut [u8],
    server_cookie: &mut ServerCookie,
    on_assignment: &mut dyn FnMut(&PolicyAssignment<'_>),
) -> Result<usize, PolicyRequestError> {
    let mut conn = connector
        .connect()
        .await
        .map_err(|e| PolicyRequestError::Send(transport(e)))?;
    send_request(&mut conn, request, buf)
        .await
        .map_err(PolicyRequestError::Send)?;
    let response = read_response(&mut conn, buf)
        .await
        .map_err(PolicyRequestError::Send)?;
    if response.head.status != 200 {
        return Err(PolicyRequestError::Send(SendError::Status(
            response.head.status,
        )));
    }
    if response.body.is_empty() {
        return Err(PolicyRequestError::EmptyReply);
    }
    let reply = parse_policy_reply_in(response.body, response.head.boundary.as_str(), scratch)
        .map_err(PolicyRequestError::Reply)?;
    let n = reply.validate().map_err(PolicyRequestError::Reply)?;
    reply
        .keep_server_cookie(server_cookie)
        .map_err(PolicyRequestError::Reply)?;
    for a in reply.assignments() {
        on_assignment(&a.map_err(PolicyRequestError::Reply)?);
    }
    info!("policy: {} assignments", n);
    Ok(n)
}

/// Fetching a policy body failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FetchError {
    /// The exchange failed, the MP answered other than 200 (e.g. 403 for a missing or bad
    /// client token), or the body's framing was malformed or cut short.
    Send(SendError),
    /// The caller's sink refused the data.
    Sink,
}

/// `GET` a policy body (`request`: a [`crate::agent::messages::PolicyBodyRequest`]) and stream
/// it into `out` as it arrives, through `buf` (which only needs to hold the response head).
/// Returns the body's length. A partial body may have reached `out` before an error.
pub async fn fetch_policy_body<C: Connector>(
    connector: &mut C,
    request: &dyn Emit,
    buf: &mut [u8],
    out: &mut dyn Sink,
) -> Result<usize, FetchError> {
    let mut conn = connector
        .connect()
        .await
        .map_err(|e| FetchError::Send(transport(e)))?;
    send_request(&mut conn, request, buf)
        .await
        .map_err(FetchError::Send)?;
    let (head, filled) = read_head(&mut conn, buf).await.map_err(FetchError::Send)?;
    if head.status != 200 {
        return Err(FetchError::Send(SendError::Status(head.status)));
    }
    let stream_err = |e: StreamError| match e {
        StreamError::Http(h) => FetchError::Send(SendError::Http(h)),
        _ => FetchError::Sink,
    };
    let mut decoder = BodyDecoder::new(head.body);
    let first = buf.get(head.head_len..filled).unwrap_or(&[]);
    decoder.feed(first, out).map_err(stream_err)?;
    while !decoder.is_complete() {
        let n = conn
            .read(buf)
            .await
            .map_err(|e| FetchError::Send(transport(e)))?;
        if n == 0 {
            decoder
                .finish()
                .map_err(|h| FetchError::Send(SendError::Http(h)))?;
            break;
        }
        decoder
            .feed(buf.get(..n).unwrap_or(&[]), out)
            .map_err(stream_err)?;
    }
    Ok(decoder.delivered())
}

// ---- For people -------------------------------------------------------------------------------
//
// The inner errors of other modules are shown through `inner`: their own sentence after ours.

fn inner<T: core::fmt::Display>(
    f: &mut core::fmt::Formatter<'_>,
    what: &str,
    e: &T,
) -> core::fmt::Result {
    write!(f, "{what}: {e}")
}

fn kind_text(k: embedded_io_async::ErrorKind) -> &'static str {
    use embedded_io_async::ErrorKind as K;
    match k {
        K::NotFound => "the MP's address was not found",
        K::PermissionDenied => "permission denied",
        K::ConnectionRefused => "the MP refused the connection",
        K::ConnectionReset => "the MP reset the connection",
        K::ConnectionAborted => "the connection was aborted",
        K::NotConnected => "not connected",
        K::AddrInUse => "the local address is in use",
        K::AddrNotAvailable => "the address is not available",
        K::BrokenPipe => "the MP closed the connection",
        K::AlreadyExists => "already exists",
        K::InvalidInput => "invalid input",
        K::InvalidData => "invalid data",
        K::TimedOut => "the MP did not answer in time",
        K::Interrupted => "interrupted",
        K::Unsupported => "unsupported",
        K::OutOfMemory => "out of memory",
        K::WriteZero => "the connection took no more bytes",
        _ => "the network failed",
    }
}

/// An HTTP failure of the MP's reply: a reply too large for the buffer is said as such (its
/// sentence names the sizes), anything else is malformed framing.
fn http_text(f: &mut core::fmt::Formatter<'_>, h: &HttpError) -> core::fmt::Result {
    if h.is_too_large() {
        write!(f, "the MP's reply {h}")
    } else {
        inner(f, "the MP's HTTP reply was malformed", h)
    }
}

impl<E: embedded_io_async::Error> core::fmt::Display for ExchangeError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Transport(e) => f.write_str(kind_text(e.kind())),
            Self::Request => f.write_str("the request could not be built (a length overflowed)"),
            Self::Http(h) => http_text(f, h),
        }
    }
}

impl<E: embedded_io_async::Error> core::error::Error for ExchangeError<E> {}

impl core::fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Transport(k) => f.write_str(kind_text(*k)),
            Self::Request => {
                f.write_str("the registration request could not be built (a length overflowed)")
            }
            Self::Http(h) => http_text(f, h),
            Self::Status(s) => write!(f, "the MP answered HTTP {s}"),
            Self::EmptyReply => f.write_str("the MP answered with an empty body (a quiet refusal)"),
            Self::Reply(r) => inner(f, "the registration reply was unusable", r),
            Self::Unconfirmed => {
                f.write_str("the site did not confirm the SMSID its reply named (dropped)")
            }
        }
    }
}

impl core::error::Error for AttemptFailure {}

impl core::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Build(b) => inner(f, "the registration request could not be built", b),
            Self::GaveUp(a) => write!(f, "gave up after repeated failures; the last: {a}"),
        }
    }
}

impl core::error::Error for RegisterError {}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Transport(k) => f.write_str(kind_text(*k)),
            Self::Request => f.write_str("the message could not be built"),
            Self::Http(h) => http_text(f, h),
            Self::Status(403) => f.write_str("the MP refused it (HTTP 403: identity or signature)"),
            Self::Status(s) if *s >= 500 => write!(f, "the MP is in trouble (HTTP {s})"),
            Self::Status(s) => write!(f, "the MP refused it (HTTP {s})"),
        }
    }
}

impl core::error::Error for SendError {}

impl core::fmt::Display for PolicyRequestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Send(s) => write!(f, "the policy request failed: {s}"),
            Self::EmptyReply => {
                f.write_str("the MP answered the policy request with an empty body")
            }
            Self::Reply(p) => inner(f, "the policy reply was unusable", p),
        }
    }
}

impl core::error::Error for PolicyRequestError {}

impl core::fmt::Display for FetchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Send(s) => write!(f, "fetching the policy body failed: {s}"),
            Self::Sink => f.write_str("the policy body could not be kept (no room)"),
        }
    }
}

impl core::error::Error for FetchError {}

#[cfg(test)]
mod mp_replies;

#[cfg(test)]
mod message_tests {
    extern crate std;
    use super::*;
    use crate::agent::messages::{request_assignments, sign_message, PolicyBodyRequest};
    use crate::agent::registration::SigningIdentity;
    use crate::agent::signed::MessageSigner;
    use crate::config::SiteMode;
    use crate::guid::Smsid;
    use crate::sign::P256Signer;
    use crate::sink::{emitted_len, Overflow, SliceSink};
    use crate::wire::clientauth::ClientIdSignature;
    use crate::wire::report::{InstanceContent, InstanceWriter, Namespace, Report, ReportIdentity};
    use core::future::Future;
    use core::task::{Context, Poll, Waker};
    use embedded_io_async::ErrorKind;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    fn block_on<F: Future>(f: F) -> F::Output {
        let mut cx = Context::from_waker(Waker::noop());
        let mut f = core::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    /// One canned response, read back `step` bytes at a time; records what was written.
    struct Mock {
        response: Vec<u8>,
        at: usize,
        step: usize,
        written: Vec<u8>,
        refuse_connect: bool,
    }

    impl Mock {
        fn new(response: &[u8], step: usize) -> Self {
            Self {
                response: response.to_vec(),
                at: 0,
                step,
                written: Vec::new(),
                refuse_connect: false,
            }
        }
    }

    impl embedded_io_async::ErrorType for Mock {
        type Error = ErrorKind;
    }

    impl Read for Mock {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
            let n = self.step.min(buf.len()).min(self.response.len() - self.at);
            buf[..n].copy_from_slice(&self.response[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Mock {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        async fn flush(&mut self) -> Result<(), ErrorKind> {
            Ok(())
        }
    }

    impl Connector for Mock {
        type Error = ErrorKind;
        type Connection<'c> = &'c mut Mock;
        async fn connect(&mut self) -> Result<&mut Mock, ErrorKind> {
            if self.refuse_connect {
                return Err(ErrorKind::ConnectionRefused);
            }
            Ok(self)
        }
    }

    fn config() -> AgentConfig<'static> {
        AgentConfig::new(
            "PS1",
            SiteMode::Mixed,
            "http://mp.corp.example:8080",
            "PRN-1",
            "prn-1.corp.example",
        )
        .unwrap()
    }

    fn smsid() -> Smsid {
        Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap()
    }

    fn emit_vec(item: &dyn Emit) -> Vec<u8> {
        let mut v = vec![0u8; emitted_len(item).unwrap()];
        let mut s = SliceSink::new(&mut v);
        item.emit(&mut s).unwrap();
        v
    }

    fn inventory(w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
        for i in 0..40u64 {
            w.instance(InstanceContent::New, Namespace::Cimv2, "Win32_Thing", |p| {
                p.prop_u64("Index", i)?;
                p.prop("Name", "a thing with a name")
            })?;
        }
        Ok(())
    }

    #[test]
    fn send_message_streams_through_a_small_buffer_and_types_statuses() {
        let signer = P256Signer::from_secret_bytes(&[5; 32]).unwrap();
        let cid = ClientIdSignature::compute(&signer, smsid()).unwrap();
        let me = MessageSigner::client(
            SigningIdentity {
                signer: &signer,
                cert_der: &[0x30, 0x00],
            },
            &cid,
        );
        let cfg = config();
        let now = UnixTime(1_795_428_000);
        let report = Report::hardware_inventory(
            ReportIdentity::new(smsid(), "PRN-1"),
            crate::wire::report::ReportType::Full,
            Default::default(),
            now.to_datetime(),
            &inventory,
        );
        let msg = sign_message(&cfg, &me, &report, Guid([7; 16]), now).unwrap();
        let whole = emit_vec(&msg);
        assert!(whole.len() > 16_000, "{}", whole.len());
        for (status, want) in [
            ("200 OK", Ok(())),
            ("202 Accepted", Ok(())),
            ("403 Forbidden", Err(SendError::Status(403))),
            ("503 Service Unavailable", Err(SendError::Status(503))),
        ] {
            let resp = std::format!("HTTP/1.1 {status}\r\nContent-Length: 1000000\r\n\r\n<html>");
            let mut mock = Mock::new(resp.as_bytes(), 7);
            let mut buf = [0u8; 97];
            let r = block_on(send_message(&mut mock, &msg, &mut buf));
            assert_eq!(r, want, "{status}");
            assert_eq!(mock.written, whole, "{status}");
        }
        assert!(!SendError::Status(403).is_retryable());
        assert!(SendError::Status(503).is_retryable());
        assert!(SendError::Status(429).is_retryable());
        assert!(!SendError::Request.is_retryable());
        let mut down = Mock::new(b"", 1);
        down.refuse_connect = true;
        let r = block_on(send_message(&mut down, &msg, &mut [0u8; 64]));
        assert_eq!(r, Err(SendError::Transport(ErrorKind::ConnectionRefused)));
        assert!(r.unwrap_err().is_retryable());
        // The peer closes before a head; a head that does not fit the buffer.
        let mut closed = Mock::new(b"HTTP/1.1 200", 5);
        assert_eq!(
            block_on(send_message(&mut closed, &msg, &mut [0u8; 64])),
            Err(SendError::Http(HttpError::UnexpectedEof))
        );
        let mut big = Mock::new(
            b"HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
            64,
        );
        assert_eq!(
            block_on(send_message(&mut big, &msg, &mut [0u8; 32])),
            Err(SendError::Http(HttpError::too_large(32)))
        );
    }

    /// An MP reply: multipart, chunked in pieces of 100 bytes.
    fn policy_reply(body_xml: &str) -> Vec<u8> {
        let (content_type, mp) = super::mp_replies::multipart_reply(body_xml);
        chunked_response(&content_type, &mp)
    }

    fn chunked_response(content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut out = std::format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for c in body.chunks(100) {
            out.extend_from_slice(std::format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[test]
    fn request_policy_calls_back_per_assignment() {
        let signer = P256Signer::from_secret_bytes(&[5; 32]).unwrap();
        let cid = ClientIdSignature::compute(&signer, smsid()).unwrap();
        let me = MessageSigner::client(
            SigningIdentity {
                signer: &signer,
                cert_der: &[0x30, 0x00],
            },
            &cid,
        );
        let cfg = config();
        let ra = request_assignments(&cfg, smsid(), "");
        let msg = sign_message(&cfg, &me, &ra, Guid([8; 16]), UnixTime(0)).unwrap();
        let xml = "<ReplyAssignments><PolicyAssignment PolicyAssignmentID=\"{1}\"><Policy PolicyID=\"{A}\" PolicyVersion=\"1.00\" PolicyFlags=\"2\"><PolicyLocation><![CDATA[http://<mp>/SMS_MP/.sms_pol?{A}.1_00]]></PolicyLocation></Policy></PolicyAssignment>\
<PolicyAssignment><Policy PolicyID=\"B\" PolicyVersion=\"3.00\"><PolicyLocation>http://&lt;mp&gt;/SMS_MP/.sms_pol?B.3_00</PolicyLocation></Policy></PolicyAssignment></ReplyAssignments>";
        let mut mock = Mock::new(&policy_reply(xml), 13);
        let mut buf = vec![0u8; 4096];
        let mut scratch = vec![0u8; 4096];
        let mut seen: Vec<(String, u32, String)> = Vec::new();
        let mut cookie = ServerCookie::new();
        cookie.push_str("from an earlier reply").unwrap();
        let n = block_on(request_policy(
            &mut mock,
            &msg,
            &mut buf,
            &mut scratch,
            &mut cookie,
            &mut |a| {
                let mut b = [0u8; 128];
                seen.push((
                    String::from(a.policy_id.raw()),
                    a.flags.bits(),
                    String::from(a.location.unescape_into(&mut b).unwrap()),
                ))
            },
        ))
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(mock.written, emit_vec(&msg));
        // This reply has no ServerCookie: the next request sends it empty.
        assert_eq!(cookie.as_str(), "");
        assert_eq!(
            seen,
            [
                (
                    "{A}".into(),
                    2,
                    "http://<mp>/SMS_MP/.sms_pol?{A}.1_00".into()
                ),
                ("B".into(), 0, "http://<mp>/SMS_MP/.sms_pol?B.3_00".into())
            ]
        );
        // A malformed reply reports nothing.
        let bad = "<ReplyAssignments><PolicyAssignment><Policy PolicyID=\"a\" PolicyVersion=\"1\"><L>x</L></Policy></PolicyAssignment><PolicyAssignment/></ReplyAssignments>";
        let mut mock = Mock::new(&policy_reply(bad), 64);
        let mut called = 0;
        let r = block_on(request_policy(
            &mut mock,
            &msg,
            &mut buf,
            &mut scratch,
            &mut cookie,
            &mut |_| called += 1,
        ));
        assert_eq!(
            r,
            Err(PolicyRequestError::Reply(PolicyError::MissingPolicy))
        );
        assert_eq!(called, 0);
        let mut empty = Mock::new(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 64);
        assert_eq!(
            block_on(request_policy(
                &mut empty,
                &msg,
                &mut buf,
                &mut scratch,
                &mut cookie,
                &mut |_| {}
            )),
            Err(PolicyRequestError::EmptyReply)
        );
        let mut small = Mock::new(&policy_reply(xml), 64);
        let got = block_on(request_policy(
            &mut small,
            &msg,
            &mut buf[..256],
            &mut scratch,
            &mut cookie,
            &mut |_| {},
        ));
        // The reply is chunked: its first chunk's size already says it needs more than 256.
        let Err(PolicyRequestError::Send(SendError::Http(HttpError::ResponseTooLarge {
            buffer: 256,
            at_least: Some(needs),
        }))) = got
        else {
            panic!("expected the size the reply needs, got {got:?}")
        };
        assert!(needs > 256, "{needs}");
    }

    #[test]
    fn policy_reply_server_cookie_is_kept_unescaped_for_the_next_request() {
        let signer = P256Signer::from_secret_bytes(&[7; 32]).unwrap();
        let cid = ClientIdSignature::compute(&signer, smsid()).unwrap();
        let me = MessageSigner::client(
            SigningIdentity {
                signer: &signer,
                cert_der: &[0x30, 0x00],
            },
            &cid,
        );
        let cfg = config();
        let ra = request_assignments(&cfg, smsid(), "");
        let msg = sign_message(&cfg, &me, &ra, Guid([8; 16]), UnixTime(0)).unwrap();
        let reply = |cookie: &str| {
            policy_reply(&std::format!(
                "<ReplyAssignments><ServerCookie>{cookie}</ServerCookie></ReplyAssignments>"
            ))
        };
        let (mut buf, mut scratch) = (vec![0u8; 4096], vec![0u8; 4096]);
        let mut cookie = ServerCookie::new();
        let mut mock = Mock::new(&reply("2026-12-07 10:00:00.123 &amp; more"), 64);
        let n = block_on(request_policy(
            &mut mock,
            &msg,
            &mut buf,
            &mut scratch,
            &mut cookie,
            &mut |_| {},
        ))
        .unwrap();
        assert_eq!((n, cookie.as_str()), (0, "2026-12-07 10:00:00.123 & more"));
        // The next request echoes it, escaped again.
        let next = request_assignments(&cfg, smsid(), cookie.as_str());
        let xml = String::from_utf16(
            &emit_vec(&next)
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(
            xml.ends_with("<ServerCookie>2026-12-07 10:00:00.123 &amp; more</ServerCookie></RequestAssignments>"),
            "{xml}"
        );
        // Longer than MAX_SERVER_COOKIE: not echoed.
        let long = "x".repeat(crate::wire::policy::MAX_SERVER_COOKIE + 1);
        let mut mock = Mock::new(&reply(&long), 64);
        block_on(request_policy(
            &mut mock,
            &msg,
            &mut buf,
            &mut scratch,
            &mut cookie,
            &mut |_| {},
        ))
        .unwrap();
        assert_eq!(cookie.as_str(), "");
    }

    struct VecSink(Vec<u8>);
    impl Sink for VecSink {
        fn write(&mut self, b: &[u8]) -> Result<(), Overflow> {
            self.0.extend_from_slice(b);
            Ok(())
        }
    }

    #[test]
    fn fetch_policy_body_streams_a_body_larger_than_the_buffer() {
        let signer = P256Signer::from_secret_bytes(&[5; 32]).unwrap();
        let cfg = config();
        let req = PolicyBodyRequest::new(
            &cfg,
            &signer,
            smsid(),
            "http://<mp>/SMS_MP/.sms_pol?{A}.1_00",
            UnixTime(0),
        )
        .unwrap();
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for step in [1usize, 7, 300] {
            let mut mock = Mock::new(&chunked_response("text/xml", &body), step);
            let mut out = VecSink(Vec::new());
            let mut buf = [0u8; 256];
            let n = block_on(fetch_policy_body(&mut mock, &req, &mut buf, &mut out)).unwrap();
            assert_eq!(n, body.len());
            assert_eq!(out.0, body, "step {step}");
            assert_eq!(mock.written, emit_vec(&req));
        }
        let mut resp =
            std::format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        resp.extend_from_slice(&body);
        let mut mock = Mock::new(&resp, 50);
        let mut out = VecSink(Vec::new());
        assert_eq!(
            block_on(fetch_policy_body(
                &mut mock,
                &req,
                &mut [0u8; 256],
                &mut out
            )),
            Ok(body.len())
        );
        assert_eq!(out.0, body);
        // Cut short, refused, sink full.
        let mut cut = Mock::new(&resp[..resp.len() - 1], 50);
        assert_eq!(
            block_on(fetch_policy_body(
                &mut cut,
                &req,
                &mut [0u8; 256],
                &mut VecSink(Vec::new())
            )),
            Err(FetchError::Send(SendError::Http(HttpError::UnexpectedEof)))
        );
        let mut refused = Mock::new(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 50);
        assert_eq!(
            block_on(fetch_policy_body(
                &mut refused,
                &req,
                &mut [0u8; 256],
                &mut VecSink(Vec::new())
            )),
            Err(FetchError::Send(SendError::Status(403)))
        );
        let mut full = Mock::new(&resp, 50);
        let mut small = [0u8; 100];
        assert_eq!(
            block_on(fetch_policy_body(
                &mut full,
                &req,
                &mut [0u8; 256],
                &mut SliceSink::new(&mut small)
            )),
            Err(FetchError::Sink)
        );
    }
}
