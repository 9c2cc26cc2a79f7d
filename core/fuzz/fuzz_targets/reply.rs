//! Reply envelopes end to end: multipart split, `<Msg>` header, UTF-16 payload, registration
//! response; plus each parser on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpagent_core::wire::reply::{
    header_xml, parse_msg_header, parse_registration_reply_in, parse_registration_response,
    payload_xml, split_multipart, RegistrationStatus,
};
use mpagent_core::wire::utf16::utf16le_to_utf8;

const BOUNDARIES: [&str; 3] = ["aAbBcCdDv1234567890VxXyYzZ", "B", "--"];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let boundary = BOUNDARIES[usize::from(sel) % BOUNDARIES.len()];
    let mut scratch = [0u8; 4096];

    if let Ok(env) = split_multipart(body, boundary) {
        let base = body.as_ptr() as usize;
        for part in [env.header, env.payload] {
            let at = part.as_ptr() as usize;
            assert!(part.is_empty() || (at >= base && at + part.len() <= base + body.len()));
        }
        if let Ok(xml) = header_xml(env.header, &mut scratch) {
            if let Ok(info) = parse_msg_header(xml) {
                let mut scratch2 = [0u8; 4096];
                if let Ok(xml) = payload_xml(env.payload, &info, &mut scratch2) {
                    check_registration(xml);
                }
            }
        }
    }
    let _ = parse_registration_reply_in(body, boundary, &mut scratch);

    // The parsers on their own, over UTF-8 and over UTF-16LE input.
    if let Ok(s) = core::str::from_utf8(body) {
        let _ = parse_msg_header(s);
        check_registration(s);
    }
    if let Ok(s) = utf16le_to_utf8(body, &mut scratch) {
        let _ = parse_msg_header(s);
        check_registration(s);
    }
});

fn check_registration(xml: &str) {
    if let Ok(r) = parse_registration_response(xml) {
        // An SMSID only with status 0 or 1 (where it may also be absent: a confirmation's reply).
        if !matches!(
            r.status,
            RegistrationStatus::Registered | RegistrationStatus::Pending
        ) {
            assert!(r.smsid.is_none());
        }
        assert_eq!(RegistrationStatus::from_code(r.code), r.status);
    }
}
