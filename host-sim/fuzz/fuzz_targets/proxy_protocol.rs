//! The ISV proxy's device-protocol decoder (`mpagent_sim::proxy::protocol`) on hostile bytes:
//! it never panics, never accepts more than its limits, and whatever it accepts re-encodes to
//! the very bytes it consumed (a canonical encoding: no two wire forms for one frame).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpagent_sim::proxy::protocol::{
    decode, decode_header, decode_payload, Frame, HEADER_LEN, MAX_PAIRS, MAX_PAYLOAD, MAX_STR,
};

fn check_limits(f: &Frame) {
    let pairs = match f {
        Frame::Inventory { items } => items.as_slice(),
        Frame::Status { properties, .. } => properties.as_slice(),
        Frame::PolicyList { policies } => policies.as_slice(),
        _ => &[],
    };
    assert!(pairs.len() <= MAX_PAIRS);
    for (a, b) in pairs {
        assert!(a.len() <= MAX_STR && b.len() <= MAX_STR);
    }
}

fuzz_target!(|data: &[u8]| {
    // A whole frame (header + payload), possibly followed by more bytes.
    if let Ok((frame, used)) = decode(data) {
        assert!(used >= HEADER_LEN && used <= data.len());
        assert!(used - HEADER_LEN <= MAX_PAYLOAD);
        check_limits(&frame);
        assert_eq!(frame.encode(), &data[..used], "not canonical: {frame:?}");
    }
    let _ = decode_header(data);
    // The payload decoders alone: byte 0 picks the type, the rest is the payload.
    if let Some((&kind, payload)) = data.split_first() {
        if let Ok(frame) = decode_payload(kind, payload) {
            check_limits(&frame);
            let enc = frame.encode();
            assert_eq!(&enc[HEADER_LEN..], payload, "not canonical: {frame:?}");
            assert_eq!(decode(&enc).map(|(f, _)| f), Ok(frame));
        }
    }
});
