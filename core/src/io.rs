//! The async driver: the one loop that boards (embassy-net sockets) and the host simulator (tokio
//! sockets through `embedded-io-adapters`) both run. It connects, streams a request through the
//! caller's buffer window by window, reads the reply into the same buffer, and feeds the sans-IO
//! state machines. Transports, clocks and RNGs are the caller's.
#![allow(async_fn_in_trait)] // single-threaded executors (embassy) are the primary users

use embedded_io_async::{Read, Write};

use crate::agent::outbound::{Post, PostParams};
use crate::agent::registration::{
    build_request, Registrar, RegistrarAction, RegistrationEvent, RegistrationState,
    SigningIdentity,
};
use crate::config::AgentConfig;
use crate::guid::Guid;
use crate::http::{self, HttpError, ResponseHead, ResponseProgress};
use crate::sink::{emitted_len, Emit, Overflow, WindowSink};
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
    let total = emitted_len(request).map_err(|_: Overflow| ExchangeError::Request)?;
    let mut offset = 0usize;
    while offset < total {
        let mut window = WindowSink::new(buf, offset);
        request
            .emit(&mut window)
            .map_err(|_| ExchangeError::Request)?;
        let n = window.filled();
        if n == 0 {
            return Err(ExchangeError::Request);
        }
        let chunk = buf.get(..n).ok_or(ExchangeError::Request)?;
        conn.write_all(chunk)
            .await
            .map_err(ExchangeError::Transport)?;
        offset += n;
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
    /// The reply's HTTP framing was bad.
    Http(HttpError),
    /// The MP answered with a non-200 status (e.g. 403 for a refused signature).
    Status(u16),
    /// HTTP 200 with an empty body: the MP had nothing to say (a quiet refusal, spec §4).
    EmptyReply,
    /// The reply body was not a usable `ClientRegistrationResponse`.
    Reply(ReplyError),
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
    /// Return as soon as the registration is pending approval (instead of confirming until approved).
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
    loop {
        let now = clock.now();
        let (request_type, smsid) = match registrar.poll(now) {
            RegistrarAction::Done(_) | RegistrarAction::Rejected => return Ok(registrar.state()),
            RegistrarAction::WaitUntil(t) => {
                if options.return_when_pending
                    && matches!(registrar.state(), RegistrationState::Pending(_))
                {
                    return Ok(registrar.state());
                }
                observer(&Progress::Waiting(t));
                clock.sleep_until(t).await;
                continue;
            }
            RegistrarAction::Send(kind, smsid) => (kind, smsid),
        };
        let request = build_request(config, identity, agent_type, request_type, smsid, now)
            .map_err(RegisterError::Build)?;
        let message_id = Guid::random(rng);
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
        let event = match outcome {
            Ok(reply) => registrar.on_response(now, &reply),
            Err(failure) => {
                observer(&Progress::Failed(failure));
                if registrar.failures().saturating_add(1) >= options.max_failures {
                    return Err(RegisterError::GaveUp(failure));
                }
                registrar.on_failure(now)
            }
        };
        info!("registration: {:?}", event);
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
        ExchangeError::Request => AttemptFailure::Http(HttpError::ResponseTooLarge),
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
