//! Response heads, body framing, chunked decoding in place, and `poll_response` driven the way an
//! IO loop drives it (the input delivered in reads of fuzzer-chosen size).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpagent_core::http::response::parse_http_date;
use mpagent_core::http::{
    body_complete, decode_chunked_in_place, parse_response_head, poll_response, scan_chunked,
    BodyFraming, BodyState, ChunkedProgress, ChunkedScan, ResponseProgress,
};

fuzz_target!(|data: &[u8]| {
    // Dates on their own (all three RFC 9110 forms).
    if let Some(t) = parse_http_date(data) {
        assert!(t.0 < 253_402_300_800); // before year 10000
    }

    // Head and framing on the raw bytes.
    if let Ok(Some(head)) = parse_response_head(data) {
        assert!(head.head_len <= data.len());
        assert!(head.boundary.len() <= 70);
        assert!((200..=599).contains(&head.status));
        let after = &data[head.head_len..];
        for eof in [false, true] {
            if let Ok(BodyState::Complete { encoded_len }) = body_complete(&head, after, eof) {
                assert!(encoded_len <= after.len());
            }
        }
        if head.body == BodyFraming::UntilClose {
            assert!(head.connection_close);
        }
    }

    // Chunked decoding on the raw bytes: scan and decode agree; incomplete leaves them untouched.
    let scan = scan_chunked(data);
    let mut buf = data.to_vec();
    match decode_chunked_in_place(&mut buf) {
        Ok(ChunkedProgress::Complete { body_len }) => match scan {
            Ok(ChunkedScan::Complete {
                body_len: b,
                encoded_len,
            }) => {
                assert_eq!(b, body_len);
                assert!(body_len <= encoded_len && encoded_len <= data.len());
            }
            other => panic!("decode complete, scan {other:?}"),
        },
        Ok(ChunkedProgress::Incomplete) => {
            assert_eq!(buf, data);
            match scan {
                Ok(ChunkedScan::Incomplete { min_len }) => assert!(min_len > data.len()),
                other => panic!("decode incomplete, scan {other:?}"),
            }
        }
        Err(e) => assert_eq!(scan, Err(e)),
    }

    // The IO loop: reads of 1..=64 bytes (chosen by the first byte) into a fixed buffer.
    let Some((&step, wire)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let mut fixed = [0u8; 2048];
    let mut filled = 0usize;
    loop {
        let n = step
            .min(wire.len() - filled.min(wire.len()))
            .min(fixed.len() - filled);
        fixed[filled..filled + n].copy_from_slice(&wire[filled..filled + n]);
        filled += n;
        match poll_response(&mut fixed, filled, n == 0) {
            Ok(ResponseProgress::NeedMore) => assert!(n > 0, "NeedMore at EOF"),
            Ok(ResponseProgress::Complete { head, body }) => {
                assert!(body.start == head.head_len && body.end <= filled);
                break;
            }
            Err(_) => break,
        }
    }
});
