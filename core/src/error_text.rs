//! The sentences core's errors print: `Display` and `core::error::Error` for every public error
//! outside the IO driver and the agent, so an integrator can show them to a person as they are.
//!
//! Each sentence names the rule that was broken and, where the error carries one, the value.

use core::fmt::{self, Display, Formatter};

use embedded_storage::nor_flash::NorFlashError;

use crate::config::ConfigError;
use crate::http::response::MAX_HEADERS;
use crate::http::stream::StreamError;
use crate::http::HttpError;
use crate::identity::{CertError, MAX_CERT_TIME, MAX_COMMON_NAME_LEN};
use crate::sign::rsa::RsaKeyError;
use crate::sign::SignError;
use crate::sink::Overflow;
use crate::store::testing::{FaultError, RamFlashError};
use crate::store::BodyFault;
use crate::store::StoreError;
use crate::wire::clientauth::PayloadSignError;
use crate::wire::policy::{LocationError, PolicyError};
use crate::wire::registration::BuildError;
use crate::wire::reply::ReplyError;
use crate::wire::utf16::Utf16Error;
use crate::wire::xml_reader::{XmlError, XmlErrorKind, MAX_ATTRS, MAX_DEPTH};

/// Implements `core::error::Error` for error types whose `Display` is written below; `source`
/// is left to the default because every nested cause is already part of the sentence.
macro_rules! std_error {
    ($($t:ty),* $(,)?) => { $(impl core::error::Error for $t {})* };
}

std_error!(
    ConfigError,
    HttpError,
    StreamError,
    CertError,
    RsaKeyError,
    SignError,
    BodyFault,
    RamFlashError,
    PayloadSignError,
    LocationError,
    PolicyError,
    BuildError,
    ReplyError,
    Utf16Error,
    XmlError,
    XmlErrorKind,
    Overflow,
);

impl<E: NorFlashError> core::error::Error for StoreError<E> {}
impl<E: NorFlashError> core::error::Error for FaultError<E> {}

impl Display for Overflow {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the bytes did not fit the room left in the buffer or length they were written to",
        )
    }
}

impl Display for ConfigError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidSiteCode => "the site code must be exactly three ASCII letters or digits",
            Self::InvalidMpUrl => {
                "the MP URL must be http://host[:port][/] or https://host[:port][/]"
            }
            Self::SchemeDoesNotMatchMode => {
                "the MP URL's scheme does not match the site mode: mixed mode uses http://, \
                 native mode https://"
            }
            Self::InvalidHostName => {
                "the host name must be 1 to 255 bytes of letters, digits, '-', '.' or '_'"
            }
            Self::Sha1NeedsRsa => "the SHA-1 signature hash needs an RSA key, not an ECDSA key",
            Self::UnknownSiteGeneration => "the site generation must be `2007` or `current`",
        })
    }
}

