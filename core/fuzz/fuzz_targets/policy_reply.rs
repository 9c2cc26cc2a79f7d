//! Policy replies end to end (multipart split → `<Msg>` header → UTF-16 payload →
//! `ReplyAssignments`), the assignment iterator and body locations on their own, and the streaming
//! body decoder against the in-place chunked decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpagent_core::http::stream::{BodyDecoder, StreamError};
use mpagent_core::http::{decode_chunked_in_place, BodyFraming, ChunkedProgress};
use mpagent_core::sink::{Overflow, Sink};
use mpagent_core::wire::policy::{
    parse_policy_reply_in, policy_location_path, PolicyFlags, ReplyAssignments,
};
use mpagent_core::wire::utf16::utf16le_to_utf8;

const BOUNDARIES: [&str; 3] = ["aAbBcCdDv1234567890VxXyYzZ", "B", "--"];

fn check(reply: &ReplyAssignments<'_>) {
    // The iterator ends after an error; validate agrees with it; for_each is all or nothing.
    let mut ok = 0usize;
    let mut failed = None;
    for a in reply.assignments() {
        match a {
            Ok(a) => {
                assert!(failed.is_none(), "an assignment after an error");
                ok += 1;
                assert!(!a.policy_id.is_whitespace());
                assert!(!a.policy_version.is_whitespace());
                assert!(!a.location.is_whitespace());
                let _ = a.flags.contains(PolicyFlags::SECRET);
                let mut buf = [0u8; 512];
                if let Ok(loc) = a.location.unescape_into(&mut buf) {
                    if let Ok(path) = policy_location_path(loc, "mp.example") {
                        assert!(path.starts_with('/'));
                        assert!(path.bytes().all(|b| (0x21..=0x7E).contains(&b)));
                    }
                }
            }
            Err(e) => failed = Some(e),
        }
    }
    match (reply.validate(), failed) {
        (Ok(n), None) => assert_eq!(n, ok),
        (Err(e), Some(f)) => assert_eq!(e, f),
        (v, f) => panic!("validate {v:?} vs iteration {f:?}"),
    }
    let mut called = 0usize;
    match reply.for_each(&mut |_| called += 1) {
        Ok(n) => assert_eq!(n, called),
        Err(_) => assert_eq!(called, 0),
    }
}

struct Collect<'a>(&'a mut Vec<u8>);
impl Sink for Collect<'_> {
    fn write(&mut self, b: &[u8]) -> Result<(), Overflow> {
        self.0.extend_from_slice(b);
        Ok(())
    }
}

fn chunked_differential(step: usize, input: &[u8]) {
    let mut whole = input.to_vec();
    let in_place = decode_chunked_in_place(&mut whole);
    let mut out = Vec::new();
    let mut d = BodyDecoder::new(BodyFraming::Chunked);
    let mut consumed = 0usize;
    let mut err = None;
    for piece in input.chunks(step) {
        if d.is_complete() {
            break;
        }
        match d.feed(piece, &mut Collect(&mut out)) {
            Ok(f) => consumed += f.consumed,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    match in_place {
        Ok(ChunkedProgress::Complete { body_len }) => {
            assert!(err.is_none(), "{err:?}");
            assert!(d.is_complete());
            assert_eq!(out, whole[..body_len]);
            assert!(consumed <= input.len());
        }
        Ok(ChunkedProgress::Incomplete) => {
            assert!(err.is_none(), "{err:?}");
            assert!(!d.is_complete());
            assert!(d.finish().is_err());
        }
        // Both stop at the end of the body, so they refuse the same framing.
        Err(e) => assert!(
            matches!(err, Some(StreamError::Http(_))),
            "{e:?} vs {err:?}"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    if sel & 0x80 != 0 {
        chunked_differential(usize::from(sel & 0x3F) + 1, body);
        return;
    }
    let boundary = BOUNDARIES[usize::from(sel) % BOUNDARIES.len()];
    let mut scratch = [0u8; 8192];
    if let Ok(reply) = parse_policy_reply_in(body, boundary, &mut scratch) {
        check(&reply);
    }
    if let Ok(s) = core::str::from_utf8(body) {
        if let Ok(reply) = ReplyAssignments::parse(s) {
            check(&reply);
        }
        let _ = policy_location_path(s, "mp.example");
    }
    let mut scratch = [0u8; 8192];
    if let Ok(s) = utf16le_to_utf8(body, &mut scratch) {
        if let Ok(reply) = ReplyAssignments::parse(s) {
            check(&reply);
        }
    }
});
