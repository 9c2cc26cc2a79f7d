//! Request heads (docs/protocol.md §1): `CCM_POST /ccm_system/request` for messages, plain `GET`
//! for the `.sms_aut` look-ups and policy bodies. The head is an [`Emit`], so it goes out through
//! the same window sinks as the body that follows it.

use super::HttpError;
use crate::sink::{Emit, Overflow, Sink};

/// The anonymous message endpoint (docs/protocol.md §1).
pub const CCM_REQUEST_PATH: &str = "/ccm_system/request";

/// The `User-Agent` every request carries (docs/protocol.md §1).
pub const USER_AGENT: &str = "ConfigMgr Messaging HTTP Sender";

/// Request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Method {
    /// `CCM_POST`, the non-standard method messages go with.
    CcmPost,
    /// `GET`, for look-ups and policy bodies.
    Get,
}

impl Method {
    /// The method token as sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::CcmPost => "CCM_POST",
            Method::Get => "GET",
        }
    }
}

/// Headers the framing writes itself; `extra` may not repeat them.
const RESERVED: [&str; 7] = [
    "host",
    "user-agent",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
];

/// An HTTP/1.1 request head. Emits
/// `METHOD path HTTP/1.1\r\nHost: host[:port]\r\nUser-Agent: …\r\n[Content-Type: …\r\n]`
/// `[Content-Length: n\r\n]Connection: close\r\n{extra: value\r\n}\r\n`.
///
/// Fields are public for convenience; [`RequestHead::validate`] checks them, and
/// [`Emit::emit`] refuses (with [`Overflow`], writing nothing) a head that does not validate, so an
/// unchecked head can never inject a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestHead<'a> {
    /// Request method.
    pub method: Method,
    /// Origin-form target: `/ccm_system/request`, `/SMS_MP/.sms_aut?MPLIST`, …
    pub path: &'a str,
    /// Host name or address; an IPv6 literal is given without brackets and gets them in `Host:`.
    pub host: &'a str,
    /// Port for the `Host` header; `None` for the scheme's default.
    pub port: Option<u16>,
    /// `Content-Type` value (the multipart boundary for messages).
    pub content_type: Option<&'a str>,
    /// `Content-Length`; `None` for bodiless requests.
    pub content_length: Option<usize>,
    /// Further headers, e.g. `ClientToken` and `ClientTokenSignature` for policy `GET`s.
    pub extra: &'a [(&'a str, &'a str)],
}

impl<'a> RequestHead<'a> {
    /// `CCM_POST /ccm_system/request` with a body of `content_length` bytes.
    pub fn ccm_post(
        host: &'a str,
        port: Option<u16>,
        content_type: &'a str,
        content_length: usize,
    ) -> Self {
        Self {
            method: Method::CcmPost,
            path: CCM_REQUEST_PATH,
            host,
            port,
            content_type: Some(content_type),
            content_length: Some(content_length),
            extra: &[],
        }
    }

    /// A bodiless `GET` of `path`.
    pub fn get(
        path: &'a str,
        host: &'a str,
        port: Option<u16>,
        extra: &'a [(&'a str, &'a str)],
    ) -> Self {
        Self {
            method: Method::Get,
            path,
            host,
            port,
            content_type: None,
            content_length: None,
            extra,
        }
    }