impl Display for HttpError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidHeaderValue => f.write_str(
                "an HTTP request field is empty or holds CR, LF or another control character",
            ),
            Self::InvalidHeaderName => f.write_str(
                "an extra HTTP header name is not a token, or names a header the framing sets \
                 (Host, Content-Length, Transfer-Encoding, Connection)",
            ),
            Self::InvalidPath => f.write_str(
                "the request path must start with '/' and hold no spaces or control characters",
            ),
            Self::MalformedHead => f.write_str("the response head is not HTTP/1.x"),
            Self::TooManyHeaders => write!(
                f,
                "the response has more than {MAX_HEADERS} headers, the most this agent reads"
            ),
            Self::UnexpectedStatus => {
                f.write_str("the response status is outside 100-599 or is 101 Switching Protocols")
            }
            Self::InvalidContentLength => {
                f.write_str("the response's Content-Length is not a decimal number that fits")
            }
            Self::ConflictingFraming => f.write_str(
                "the response's Content-Length values disagree, or come with Transfer-Encoding",
            ),
            Self::UnsupportedTransferEncoding => {
                f.write_str("the response's Transfer-Encoding is not exactly 'chunked'")
            }
            Self::InvalidBoundary => f.write_str(
                "the multipart boundary is empty, longer than 70 bytes, or badly quoted",
            ),
            Self::InvalidChunkSize => f.write_str("a chunk-size line is not hexadecimal"),
            Self::ChunkSizeOverflow => f.write_str("a chunk size is too large to address"),
            Self::MalformedChunk => {
                f.write_str("chunk data is not followed by CRLF, or a trailer line is malformed")
            }
            Self::UnexpectedEof => {
                f.write_str("the peer closed the connection before the response was complete")
            }
            Self::ResponseTooLarge {
                buffer,
                at_least: Some(needs),
            } => write!(
                f,
                "needs at least {needs} bytes and the receive buffer holds {buffer}"
            ),
            Self::ResponseTooLarge {
                buffer,
                at_least: None,
            } => write!(
                f,
                "does not fit the {buffer}-byte receive buffer (its length is not known \
                 before the buffer is full)"
            ),
        }
    }
}

impl Display for StreamError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(e) => write!(f, "HTTP framing: {e}"),
            Self::Sink => f.write_str("the receiver of the response body refused the data"),
        }
    }
}

impl Display for SignError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Crypto => "the key refused to sign (a degenerate digest or a broken key)",
            Self::Device => "the hardware signer did not answer",
            Self::Unsupported => "this signer cannot make that signature (SHA-1 needs an RSA key)",
        })
    }
}

impl Display for CertError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall => f.write_str(
                "the certificate buffer is too small (MAX_CERT_LEN bytes suffice for P-256, \
                 MAX_RSA_CERT_LEN for RSA-2048)",
            ),
            Self::Encoding => f.write_str("the certificate could not be DER-encoded"),
            Self::InvalidName => write!(
                f,
                "the certificate's common name must be 1 to {MAX_COMMON_NAME_LEN} bytes"
            ),
            Self::InvalidValidity => {
                let last = MAX_CERT_TIME.to_datetime();
                write!(
                    f,
                    "the certificate's validity must start before it ends, and end by \
                     {:04}-{:02}-{:02}",
                    last.year, last.month, last.day
                )
            }
            Self::InvalidSerial => f.write_str("the certificate's serial number must not be zero"),
            Self::InvalidKey => f.write_str("the public key is not a valid key"),
            Self::Malformed => f.write_str("the bytes are not a well-formed DER X.509 certificate"),
            Self::Unsupported => {
                f.write_str("the certificate is well formed but not of the kind asked for")
            }
            Self::Sign(e) => write!(f, "signing the certificate: {e}"),
        }
    }
}

impl Display for RsaKeyError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "the RSA key is not well-formed DER of the expected structure",
            Self::NotRsa => "the PKCS#8 key is not an RSA key",
            Self::Unsupported => {
                "the RSA key must have a 2048-bit modulus, an odd public exponent of at most \
                 32 bits and two primes of at most 1024 bits"
            }
            Self::Inconsistent => {
                "the RSA key's numbers do not form a key (n is not p*q, or d or \
                                   a CRT value does not match)"
            }
            Self::BufferTooSmall => {
                "the buffer is too small for the RSA key (see the *_MAX_LEN constants)"
            }
            Self::Generation => {
                "RSA key generation gave up: the random source does not look random"
            }
        })
    }
}

impl Display for BodyFault {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flash(kind) => write!(f, "reading the stored message from flash failed: {kind}"),
            Self::Corrupt => f.write_str(
                "the stored message no longer matches its checksums (its page was reused or the \
                 flash decayed)",
            ),
            Self::Busy => f.write_str("the stored message is already being streamed"),
        }
    }
}

