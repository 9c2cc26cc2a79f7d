//! The MP's HTTP/1.1 request-head parser: pure and synchronous, so the server's reader feeds it
//! the bytes received so far and the fuzz target `mp_http_head` feeds it anything. It owns the
//! head limits (size, header count), the framing rule (`Content-Length` only, never
//! `Transfer-Encoding`, one length) and keep-alive; the body is read by [`super::server`].

use super::{Limits, MAX_HEADERS};

/// A complete, accepted request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// Names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    /// HTTP/1.1 without `Connection: close`.
    pub keep_alive: bool,
    /// The body length (0 without `Content-Length`), at most `Limits::max_body_bytes`.
    pub content_length: usize,
    /// Bytes of the head, the final CRLF CRLF included: the body starts here.
    pub head_len: usize,
}

impl Head {
    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request head is refused (the text is the logged reason and the 403 body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request head exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("too many request headers (more than {MAX_HEADERS})")]
    TooManyHeaders,
    #[error("malformed HTTP request head: {0}")]
    Malformed(String),
    #[error("header {0} is not UTF-8")]
    NotUtf8(String),
    #[error("request bodies with Transfer-Encoding are not supported; send Content-Length")]
    TransferEncoding,
    #[error("bad Content-Length {0:?}")]
    BadContentLength(String),
    #[error("conflicting Content-Length headers")]
    ConflictingContentLength,
    #[error("request body of {length} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge { length: usize, limit: usize },
}

/// The end of the head (just past the first CRLF CRLF), if it has arrived.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parses the request head at the start of `buf` (the bytes received so far; body bytes and a
/// pipelined next request may follow). `Ok(None)`: incomplete, read more.
pub fn parse_request_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, HeadError> {
    let too_large = HeadError::TooLarge {
        limit: limits.max_head_bytes,
    };
    let Some(end) = head_end(buf) else {
        return if buf.len() > limits.max_head_bytes {
            Err(too_large)
        } else {
            Ok(None)
        };
    };
    if end > limits.max_head_bytes {
        return Err(too_large);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf.get(..end).unwrap_or(buf)) {
        // httparse also ends a head at a bare-LF blank line: such a head would end before our
        // CRLF CRLF and its "body" would be ambiguous, so only an exact match is accepted.
        Ok(httparse::Status::Complete(n)) if n == end => {}
        Ok(httparse::Status::Complete(_)) => {
            return Err(HeadError::Malformed(
                "blank line before the end of the head".into(),
            ))
        }
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::Malformed("incomplete request line".into()))
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    }
    let mut hv = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let v = std::str::from_utf8(h.value).map_err(|_| HeadError::NotUtf8(h.name.into()))?;
        hv.push((h.name.to_string(), v.trim().to_string()));
    }
    if hv
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
    {
        return Err(HeadError::TransferEncoding);
    }
    let mut length: Option<usize> = None;
    for (_, v) in hv
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        // Digits only: `usize::from_str` would also take a leading `+`.
        let n = v
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| v.parse::<usize>().ok())
            .flatten()
            .ok_or_else(|| HeadError::BadContentLength(v.clone()))?;
        if length.is_some_and(|l| l != n) {
            return Err(HeadError::ConflictingContentLength);
        }
        length = Some(n);
    }
    let content_length = length.unwrap_or(0);
    if content_length > limits.max_body_bytes {
        return Err(HeadError::BodyTooLarge {
            length: content_length,
            limit: limits.max_body_bytes,
        });
    }
    let close = hv
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .any(|(_, v)| v.to_ascii_lowercase().contains("close"));
    Ok(Some(Head {
        method: req.method.unwrap_or_default().to_string(),
        target: req.path.unwrap_or_default().to_string(),
        keep_alive: req.version == Some(1) && !close,
        headers: hv,
        content_length,
        head_len: end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Result<Option<Head>, HeadError> {
        parse_request_head(head.as_bytes(), &Limits::default())
    }

    #[test]
    fn a_complete_head() {
        let raw = "CCM_POST /ccm_system/request?x=1 HTTP/1.1\r\nHost: mp\r\nContent-Length: 5\r\n\
                   content-type:  multipart/mixed \r\n\r\nhello";
        let h = parse(raw).unwrap().unwrap();
        assert_eq!(h.method, "CCM_POST");
        assert_eq!(h.target, "/ccm_system/request?x=1");
        assert_eq!(h.content_length, 5);
        assert_eq!(h.head_len, raw.len() - 5);
        assert!(h.keep_alive);
        assert_eq!(h.header("Content-Type"), Some("multipart/mixed"));
        // HTTP/1.0, or Connection: close in any case and among other tokens: no keep-alive.
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        let h = parse("GET / HTTP/1.1\r\nConnection: Keep-Alive\r\nConnection: TE, Close\r\n\r\n");
        assert!(!h.unwrap().unwrap().keep_alive);
        // The same length twice is fine.
        let h = parse("GET / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n");
        assert_eq!(h.unwrap().unwrap().content_length, 3);
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: x\r\n\r"), Ok(None));
    }

    #[test]
    fn malformed_heads_are_refused_with_their_reason() {
        let cases: &[(&str, HeadError)] = &[
            (
                "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::TransferEncoding,
            ),
            (
                "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                HeadError::BadContentLength("-1".into()),
            ),
            (
                "GET / HTTP/1.1\r\nContent-Length: +4\r\n\r\n",
                HeadError::BadContentLength("+4".into()),
            ),
            (
                "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                HeadError::BadContentLength("99999999999999999999999".into()),
            ),
            (
                "GET / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
                HeadError::ConflictingContentLength,
            ),
            (
                "GET / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n",
                HeadError::BodyTooLarge {
                    length: 1_048_577,
                    limit: 1 << 20,
                },
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw).as_ref(), Err(want), "{raw:?}");
        }
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n", &Limits::default()),
            Err(HeadError::NotUtf8("X".into()))
        );
        for raw in [
            "SSH-2.0-OpenSSH_9.6\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon here\r\n\r\n",
            "GET  HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\n\nX: smuggled\r\n\r\n",
            "\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw), Err(HeadError::Malformed(_))),
                "{raw:?}: {:?}",
                parse(raw)
            );
        }
    }

    #[test]
    fn limits_are_kept() {
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(
            parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(HeadError::TooManyHeaders)
        );
        let limits = Limits {
            max_head_bytes: 256,
            ..Limits::default()
        };
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(300));
        let too_large = Err(HeadError::TooLarge { limit: 256 });
        assert_eq!(parse_request_head(big.as_bytes(), &limits), too_large);
        // Refused as soon as more than the limit arrived without an end.
        assert_eq!(
            parse_request_head(&big.as_bytes()[..257], &limits),
            too_large
        );
        assert_eq!(
            parse_request_head(&big.as_bytes()[..256], &limits),
            Ok(None)
        );
    }
}