    /// Check every field for header injection and shape.
    pub fn validate(&self) -> Result<(), HttpError> {
        if !self.path.starts_with('/') || !self.path.bytes().all(|b| (0x21..=0x7E).contains(&b)) {
            return Err(HttpError::InvalidPath);
        }
        if self.host.is_empty()
            || !self
                .host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
        {
            return Err(HttpError::InvalidHeaderValue);
        }
        if let Some(ct) = self.content_type {
            if ct.is_empty() || !is_field_value(ct) {
                return Err(HttpError::InvalidHeaderValue);
            }
        }
        for (name, value) in self.extra {
            if !is_token(name) || RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(HttpError::InvalidHeaderName);
            }
            if !is_field_value(value) {
                return Err(HttpError::InvalidHeaderValue);
            }
        }
        Ok(())
    }

    fn write_head(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        out.write(self.method.as_str().as_bytes())?;
        out.write(b" ")?;
        out.write(self.path.as_bytes())?;
        out.write(b" HTTP/1.1\r\nHost: ")?;
        let ipv6 = self.host.contains(':');
        if ipv6 {
            out.write(b"[")?;
        }
        out.write(self.host.as_bytes())?;
        if ipv6 {
            out.write(b"]")?;
        }
        if let Some(port) = self.port {
            out.write(b":")?;
            write_decimal(out, port.into())?;
        }
        out.write(b"\r\nUser-Agent: ")?;
        out.write(USER_AGENT.as_bytes())?;
        out.write(b"\r\n")?;
        if let Some(ct) = self.content_type {
            out.write(b"Content-Type: ")?;
            out.write(ct.as_bytes())?;
            out.write(b"\r\n")?;
        }
        if let Some(len) = self.content_length {
            out.write(b"Content-Length: ")?;
            write_decimal(out, len)?;
            out.write(b"\r\n")?;
        }
        out.write(b"Connection: close\r\n")?;
        for (name, value) in self.extra {
            out.write(name.as_bytes())?;
            out.write(b": ")?;
            out.write(value.as_bytes())?;
            out.write(b"\r\n")?;
        }
        out.write(b"\r\n")
    }
}

impl Emit for RequestHead<'_> {
    /// Writes the head; a head that fails [`RequestHead::validate`] writes nothing and fails with
    /// [`Overflow`] (the only error `Emit` can carry): validate first to learn why.
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        self.validate().map_err(|_| Overflow)?;
        self.write_head(out)
    }
}

/// RFC 9110 `token` (header names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// A header value we are willing to send: visible ASCII, space and tab; no CR, LF, NUL, DEL or
/// non-ASCII (which some servers read as line breaks).
fn is_field_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (0x20..=0x7E).contains(&b))
}