impl Display for RamFlashError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAligned => "the flash offset or length is not a multiple of its access size",
            Self::OutOfBounds => "the flash access goes past the end of the flash",
            Self::NotErased => "a strict flash was asked to write a word that is not erased",
        })
    }
}

impl<E: NorFlashError> Display for FaultError<E> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::PowerLost => f.write_str("the power was cut: nothing more reaches the flash"),
            Self::Flash(e) => write!(f, "the flash failed: {}", e.kind()),
        }
    }
}

impl<E: NorFlashError> Display for StoreError<E> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flash(e) => write!(f, "the store's flash failed: {}", e.kind()),
            Self::Layout => f.write_str(
                "the store layout does not fit the flash (misaligned, too small or overlapping)",
            ),
            Self::QueueFull => f.write_str(
                "the queue has no room for this message until some \
                                            are delivered",
            ),
            Self::TooLarge => f.write_str(
                "the message is larger than the queue region could ever hold (see \
                 Store::max_body_len)",
            ),
            Self::NotHead => f.write_str("only the queue's oldest message can be removed"),
            Self::BufferTooSmall => f.write_str(
                "the store's buffer is too small (scratch below the flash granule, or the \
                 identity buffer below the stored identity)",
            ),
            Self::BodyChanged => f.write_str(
                "the message produced different bytes in its two passes, or failed to produce them",
            ),
            Self::IdentityTooLarge => f.write_str("the identity does not fit its flash slot"),
            Self::UnknownVersion(v) => write!(
                f,
                "the flash holds data of format version {v}, which this firmware does not know"
            ),
            Self::Corrupt => f.write_str("stored data failed its checksums when read"),
            Self::Exhausted => f.write_str("a store sequence number would wrap after 2^32 uses"),
        }
    }
}

impl Display for PayloadSignError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Body => f.write_str(
                "the message body could not be produced (a length overflowed or a name is not a \
                 valid XML name)",
            ),
            Self::Sign(e) => write!(f, "signing the message: {e}"),
        }
    }
}

impl Display for BuildError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sign(e) => write!(f, "signing the request: {e}"),
            Self::Overflow => f.write_str("the request's bytes were refused while it was hashed"),
        }
    }
}

impl Display for LocationError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotHttp => "the policy body location is not an http:// or https:// URL",
            Self::ForeignHost => {
                "the policy body location names a host other than the MP; it is not followed"
            }
            Self::BadPath => {
                "the policy body location's path is empty or holds spaces, control or non-ASCII \
                 characters"
            }
            Self::TooLong => "the policy body location does not fit the buffer",
        })
    }
}

impl Display for PolicyError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reply(e) => write!(f, "policy reply: {e}"),
            Self::Xml(e) => write!(f, "policy assignments: {e}"),
            Self::WrongRoot => {
                f.write_str("the policy reply's root element is not ReplyAssignments")
            }
            Self::MissingPolicy => f.write_str("a PolicyAssignment has no Policy element"),
            Self::MissingPolicyId => f.write_str("a Policy has no non-empty PolicyID"),
            Self::MissingPolicyVersion => f.write_str("a Policy has no non-empty PolicyVersion"),
            Self::BadPolicyFlags => f.write_str("a Policy's PolicyFlags is not a decimal u32"),
            Self::MissingLocation => {
                f.write_str("a Policy has no first child element holding its body location")
            }
            Self::BadPolicyHash => {
                f.write_str("a PolicyHash naming SHA-256 is not followed by 64 hex digits")
            }
        }
    }
}

