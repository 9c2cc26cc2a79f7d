//! HTTP/1.1 framing for the MP conversation (docs/protocol.md §1), sans-IO and allocation-free.
//!
//! - [`request`]: the request head (`CCM_POST /ccm_system/request`, plain `GET`s) as an
//!   [`Emit`](crate::sink::Emit), refusing header injection.
//! - [`response`]: the response head (through `httparse`), the body framing, the multipart
//!   boundary and the `Date` header; [`poll_response`] is what an IO loop calls after each read.
//! - [`chunked`]: `Transfer-Encoding: chunked` decoded in place in the caller's buffer (IIS).
//!
//! An IO loop reading into one fixed buffer (here the "socket" hands out a chunked reply a few
//! bytes at a time):
//! ```
//! use mpagent_core::http::{poll_response, HttpError, ResponseProgress};
//!
//! let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
//! let mut socket = wire.chunks(7);
//! let mut buf = [0u8; 256];
//! let mut filled = 0;
//! let body = loop {
//!     let n = match socket.next() {
//!         Some(bytes) => {
//!             buf[filled..filled + bytes.len()].copy_from_slice(bytes);
//!             bytes.len()
//!         }
//!         None => 0,
//!     };
//!     filled += n;
//!     // poll_response fails with ResponseTooLarge when the buffer is full.
//!     match poll_response(&mut buf, filled, n == 0)? {
//!         ResponseProgress::Complete { head, body } => {
//!             assert_eq!(head.status, 200);
//!             break body;
//!         }
//!         ResponseProgress::NeedMore => {}
//!     }
//! };
//! assert_eq!(&buf[body], b"hello");
//! # Ok::<(), HttpError>(())
//! ```

pub mod chunked;
pub mod request;
pub mod response;
pub mod stream;

pub use chunked::{decode_chunked_in_place, scan_chunked, ChunkedProgress, ChunkedScan};
pub use request::{Method, RequestHead, CCM_REQUEST_PATH, USER_AGENT};
pub use response::{
    body_complete, parse_http_date, parse_response_head, poll_response, BodyFraming, BodyState,
    ResponseHead, ResponseProgress, MAX_BOUNDARY_LEN, MAX_HEADERS,
};

/// What went wrong framing or parsing HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum HttpError {
    /// A request field holds CR, LF or another control character (header injection), or is empty
    /// where a value is needed.
    InvalidHeaderValue,
    /// An extra request header name is not an HTTP token, or names a header the framing owns
    /// (`Host`, `Content-Length`, `Transfer-Encoding`, `Connection`, …).
    InvalidHeaderName,
    /// The request path is empty, does not start with `/`, or holds spaces or control characters.
    InvalidPath,
    /// The response head is not HTTP/1.x (`httparse` refused it).
    MalformedHead,
    /// More response headers than [`MAX_HEADERS`].
    TooManyHeaders,
    /// The status code is outside 100–599, or is `101 Switching Protocols`.
    UnexpectedStatus,
    /// `Content-Length` is not a decimal number that fits in `usize`.
    InvalidContentLength,
    /// Several `Content-Length` values disagree, or `Content-Length` comes with
    /// `Transfer-Encoding` (a request-smuggling pattern RFC 9112 §6.1 forbids senders).
    ConflictingFraming,
    /// A `Transfer-Encoding` other than exactly `chunked`.
    UnsupportedTransferEncoding,
    /// The multipart `boundary` parameter is empty, longer than 70 bytes, or badly quoted.
    InvalidBoundary,
    /// A chunk-size line is not hexadecimal, or its line is malformed.
    InvalidChunkSize,
    /// A chunk size does not fit in `usize`.
    ChunkSizeOverflow,
    /// Chunk data is not followed by CRLF, or a trailer line is malformed.
    MalformedChunk,
    /// The peer closed the connection before the response was complete.
    UnexpectedEof,
    /// The response does not fit in the caller's buffer.
    ResponseTooLarge {
        /// Bytes of the buffer it was read into.
        buffer: usize,
        /// Bytes the response needs at least, when its head says (a `Content-Length`, a chunk
        /// size); `None` when the head itself did not fit, or the body has no length.
        at_least: Option<usize>,
    },
}

impl HttpError {
    /// A response that did not fit `buffer` bytes, of unknown length.
    pub const fn too_large(buffer: usize) -> Self {
        Self::ResponseTooLarge {
            buffer,
            at_least: None,
        }
    }
    /// Whether this is [`HttpError::ResponseTooLarge`] (a buffer too small, not bad framing).
    pub const fn is_too_large(&self) -> bool {
        matches!(self, Self::ResponseTooLarge { .. })
    }
}