fn write_decimal(out: &mut dyn Sink, mut v: usize) -> Result<(), Overflow> {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start = start.checked_sub(1).ok_or(Overflow)?;
        let slot = digits.get_mut(start).ok_or(Overflow)?;
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.write(digits.get(start..).ok_or(Overflow)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{emitted_len, SliceSink};

    fn render<'b>(h: &RequestHead<'_>, buf: &'b mut [u8]) -> &'b str {
        let mut s = SliceSink::new(buf);
        h.emit(&mut s).unwrap();
        core::str::from_utf8(s.into_written()).unwrap()
    }

    #[test]
    fn ccm_post_head() {
        let h = RequestHead::ccm_post(
            "mp01.corp.example",
            None,
            "multipart/mixed; boundary=\"aAbBcCdDv1234567890VxXyYzZ\"",
            1234,
        );
        let mut buf = [0u8; 512];
        assert_eq!(
            render(&h, &mut buf),
            "CCM_POST /ccm_system/request HTTP/1.1\r\n\
             Host: mp01.corp.example\r\n\
             User-Agent: ConfigMgr Messaging HTTP Sender\r\n\
             Content-Type: multipart/mixed; boundary=\"aAbBcCdDv1234567890VxXyYzZ\"\r\n\
             Content-Length: 1234\r\n\
             Connection: close\r\n\r\n"
        );
        assert_eq!(emitted_len(&h).unwrap(), render(&h, &mut buf).len());
    }

    #[test]
    fn get_with_port_and_extra_headers() {
        let extra = [
            (
                "ClientToken",
                "GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42;2026-11-23T10:00:00Z;2",
            ),
            ("ClientTokenSignature", "ABCD"),
        ];
        let h = RequestHead::get("/SMS_MP/.sms_pol?{1}.1", "10.0.0.5", Some(8080), &extra);
        let mut buf = [0u8; 512];
        assert_eq!(
            render(&h, &mut buf),
            "GET /SMS_MP/.sms_pol?{1}.1 HTTP/1.1\r\n\
             Host: 10.0.0.5:8080\r\n\
             User-Agent: ConfigMgr Messaging HTTP Sender\r\n\
             Connection: close\r\n\
             ClientToken: GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42;2026-11-23T10:00:00Z;2\r\n\
             ClientTokenSignature: ABCD\r\n\r\n"
        );
    }

    #[test]
    fn ipv6_host_gets_brackets_and_zero_length() {
        let mut h = RequestHead::get("/SMS_MP/.sms_aut?MPLIST", "fd00::1", Some(80), &[]);
        h.content_length = Some(0);
        let mut buf = [0u8; 256];
        let s = render(&h, &mut buf);
        assert!(s.contains("\r\nHost: [fd00::1]:80\r\n"), "{s}");
        assert!(s.contains("\r\nContent-Length: 0\r\n"), "{s}");
    }

    #[test]
    fn header_injection_is_refused() {
        let ok = RequestHead::ccm_post("mp", None, "text/plain", 1);
        assert_eq!(ok.validate(), Ok(()));
        let cases: [(RequestHead<'_>, HttpError); 9] = [
            (
                RequestHead {
                    host: "mp\r\nX-Evil: 1",
                    ..ok
                },
                HttpError::InvalidHeaderValue,
            ),
            (
                RequestHead { host: "", ..ok },
                HttpError::InvalidHeaderValue,
            ),
            (
                RequestHead { host: "mp/x", ..ok },
                HttpError::InvalidHeaderValue,
            ),
            (
                RequestHead {
                    content_type: Some("text/plain\r\nX: y"),
                    ..ok
                },
                HttpError::InvalidHeaderValue,
            ),
            (
                RequestHead {
                    content_type: Some("a\nb"),
                    ..ok
                },
                HttpError::InvalidHeaderValue,
            ),
            (RequestHead { path: "/a b", ..ok }, HttpError::InvalidPath),
            (RequestHead { path: "x", ..ok }, HttpError::InvalidPath),
            (
                RequestHead {
                    path: "/a\r\n",
                    ..ok
                },
                HttpError::InvalidPath,
            ),
            (RequestHead { path: "", ..ok }, HttpError::InvalidPath),
        ];
        for (h, e) in cases {
            assert_eq!(h.validate(), Err(e), "{h:?}");
            let mut buf = [0u8; 256];
            let mut s = SliceSink::new(&mut buf);
            assert_eq!(h.emit(&mut s), Err(Overflow));
            assert!(s.is_empty());
        }
        for extra in [
            [("X-A", "1\r\nX-B: 2")],
            [("X-A", "\0")],
            [("X-A", "caf\u{e9}")],
        ] {
            assert_eq!(
                RequestHead {
                    extra: &extra,
                    ..ok
                }
                .validate(),
                Err(HttpError::InvalidHeaderValue)
            );
        }
        for extra in [
            [("X A", "1")],
            [("", "1")],
            [("X:A", "1")],
            [("content-length", "5")],
            [("Transfer-Encoding", "chunked")],
            [("HOST", "x")],
        ] {
            assert_eq!(
                RequestHead {
                    extra: &extra,
                    ..ok
                }
                .validate(),
                Err(HttpError::InvalidHeaderName)
            );
        }
    }

    #[test]
    fn small_sink_overflows() {
        let h = RequestHead::ccm_post("mp", None, "text/plain", usize::MAX);
        let n = emitted_len(&h).unwrap();
        let mut buf = [0u8; 256];
        let mut max = heapless::String::<48>::new();
        core::fmt::write(&mut max, format_args!("Content-Length: {}\r\n", usize::MAX)).unwrap();
        assert!(render(&h, &mut buf).contains(max.as_str()));
        let mut small = [0u8; 255];
        let mut s = SliceSink::new(&mut small[..n - 1]);
        assert_eq!(h.emit(&mut s), Err(Overflow));
    }
}