impl Display for ReplyError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the MP answered with an empty body"),
            Self::NoBoundary => {
                f.write_str("the reply is not multipart/mixed with a boundary of at most 70 bytes")
            }
            Self::MissingDelimiter => f.write_str("the reply has no first multipart delimiter"),
            Self::MalformedMultipart => {
                f.write_str("a multipart delimiter line or part header is malformed")
            }
            Self::MissingCloseDelimiter => {
                f.write_str("the reply is truncated: its closing multipart delimiter is missing")
            }
            Self::PartCount => f.write_str("the reply must have exactly two parts"),
            Self::UnexpectedPartType => f.write_str(
                "a reply part's content-type is not text/plain (header) or \
                 application/octet-stream (body)",
            ),
            Self::Utf16(e) => write!(f, "a reply part is not UTF-16LE: {e}"),
            Self::Xml(e) => write!(f, "the reply's XML: {e}"),
            Self::WrongRoot => f.write_str("the reply's root element is not the expected one"),
            Self::BadBodyLength => f.write_str(
                "the reply's Body Length or Offset is not a decimal number, or Body appears twice",
            ),
            Self::BadCorrelationId => f.write_str("the reply's CorrelationID is not a GUID"),
            Self::PayloadTruncated => {
                f.write_str("the reply's payload is shorter than its Body Offset + Length")
            }
            Self::Compressed => f.write_str(
                "the reply's body is zlib-compressed, which devices \
                                             never ask for",
            ),
            Self::MissingStatus => f.write_str("the reply has no Status attribute"),
            Self::BadStatus => f.write_str("the reply's Status is not a decimal i32"),
            Self::BadSmsid => f.write_str("the reply's SMSID is not GUID: followed by a GUID"),
            Self::MissingSmsid => f.write_str("the reply's Status is 0 or 1 but it has no SMSID"),
            Self::BadApprovalStatus => {
                f.write_str("the reply's ApprovalStatus is not a decimal i32")
            }
            Self::BufferTooSmall => {
                f.write_str("the scratch buffer is too small for the reply's XML")
            }
        }
    }
}

impl Display for Utf16Error {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::OddLength => f.write_str("an odd number of bytes: the last UTF-16 unit is cut"),
            Self::UnpairedSurrogate { offset } => {
                write!(f, "an unpaired UTF-16 surrogate at byte {offset}")
            }
            Self::BufferTooSmall => f.write_str("the decoded text does not fit the buffer"),
        }
    }
}

impl Display for XmlErrorKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedEof => {
                f.write_str("the document ends inside markup or an open element")
            }
            Self::Doctype => f.write_str("a DOCTYPE declaration, which is refused"),
            Self::UnsupportedMarkup => {
                f.write_str("a '<!' declaration other than a comment or CDATA section")
            }
            Self::UnknownEntity => {
                f.write_str("an entity other than &lt; &gt; &amp; &apos; &quot;")
            }
            Self::BadReference => f.write_str(
                "a malformed reference (a bare '&', a missing ';', or no valid XML character)",
            ),
            Self::InvalidChar => f.write_str("a control character other than tab, CR or LF"),
            Self::InvalidName => f.write_str("a missing or malformed element or attribute name"),
            Self::MalformedTag => f.write_str("a malformed tag"),
            Self::DuplicateAttribute => f.write_str("the same attribute twice on one tag"),
            Self::TooManyAttributes => {
                write!(f, "more than {MAX_ATTRS} attributes on one tag")
            }
            Self::MismatchedEndTag => {
                f.write_str("an end tag that does not match the open element")
            }
            Self::UnexpectedEndTag => f.write_str("an end tag with no element open"),
            Self::TooDeep => write!(f, "elements nested deeper than {MAX_DEPTH}"),
            Self::ContentOutsideRoot => f.write_str("content outside the root element"),
            Self::NoRoot => f.write_str("no root element"),
            Self::MalformedComment => f.write_str("'--' inside a comment"),
            Self::UnexpectedElement => f.write_str("an element where only text is allowed"),
            Self::BufferTooSmall => f.write_str("the unescaped text does not fit the buffer"),
        }
    }
}

impl Display for XmlError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.kind == XmlErrorKind::BufferTooSmall {
            return Display::fmt(&self.kind, f);
        }
        write!(f, "{} at byte {}", self.kind, self.offset)
    }
}

#[cfg(test)]
mod tests;
