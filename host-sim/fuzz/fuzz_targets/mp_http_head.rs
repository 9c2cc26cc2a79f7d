//! The MP emulator's HTTP request-head parser (`mp::http::parse_request_head`): request line,
//! headers, the head and body limits, `Content-Length` / `Transfer-Encoding` framing and
//! keep-alive. Input: the bytes received so far. An accepted head must lie within the input and
//! the limits, and parse the same when more bytes follow it (what the server sees on a pipelined
//! connection); an incomplete one must stay incomplete or be refused on every shorter prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpagent_sim::mp::http::parse_request_head;
use mpagent_sim::mp::Limits;

fuzz_target!(|data: &[u8]| {
    // A small head limit so that the size checks are reached by short inputs too.
    let limits = Limits {
        max_head_bytes: 1024,
        max_body_bytes: 1 << 16,
        ..Limits::default()
    };
    match parse_request_head(data, &limits) {
        Ok(Some(head)) => {
            assert!(head.head_len <= data.len() && head.head_len <= limits.max_head_bytes);
            assert!(data[..head.head_len].ends_with(b"\r\n\r\n"));
            assert!(head.content_length <= limits.max_body_bytes);
            assert!(!head.method.is_empty() && !head.target.is_empty());
            // The head alone parses to the same, and so does the head followed by anything.
            assert_eq!(
                parse_request_head(&data[..head.head_len], &limits),
                Ok(Some(head.clone()))
            );
            let mut more = data.to_vec();
            more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(parse_request_head(&more, &limits), Ok(Some(head)));
        }
        Ok(None) => {
            assert!(data.len() <= limits.max_head_bytes);
            assert!(!data.windows(4).any(|w| w == b"\r\n\r\n"));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
